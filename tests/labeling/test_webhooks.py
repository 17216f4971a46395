"""Webhooks (labeling.webhooks): which changes make which events, what is sent and how it is
signed, retries, leases, the sweeper, and the admins' pages."""

import hashlib
import hmac
import json
import time
from datetime import timedelta
from unittest import mock

import pytest
from django.db import transaction
from django.utils import timezone

from labeling import review, services, webhooks
from labeling.models import Photo, Webhook, WebhookDelivery
from tests.factories import ModelVersionFactory, PhotoFactory, PredictionFactory

pytestmark = pytest.mark.django_db

ALL_EVENTS = list(Webhook.Event.values)


def hook(url="https://hooks.example.com/plantsite", events=ALL_EVENTS, **fields):
    return Webhook.objects.create(url=url, events=events, **fields)


def deliveries(webhook=None):
    found = WebhookDelivery.objects.order_by("id")
    return list(found.filter(webhook=webhook) if webhook else found)


def due_now(delivery):
    WebhookDelivery.objects.filter(id=delivery.id).update(next_attempt_at=timezone.now() - timedelta(seconds=1))


# --- which changes are told ---------------------------------------------------------------


def test_an_experts_decision_is_told_to_each_active_webhook_that_asked_for_decisions(waiting_photo, expert):
    decided = hook(events=[Webhook.Event.DECIDED])
    other_events = hook(events=[Webhook.Event.NEEDS_REVIEW, Webhook.Event.FAILED])
    turned_off = hook(events=[Webhook.Event.DECIDED], active=False)

    services.review_decide(photo_id=waiting_photo.id, expert=expert, label_name="spider_plant")

    (delivery,) = deliveries()
    assert delivery.webhook == decided and not deliveries(other_events) and not deliveries(turned_off)
    assert (delivery.event, delivery.photo_id, delivery.state) == ("photo.decided", waiting_photo.id, "pending")
    payload = delivery.payload
    assert payload["event"] == "photo.decided" and payload["event_id"] == str(delivery.event_id)
    assert payload["photo"]["id"] == waiting_photo.id
    assert (payload["photo"]["status"], payload["photo"]["final_label"]) == ("final", "spider_plant")
    assert (payload["photo"]["decided_by"], payload["photo"]["reviewed_by"]) == ("expert", expert.username)
    assert payload["photo"]["prediction"]["label"] == "monstera"
    assert payload["previous"] == {"status": "needs_review", "final_label": None}


def test_one_event_told_to_two_webhooks_has_one_event_id(waiting_photo, expert):
    first, second = hook(), hook(url="https://other.example.org/in")

    services.review_decide(photo_id=waiting_photo.id, expert=expert, reject=True, reason="a cat")

    one, two = deliveries()
    assert {one.webhook, two.webhook} == {first, second}
    assert one.event_id == two.event_id and one.payload == two.payload
    assert one.payload["photo"]["status"] == "rejected" and one.payload["photo"]["final_label"] is None


def test_a_change_that_rolls_back_tells_nobody(waiting_photo, expert):
    hook()

    with pytest.raises(RuntimeError), transaction.atomic():
        services.review_decide(photo_id=waiting_photo.id, expert=expert, label_name="spider_plant")
        assert len(deliveries()) == 1  # recorded inside the same transaction...
        raise RuntimeError("the request failed after the decision")

    assert deliveries() == []  # ...and gone with it


def test_the_models_own_results_are_told_as_decided_when_sure_and_needs_review_when_not(active_model, settings):
    hook()
    settings.CONFIDENCE_THRESHOLD = 0.0
    sure = PhotoFactory()
    services.photo_predict(sure.id)
    settings.CONFIDENCE_THRESHOLD = 1.0
    unsure = PhotoFactory()
    services.photo_predict(unsure.id)

    told = {d.photo_id: d for d in deliveries()}
    assert told[sure.id].event == "photo.decided"
    assert told[sure.id].payload["photo"]["decided_by"] == "model"
    assert told[sure.id].payload["previous"] == {"status": "queued", "final_label": None}
    assert told[unsure.id].event == "photo.needs_review"
    assert "threshold" in told[unsure.id].payload["photo"]["reason"]
    assert told[unsure.id].payload["photo"]["prediction"]["model_version"] == active_model.id


def test_a_pending_audit_is_told_without_the_models_answer_which_its_decision_then_shows(
        member, expert, labels, settings):
    hook()
    prediction = PredictionFactory(photo__owner=member, photo__status=Photo.Status.QUEUED, label=labels["monstera"],
                                   confidence=0.95, margin=0.9)
    photo = Photo.objects.get(id=prediction.photo_id)
    settings.AUDIT_FRACTION = 1.0
    review.route_prediction(photo, prediction, 0.8)
    photo.save()
    assert photo.review_kind == Photo.ReviewKind.AUDIT

    services.review_decide(photo_id=photo.id, expert=expert, label_name="monstera")

    audit, decided = deliveries()
    assert audit.event == "photo.needs_review" and audit.payload["photo"]["prediction"] is None
    assert "monstera" not in json.dumps(audit.payload)  # the answer nowhere in the body
    assert decided.event == "photo.decided" and decided.payload["photo"]["prediction"]["label"] == "monstera"


def test_a_correction_of_a_decided_photo_is_told_with_what_it_was(waiting_photo, expert):
    services.review_decide(photo_id=waiting_photo.id, expert=expert, label_name="monstera")
    hook()
    waiting_photo.refresh_from_db()

    review.review_correct(photo_id=waiting_photo.id, expert=expert, label_name="spider_plant",
                          seen_decided_at=waiting_photo.decided_at)

    (delivery,) = deliveries()
    assert delivery.event == "photo.decided"
    assert delivery.payload["photo"]["final_label"] == "spider_plant"
    assert delivery.payload["previous"] == {"status": "final", "final_label": "monstera"}


def test_a_save_that_changes_neither_status_nor_label_tells_nothing(waiting_photo, expert):
    hook()
    photo = Photo.objects.get(id=waiting_photo.id)
    photo.reason = "edited"
    photo.save()
    review.review_claim(photo.id, expert)  # a claim is an UPDATE of who holds it

    assert deliveries() == []


def test_a_photo_read_again_after_another_process_decided_it_is_not_told_again_by_a_later_save(
        waiting_photo, expert):
    hook()
    stale = Photo.objects.get(id=waiting_photo.id)
    services.review_decide(photo_id=waiting_photo.id, expert=expert, label_name="monstera")
    stale.refresh_from_db()
    stale.reason = "a note added later"
    stale.save()

    assert [d.event for d in deliveries()] == ["photo.decided"]


def test_a_photo_whose_prediction_failed_for_good_is_told_as_failed(member):
    hook()
    photo = PhotoFactory(owner=member)  # queued

    services.photo_mark_failed(photo.id, "Prediction failed: the photo's file is missing or cannot be read.")
    services.photo_mark_failed(photo.id, "again: already failed, nothing to tell")

    (delivery,) = deliveries()
    assert (delivery.event, delivery.payload["photo"]["status"]) == ("photo.failed", "failed")
    assert "cannot be read" in delivery.payload["photo"]["reason"]


def test_a_deleted_photo_is_told_as_deleted_and_its_deliveries_outlive_it(member, staff):
    hook()
    photo = PhotoFactory(owner=member)

    services.photo_delete(photo_id=photo.id, user=staff)

    (delivery,) = deliveries()
    assert delivery.event == "photo.deleted" and delivery.payload["photo"] == {"id": photo.id}
    assert not Photo.objects.filter(id=photo.id).exists()


def test_activating_a_model_version_is_told_with_who_replaced_which_and_a_rollback_marked(staff):
    from classifier import services as classifier_services

    only_photos = hook(events=[Webhook.Event.DECIDED])
    told = hook(events=[Webhook.Event.MODEL_ACTIVATED])
    old, new = ModelVersionFactory(), ModelVersionFactory()
    classifier_services.model_version_activate(version_id=old.id, user=staff)
    classifier_services.model_version_activate(version_id=new.id, user=staff)
    classifier_services.model_version_activate(version_id=old.id, user=staff)  # a rollback

    assert not deliveries(only_photos)
    activations = [d.payload["activation"] for d in deliveries(told)]
    assert [(a["version"], a["replaced"], a["user"], a["is_rollback"]) for a in activations] == [
        (old.id, None, staff.username, False), (new.id, old.id, staff.username, False),
        (old.id, new.id, staff.username, True)]
    assert {d.event for d in deliveries(told)} == {"model.activated"} and all(d.photo_id is None for d in deliveries())


def test_photos_deleted_with_their_owners_account_are_told_as_deleted_too(member):
    hook(events=[Webhook.Event.DELETED])
    photos = [PhotoFactory(owner=member), PhotoFactory(owner=member)]

    member.delete()

    assert sorted(d.payload["photo"]["id"] for d in deliveries()) == sorted(p.id for p in photos)


def test_a_new_event_is_queued_on_the_webhooks_queue_once_it_commits(waiting_photo, expert,
                                                                    django_capture_on_commit_callbacks):
    hook()
    with mock.patch("labeling.tasks.webhook_deliver_task.apply_async") as send:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            services.review_decide(photo_id=waiting_photo.id, expert=expert, label_name="monstera")
            send.assert_not_called()  # not before the commit
        for callback in callbacks:
            callback()

    (delivery,) = deliveries()
    send.assert_called_once_with((delivery.id,), countdown=None)
    from plantsite.celery import app
    assert app.amqp.router.route({}, "labeling.tasks.webhook_deliver_task")["queue"].name == "webhooks"
    assert app.amqp.router.route({}, "labeling.tasks.webhook_deliveries_sweep_task")["queue"].name == "webhooks"


# --- sending ------------------------------------------------------------------------------


@pytest.fixture
def told(webhook_receiver, waiting_photo, expert):
    """A decision recorded for a webhook that points at the test's receiver."""
    hook(url=webhook_receiver.url)
    services.review_decide(photo_id=waiting_photo.id, expert=expert, label_name="spider_plant")
    (delivery,) = deliveries()
    return delivery


def test_a_delivery_is_posted_as_json_signed_with_the_webhooks_secret(told, webhook_receiver):
    assert webhooks.webhook_delivery_send(told.id) == "delivered"

    ((headers, body),) = webhook_receiver.wait_for(1)
    assert json.loads(body) == told.payload
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Plantsite-Event"] == "photo.decided"
    assert headers["X-Plantsite-Delivery"] == str(told.event_id)
    fields = dict(part.split("=", 1) for part in headers["X-Plantsite-Signature"].split(","))
    assert abs(int(fields["t"]) - time.time()) < 60
    expected = hmac.new(told.webhook.secret.encode(), fields["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
    assert fields["v1"] == expected
    assert webhooks.signature_valid(told.webhook.secret, headers["X-Plantsite-Signature"], body)
    told.refresh_from_db()
    assert (told.state, told.attempts, told.last_status_code, told.last_error) == ("delivered", 1, 200, "")
    assert told.last_response == "thanks" and told.delivered_at is not None


def test_a_delivered_delivery_is_not_sent_again_by_a_second_task(told, webhook_receiver):
    webhooks.webhook_delivery_send(told.id)

    assert webhooks.webhook_delivery_send(told.id) is None

    time.sleep(0.2)
    assert len(webhook_receiver.requests) == 1


def test_an_error_answer_is_tried_again_after_the_first_delay_then_fails_after_the_last_attempt(
        told, webhook_receiver, django_capture_on_commit_callbacks):
    webhook_receiver.answers = [(503, b"down for maintenance", 0.0)]
    with mock.patch("labeling.tasks.webhook_deliver_task.apply_async") as send:
        with django_capture_on_commit_callbacks(execute=True):
            before = timezone.now()
            assert webhooks.webhook_delivery_send(told.id) == "pending"

    told.refresh_from_db()
    assert (told.attempts, told.last_status_code, told.last_error) == (1, 503, "Answered 503.")
    assert told.last_response == "down for maintenance"
    assert before + timedelta(seconds=webhooks.RETRY_DELAYS[0]) <= told.next_attempt_at
    send.assert_called_once_with((told.id,), countdown=webhooks.RETRY_DELAYS[0])
    assert webhooks.webhook_delivery_send(told.id) is None  # not due yet: nothing sent
    assert len(webhook_receiver.requests) == 1

    WebhookDelivery.objects.filter(id=told.id).update(attempts=webhooks.MAX_ATTEMPTS - 1)
    due_now(told)
    assert webhooks.webhook_delivery_send(told.id) == "failed"
    told.refresh_from_db()
    assert (told.state, told.attempts) == ("failed", webhooks.MAX_ATTEMPTS)


def test_a_later_retry_is_left_to_the_sweeper_not_to_a_countdown(told, webhook_receiver,
                                                                  django_capture_on_commit_callbacks):
    webhook_receiver.answers = [(500, b"", 0.0)]
    WebhookDelivery.objects.filter(id=told.id).update(attempts=4)  # the 5th attempt is followed by 2 h
    with mock.patch("labeling.tasks.webhook_deliver_task.apply_async") as send:
        with django_capture_on_commit_callbacks(execute=True):
            assert webhooks.webhook_delivery_send(told.id) == "pending"
    send.assert_not_called()
    told.refresh_from_db()
    assert told.next_attempt_at - timezone.now() > timedelta(seconds=webhooks.RETRY_DELAYS[4] - 60)


def test_an_address_that_refuses_connections_is_recorded_as_such(told, closed_port):
    Webhook.objects.filter(id=told.webhook_id).update(url=f"http://127.0.0.1:{closed_port}/hook")

    assert webhooks.webhook_delivery_send(told.id) == "pending"

    told.refresh_from_db()
    assert told.last_status_code is None and told.last_error.startswith("ConnectionError")


def test_an_address_slower_than_the_timeout_is_an_error(told, webhook_receiver, settings):
    settings.WEBHOOK_TIMEOUT_SECONDS = 0.3
    webhook_receiver.answers = [(200, b"late", 2.0)]

    assert webhooks.webhook_delivery_send(told.id) == "pending"

    told.refresh_from_db()
    assert "Timeout" in told.last_error


def test_a_redirect_is_not_followed_and_says_where_it_pointed(told, webhook_receiver):
    webhook_receiver.answers = [(301, b"", 0.0)]

    assert webhooks.webhook_delivery_send(told.id) == "pending"

    told.refresh_from_db()
    assert told.last_status_code == 301
    assert "redirect to http://127.0.0.1:1/elsewhere" in told.last_error and "not followed" in told.last_error
    assert len(webhook_receiver.requests) == 1


def test_an_address_on_the_servers_own_network_is_refused_unless_allowed(told, webhook_receiver, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = False

    assert webhooks.webhook_delivery_send(told.id) == "pending"

    told.refresh_from_db()
    assert "resolves to 127.0.0.1" in told.last_error and "WEBHOOK_ALLOW_PRIVATE_ADDRESSES" in told.last_error
    time.sleep(0.2)
    assert webhook_receiver.requests == []


@pytest.mark.parametrize("address", ["10.1.2.3", "169.254.169.254", "[::1]", "192.168.0.7"])
def test_private_and_link_local_addresses_are_refused_by_default_in_production(address, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = False
    assert "private or local address" in webhooks._refused_address(f"http://{address}/hook")


@pytest.mark.parametrize("value, expected", [(None, "False"), ("true", "True")])
def test_production_refuses_private_addresses_unless_told_otherwise(value, expected):
    from tests.classifier.test_settings import STRONG_SECRET_KEY, run_with_production_settings

    env = {"SECRET_KEY": STRONG_SECRET_KEY, "ALLOWED_HOSTS": "plants.example.com"}
    if value is not None:
        env["WEBHOOK_ALLOW_PRIVATE_ADDRESSES"] = value
    result = run_with_production_settings(
        "import django; django.setup(); from django.conf import settings; "
        "print(settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES)", **env)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


def test_a_site_address_without_its_scheme_stops_the_start_naming_the_setting():
    from tests.classifier.test_settings import STRONG_SECRET_KEY, run_with_production_settings

    result = run_with_production_settings("import django; django.setup()", SECRET_KEY=STRONG_SECRET_KEY,
                                          ALLOWED_HOSTS="plants.example.com", SITE_URL="plants.example.com")

    assert result.returncode != 0 and "SITE_URL is not a URL like https://" in result.stderr


def test_a_delivery_waiting_for_a_webhook_turned_off_fails_saying_so_but_a_test_event_is_sent(
        told, webhook_receiver):
    Webhook.objects.filter(id=told.webhook_id).update(active=False)

    assert webhooks.webhook_delivery_send(told.id) == "failed"
    ping = webhooks.webhook_ping(webhook_id=told.webhook_id)
    assert webhooks.webhook_delivery_send(ping.id) == "delivered"

    told.refresh_from_db()
    assert "turned off" in told.last_error
    ((headers, body),) = webhook_receiver.wait_for(1)
    assert headers["X-Plantsite-Event"] == "ping" and json.loads(body)["webhook"] == told.webhook_id


def test_sending_again_gives_a_finished_delivery_fresh_attempts_under_the_same_event_id(told, webhook_receiver):
    WebhookDelivery.objects.filter(id=told.id).update(state="failed", attempts=webhooks.MAX_ATTEMPTS)

    assert webhooks.webhook_delivery_resend(delivery_id=told.id) is True
    assert webhooks.webhook_delivery_resend(delivery_id=told.id) is False  # pending already
    assert webhooks.webhook_delivery_send(told.id) == "delivered"

    ((headers, _),) = webhook_receiver.wait_for(1)
    assert headers["X-Plantsite-Delivery"] == str(told.event_id)


# --- leases and the sweeper ---------------------------------------------------------------


def test_a_delivery_held_by_a_process_is_not_sent_by_another_until_its_lease_lapses(
        told, webhook_receiver, django_capture_on_commit_callbacks):
    lease = timezone.now() + timedelta(seconds=60)
    WebhookDelivery.objects.filter(id=told.id).update(state="sending", lease_until=lease, attempts=1)

    assert webhooks.webhook_delivery_send(told.id) is None
    with mock.patch("labeling.tasks.webhook_deliver_task.apply_async") as send:
        assert webhooks.webhook_deliveries_sweep() == 0
        send.assert_not_called()
        WebhookDelivery.objects.filter(id=told.id).update(lease_until=timezone.now() - timedelta(seconds=1))
        webhooks.webhook_deliveries_sweep()  # the holder died: back to pending, due now
        told.refresh_from_db()
        assert (told.state, told.lease_until) == ("pending", None)
        WebhookDelivery.objects.filter(id=told.id).update(next_attempt_at=timezone.now() - timedelta(minutes=5))
        with django_capture_on_commit_callbacks(execute=True):
            assert webhooks.webhook_deliveries_sweep() == 1
        send.assert_called_once_with((told.id,), countdown=None)
    assert webhooks.webhook_delivery_send(told.id) == "delivered"


def test_a_process_that_outlived_its_lease_does_not_overwrite_what_another_did(told, webhook_receiver):
    # It took the delivery, then hung past its lease; the sweeper gave the delivery to another
    # process, which delivered it. The first one's late failure is dropped.
    with mock.patch.object(webhooks, "_post", side_effect=lambda d: (
            WebhookDelivery.objects.filter(id=d.id).update(state="delivered", lease_until=None),
            (None, "ReadTimeout: too slow", ""))[1]):
        assert webhooks.webhook_delivery_send(told.id) is None

    told.refresh_from_db()
    assert (told.state, told.last_error) == ("delivered", "")


def test_the_sweeper_sends_overdue_pending_deliveries_but_not_those_still_in_their_own_tasks_hands(
        told, django_capture_on_commit_callbacks):
    fresh = webhooks.webhook_ping(webhook_id=told.webhook_id)  # just recorded: its own task sends it
    WebhookDelivery.objects.filter(id=told.id).update(next_attempt_at=timezone.now() - timedelta(minutes=2))

    with mock.patch("labeling.tasks.webhook_deliver_task.apply_async") as send:
        with django_capture_on_commit_callbacks(execute=True):
            assert webhooks.webhook_deliveries_sweep() == 1

    send.assert_called_once_with((told.id,), countdown=None)
    assert fresh.state == "pending"


def test_the_sweeper_removes_delivered_events_older_than_the_days_kept_and_keeps_failed_ones(settings):
    settings.WEBHOOK_DELIVERED_KEEP_DAYS = 30
    webhook = hook()
    now = timezone.now()

    def delivery(state, days_ago):
        return WebhookDelivery.objects.create(webhook=webhook, event="ping", payload={}, state=state,
                                              delivered_at=now - timedelta(days=days_ago) if state == "delivered"
                                              else None, created_at=now - timedelta(days=days_ago))

    old, recent = delivery("delivered", 31), delivery("delivered", 29)
    failed = delivery("failed", 90)

    webhooks.webhook_deliveries_sweep()

    assert set(WebhookDelivery.objects.all()) == {recent, failed}
    assert not WebhookDelivery.objects.filter(id=old.id).exists()


# --- signatures ---------------------------------------------------------------------------


def test_a_signature_is_valid_only_for_its_secret_body_and_a_recent_time():
    body, secret = b'{"event":"ping"}', "s3cret"
    now = int(time.time())
    header = webhooks.sign(secret, body, now)

    assert webhooks.signature_valid(secret, header, body)
    assert not webhooks.signature_valid("other", header, body)
    assert not webhooks.signature_valid(secret, header, body + b" ")
    assert not webhooks.signature_valid(secret, webhooks.sign(secret, body, now - 301), body)
    assert webhooks.signature_valid(secret, webhooks.sign(secret, body, now - 299), body)
    for garbage in ("", "t=abc,v1=00", "v1=00", "t=1", "nonsense"):
        assert not webhooks.signature_valid(secret, garbage, body)


# --- managing webhooks --------------------------------------------------------------------


def test_a_webhook_needs_an_http_address_and_known_events():
    with pytest.raises(webhooks.WebhookError, match="http:// or https://"):
        webhooks.webhook_create(url="ftp://example.com/x", events=["photo.decided"])
    with pytest.raises(webhooks.WebhookError, match="Unknown event: photo.eaten"):
        webhooks.webhook_create(url="https://example.com/x", events=["photo.eaten"])
    with pytest.raises(webhooks.WebhookError, match="at least one event"):
        webhooks.webhook_create(url="https://example.com/x", events=[])
    with pytest.raises(webhooks.WebhookError, match="Unknown format xml: use json, chat"):
        webhooks.webhook_create(url="https://example.com/x", events=["photo.decided"], format="xml")
    made = webhooks.webhook_create(url="https://example.com/x", events=["photo.failed", "photo.decided"])
    assert made.events == ["photo.decided", "photo.failed"] and len(made.secret) == 64
    assert Webhook.objects.create(url="https://example.com/y").secret != made.secret


def test_an_admin_adds_a_webhook_on_its_page_and_sees_it_listed(client, staff):
    client.force_login(staff)

    response = client.post("/webhooks/", {"url": "https://hooks.example.com/in", "description": "inventory",
                                          "events": ["photo.decided", "photo.deleted"], "format": "json"})

    webhook = Webhook.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/webhooks/{webhook.id}/"
    assert (webhook.events, webhook.created_by, webhook.active) == (["photo.decided", "photo.deleted"], staff, True)
    page = client.get("/webhooks/").content.decode()
    assert "https://hooks.example.com/in" in page and "inventory" in page and "none yet" in page
    webhooks.webhook_ping(webhook_id=webhook.id)
    WebhookDelivery.objects.update(created_at=timezone.now() - timedelta(minutes=10))
    row = client.get("/webhooks/").content.decode().split(f'data-webhook="{webhook.id}"')[1].split("</tr>")[0]
    assert "ping" in row and "pending" in row and "1 <small" in row and "the oldest from 10" in row
    detail = client.get(f"/webhooks/{webhook.id}/").content.decode()
    assert webhook.secret in detail


def test_an_address_the_site_would_not_send_to_is_refused_on_the_page_saying_why(client, staff):
    client.force_login(staff)
    response = client.post("/webhooks/", {"url": "ftp://hooks.example.com/in", "events": ["photo.decided"]})

    assert response.status_code == 400
    assert not Webhook.objects.exists()


def test_an_admin_edits_turns_off_tests_resends_and_deletes_a_webhook(client, staff, told):
    client.force_login(staff)
    page = f"/webhooks/{told.webhook_id}/"

    response = client.post(page, {"action": "save", "url": "https://new.example.com/in", "description": "moved",
                                  "events": ["photo.failed"], "format": "chat"})
    assert response.status_code == 302
    webhook = Webhook.objects.get(id=told.webhook_id)
    assert (webhook.url, webhook.events, webhook.active, webhook.format) == (
        "https://new.example.com/in", ["photo.failed"], False, "chat")

    client.post(page, {"action": "test"})
    assert WebhookDelivery.objects.filter(webhook=webhook, event="ping").count() == 1
    client.post(page, {"action": "secret"})
    assert Webhook.objects.get(id=webhook.id).secret != webhook.secret

    refused = client.post(page, {"action": "resend", "delivery": told.id}, follow=True)
    assert "still waiting" in refused.content.decode()
    WebhookDelivery.objects.filter(id=told.id).update(state="failed", last_error="Answered 500.")
    shown = client.get(page).content.decode()
    assert "Answered 500." in shown and "Send again" in shown
    client.post(page, {"action": "resend", "delivery": told.id})
    told.refresh_from_db()
    assert (told.state, told.attempts) == ("pending", 0)
    other = hook()
    unknown = client.post(page, {"action": "resend", "delivery": "999999"}, follow=True)
    assert "No such delivery" in unknown.content.decode()
    assert "Unknown action" in client.post(page, {"action": "explode"}, follow=True).content.decode()

    invalid = client.post(page, {"action": "save", "url": "not an address", "events": ["photo.failed"],
                                 "format": "json"})
    assert invalid.status_code == 400 and Webhook.objects.get(id=webhook.id).url == "https://new.example.com/in"
    unconfirmed = client.post(page, {"action": "delete"}, follow=True)
    assert "nothing was deleted" in unconfirmed.content.decode() and Webhook.objects.filter(id=webhook.id).exists()
    response = client.post(page, {"action": "delete", "confirm": "yes"})
    assert response.status_code == 302 and response["Location"] == "/webhooks/"
    assert list(Webhook.objects.all()) == [other]
    assert not WebhookDelivery.objects.filter(webhook_id=told.webhook_id).exists()


def test_a_webhook_deleted_by_another_admin_meanwhile_is_not_found_not_an_error(client, staff):
    webhook = hook()
    client.force_login(staff)

    with mock.patch.object(webhooks, "webhook_ping", side_effect=Webhook.DoesNotExist):
        response = client.post(f"/webhooks/{webhook.id}/", {"action": "test"})

    assert response.status_code == 404


# --- the API ------------------------------------------------------------------------------


def test_an_admin_manages_webhooks_through_the_api(api_for, staff):
    api = api_for(staff)

    created = api.post("/api/v1/webhooks/", {"url": "https://hooks.example.com/in", "events": ["photo.failed"]},
                       format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert (body["events"], body["active"], body["created_by"], body["description"], body["format"]) == (
        ["photo.failed"], True, staff.username, "", "json")
    assert len(body["secret"]) == 64
    url = f"/api/v1/webhooks/{body['id']}/"

    patched = api.patch(url, {"description": "alerts"}, format="json").json()
    assert (patched["url"], patched["events"], patched["description"]) == (
        "https://hooks.example.com/in", ["photo.failed"], "alerts")  # what was left out kept its value
    off = api.patch(url, {"active": False, "events": ["photo.deleted", "photo.decided"], "format": "chat"},
                    format="json").json()
    assert (off["active"], off["events"], off["description"], off["format"]) == (
        False, ["photo.decided", "photo.deleted"], "alerts", "chat")
    assert [hook["id"] for hook in api.get("/api/v1/webhooks/").json()] == [body["id"]]

    rotated = api.post(f"{url}secret/").json()
    assert rotated["secret"] != body["secret"] and Webhook.objects.get().secret == rotated["secret"]

    ping = api.post(f"{url}ping/")
    assert ping.status_code == 201 and ping.json()["event"] == "ping" and ping.json()["state"] == "pending"

    assert api.delete(url).status_code == 204
    assert api.get(url).status_code == 404 and not WebhookDelivery.objects.exists()


@pytest.mark.parametrize("body, complaint", [
    ({"url": "ftp://hooks.example.com/in", "events": ["photo.decided"]}, "url"),
    ({"url": "https://hooks.example.com/in", "events": ["photo.eaten"]}, "events"),
    ({"url": "https://hooks.example.com/in", "events": []}, "events"),
    ({"url": "https://hooks.example.com/in", "events": ["photo.decided"], "secret": "mine"}, "secret"),
    ({"url": "https://hooks.example.com/in", "events": ["photo.decided"], "format": "xml"}, "format"),
])
def test_a_webhook_the_api_would_not_send_to_is_a_400_naming_the_field(api_for, staff, body, complaint):
    response = api_for(staff).post("/api/v1/webhooks/", body, format="json")

    assert response.status_code == 400 and complaint in response.json()
    assert not Webhook.objects.exists()


def test_the_api_lists_a_webhooks_deliveries_by_state_and_sends_a_finished_one_again(api_for, staff):
    api = api_for(staff)
    webhook, other = hook(), hook()
    failed = WebhookDelivery.objects.create(webhook=webhook, event="ping", payload={"event": "ping"}, state="failed",
                                            attempts=8, last_status_code=500, last_error="Answered 500.")
    waiting = WebhookDelivery.objects.create(webhook=webhook, event="ping", payload={"event": "ping"})
    theirs = WebhookDelivery.objects.create(webhook=other, event="ping", payload={}, state="failed")
    base = f"/api/v1/webhooks/{webhook.id}/deliveries/"

    listed = api.get(base).json()
    assert [d["id"] for d in listed["results"]] == [waiting.id, failed.id]  # newest first
    assert [d["id"] for d in api.get(f"{base}?state=failed").json()["results"]] == [failed.id]
    assert listed["results"][1]["last_error"] == "Answered 500." and listed["results"][1]["photo"] is None
    assert api.get(f"{base}?state=lost").status_code == 400

    resent = api.post(f"{base}{failed.id}/resend/")
    assert resent.status_code == 200 and (resent.json()["state"], resent.json()["attempts"]) == ("pending", 0)
    again = api.post(f"{base}{failed.id}/resend/")
    assert again.status_code == 409 and "not sent twice" in again.json()["detail"]
    assert api.post(f"{base}{theirs.id}/resend/").status_code == 404  # another webhook's


# --- chat webhooks ------------------------------------------------------------------------


def test_a_chat_webhook_is_sent_one_line_of_text_linking_to_the_photo_signed_all_the_same(
        told, webhook_receiver, settings):
    settings.SITE_URL = "https://plants.example.com"
    Webhook.objects.filter(id=told.webhook_id).update(format=Webhook.Format.CHAT)

    assert webhooks.webhook_delivery_send(told.id) == "delivered"

    ((headers, body),) = webhook_receiver.wait_for(1)
    photo_id = told.photo_id
    assert json.loads(body) == {"text": f"<https://plants.example.com/photos/{photo_id}/|Photo {photo_id}>: "
                                        f"spider_plant, decided by {told.payload['photo']['reviewed_by']}."}
    assert webhooks.signature_valid(told.webhook.secret, headers["X-Plantsite-Signature"], body)


def test_a_photo_event_links_to_the_photos_page_when_the_sites_address_is_set(waiting_photo, expert, settings):
    hook()
    services.review_decide(photo_id=waiting_photo.id, expert=expert, label_name="monstera")
    settings.SITE_URL = "https://plants.example.com"
    review.review_correct(photo_id=waiting_photo.id, expert=expert, label_name="spider_plant",
                          seen_decided_at=Photo.objects.get(id=waiting_photo.id).decided_at)

    without, with_site = deliveries()
    assert without.payload["page_url"] is None and without.payload["photo"]["image_url"].startswith("/media/")
    assert with_site.payload["page_url"] == f"https://plants.example.com/photos/{waiting_photo.id}/"
    assert with_site.payload["photo"]["image_url"].startswith("https://plants.example.com/media/")


def photo_event(event, **photo):
    base = {"id": 7, "status": "final", "final_label": "monstera", "decided_by": "expert", "reviewed_by": "ana",
            "reason": "", "prediction": {"confidence": 0.934}}
    return {"event": event, "photo": {**base, **photo}, "previous": {"status": "needs_review", "final_label": None}}


@pytest.mark.parametrize("payload, text", [
    (photo_event("photo.decided"), "Photo 7: monstera, decided by ana."),
    (photo_event("photo.decided", decided_by="model", reviewed_by=None), "Photo 7: monstera, decided by the model, "
                                                                          "93% sure."),
    (photo_event("photo.decided", status="rejected", final_label=None, reason="a <cat> & a dog"),
     "Photo 7: rejected by ana (a &lt;cat&gt; &amp; a dog)."),
    ({**photo_event("photo.decided", final_label="fern"), "previous": {"status": "final", "final_label": "monstera"}},
     "Photo 7: fern, decided by ana (it was monstera)."),
    (photo_event("photo.decided", decided_by="consensus", reviewed_by=None), "Photo 7: monstera, decided by the "
                                                                              "labellers."),
    (photo_event("photo.needs_review", status="needs_review", reason="The model is 61% sure."),
     "Photo 7 waits for an expert: The model is 61% sure."),
    (photo_event("photo.failed", status="failed", reason="Prediction failed: unreadable."),
     "Photo 7 failed: Prediction failed: unreadable."),
    ({"event": "photo.deleted", "photo": {"id": 7}}, "Photo 7 was deleted."),
    ({"event": "model.activated", "activation": {"version": 4, "replaced": 3, "user": "bo", "is_rollback": False}},
     "Model version 4 is now the active one, replacing version 3, by bo."),
    ({"event": "model.activated", "activation": {"version": 3, "replaced": 4, "user": None, "is_rollback": True}},
     "Model version 3 is now the active one (a rollback from version 4)."),
    ({"event": "model.activated", "activation": {"version": 1, "replaced": None, "user": "bo", "is_rollback": False}},
     "Model version 1 is now the active one, by bo."),
    ({"event": "ping", "webhook": 1}, "Plantsite test event: this address takes Plantsite's webhooks."),
])
def test_each_event_reads_as_one_line_in_a_chat_channel(payload, text, settings):
    settings.SITE_URL = ""
    assert webhooks.chat_text(payload) == text
