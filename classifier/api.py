from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView

from . import selectors, services
from .serializers import ModelVersionSerializer, TrainingOptionsSerializer, TrainingRunSerializer


class TrainingRunListCreateApi(generics.ListAPIView):
    serializer_class = TrainingRunSerializer
    permission_classes = [IsAdminUser]

    def get_queryset(self):
        return selectors.training_runs()

    @extend_schema(request=TrainingOptionsSerializer, responses={202: TrainingRunSerializer, 409: None})
    def post(self, request):
        body = TrainingOptionsSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        options = dict(body.validated_data)
        activate = options.pop("activate", False)
        try:
            run = services.training_run_start(user=request.user, options=options, activate=activate)
        except services.TrainingRunConflict as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
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

    @extend_schema(request=None, responses={202: TrainingRunSerializer, 409: None})
    def post(self, request, pk):
        run = generics.get_object_or_404(selectors.training_runs(), pk=pk)
        if not services.training_run_cancel(run_id=run.id):
            return Response({"detail": f"Run {run.id} has already ended ({run.status})."}, status=status.HTTP_409_CONFLICT)
        run.refresh_from_db()
        return Response(TrainingRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)


class ModelVersionListApi(generics.ListAPIView):
    serializer_class = ModelVersionSerializer

    def get_queryset(self):
        return selectors.model_versions()


class ModelVersionActivateApi(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(request=None, responses={200: ModelVersionSerializer})
    def post(self, request, pk):
        version = generics.get_object_or_404(selectors.model_versions(), pk=pk)
        version = services.model_version_activate(version_id=version.id)
        return Response(ModelVersionSerializer(version).data)
