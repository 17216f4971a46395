"""The review API beyond the queue and the decision: claims, corrections, audits, history."""

from dataclasses import asdict

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from classifier import selectors as classifier_selectors

from . import review, selectors, services
from .api import _query
from .api_errors import conflict, conflict_schema
from .permissions import IsExpert
from .serializers import (
    AuditStatsSerializer,
    ConfirmManySerializer,
    ConfirmReportSerializer,
    CorrectionSerializer,
    HistoryEventSerializer,
    PhotoSerializer,
    ReviewPhotoSerializer,
    ReviewQueueQuerySerializer,
)

CONFLICT = conflict_schema("Another expert holds a live claim on the photo, or it is not awaiting review.")


def _review_photo(request, pk):
    photo = selectors.photos_visible_to(request.user).select_related("claimed_by").get(pk=pk)
    return Response(ReviewPhotoSerializer(photo, context={"request": request}).data)


class PhotoClaimApi(APIView):
    """Claim a photo awaiting review for REVIEW_CLAIM_SECONDS (renewing your own claim), or give it back."""

    permission_classes = [IsExpert]

    @extend_schema(request=None, responses={200: ReviewPhotoSerializer, 409: CONFLICT})
    def post(self, request, pk):
        get_object_or_404(selectors.photos_visible_to(request.user), pk=pk)
        try:
            review.review_claim(pk, request.user)
        except services.ReviewConflict as exc:  # ClaimConflict included
            return conflict(exc)
        return _review_photo(request, pk)

    @extend_schema(request=None, responses={204: None, 409: CONFLICT})
    def delete(self, request, pk):
        get_object_or_404(selectors.photos_visible_to(request.user), pk=pk)
        try:
            review.review_release(pk, request.user)
        except review.ClaimConflict as exc:
            return conflict(exc)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ReviewConfirmManyApi(APIView):
    """Decide many photos with the model's own answer at once (the review grid): each is the
    caller's decision, as one by one. Photos that cannot be confirmed are left as they were and
    listed with why; an unknown or retired label is a 400 and nothing is decided."""

    permission_classes = [IsExpert]

    @extend_schema(request=ConfirmManySerializer, responses={200: ConfirmReportSerializer})
    def post(self, request):
        body = ConfirmManySerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            report = review.review_confirm_many(photo_ids=body.validated_data["photos"], expert=request.user,
                                                label_name=body.validated_data["label"])
        except services.UnknownLabel as exc:
            raise ValidationError({"label": [str(exc)]}) from None
        return Response(ConfirmReportSerializer({
            "label": report.label, "confirmed": report.confirmed,
            "refused": [{"photo": photo, "detail": why} for photo, why in report.refused]}).data)


class ReviewClaimNextApi(APIView):
    """Claim the first photo of the queue (same ordering and label filter as the queue): 204 when it is empty."""

    permission_classes = [IsExpert]

    @extend_schema(request=None, parameters=[ReviewQueueQuerySerializer],
                   responses={200: ReviewPhotoSerializer, 204: OpenApiResponse(description="Nothing to review.")})
    def post(self, request):
        query = _query(ReviewQueueQuerySerializer, request)
        photo = review.review_claim_next(request.user, ordering=query["ordering"], label=query.get("label"))
        if photo is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return _review_photo(request, photo.pk)


class PhotoCorrectApi(APIView):
    """Correct a decided photo: a new record is added; earlier decisions stay as they were."""

    permission_classes = [IsExpert]

    @extend_schema(request=CorrectionSerializer, responses={200: PhotoSerializer, 409: CONFLICT})
    def post(self, request, pk):
        get_object_or_404(selectors.photos_visible_to(request.user), pk=pk)
        body = CorrectionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        try:
            review.review_correct(photo_id=pk, expert=request.user, label_name=data.get("label"),
                                  reject=data["reject"], reason=data["reason"],
                                  seen_decided_at=data.get("decided_at"))
        except services.UnknownLabel as exc:
            raise ValidationError({"label": [str(exc)]}) from None
        except review.CorrectionError as exc:
            raise ValidationError({"detail": str(exc)}) from None
        except services.ReviewConflict as exc:
            return conflict(exc)
        photo = selectors.photos_visible_to(request.user).get(pk=pk)
        return Response(PhotoSerializer(photo, context={"request": request}).data)


class PhotoHistoryApi(APIView):
    """Everything that happened to a photo, oldest first: upload, prediction, every decision and correction, cleaning."""

    @extend_schema(request=None, responses={200: HistoryEventSerializer(many=True)})
    def get(self, request, pk):
        photo = get_object_or_404(selectors.photos_visible_to(request.user), pk=pk)
        events = selectors.photo_history(photo, show_prediction=not review.prediction_hidden_from(photo, request.user))
        return Response(HistoryEventSerializer(events, many=True).data)


class AuditStatsQuerySerializer(serializers.Serializer):
    version = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1,
                                       help_text="Only the predictions of this model version (default: all).")


class AuditStatsApi(APIView):
    """Measured accuracy of auto-accepted predictions, from the audit sample, with a Wilson 95% interval."""

    permission_classes = [IsExpert]

    @extend_schema(request=None, parameters=[AuditStatsQuerySerializer], responses={200: AuditStatsSerializer})
    def get(self, request):
        query = AuditStatsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        version = query.validated_data.get("version")
        # An unknown version would read as one with no audits yet.
        if version is not None:
            get_object_or_404(classifier_selectors.model_versions(), pk=version)
        described = version if version is not None else getattr(classifier_selectors.active_model_version(), "id", None)
        thresholds = review.threshold_evidence(described) if described is not None else []
        weeks = review.weeks_of_predictions(described) if described is not None else []
        return Response(AuditStatsSerializer({**asdict(review.audit_stats(version)), "threshold_version": described,
                                              "thresholds": [asdict(row) for row in thresholds],
                                              "weeks": [asdict(row) for row in weeks]}).data)



class WaitsSerializer(serializers.Serializer):
    decided = serializers.IntegerField(help_text="Photos experts decided (corrections not counted).")
    median = serializers.FloatField(allow_null=True, help_text="Seconds from upload within which half were decided.")
    p90 = serializers.FloatField(allow_null=True, help_text="Seconds from upload within which 90% were decided.")


class ReviewWaitsSerializer(serializers.Serializer):
    days = serializers.IntegerField(help_text="The window: decisions of the last this many days.")
    waiting = serializers.IntegerField(help_text="Photos waiting for an expert now.")
    oldest = serializers.FloatField(allow_null=True, help_text="Seconds since the upload of the one waiting longest.")
    all = WaitsSerializer()
    by_kind = serializers.DictField(child=WaitsSerializer(), help_text="The same by review kind: uncertain (the model "
                                    "unsure), audit, adjudication (labellers disagreed).")


class ReviewWaitsApi(APIView):
    """How long photos wait for an expert: from upload to decision, over the last 28 days."""

    permission_classes = [IsExpert]

    @extend_schema(request=None, responses={200: ReviewWaitsSerializer})
    def get(self, request):
        return Response(ReviewWaitsSerializer(review.review_waits()).data)
