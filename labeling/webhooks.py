"""Webhooks: other systems told of photo results as they happen, by signed POSTs.

An event is written as one WebhookDelivery row per subscribed webhook in the transaction that
made the change (the outbox pattern): a change that rolls back tells nobody, and one that
commits is told even when the broker or the address is down at that moment. A Celery task on
the `webhooks` queue then sends it; an address that does not answer 2xx is tried again after
RETRY_DELAYS, and the sweeper sends what no task did (a lost message, a worker that died
holding a delivery). Delivery is at least once: a receiver drops a repeat by its event id.

Each body is signed with the webhook's secret, as `X-Plantsite-Signature: t=UNIX,v1=HEX`, HEX
being the HMAC-SHA256 of "UNIX." followed by the body (signature_valid checks one).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import time
import uuid
from datetime import timedelta
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from .models import Label, Photo, Webhook, WebhookDelivery, new_webhook_secret


logger = logging.getLogger(__name__)

# Seconds before the 2nd, 3rd, ... attempt: about 20 hours in all, then the delivery has failed
# and waits for an admin to send it again.
RETRY_DELAYS = (10, 60, 300, 1800, 7200, 21600, 43200)
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
# A retry due this soon is sent by a delayed task; a later one by the sweeper, so that the broker
# does not hold hours-long countdowns (which its visibility timeout would deliver twice anyway).
COUNTDOWN_AT_MOST = 300
# The sweeper sends pending deliveries this overdue (their own task should have), a batch a sweep.
OVERDUE_AFTER = timedelta(seconds=30)
SWEEP_BATCH = 500
RESPONSE_KEPT_CHARS = 500
SIGNATURE_HEADER = "X-Plantsite-Signature"
SIGNATURE_TOLERANCE_SECONDS = 300
USER_AGENT = "Plantsite-Webhook/1"

EVENTS = Webhook.Event


class WebhookError(Exception):
    """A webhook that cannot be saved as asked: the message says why."""


# --- recording events -------------------------------------------------------------------------

def event_for(before: tuple, after: tuple) -> str | None:
    """The event a photo's change of (status, final_label_id) makes, or None."""
    (status_before, label_before), (status, label) = before, after
    if status in (Photo.Status.FINAL, Photo.Status.REJECTED) and (status, label) != (status_before, label_before):
        return EVENTS.DECIDED
    if status == Photo.Status.NEEDS_REVIEW and status_before != status:
        return EVENTS.NEEDS_REVIEW
    if status == Photo.Status.FAILED and status_before != status:
        return EVENTS.FAILED
    return None


def photo_result_changed(photo: Photo, before: tuple) -> None:
    """Called by Photo.save inside its transaction: record the event its change makes, if any."""
    event = event_for(before, (photo.status, photo.final_label_id))
    if event is None:
        return
    subscribed = _subscribed(event)
    if subscribed:
        _record(subscribed, event, _photo_payload(photo, before), photo_id=photo.pk)


def photo_failed(photo_id: int) -> None:
    """A photo failed by a conditional UPDATE (labeling.services.photo_mark_failed), not by save."""
    subscribed = _subscribed(EVENTS.FAILED)
    if subscribed:
        photo = Photo.objects.get(id=photo_id)
        _record(subscribed, EVENTS.FAILED, _photo_payload(photo, (Photo.Status.QUEUED, None)), photo_id=photo_id)


def photo_deleted(photo_id: int) -> None:
    """Inside labeling.services.photo_delete's transaction."""
    subscribed = _subscribed(EVENTS.DELETED)
    if subscribed:
        _record(subscribed, EVENTS.DELETED, {"photo": {"id": photo_id}}, photo_id=photo_id)


def model_activated(activation) -> None:
    """Inside classifier.services.model_version_activate's transaction: the activation as
    GET /api/v1/models/activations/ lists it (a rollback marked)."""
    from classifier.serializers import ModelActivationSerializer

    subscribed = _subscribed(EVENTS.MODEL_ACTIVATED)
    if subscribed:
        _record(subscribed, EVENTS.MODEL_ACTIVATED, {"activation": dict(ModelActivationSerializer(activation).data)})


def _subscribed(event: str) -> list[Webhook]:
    # In Python, not a JSON `contains` lookup: SQLite (the local default) has none, and a site
    # has a handful of webhooks.
    return [hook for hook in Webhook.objects.filter(active=True) if event in hook.events]


def _photo_payload(photo: Photo, before: tuple) -> dict:
    """The photo as GET /api/v1/photos/{id}/ shows it (a pending audit's answer hidden, as
    everywhere), and what it was before."""
    from .serializers import PhotoSerializer

    status_before, label_before = before
    previous_label = None
    if label_before is not None:
        previous_label = Label.objects.filter(id=label_before).values_list("name", flat=True).first()
    return {"photo": dict(PhotoSerializer(photo).data), "page_url": _page_url(photo.pk),
            "previous": {"status": status_before, "final_label": previous_label}}


def _page_url(photo_id) -> str | None:
    return f"{settings.SITE_URL}/photos/{photo_id}/" if settings.SITE_URL else None


def _record(hooks, event: str, body: dict, *, photo_id=None, event_id=None) -> list[WebhookDelivery]:
    event_id = event_id or uuid.uuid4()
    now = timezone.now()
    payload = {"event": event, "event_id": str(event_id), "occurred_at": now.isoformat(), **body}
    deliveries = WebhookDelivery.objects.bulk_create([
        WebhookDelivery(webhook=hook, event=event, event_id=event_id, photo_id=photo_id, payload=payload,
                        next_attempt_at=now, created_at=now)
        for hook in hooks
    ])
    for delivery in deliveries:
        _enqueue(delivery.id)
    return deliveries


def _enqueue(delivery_id: int, countdown: float | None = None) -> None:
    from .tasks import webhook_deliver_task

    def send():
        try:
            webhook_deliver_task.apply_async((delivery_id,), countdown=countdown)
        except Exception:  # the row is committed: the sweeper sends it
            logger.warning("Could not queue webhook delivery %s; the sweeper will send it.", delivery_id,
                           exc_info=True)

    transaction.on_commit(send)


# --- managing webhooks ------------------------------------------------------------------------

def _checked(url: str, events, format: str = Webhook.Format.JSON) -> tuple[str, list[str]]:
    if urlsplit(url).scheme not in ("http", "https"):
        raise WebhookError("A webhook's address must start with http:// or https://.")
    if format not in Webhook.Format.values:
        raise WebhookError(f"Unknown format {format}: use {', '.join(Webhook.Format.values)}.")
    unknown = sorted(set(events) - set(EVENTS.values))
    if unknown:
        raise WebhookError(f"Unknown event: {', '.join(unknown)}. Use {', '.join(EVENTS.values)}.")
    if not events:
        raise WebhookError("Choose at least one event.")
    return url, [e for e in EVENTS.values if e in events]  # one order, whatever the form's


def webhook_create(*, url: str, events, description: str = "", user=None, active: bool = True,
                   format: str = Webhook.Format.JSON) -> Webhook:
    url, events = _checked(url, events, format)
    return Webhook.objects.create(url=url, events=events, description=description, created_by=user, active=active,
                                  format=format)


@transaction.atomic
def webhook_update(*, webhook_id: int, url: str, events, description: str, active: bool, format: str) -> Webhook:
    url, events = _checked(url, events, format)
    webhook = Webhook.objects.select_for_update().get(id=webhook_id)
    webhook.url, webhook.events, webhook.description, webhook.active = url, events, description, active
    webhook.format = format
    webhook.save()
    return webhook


def webhook_rotate_secret(*, webhook_id: int) -> Webhook:
    """A new secret, when the old one may have leaked. Raises Webhook.DoesNotExist."""
    webhook = Webhook.objects.get(id=webhook_id)
    webhook.secret = new_webhook_secret()
    webhook.save(update_fields=["secret"])
    return webhook


def webhook_delete(*, webhook_id: int) -> None:
    Webhook.objects.filter(id=webhook_id).delete()  # its deliveries with it


def webhook_ping(*, webhook_id: int) -> WebhookDelivery:
    """A test event, sent even while the webhook is off: does the address take our POSTs?"""
    webhook = Webhook.objects.get(id=webhook_id)
    (delivery,) = _record([webhook], WebhookDelivery.PING, {"webhook": webhook.id})
    return delivery


def webhook_delivery_resend(*, delivery_id: int) -> bool:
    """Send a finished delivery again (its event id unchanged), with a fresh set of attempts.
    False when it is still pending or being sent."""
    done = (WebhookDelivery.objects
            .filter(id=delivery_id, state__in=[WebhookDelivery.State.FAILED, WebhookDelivery.State.DELIVERED])
            .update(state=WebhookDelivery.State.PENDING, attempts=0, next_attempt_at=timezone.now(), lease_until=None))
    if done:
        _enqueue(delivery_id)
    return bool(done)


# --- sending ----------------------------------------------------------------------------------

def sign(secret: str, body: bytes, timestamp: int) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def signature_valid(secret: str, header: str, body: bytes, *, now: float | None = None,
                    tolerance: int = SIGNATURE_TOLERANCE_SECONDS) -> bool:
    """What a receiver checks: the signature is ours and recent (a replayed old POST fails)."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, body, timestamp), f"t={timestamp},v1={parts.get('v1', '')}")


def body_of(delivery: WebhookDelivery) -> bytes:
    """The JSON event; for a chat webhook (Slack's incoming webhooks, and the chat tools that take
    their format: Mattermost, Rocket.Chat, Discord's /slack address) one line of text about it."""
    body = delivery.payload
    if delivery.webhook.format == Webhook.Format.CHAT:
        body = {"text": chat_text(delivery.payload)}
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def _escaped(text) -> str:
    # Slack's mrkdwn reads these three as markup: a label or a reason must not become a link.
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _photo_link(photo_id) -> str:
    site = settings.SITE_URL
    return f"<{site}/photos/{photo_id}/|Photo {photo_id}>" if site else f"Photo {photo_id}"


def chat_text(payload: dict) -> str:
    """One line a person reads in a chat channel, from an event's JSON body."""
    event = payload["event"]
    if event == WebhookDelivery.PING:
        return "Plantsite test event: this address takes Plantsite's webhooks."
    if event == EVENTS.MODEL_ACTIVATED:
        activation = payload["activation"]
        text = f"Model version {activation['version']} is now the active one"
        if activation["replaced"] is not None:
            text += (f" (a rollback from version {activation['replaced']})" if activation["is_rollback"]
                     else f", replacing version {activation['replaced']}")
        return _escaped(text + (f", by {activation['user']}." if activation["user"] else "."))
    photo = payload["photo"]
    link = _photo_link(photo["id"])
    if event == EVENTS.DELETED:
        return f"{link} was deleted."
    if event == EVENTS.DECIDED:
        return f"{link}: {_escaped(_decision_text(photo, payload.get('previous') or {}))}"
    if event == EVENTS.NEEDS_REVIEW:
        return f"{link} waits for an expert: {_escaped(photo['reason'])}"
    return f"{link} failed: {_escaped(photo['reason'])}"


def _decision_text(photo, previous) -> str:
    who = photo["reviewed_by"] or {"model": "the model", "consensus": "the labellers", "labeller": "a labeller",
                                   "import": "an import"}.get(photo["decided_by"], photo["decided_by"] or "someone")
    if photo["status"] == Photo.Status.REJECTED:
        text = f"rejected by {who}" + (f" ({photo['reason']})" if photo["reason"] else "")
    else:
        text = f"{photo['final_label']}, decided by {who}"
        if photo["decided_by"] == Photo.DecidedBy.MODEL and photo["prediction"]:
            text += f", {photo['prediction']['confidence']:.0%} sure"
    if previous.get("status") in (Photo.Status.FINAL, Photo.Status.REJECTED):
        text += f" (it was {previous['final_label'] or 'rejected'})"
    return text + "."


def _lease() -> timedelta:
    # Longer than an attempt can take (connect + read timeouts): a lapsed lease means the
    # process holding it died.
    return timedelta(seconds=2 * settings.WEBHOOK_TIMEOUT_SECONDS + 30)


def webhook_delivery_send(delivery_id: int) -> str | None:
    """One attempt at a due pending delivery; its new state, or None when it was not due or
    another process holds it (safe to run twice)."""
    now = timezone.now()
    lease_until = now + _lease()
    taken = (WebhookDelivery.objects
             .filter(id=delivery_id, state=WebhookDelivery.State.PENDING, next_attempt_at__lte=now)
             .update(state=WebhookDelivery.State.SENDING, lease_until=lease_until, attempts=F("attempts") + 1))
    if not taken:
        return None
    delivery = WebhookDelivery.objects.select_related("webhook").get(id=delivery_id)
    if not delivery.webhook.active and delivery.event != WebhookDelivery.PING:
        status, error, answer = None, "The webhook was turned off before this was sent.", ""
        give_up = True
    else:
        status, error, answer = _post(delivery)
        give_up = False
    return _finish(delivery, lease_until, status, error, answer, give_up=give_up)


def _finish(delivery, lease_until, status, error, answer, *, give_up) -> str | None:
    now = timezone.now()
    fields = {"last_status_code": status, "last_error": error[:2000], "last_response": answer, "lease_until": None}
    delay = None
    if not error:
        fields.update(state=WebhookDelivery.State.DELIVERED, delivered_at=now)
    elif give_up or delivery.attempts >= MAX_ATTEMPTS:
        fields.update(state=WebhookDelivery.State.FAILED)
    else:
        delay = RETRY_DELAYS[delivery.attempts - 1]
        fields.update(state=WebhookDelivery.State.PENDING, next_attempt_at=now + timedelta(seconds=delay))
    # Only while the lease is ours: a process that outlived it lost the delivery to the sweeper.
    if not WebhookDelivery.objects.filter(id=delivery.id, state=WebhookDelivery.State.SENDING,
                                          lease_until=lease_until).update(**fields):
        return None
    if delay is not None and delay <= COUNTDOWN_AT_MOST:
        _enqueue(delivery.id, countdown=delay)
    if error:
        logger.warning("Webhook delivery %s (%s) to %s, attempt %s: %s", delivery.id, delivery.event,
                       delivery.webhook.url, delivery.attempts, error)
    return fields["state"]


def _post(delivery) -> tuple[int | None, str, str]:
    """(status code or None, what went wrong or "", the start of the answer)."""
    url = delivery.webhook.url
    refused = _refused_address(url)
    if refused:
        return None, refused, ""
    body = body_of(delivery)
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
               "X-Plantsite-Event": delivery.event, "X-Plantsite-Delivery": str(delivery.event_id),
               SIGNATURE_HEADER: sign(delivery.webhook.secret, body, int(time.time()))}
    timeout = settings.WEBHOOK_TIMEOUT_SECONDS
    try:
        with requests.post(url, data=body, headers=headers, timeout=(min(timeout, 5.0), timeout),
                           allow_redirects=False, stream=True) as response:
            answer = _start_of(response)
    except requests.RequestException as exc:
        return None, f"{type(exc).__name__}: {exc}", ""
    if 200 <= response.status_code < 300:
        return response.status_code, "", answer
    if response.is_redirect:  # a POST is not followed to where it points: the address is fixed
        return (response.status_code,
                f"Answered {response.status_code}, a redirect to {response.headers.get('Location', '?')}: "
                "redirects are not followed; give the webhook the final address.", answer)
    return response.status_code, f"Answered {response.status_code}.", answer


def _start_of(response) -> str:
    chunk = next(response.iter_content(chunk_size=RESPONSE_KEPT_CHARS * 4), b"")
    return chunk.decode("utf-8", "replace")[:RESPONSE_KEPT_CHARS].replace("\x00", "")


def _refused_address(url: str) -> str:
    """Why the address may not be sent to, or "". A webhook may not reach into the server's own
    network (its database, its Redis, a cloud's metadata service) unless the site allows it."""
    if settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES:
        return ""
    parts = urlsplit(url)
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
    except (socket.gaierror, UnicodeError) as exc:
        return f"Could not resolve {parts.hostname}: {exc}"
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if not address.is_global:
            return (f"{parts.hostname} resolves to {address}, a private or local address: refused "
                    "(WEBHOOK_ALLOW_PRIVATE_ADDRESSES allows it).")
    return ""


PRUNE_BATCH = 5000


def webhook_deliveries_sweep() -> int:
    """Periodic: deliveries whose holder died go back to pending, and pending ones that are
    overdue (their task lost, or a retry too far off for a countdown) are sent. Delivered ones
    older than WEBHOOK_DELIVERED_KEEP_DAYS go, a batch a sweep (failed ones wait for an admin).
    The number sent."""
    now = timezone.now()
    old = (WebhookDelivery.objects.filter(state=WebhookDelivery.State.DELIVERED,
                                          delivered_at__lt=now - timedelta(days=settings.WEBHOOK_DELIVERED_KEEP_DAYS))
           .order_by("id").values_list("id", flat=True)[:PRUNE_BATCH])
    WebhookDelivery.objects.filter(id__in=list(old)).delete()
    (WebhookDelivery.objects.filter(state=WebhookDelivery.State.SENDING, lease_until__lt=now)
     .update(state=WebhookDelivery.State.PENDING, lease_until=None, next_attempt_at=now))
    # A retry later than COUNTDOWN_AT_MOST has no task: it goes at most a sweep after it is due.
    ids = list(WebhookDelivery.objects.filter(state=WebhookDelivery.State.PENDING,
                                              next_attempt_at__lte=now - OVERDUE_AFTER)
               .order_by("next_attempt_at", "id").values_list("id", flat=True)[:SWEEP_BATCH])
    for delivery_id in ids:
        _enqueue(delivery_id)
    return len(ids)
