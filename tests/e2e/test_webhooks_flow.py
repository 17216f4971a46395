"""A real upload's result reaches a webhook: the inference worker stores it, the webhooks worker
(its own queue) POSTs it, signed, and tries again when the address first fails."""

from __future__ import annotations

import json
import time

import pytest

from labeling import webhooks
from labeling.models import Webhook, WebhookDelivery
from tests.e2e.test_prediction_flow import flower_photos

pytestmark = pytest.mark.integration


def test_an_uploads_result_is_posted_to_a_webhook_by_its_own_worker_and_sent_again_after_a_failure(
        active_model, start_worker, api_as, member, webhook_receiver):
    webhook = Webhook.objects.create(url=webhook_receiver.url, events=["photo.decided"])
    webhook_receiver.answers = [(503, b"deploying", 0.0), (204, b"", 0.0)]
    start_worker("inference", CONFIDENCE_THRESHOLD="0.0")
    start_worker("webhooks")

    response = api_as(member).upload(flower_photos()[0])
    assert response.status_code == 201, response.text
    photo = api_as(member).wait_for_photo(response.json()["id"])
    assert photo["status"] == "final"

    first, second = webhook_receiver.wait_for(2, timeout=webhooks.RETRY_DELAYS[0] + 30)
    assert first[1] == second[1]  # the same body, the same event id
    headers, body = second
    assert headers["X-Plantsite-Delivery"] == first[0]["X-Plantsite-Delivery"]
    assert webhooks.signature_valid(webhook.secret, headers["X-Plantsite-Signature"], body)
    event = json.loads(body)
    assert event["event"] == "photo.decided"
    assert event["photo"]["id"] == photo["id"]
    assert event["photo"]["final_label"] == photo["final_label"] == photo["prediction"]["label"]
    assert event["photo"]["decided_by"] == "model"
    deadline = time.monotonic() + 10  # the worker records the answer just after the receiver has it
    while (delivery := WebhookDelivery.objects.get()).state == "sending" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (delivery.state, delivery.attempts, delivery.last_status_code) == ("delivered", 2, 204)
