"""REST API of the labelling workspace, label management, bulk upload, export and team stats."""

from django.http import FileResponse, Http404, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import IsAdminUser, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from . import export, labelling, selectors
from .api_errors import conflict, conflict_schema
from .labelling_serializers import (
    ExportQuerySerializer,
    ImportResultSerializer,
    ImportSerializer,
    LabelCreateSerializer,
    LabelDetailSerializer,
    LabelFullSerializer,
    LabelMergedSerializer,
    LabelMergeSerializer,
    LabellingPhotoSerializer,
    LabelUpdateSerializer,
    SkipSerializer,
    TeamStatsSerializer,
    VoteResultSerializer,
    VoteSerializer,
)
from .models import Label, Photo
from .serializers import PhotoSerializer
from .services import UnknownLabel


class StaffWrites(IsAuthenticated):
    """Everyone logged in reads; staff write."""

    message = "Only staff can manage labels."

    def has_permission(self, request, view):
        if not super().has_permission(request, view):
            return False
        return request.method in ("GET", "HEAD", "OPTIONS") or request.user.is_staff


def _served(request, photo):
    if photo is None:
        return Response(status=status.HTTP_204_NO_CONTENT)
    photo = Photo.objects.select_related("prediction__label").get(pk=photo.pk)
    return Response(LabellingPhotoSerializer(photo, context={"request": request}).data)


# --- labels ---------------------------------------------------------------------------------


class LabelListCreateApi(generics.ListAPIView):
    """Every label, retired ones included (flagged); staff create them."""

    serializer_class = LabelFullSerializer
    pagination_class = None
    permission_classes = [StaffWrites]

    def get_queryset(self):
        return selectors.labels_including_retired().prefetch_related("examples")

    @extend_schema(request=LabelCreateSerializer, responses={
        201: LabelFullSerializer, 409: conflict_schema("A label of that name exists already.")})
    def post(self, request):
        body = LabelCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            label = labelling.label_create(user=request.user, **{("example_ids" if k == "examples" else k): v
                                                                 for k, v in body.validated_data.items()})
        except labelling.LabelExists as exc:
            return conflict(exc)
        except labelling.LabelError as exc:
            raise ValidationError({"detail": str(exc)}) from None
        return Response(LabelFullSerializer(label).data, status=status.HTTP_201_CREATED)


class LabelDetailApi(APIView):
    permission_classes = [IsAdminUser]

    def _label(self, pk):
        label = Label.objects.filter(pk=pk).first()
        if label is None:
            raise Http404("No such label.")
        return label

    @extend_schema(responses={200: LabelDetailSerializer})
    def get(self, request, pk):
        return Response(LabelDetailSerializer(self._label(pk)).data)

    @extend_schema(request=LabelUpdateSerializer, responses={200: LabelDetailSerializer})
    def patch(self, request, pk):
        label = self._label(pk)
        # partial: a form-encoded body without `retired` must not read as retired=false.
        body = LabelUpdateSerializer(data=request.data, partial=True, context={"label": label})
        body.is_valid(raise_exception=True)
        data = body.validated_data
        try:
            label = labelling.label_update(label_id=label.id, description=data.get("description"),
                                           retired=data.get("retired"), example_ids=data.get("examples"),
                                           always_review=data.get("always_review"),
                                           threshold=data.get("threshold", labelling.UNCHANGED), user=request.user)
        except labelling.LabelError as exc:
            raise ValidationError({"detail": str(exc)}) from None
        except Label.DoesNotExist:  # deleted since _label() found it
            raise Http404("No such label.") from None
        return Response(LabelDetailSerializer(label).data)

    @extend_schema(responses={204: None, 409: conflict_schema("The label is in use: retire it.")})
    def delete(self, request, pk):
        label = self._label(pk)
        try:
            labelling.label_delete(label_id=label.id)
        except labelling.LabelInUse as exc:
            return conflict(exc)
        except Label.DoesNotExist:
            raise Http404("No such label.") from None
        return Response(status=status.HTTP_204_NO_CONTENT)


class LabelMergeApi(APIView):
    """The same plant under two names: every photo decided with this label takes `into`, the
    votes for it count for `into`, and this label is retired (labeling.labelling.label_merge)."""

    permission_classes = [IsAdminUser]

    @extend_schema(request=LabelMergeSerializer, responses={200: LabelMergedSerializer})
    def post(self, request, pk):
        body = LabelMergeSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        into = Label.objects.filter(name=body.validated_data["into"]).first()
        if into is None:
            raise ValidationError({"into": [f"No label named {body.validated_data['into']!r}."]})
        try:
            merged = labelling.label_merge(label_id=pk, into_id=into.id, user=request.user)
        except labelling.LabelError as exc:
            raise ValidationError({"detail": str(exc)}) from None
        except Label.DoesNotExist:
            raise Http404("No such label.") from None
        return Response(LabelMergedSerializer(merged).data)


# --- the labelling workspace ----------------------------------------------------------------


class LabellingNextApi(APIView):
    @extend_schema(responses={200: LabellingPhotoSerializer,
                              204: OpenApiResponse(description="Nothing left for you to label.")})
    def get(self, request):
        """The photo you should label now (held for you for LABELLING_LEASE_SECONDS), or 204."""
        return _served(request, labelling.labelling_next(request.user))


class LabellingSkipApi(APIView):
    @extend_schema(request=SkipSerializer, responses={200: LabellingPhotoSerializer,
                                                      204: OpenApiResponse(description="Nothing else to label.")})
    def post(self, request):
        """Give a served photo back without labelling it, and get another one."""
        body = SkipSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return _served(request, labelling.labelling_skip(request.user, body.validated_data["photo"]))


class PhotoLabelsApi(APIView):
    @extend_schema(request=VoteSerializer, responses={
        201: VoteResultSerializer,
        200: OpenApiResponse(VoteResultSerializer, description="You had given this answer already (a request sent "
                                                               "again): your vote, as stored."),
        409: conflict_schema("Already labelled by you with another answer, has all its labels or a verified one, "
                             "or not served to you.")})
    def post(self, request, pk):
        """Your label for a photo served to you: {label} or {unusable: true}."""
        if not selectors.photo_visible_to_labeller(request.user, pk):
            raise Http404("No such photo.")
        body = VoteSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        try:
            vote = labelling.label_vote(photo_id=pk, user=request.user, label_name=data.get("label"),
                                        unusable=data["unusable"])
        except UnknownLabel as exc:
            raise ValidationError({"label": [str(exc)]}) from None
        except labelling.AlreadyLabelled as exc:
            if not exc.same_answer:
                return conflict(exc)
            # Sent again (a retry after a lost response): the answer is stored, as asked.
            return Response(VoteResultSerializer(exc.vote).data, status=status.HTTP_200_OK)
        except labelling.LabellingConflict as exc:
            return conflict(exc)
        except Photo.DoesNotExist:
            raise Http404("No such photo.") from None
        return Response(VoteResultSerializer(vote).data, status=status.HTTP_201_CREATED)


# --- bulk upload, export, team --------------------------------------------------------------


class ImportApi(APIView):
    permission_classes = [IsAdminUser]
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(request={"multipart/form-data": ImportSerializer},
                   responses={201: ImportResultSerializer, 200: ImportResultSerializer, 400: ImportResultSerializer})
    def post(self, request):
        """One file of a bulk upload: 201 accepted, 200 duplicate (with the photo it duplicates),
        400 refused with the reason. Without a label the model predicts it."""
        body = ImportSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        label = None
        name = body.validated_data["label"]
        if name:
            label = labelling.bulk_upload_labels().filter(name=name).first()
            if label is None:
                raise ValidationError({"label": [f"Unknown or retired label {name!r}."]})
        upload = body.validated_data["image"]
        result = labelling.bulk_import_one(owner=request.user, fileobj=upload, file_name=upload.name or "file",
                                           label=label)
        photo = None
        if result.photo is not None:
            photo = PhotoSerializer(selectors.photos_visible_to(request.user).get(pk=result.photo.pk),
                                    context={"request": request}).data
        code = {"accepted": status.HTTP_201_CREATED, "duplicate": status.HTTP_200_OK}.get(
            result.result, status.HTTP_400_BAD_REQUEST)
        return Response({"result": result.result, "reason": result.reason, "photo": photo}, status=code)


class ExportDatasetApi(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(parameters=[ExportQuerySerializer],
                   responses={(200, "application/zip"): OpenApiTypes.BINARY})
    def get(self, request):
        """The labelled data set as a zip: a folder per label and manifest.csv. Photos left out
        because their file is missing are listed in the zip's missing.csv and counted in the
        X-Export-Missing header (0 when none)."""
        query = ExportQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        fh, summary = export.export_dataset_tempfile(include_model=query.validated_data["include_model"])
        response = FileResponse(fh, as_attachment=True, filename=export.export_file_name(),
                                content_type="application/zip")
        response["Cache-Control"] = "no-store"
        response["X-Export-Missing"] = str(len(summary.missing))
        return response


class ExportPredictionsApi(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(responses={(200, "text/csv"): OpenApiTypes.STR})
    def get(self, request):
        """Every stored prediction and what became of its photo, as CSV (columns in the README):
        what the model said, how sure, how familiar the photo looked, who decided what. A
        pending audit's answer is blank until it is decided."""
        response = StreamingHttpResponse(export.predictions_csv_lines(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="predictions.csv"'
        response["Cache-Control"] = "no-store"
        return response


class TeamStatsApi(APIView):
    @extend_schema(responses={200: TeamStatsSerializer})
    def get(self, request):
        """Per labeller and per label: labels given, agreement (kappa), accuracy against experts."""
        return Response(TeamStatsSerializer(selectors.team_stats()).data)
