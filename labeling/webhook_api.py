"""REST API for webhooks (staff): the same as the /webhooks/ pages (labeling.webhooks does the work)."""

from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView

from . import webhooks
from .api_errors import conflict, conflict_schema
from .models import Webhook, WebhookDelivery
from .webhook_serializers import (
    WebhookCreateSerializer,
    WebhookDeliveryQuerySerializer,
    WebhookDeliverySerializer,
    WebhookSerializer,
    WebhookUpdateSerializer,
)


def _webhook(pk) -> Webhook:
    webhook = Webhook.objects.select_related("created_by").filter(pk=pk).first()
    if webhook is None:
        raise Http404("No such webhook.")
    return webhook


def _refused(exc):
    return ValidationError({"detail": str(exc)})


class WebhookListCreateApi(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(responses={200: WebhookSerializer(many=True)})
    def get(self, request):
        return Response(WebhookSerializer(Webhook.objects.select_related("created_by"), many=True).data)

    @extend_schema(request=WebhookCreateSerializer, responses={201: WebhookSerializer})
    def post(self, request):
        body = WebhookCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            webhook = webhooks.webhook_create(user=request.user, **body.validated_data)
        except webhooks.WebhookError as exc:
            raise _refused(exc) from None
        return Response(WebhookSerializer(webhook).data, status=status.HTTP_201_CREATED)


class WebhookDetailApi(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(responses={200: WebhookSerializer})
    def get(self, request, pk):
        return Response(WebhookSerializer(_webhook(pk)).data)

    @extend_schema(request=WebhookUpdateSerializer, responses={200: WebhookSerializer})
    def patch(self, request, pk):
        webhook = _webhook(pk)
        body = WebhookUpdateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        fields = {name: getattr(webhook, name) for name in ("url", "events", "description", "active", "format")}
        fields.update(body.validated_data)
        try:
            webhook = webhooks.webhook_update(webhook_id=webhook.id, **fields)
        except webhooks.WebhookError as exc:
            raise _refused(exc) from None
        except Webhook.DoesNotExist:  # deleted since _webhook() found it
            raise Http404("No such webhook.") from None
        return Response(WebhookSerializer(webhook).data)

    @extend_schema(responses={204: None})
    def delete(self, request, pk):
        webhooks.webhook_delete(webhook_id=_webhook(pk).id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookPingApi(APIView):
    """A test event (`ping`), sent even while the webhook is off."""

    permission_classes = [IsAdminUser]

    @extend_schema(request=None, responses={201: WebhookDeliverySerializer})
    def post(self, request, pk):
        try:
            delivery = webhooks.webhook_ping(webhook_id=_webhook(pk).id)
        except Webhook.DoesNotExist:
            raise Http404("No such webhook.") from None
        return Response(WebhookDeliverySerializer(delivery).data, status=status.HTTP_201_CREATED)


class WebhookSecretApi(APIView):
    """A new secret: the old one signs nothing from now on (a POST already being sent keeps it)."""

    permission_classes = [IsAdminUser]

    @extend_schema(request=None, responses={200: WebhookSerializer})
    def post(self, request, pk):
        try:
            webhook = webhooks.webhook_rotate_secret(webhook_id=_webhook(pk).id)
        except Webhook.DoesNotExist:
            raise Http404("No such webhook.") from None
        return Response(WebhookSerializer(webhook).data)


class WebhookDeliveryListApi(generics.ListAPIView):
    """A webhook's deliveries, newest first."""

    permission_classes = [IsAdminUser]
    serializer_class = WebhookDeliverySerializer

    @extend_schema(parameters=[WebhookDeliveryQuerySerializer])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        query = WebhookDeliveryQuerySerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        deliveries = _webhook(self.kwargs["pk"]).deliveries.order_by("-id")
        if "state" in query.validated_data:
            deliveries = deliveries.filter(state=query.validated_data["state"])
        return deliveries


class WebhookDeliveryResendApi(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(request=None, responses={
        200: WebhookDeliverySerializer, 409: conflict_schema("It is still waiting or being sent.")})
    def post(self, request, pk, delivery_id):
        delivery = WebhookDelivery.objects.filter(id=delivery_id, webhook_id=_webhook(pk).id).first()
        if delivery is None:
            raise Http404("No such delivery of this webhook.")
        if not webhooks.webhook_delivery_resend(delivery_id=delivery.id):
            return conflict(f"Delivery {delivery.id} is still waiting or being sent: it is not sent twice.")
        delivery.refresh_from_db()
        return Response(WebhookDeliverySerializer(delivery).data)
