from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView

from django.http import Http404
from django.shortcuts import get_object_or_404

from labeling import selectors as labeling_selectors
from labeling.api_errors import conflict, conflict_schema
from labeling.permissions import IsExpert
from labeling.review import prediction_hidden_from

from . import evaluation, selectors, services
from .inference import ModelIntegrityError
from .serializers import (CompareSerializer, ModelActivationSerializer, ModelVersionSerializer,
                          SimilarPhotosSerializer, TrainingOptionsSerializer, TrainingRunSerializer)


class TrainingRunListCreateApi(generics.ListAPIView):
    serializer_class = TrainingRunSerializer
    permission_classes = [IsAdminUser]

    def get_queryset(self):
        return selectors.training_runs()

    @extend_schema(request=TrainingOptionsSerializer, responses={
        202: TrainingRunSerializer, 409: conflict_schema("Another training run is queued or running.")})
    def post(self, request):
        body = TrainingOptionsSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        options = dict(body.validated_data)
        activate = options.pop("activate", False)
        include_model_labels = options.pop("include_model_labels", False)
        try:
            run = services.training_run_start(user=request.user, options=options, activate=activate,
                                              include_model_labels=include_model_labels)
        except services.TrainingRunConflict as exc:
            return conflict(exc)
        except ValueError as exc:
            raise ValidationError({"detail": str(exc)}) from None
        return Response(TrainingRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)


class TrainingRunDetailApi(generics.RetrieveAPIView):
    serializer_class = TrainingRunSerializer
    permission_classes = [IsAdminUser]

    def get_queryset(self):
        return selectors.training_runs()


class TrainingRunCancelApi(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(request=None, responses={202: TrainingRunSerializer,
                                            409: conflict_schema("The run has ended already.")})
    def post(self, request, pk):
        run = generics.get_object_or_404(selectors.training_runs(), pk=pk)
        cancelled = services.training_run_cancel(run_id=run.id)
        run.refresh_from_db()  # the status it ended with may have come after the lookup
        if not cancelled:
            return conflict(f"Run {run.id} has already ended ({run.status}).")
        return Response(TrainingRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)


class ModelVersionListApi(generics.ListAPIView):
    serializer_class = ModelVersionSerializer

    def get_queryset(self):
        return selectors.model_versions()


class ModelActivationListApi(generics.ListAPIView):
    """The registry's history: who activated which version, when, replacing which."""

    serializer_class = ModelActivationSerializer

    def get_queryset(self):
        return selectors.model_activations()


class ActivateSerializer(serializers.Serializer):
    replacing = serializers.IntegerField(
        required=False, allow_null=True,
        help_text="The id of the version you saw active (null: none was). If another one is active now, "
                  "409 instead of replacing it unseen. Left out: no check.")


class ModelVersionActivateApi(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(request=ActivateSerializer, responses={200: ModelVersionSerializer, 409: conflict_schema(
        "The version is active already, its file is missing or not the file that was registered, or the "
        "active version is not the one given as `replacing`.")})
    def post(self, request, pk):
        version = generics.get_object_or_404(selectors.model_versions(), pk=pk)
        body = ActivateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            version = services.model_version_activate(
                version_id=version.id, user=request.user,
                replacing=body.validated_data.get("replacing", services.ANY_VERSION))
        except services.ModelVersionConflict as exc:
            return conflict(exc)
        return Response(ModelVersionSerializer(version).data)


class ShadowSerializer(serializers.Serializer):
    enabled = serializers.BooleanField(default=True)


class ModelVersionShadowApi(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(request=ShadowSerializer, responses={200: ModelVersionSerializer, 409: conflict_schema(
        "The version is the active one, or its file is missing or not the file that was registered.")})
    def post(self, request, pk):
        version = generics.get_object_or_404(selectors.model_versions(), pk=pk)
        body = ShadowSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            version = services.model_version_shadow(version_id=version.id, enabled=body.validated_data["enabled"])
        except services.ModelVersionConflict as exc:
            return conflict(exc)
        return Response(ModelVersionSerializer(version).data)


class CompareQuerySerializer(serializers.Serializer):
    a = serializers.IntegerField()
    b = serializers.IntegerField()


class ModelVersionCompareApi(APIView):
    """Two versions side by side on the same validation photos."""

    @extend_schema(parameters=[CompareQuerySerializer], responses={
        200: CompareSerializer, 409: conflict_schema("A version's file is missing or is not the file that was registered.")})
    def get(self, request):
        query = CompareQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        a = generics.get_object_or_404(selectors.model_versions(), pk=query.validated_data["a"])
        b = generics.get_object_or_404(selectors.model_versions(), pk=query.validated_data["b"])
        try:
            result = evaluation.model_versions_compare(a, b)
        except ModelIntegrityError as exc:
            return conflict(exc)
        return Response(CompareSerializer({
            "count": result["count"], "agreement": result["agreement"], "unreadable": result["unreadable"],
            "versions": {str(v.version_id): {"accuracy": v.accuracy, "per_label": v.per_label}
                         for v in (result["a"], result["b"])},
            "differences": [{"photo": d["photo"].id, "label": d["truth"], "a": d["a"], "b": d["b"]}
                            for d in result["differences"]],
        }).data)


class PhotoSimilarApi(APIView):
    """The photos the version that predicted this one learned from, nearest to it first, with the
    labels they were trained with (the page /photos/{id}/similar/). Experts and staff; a 404
    while the photo has no prediction or its pending audit hides it."""

    permission_classes = [IsExpert]

    @extend_schema(responses={200: SimilarPhotosSerializer})
    def get(self, request, pk):
        photo = get_object_or_404(labeling_selectors.photos_visible_to(request.user), pk=pk)
        if getattr(photo, "prediction", None) is None or prediction_hidden_from(photo, request.user):
            raise Http404("This photo has no prediction to compare with.")
        result = selectors.similar_photos(photo)
        return Response(SimilarPhotosSerializer({
            "model_version": result.version.id, "unavailable": result.why or None,
            "photos": [{"photo": other.id, "label": neighbour.label, "similarity": neighbour.similarity,
                        "final_label": other.final_label.name if other.final_label else None,
                        "image_url": request.build_absolute_uri(other.image.url)}
                       for neighbour, other in result.found]}).data)

