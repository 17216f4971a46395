from rest_framework import serializers

from .models import Label, Photo


class LabelSerializer(serializers.ModelSerializer):
    class Meta:
        model = Label
        fields = ["id", "name", "description"]


class PredictionSerializer(serializers.Serializer):
    label = serializers.CharField(source="label.name")
    confidence = serializers.FloatField()
    probabilities = serializers.DictField(child=serializers.FloatField())
    model_version = serializers.IntegerField(source="model_version_id")


class PhotoSerializer(serializers.ModelSerializer):
    image_url = serializers.SerializerMethodField()
    prediction = serializers.SerializerMethodField()
    final_label = serializers.SlugRelatedField(slug_field="name", read_only=True)
    decided_by = serializers.SerializerMethodField()
    reviewed_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Photo
        fields = ["id", "image_url", "status", "uploaded_at", "prediction", "final_label", "decided_by",
                  "reviewed_by", "decided_at", "reason", "synthetic"]

    def get_image_url(self, photo) -> str:
        request = self.context.get("request")
        url = photo.image.url
        return request.build_absolute_uri(url) if request else url

    def get_prediction(self, photo) -> dict | None:
        prediction = getattr(photo, "prediction", None)  # the reverse one-to-one may not exist yet
        return PredictionSerializer(prediction).data if prediction else None

    def get_decided_by(self, photo) -> str | None:
        return photo.decided_by or None


class PhotoUploadSerializer(serializers.Serializer):
    image = serializers.FileField()


class ReviewSerializer(serializers.Serializer):
    label = serializers.CharField(required=False)
    reject = serializers.BooleanField(default=False)
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)

    def validate(self, data):
        if not data["reject"] and not data.get("label"):
            raise serializers.ValidationError("Give a label, or reject: true with a reason.")
        if data["reject"] and data.get("label"):
            raise serializers.ValidationError("Give either a label or reject: true, not both.")
        return data
