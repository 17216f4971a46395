"""Bodies of the webhooks API (labeling/webhook_api.py)."""

from rest_framework import serializers

from .models import Webhook, WebhookDelivery
from .serializers import StrictSerializer

EVENTS_HELP = "What the address is told of: " + "; ".join(label for _, label in Webhook.Event.choices) + "."


class WebhookSerializer(serializers.ModelSerializer):
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    events = serializers.ListField(child=serializers.ChoiceField(choices=Webhook.Event.values), help_text=EVENTS_HELP)
    secret = serializers.CharField(help_text="The key each body is signed with (X-Plantsite-Signature).")

    class Meta:
        model = Webhook
        fields = ["id", "url", "description", "events", "format", "active", "secret", "created_by", "created_at"]


class WebhookCreateSerializer(StrictSerializer):
    url = serializers.URLField(max_length=500, help_text="Where each event is POSTed as JSON (http or https).")
    events = serializers.ListField(child=serializers.ChoiceField(choices=Webhook.Event.values), min_length=1,
                                   max_length=len(Webhook.Event.values), help_text=EVENTS_HELP)
    description = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)
    active = serializers.BooleanField(required=False, default=True)
    format = serializers.ChoiceField(choices=Webhook.Format.choices, required=False, default=Webhook.Format.JSON)

    def validate_url(self, url):
        if not url.lower().startswith(("http://", "https://")):
            raise serializers.ValidationError("A webhook's address must start with http:// or https://.")
        return url


class WebhookUpdateSerializer(WebhookCreateSerializer):
    """Any of the fields; those left out keep their values."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, partial=True, **kwargs)


class WebhookDeliverySerializer(serializers.ModelSerializer):
    photo = serializers.IntegerField(source="photo_id", allow_null=True, help_text="The photo the event is about "
                                     "(it may have been deleted since); null for a model activation or a ping.")

    class Meta:
        model = WebhookDelivery
        fields = ["id", "event", "event_id", "photo", "state", "attempts", "next_attempt_at", "last_status_code",
                  "last_error", "last_response", "created_at", "delivered_at", "payload"]


class WebhookDeliveryQuerySerializer(serializers.Serializer):
    state = serializers.ChoiceField(choices=WebhookDelivery.State.choices, required=False,
                                    help_text="Only deliveries in this state.")
