"""Serializers of the labelling workspace, label management, bulk upload, export and team stats."""

from django.conf import settings
from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from .labelling import LABEL_NAME_RULE, MAX_EXAMPLES
from .models import Label, LabelVote, Photo
from .serializers import PhotoSerializer, StrictSerializer


class LabelFullSerializer(serializers.ModelSerializer):
    """A label as the labels API shows it: retired ones too, with their example photos' ids."""

    examples = serializers.SerializerMethodField(help_text="Ids of the example photos still decided with the label.")

    class Meta:
        model = Label
        fields = ["id", "name", "description", "retired", "always_review", "threshold", "examples", "created_at"]
        extra_kwargs = {"threshold": {"help_text": "The label's own threshold: the model saves this answer on its own "
                                                   "only at or above it, when higher than CONFIDENCE_THRESHOLD; null: "
                                                   "the site's."}}

    @extend_schema_field(serializers.ListField(child=serializers.IntegerField()))
    def get_examples(self, label):
        return [photo.id for photo in label.current_examples()]


class LabelChangeSerializer(serializers.Serializer):
    at = serializers.DateTimeField(source="created_at")
    who = serializers.CharField(source="user.username", default=None, allow_null=True)
    what = serializers.CharField()


class LabelDetailSerializer(LabelFullSerializer):
    """One label, with its latest changes (who made them), newest first."""

    changes = serializers.SerializerMethodField()

    class Meta(LabelFullSerializer.Meta):
        fields = [*LabelFullSerializer.Meta.fields, "changes"]

    @extend_schema_field(LabelChangeSerializer(many=True))
    def get_changes(self, label):
        return LabelChangeSerializer(label.changes.select_related("user")[:50], many=True).data


ALWAYS_REVIEW_HELP = ("The model's answer with this label always goes to an expert, however sure it is (for "
                      "photos predicted from then on).")


THRESHOLD_HELP = ("The label's own threshold: the model saves this answer on its own only at or above it, when it "
                  "is higher than the site's CONFIDENCE_THRESHOLD (for photos predicted from then on); null: the "
                  "site's.")


def _threshold_field(**kwargs):
    return serializers.FloatField(required=False, allow_null=True, min_value=0.0, max_value=1.0,
                                  help_text=THRESHOLD_HELP, **kwargs)


class LabelCreateSerializer(StrictSerializer):
    always_review = serializers.BooleanField(required=False, default=False, help_text=ALWAYS_REVIEW_HELP)
    threshold = _threshold_field(default=None)
    name = serializers.RegexField(r"^[a-z0-9_]{1,64}$", max_length=64,
                                  error_messages={"invalid": LABEL_NAME_RULE})
    description = serializers.CharField(required=False, allow_blank=True, default="", max_length=5000)
    examples = serializers.ListField(child=serializers.IntegerField(min_value=1, max_value=2**62),
                                     required=False, default=list, max_length=MAX_EXAMPLES,
                                     help_text=f"Ids of up to {MAX_EXAMPLES} photos shown as examples, each "
                                     "decided with this label: so none for a new label, whose examples are "
                                     "added by PATCH once photos have it.")


class LabelUpdateSerializer(StrictSerializer):
    """What may change on a label. The name may not: predictions, models and exports use it."""

    description = serializers.CharField(required=False, allow_blank=True, max_length=5000)
    retired = serializers.BooleanField(required=False, help_text="A retired label is hidden from the "
                                       "labelling and review buttons and kept on its photos.")
    always_review = serializers.BooleanField(required=False, help_text=ALWAYS_REVIEW_HELP)
    threshold = _threshold_field()
    examples = serializers.ListField(child=serializers.IntegerField(min_value=1, max_value=2**62),
                                     required=False, max_length=MAX_EXAMPLES,
                                     help_text=f"Ids of up to {MAX_EXAMPLES} photos decided with this label.")
    name = serializers.CharField(required=False, max_length=200, help_text="Cannot be changed; "
                                 "create a new label and retire this one instead.")

    def validate(self, data):
        label = self.context.get("label")
        if "name" in data and label is not None and data["name"] != label.name:
            raise serializers.ValidationError({"name": ["A label cannot be renamed: predictions, models and "
                                                         "exports refer to it by name. Create a new label and "
                                                         "retire this one instead."]})
        data.pop("name", None)
        return data


class ModelGuessSerializer(serializers.Serializer):
    label = serializers.CharField()
    confidence = serializers.FloatField()


class LabellingPhotoSerializer(serializers.ModelSerializer):
    """A photo served to a labeller. Blind: neither the model's guess (unless
    LABELLING_SHOW_MODEL_GUESS) nor anyone's labels, nor anything that hints at them."""

    image_url = serializers.SerializerMethodField()
    model_guess = serializers.SerializerMethodField()

    class Meta:
        model = Photo
        fields = ["id", "image_url", "width", "height", "synthetic", "model_guess"]

    def get_image_url(self, photo) -> str:
        url = reverse("labelling-photo-file", args=[photo.id])
        request = self.context.get("request")
        return request.build_absolute_uri(url) if request else url

    @extend_schema_field(ModelGuessSerializer(allow_null=True))
    def get_model_guess(self, photo):
        if not settings.LABELLING_SHOW_MODEL_GUESS:
            return None
        prediction = getattr(photo, "prediction", None)
        if prediction is None:
            return None
        return {"label": prediction.label.name, "confidence": prediction.confidence}


class VoteSerializer(StrictSerializer):
    label = serializers.CharField(required=False, max_length=64)
    unusable = serializers.BooleanField(default=False, help_text="Not a plant, or unusable.")

    def validate(self, data):
        if data["unusable"] and data.get("label"):
            raise serializers.ValidationError("Give either a label or unusable: true, not both.")
        if not data["unusable"] and not data.get("label"):
            raise serializers.ValidationError("Give a label, or unusable: true.")
        return data


class VoteResultSerializer(serializers.ModelSerializer):
    label = serializers.SlugRelatedField(slug_field="name", read_only=True, allow_null=True)
    unusable = serializers.SerializerMethodField()

    class Meta:
        model = LabelVote
        fields = ["photo", "label", "unusable", "created_at"]

    def get_unusable(self, vote) -> bool:
        return vote.label_id is None


class SkipSerializer(StrictSerializer):
    photo = serializers.IntegerField(min_value=1, max_value=2**62)


class ImportSerializer(serializers.Serializer):
    image = serializers.FileField()
    label = serializers.CharField(required=False, allow_blank=True, default="", max_length=64,
                                  help_text="The label of the photo; empty: let the model predict.")


class ImportResultSerializer(serializers.Serializer):
    result = serializers.ChoiceField(choices=["accepted", "duplicate", "refused"])
    reason = serializers.CharField(allow_blank=True)
    photo = PhotoSerializer(allow_null=True)


class ExportQuerySerializer(serializers.Serializer):
    include_model = serializers.BooleanField(default=False, help_text="Also the model's own auto-accepted labels.")


class LabellerStatsSerializer(serializers.Serializer):
    labeller = serializers.CharField()
    labels = serializers.IntegerField()
    compared = serializers.IntegerField(help_text="Pairs of this labeller's label with another's on the same photo.")
    agreement = serializers.FloatField(allow_null=True)
    kappa = serializers.FloatField(allow_null=True, help_text="Cohen's kappa against the other labellers.")
    expert_checked = serializers.IntegerField()
    accuracy = serializers.FloatField(allow_null=True, help_text="Share of labels the expert's decision confirms.")


class LabelStatsSerializer(serializers.Serializer):
    label = serializers.CharField(allow_null=True, help_text="null: not a plant / unusable.")
    votes = serializers.IntegerField()
    kappa = serializers.FloatField(allow_null=True, help_text="Fleiss' kappa of this category.")
    expert_checked = serializers.IntegerField()
    accuracy = serializers.FloatField(allow_null=True)


class PairStatsSerializer(serializers.Serializer):
    labellers = serializers.ListField(child=serializers.CharField())
    photos = serializers.IntegerField()
    agreement = serializers.FloatField(allow_null=True)
    kappa = serializers.FloatField(allow_null=True, help_text="Cohen's kappa of the pair.")


class TeamStatsSerializer(serializers.Serializer):
    raters = serializers.IntegerField(help_text="Fleiss' kappa is over the photos with this many votes.")
    photos = serializers.IntegerField()
    unanimous = serializers.IntegerField()
    fleiss_kappa = serializers.FloatField(allow_null=True)
    labellers = LabellerStatsSerializer(many=True)
    labels = LabelStatsSerializer(many=True)
    pairs = PairStatsSerializer(many=True)


class LabelMergeSerializer(StrictSerializer):
    into = serializers.CharField(max_length=64, help_text="The name of the label that takes this one's photos; "
                                                          "not retired.")


class LabelMergedSerializer(serializers.Serializer):
    label = serializers.CharField(source="label.name", help_text="The label merged, now retired.")
    into = serializers.CharField(source="into.name")
    photos = serializers.IntegerField(help_text="Photos that took the other label.")
    votes = serializers.IntegerField(help_text="Labellers' votes that count for the other label now.")
