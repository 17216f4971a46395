from rest_framework import serializers

from labeling.serializers import StrictSerializer

from .models import ModelActivation, ModelVersion, TrainingRun
from .training import ARCHITECTURES, LEARNING_RATE_MAX, LEARNING_RATE_MIN, TrainingOptions


class TrainingOptionsSerializer(StrictSerializer):
    architecture = serializers.ChoiceField(choices=ARCHITECTURES, required=False)
    image_size = serializers.IntegerField(min_value=16, max_value=1024, required=False)
    epochs = serializers.IntegerField(min_value=1, max_value=100, required=False)
    batch_size = serializers.IntegerField(min_value=1, max_value=512, required=False)
    learning_rate = serializers.FloatField(min_value=LEARNING_RATE_MIN, max_value=LEARNING_RATE_MAX, required=False,
                                           allow_null=True)
    # An explicit default: a form-encoded body without the key would otherwise read as false.
    pretrained = serializers.BooleanField(required=False, default=TrainingOptions.pretrained)
    seed = serializers.IntegerField(min_value=0, max_value=2**32 - 1, required=False,
                                    help_text="Random seed of the run (augmentation, shuffling, initial weights).")
    cleaning_folds = serializers.IntegerField(min_value=0, max_value=10, required=False,
                                              help_text="0 (off) or 2-10: k-fold out-of-sample losses for cleaning.")
    activate = serializers.BooleanField(required=False, default=False,
                                        help_text="Activate the new version when the run succeeds.")
    include_model_labels = serializers.BooleanField(
        required=False, default=False,
        help_text="Also train on the model's own auto-accepted labels; by default only human-verified labels "
                  "(import, consensus, one labeller, expert, audit) are used. Recorded in the run's options.")


class TrainingRunSerializer(serializers.ModelSerializer):
    model_version = serializers.PrimaryKeyRelatedField(read_only=True)
    # How many photos the run trains on (its frozen data, set when it starts), without the list itself.
    data_count = serializers.SerializerMethodField()

    class Meta:
        model = TrainingRun
        fields = ["id", "status", "progress", "epoch", "total_epochs", "batch", "total_batches", "metrics",
                  "history", "model_version", "options", "device", "error", "log", "data_count", "data_hash",
                  "created_at", "started_at", "finished_at"]

    def get_data_count(self, run) -> int:
        return len(run.data)


class VersionScoreSerializer(serializers.Serializer):
    accuracy = serializers.FloatField(allow_null=True)
    per_label = serializers.DictField(child=serializers.ListField(child=serializers.IntegerField()),
                                      help_text="label -> [correct, total]")


class CompareDifferenceSerializer(serializers.Serializer):
    photo = serializers.IntegerField()
    label = serializers.CharField(help_text="The photo's final label.")
    a = serializers.CharField(allow_null=True, help_text="Version a's top label.")
    b = serializers.CharField(allow_null=True, help_text="Version b's top label.")


class CompareSerializer(serializers.Serializer):
    count = serializers.IntegerField(help_text="Validation photos compared.")
    agreement = serializers.FloatField(allow_null=True, help_text="Share of them on which a and b agree.")
    unreadable = serializers.IntegerField(help_text="Photos left out because their file could not be read.")
    versions = serializers.DictField(child=VersionScoreSerializer(), help_text="By version id.")
    differences = CompareDifferenceSerializer(many=True)


class ModelVersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelVersion
        fields = ["id", "architecture", "image_size", "labels", "metrics", "sha256", "size", "is_active", "is_shadow",
                  "activated_at", "created_at", "training_run"]


class ModelActivationSerializer(serializers.ModelSerializer):
    user = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = ModelActivation
        fields = ["id", "version", "replaced", "user", "run", "created_at", "is_rollback"]



class SimilarPhotoSerializer(serializers.Serializer):
    photo = serializers.IntegerField()
    label = serializers.CharField(help_text="The label it was trained with.")
    final_label = serializers.CharField(allow_null=True, help_text="Its label now (a correction may have changed it).")
    similarity = serializers.FloatField(help_text="Cosine of the version's features: 1 for the same picture.")
    image_url = serializers.CharField()


class SimilarPhotosSerializer(serializers.Serializer):
    model_version = serializers.IntegerField(help_text="The version that predicted the photo, whose features these are.")
    photos = SimilarPhotoSerializer(many=True, help_text="Nearest first; photos deleted since are left out.")
    unavailable = serializers.CharField(allow_null=True, help_text="Why there are none (no features kept, a file "
                                                                   "that cannot be read); null otherwise.")
