"""A request the API cannot carry out is answered {"detail": "<a sentence>"}; 409 when the object
is not (or no longer) in a state that allows it. One place for that shape, in answers and schema."""

from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers, status
from rest_framework.response import Response


class DetailSerializer(serializers.Serializer):
    detail = serializers.CharField(help_text="What went wrong, in a sentence.")


def conflict_schema(description: str) -> OpenApiResponse:
    return OpenApiResponse(response=DetailSerializer, description=description)


def conflict(message) -> Response:
    return Response({"detail": str(message)}, status=status.HTTP_409_CONFLICT)
