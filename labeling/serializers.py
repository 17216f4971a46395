from django.conf import settings
from django.urls import reverse
from rest_framework import serializers

from .models import Label, Photo
from .review import prediction_hidden_from
from .selectors import PHOTO_DEFAULT_ORDERING, PHOTO_ORDERINGS, REVIEW_DEFAULT_ORDERING, REVIEW_ORDERINGS


class LabelSerializer(serializers.ModelSerializer):
    class Meta:
        model = Label
        fields = ["id", "name", "description"]


class PredictionSerializer(serializers.Serializer):
    label = serializers.CharField(source="label.name")
    confidence = serializers.FloatField()
    probabilities = serializers.DictField(child=serializers.FloatField())
    model_version = serializers.IntegerField(source="model_version_id")
    explain_url = serializers.SerializerMethodField(
        help_text="Where the model looked (a Grad-CAM picture, PNG) for this answer; null when the version's feature "
                  "grid is too coarse to show it (an image size under 64 px).")

    familiarity = serializers.FloatField(
        allow_null=True, help_text="Cosine similarity of the photo's features with the nearest photo the version "
                                   "learned from; null when not measured (a version trained before it was kept).")
    familiarity_cutoff = serializers.FloatField(
        allow_null=True, help_text="Below this the photo is unfamiliar (set from the version's validation photos and "
                                   "UNFAMILIAR_SHARE); null when the check was off.")
    unfamiliar = serializers.BooleanField(help_text="The photo looked unlike every photo the version learned from: an "
                                                    "expert decides, however sure the model.")

    def get_explain_url(self, prediction) -> str | None:
        return reverse("photo-explain", args=[prediction.photo_id]) if prediction.model_version.explainable else None


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
        if request:
            return request.build_absolute_uri(url)
        return f"{settings.SITE_URL}{url}" if settings.SITE_URL else url  # a webhook's body: no request

    def get_prediction(self, photo) -> dict | None:
        prediction = getattr(photo, "prediction", None)  # the reverse one-to-one may not exist yet
        if prediction and prediction_hidden_from(photo):  # a pending audit is blind (labeling.review)
            return None
        return PredictionSerializer(prediction).data if prediction else None

    def get_decided_by(self, photo) -> str | None:
        return photo.decided_by or None


class ReviewPhotoSerializer(PhotoSerializer):
    """A photo as experts see it in the review queue: why it is there and who holds it."""

    claimed_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta(PhotoSerializer.Meta):
        fields = PhotoSerializer.Meta.fields + ["review_kind", "claimed_by", "claim_expires_at"]


class StrictSerializer(serializers.Serializer):
    """A request body in which every key must be one of the fields: a misspelt key is a 400
    naming it. Dropped silently, it changed what a request meant (a correction sent with
    `decided-at` skipped its conflict check; a training run trained with default options)."""

    def to_internal_value(self, data):
        unknown = sorted(set(data.keys()) - set(self.fields)) if hasattr(data, "keys") else []
        if unknown:
            allowed = ", ".join(self.fields)
            raise serializers.ValidationError({key: [f"Unknown field: use {allowed}."] for key in unknown})
        return super().to_internal_value(data)


class PhotoUploadSerializer(serializers.Serializer):
    image = serializers.FileField()


class ReviewSerializer(StrictSerializer):
    label = serializers.CharField(required=False)
    reject = serializers.BooleanField(default=False)
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)

    def validate(self, data):
        if not data["reject"] and not data.get("label"):
            raise serializers.ValidationError("Give a label, or reject: true with a reason.")
        if data["reject"] and data.get("label"):
            raise serializers.ValidationError("Give either a label or reject: true, not both.")
        return data


def _allow_list_field(name, allowed, help_text, default=serializers.empty):
    """A query parameter that takes one of `allowed` (values, or (value, label) choices), and
    answers 400 naming them otherwise."""
    choices = list(allowed)
    listed = ", ".join(c[0] if isinstance(c, tuple) else c for c in choices)
    return serializers.ChoiceField(
        choices=choices, required=False, default=default, help_text=help_text,
        error_messages={"invalid_choice": f'"{{input}}" is not an allowed {name}: use one of {listed}.'},
    )


class PhotoListQuerySerializer(serializers.Serializer):
    """The query parameters of GET /api/v1/photos/. Any other parameter is ignored."""

    # The model field's own choices: the schema shows one status enum, not two that collide.
    status = _allow_list_field("status", Photo.Status.choices, "Only photos in this state.")
    ordering = _allow_list_field("ordering", PHOTO_ORDERINGS, "Sort by upload time; newest first by default.",
                                 default=PHOTO_DEFAULT_ORDERING)
    label = serializers.CharField(required=False, max_length=64, help_text="Only photos decided with this label.")
    owner = serializers.CharField(required=False, max_length=150,
                                  help_text="Only this user's photos (a member sees only their own anyway).")


MAX_WATCHED_PHOTOS = 50


class PhotoUpdatesQuerySerializer(serializers.Serializer):
    """The query parameters of GET /api/v1/photos/updates/. Any other parameter is ignored."""

    photos = serializers.CharField(
        max_length=MAX_WATCHED_PHOTOS * 32,
        help_text=f"The photos to watch and the status the client last saw of each, as ID:STATUS pairs "
                  f"separated by commas (at most {MAX_WATCHED_PHOTOS}), e.g. 12:queued,13:needs_review.")
    wait = serializers.FloatField(
        required=False, default=0.0, min_value=0.0,
        help_text="Seconds to wait for a change when none has happened yet (0: answer at once). Longer "
                  "waits are shortened to the server's maximum (PHOTO_UPDATES_MAX_WAIT, 25 s by default).")

    def validate_photos(self, value):
        statuses = {choice for choice, _ in Photo.Status.choices}
        seen = {}
        for pair in value.split(","):
            photo_id, _, status = pair.strip().partition(":")
            # isdigit() alone also accepts "²" and "①", which int() refuses.
            if not (photo_id.isascii() and photo_id.isdigit()) or not 0 < int(photo_id) < 2**63 \
                    or status not in statuses:
                raise serializers.ValidationError(
                    f'"{pair.strip()[:40]}" is not ID:STATUS with a photo id and one of {", ".join(sorted(statuses))}.')
            seen[int(photo_id)] = status
        if len(seen) > MAX_WATCHED_PHOTOS:
            raise serializers.ValidationError(f"At most {MAX_WATCHED_PHOTOS} photos at once.")
        return seen

    def validate_wait(self, value):
        from django.conf import settings

        return min(value, settings.PHOTO_UPDATES_MAX_WAIT)


class PhotoUpdatesSerializer(serializers.Serializer):
    photos = PhotoSerializer(many=True, help_text="The watched photos whose status is no longer the one given.")
    missing = serializers.ListField(child=serializers.IntegerField(),
                                    help_text="Watched ids that are not (or no longer) photos this user may see.")


class ReviewQueueQuerySerializer(serializers.Serializer):
    """The query parameters of GET /api/v1/review-queue/ (and of claim-next). Any other parameter is ignored."""

    ordering = _allow_list_field("ordering", REVIEW_ORDERINGS,
                                 "uncertainty: smallest margin between the model's top two labels first (the "
                                 "default; also called margin); age: oldest first; or by upload time.",
                                 default=REVIEW_DEFAULT_ORDERING)
    label = serializers.CharField(required=False, max_length=64,
                                  help_text="Only photos whose model's top label is this label (its name).")

    def validate_label(self, value):
        if not Label.objects.filter(name=value).exists():
            raise serializers.ValidationError(f'"{value}" is not the name of a label.')
        return value


class CorrectionSerializer(ReviewSerializer):
    """A correction of a decided photo: a new label, or reject: true; with a reason."""

    # Required: without it a correction would replace whatever decision the photo has now, seen or not.
    decided_at = serializers.DateTimeField(
        help_text="The photo's decided_at as you saw it. When the photo has been decided again since "
                  "(another expert's correction, say), the correction is refused with 409 instead of "
                  "replacing a decision you have not seen.")


class OnValidationSerializer(serializers.Serializer):
    photos = serializers.IntegerField(help_text="The version's validation photos with a measured confidence.")
    accepted = serializers.IntegerField(help_text="Of those, how many are at or above the threshold.")
    accepted_share = serializers.FloatField(allow_null=True)
    accuracy = serializers.FloatField(allow_null=True, help_text="The share of the accepted whose top label was "
                                                                 "right; null when none is accepted.")
    ci_low = serializers.FloatField(allow_null=True, help_text="Wilson 95% interval.")
    ci_high = serializers.FloatField(allow_null=True)


class ConfirmManySerializer(StrictSerializer):
    label = serializers.CharField(max_length=64, help_text="The model's answer for every photo listed.")
    photos = serializers.ListField(child=serializers.IntegerField(min_value=1, max_value=2**63 - 1), max_length=200,
                                   help_text="Photo ids (at most 200) to decide with that label.")


class RefusedPhotoSerializer(serializers.Serializer):
    photo = serializers.IntegerField()
    detail = serializers.CharField(help_text="Why it was left as it was.")


class ConfirmReportSerializer(serializers.Serializer):
    label = serializers.CharField()
    confirmed = serializers.ListField(child=serializers.IntegerField(), help_text="Decided with the label.")
    refused = RefusedPhotoSerializer(many=True, help_text="Left as they were: decided or claimed by another expert "
                                                          "meanwhile, deleted, an audit or a dispute, or another "
                                                          "answer of the model's.")


class ThresholdRowSerializer(serializers.Serializer):
    threshold = serializers.FloatField()
    current = serializers.BooleanField(help_text="The CONFIDENCE_THRESHOLD in force.")
    accepted_share = serializers.FloatField(allow_null=True, help_text="The share of the version's predictions "
                                                                       "at or above it (accepted on their own).")
    checked = serializers.IntegerField(help_text="Of those, how many people decided.")
    accuracy = serializers.FloatField(allow_null=True, help_text="Their estimated accuracy: people's decisions, "
                                                                 "each audit weighted by 1 / AUDIT_FRACTION.")
    ci_low = serializers.FloatField(allow_null=True, help_text="Wilson 95% interval on the effective sample size.")
    ci_high = serializers.FloatField(allow_null=True)
    validation = OnValidationSerializer(
        allow_null=True, help_text="The same threshold on the version's validation photos, as training measured "
                                   "them; null for a version trained before that was recorded.")


class WeekRowSerializer(serializers.Serializer):
    week = serializers.DateField(help_text="The week's Monday (UTC).")
    predictions = serializers.IntegerField()
    mean_confidence = serializers.FloatField()
    confident = serializers.IntegerField(help_text="Predictions at or above the CONFIDENCE_THRESHOLD in force, of a "
                                                   "label the model may save on its own (not retired, not always "
                                                   "checked).")
    confident_share = serializers.FloatField()
    ci_low = serializers.FloatField(help_text="Wilson 95% interval of confident_share.")
    ci_high = serializers.FloatField()
    audited = serializers.IntegerField(help_text="Audits of the week's predictions an expert has decided.")
    audit_accuracy = serializers.FloatField(allow_null=True)
    shifted = serializers.BooleanField(help_text="The week's share differs from the validation photos' by more than "
                                                 "chance explains (a two-proportion test at 1%): that week's photos "
                                                 "differ from the validation photos.")
    unfamiliar = serializers.IntegerField(help_text="Photos unlike every photo the version learned from "
                                                    "(UNFAMILIAR_CHECK): sent to an expert, however sure the model.")
    more_unfamiliar = serializers.BooleanField(help_text="More unfamiliar photos than among the validation photos, by "
                                                         "more than chance explains (the same test).")


class AuditStatsSerializer(serializers.Serializer):
    audited = serializers.IntegerField(help_text="Audited photos an expert has decided.")
    correct = serializers.IntegerField(help_text="Of those, how many carry the model's top label.")
    accuracy = serializers.FloatField(allow_null=True, help_text="correct / audited; null before the first audit.")
    ci_low = serializers.FloatField(allow_null=True, help_text="Wilson 95% interval, lower bound.")
    ci_high = serializers.FloatField(allow_null=True, help_text="Wilson 95% interval, upper bound.")
    fraction_setting = serializers.FloatField(help_text="AUDIT_FRACTION: the share of auto-accepts audited.")
    threshold_version = serializers.IntegerField(
        allow_null=True, help_text="The version `thresholds` describes: `version` if given, else the active one "
                                   "(null when none is).")
    thresholds = ThresholdRowSerializer(many=True, help_text="What each CONFIDENCE_THRESHOLD would do with that "
                                                             "version's predictions (the audits page's table).")
    weeks = WeekRowSerializer(many=True, help_text="That version's predictions week by week, newest first (the "
                                                   "latest 12 weeks that had any).")


class HistoryEventSerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    what = serializers.CharField()
    who = serializers.CharField()
    detail = serializers.CharField(allow_blank=True)
