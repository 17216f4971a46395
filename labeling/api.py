from django.http import Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import generics, serializers, status
from rest_framework.exceptions import PermissionDenied, Throttled, ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView

from . import selectors, services
from .api_errors import conflict, conflict_schema
from .image_checks import ImageRejected
from .models import Photo
from .permissions import IsExpert
from .throttling import UploadRateThrottle, retry_after, too_many_uploads
from .serializers import (
    LabelSerializer,
    PhotoListQuerySerializer,
    PhotoSerializer,
    PhotoUpdatesQuerySerializer,
    PhotoUpdatesSerializer,
    PhotoUploadSerializer,
    ReviewPhotoSerializer,
    ReviewQueueQuerySerializer,
    ReviewSerializer,
)


def _query(serializer_class, request):
    """The request's query parameters checked against an allow-list: 400 with a message for a
    value outside it. Parameters the serializer does not name are ignored, never passed on."""
    query = serializer_class(data=request.query_params)
    query.is_valid(raise_exception=True)
    return query.validated_data


@extend_schema_view(get=extend_schema(parameters=[PhotoListQuerySerializer]))
class PhotoListCreateApi(generics.ListAPIView):
    serializer_class = PhotoSerializer
    parser_classes = [MultiPartParser, FormParser]

    def get_throttles(self):
        return [UploadRateThrottle()] if self.request.method == "POST" else []

    def throttled(self, request, wait):
        refused = Throttled(detail=too_many_uploads(wait))  # DRF's own wording would repeat the wait
        refused.wait = retry_after(wait) if wait is not None else None  # the Retry-After header
        raise refused

    def get_queryset(self):
        return selectors.photos_list(self.request.user, **_query(PhotoListQuerySerializer, self.request))

    @extend_schema(request={"multipart/form-data": PhotoUploadSerializer}, responses={201: PhotoSerializer})
    def post(self, request):
        upload = PhotoUploadSerializer(data=request.data)
        upload.is_valid(raise_exception=True)
        try:
            photo = services.photo_upload(owner=request.user, fileobj=upload.validated_data["image"])
        except ImageRejected as exc:
            raise ValidationError({"image": [exc.message]}) from None
        return Response(PhotoSerializer(photo, context={"request": request}).data, status=status.HTTP_201_CREATED)


class PhotoDetailApi(generics.RetrieveAPIView):
    serializer_class = PhotoSerializer

    def get_queryset(self):
        # Another member's photo is simply not found (404), so its existence does not leak.
        return selectors.photos_visible_to(self.request.user)

    @extend_schema(responses={204: None, 409: conflict_schema(
        "The team has labelled or reviewed the photo: only an admin may delete it.")})
    def delete(self, request, pk):
        """Delete the photo, its files and all that was recorded about it: its owner, while
        nobody has labelled or reviewed it, or an admin, at any time."""
        photo = self.get_object()
        if not photo.may_be_deleted_by(request.user):
            raise PermissionDenied("Only the photo's owner or an admin may delete it.")
        try:
            services.photo_delete(photo_id=photo.id, user=request.user)
        except services.PhotoDeleteRefused as exc:
            return conflict(exc)
        except Photo.DoesNotExist:  # deleted a moment ago by another request
            raise Http404("No such photo.") from None
        return Response(status=status.HTTP_204_NO_CONTENT)


class PhotoUpdatesApi(APIView):
    """Which of the watched photos changed status: at once, or as soon as one does (up to `wait` s)."""

    @extend_schema(parameters=[PhotoUpdatesQuerySerializer], responses={200: PhotoUpdatesSerializer})
    def get(self, request):
        query = _query(PhotoUpdatesQuerySerializer, request)
        # A server that handles one request at a time per process (gunicorn's sync workers)
        # would stall every other request behind a waiting one: there, answer at once.
        wait = query["wait"] if request.META.get("wsgi.multithread") else 0.0
        photos, missing = selectors.photo_updates(request.user, query["photos"], wait=wait)
        return Response(PhotoUpdatesSerializer({"photos": photos, "missing": missing},
                                               context={"request": request}).data)


@extend_schema_view(get=extend_schema(parameters=[ReviewQueueQuerySerializer]))
class ReviewQueueApi(generics.ListAPIView):
    """Photos awaiting review, without those another expert holds a live claim on."""

    serializer_class = ReviewPhotoSerializer
    permission_classes = [IsExpert]

    def get_queryset(self):
        return selectors.review_queue(**_query(ReviewQueueQuerySerializer, self.request), viewer=self.request.user)


class ReviewDecideApi(APIView):
    permission_classes = [IsExpert]

    @extend_schema(request=ReviewSerializer, responses={
        200: PhotoSerializer,
        409: conflict_schema("The photo is not awaiting review, or another expert holds a live claim on it.")})
    def post(self, request, pk):
        get_object_or_404(selectors.photos_visible_to(request.user), pk=pk)
        body = ReviewSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        try:
            photo = services.review_decide(
                photo_id=pk, expert=request.user, label_name=data.get("label"),
                reject=data["reject"], reason=data["reason"],
            )
        except services.UnknownLabel as exc:
            raise ValidationError({"label": [str(exc)]}) from None
        except services.ReviewConflict as exc:
            return conflict(exc)
        photo = selectors.photos_visible_to(request.user).get(pk=photo.pk)
        return Response(PhotoSerializer(photo, context={"request": request}).data)


class PhotoRetryApi(APIView):
    """A failed photo goes to the model again: its owner, experts and staff may ask."""

    @extend_schema(request=None, responses={200: PhotoSerializer,
                                          409: conflict_schema("The photo's prediction has not failed.")})
    def post(self, request, pk):
        get_object_or_404(selectors.photos_visible_to(request.user), pk=pk)
        try:
            services.photo_retry(photo_id=pk)
        except services.RetryConflict as exc:
            return conflict(exc)
        photo = selectors.photos_visible_to(request.user).get(pk=pk)
        return Response(PhotoSerializer(photo, context={"request": request}).data)


class RetriedSerializer(serializers.Serializer):
    photos = serializers.ListField(child=serializers.IntegerField(), help_text="The photos queued again.")


class PhotosRetryFailedApi(APIView):
    """Every failed photo goes to the model again (staff: after an outage is fixed)."""

    permission_classes = [IsAdminUser]

    @extend_schema(request=None, responses={200: RetriedSerializer})
    def post(self, request):
        return Response(RetriedSerializer({"photos": services.photos_retry_failed()}).data)


class LabelListApi(generics.ListAPIView):
    serializer_class = LabelSerializer
    pagination_class = None

    def get_queryset(self):
        return selectors.labels_all()
