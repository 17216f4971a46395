"""The review queue in headless Chromium: an expert works two photos with the keyboard only
(start, a key, the next photo opens, a key), one of them an audit of a prediction the model
would have accepted on its own, which its uploader sees as awaiting an expert until then."""

from __future__ import annotations


import pytest
from playwright.sync_api import expect

from labeling import review
from labeling.models import Photo, ReviewDecision
from tests.factories import LabelFactory, PredictionFactory
from tests.paths import FLOWERS as FLOWERS_DIR

from .test_browser import log_in, open_page

pytestmark = [pytest.mark.integration, pytest.mark.browser]

FLOWER = sorted((FLOWERS_DIR / "tulips").glob("*.jpg"))[0]
WAIT_MS = 60_000


def test_an_expert_works_the_queue_by_keyboard_and_an_audit_stays_awaiting_expert_until_confirmed(
        active_model, start_worker, live_server, browser, member, other_member, expert):
    # Every prediction would be auto-accepted (threshold 0), and every one is audited.
    start_worker("inference", CONFIDENCE_THRESHOLD="0.0", AUDIT_FRACTION="1.0")
    base = live_server.url
    problems = []
    labels = sorted(name for name in active_model.labels)
    # Another member's photo the model was unsure about: first in the queue (smallest margin, oldest).
    uncertain = PredictionFactory(photo__owner=other_member, label=LabelFactory(name="monstera"), margin=0.0,
                                  confidence=0.4).photo

    # The member uploads; the worker predicts and picks the photo for an audit.
    home = open_page(browser, problems)
    log_in(home, base, "member")
    home.set_input_files("#id_image", str(FLOWER))
    card = home.locator("#photo-list .photo-card").first
    expect(card.locator("[data-role=status]")).to_have_text("Awaiting expert", timeout=WAIT_MS)
    audited = Photo.objects.select_related("prediction__label").get(pk=int(card.get_attribute("data-photo-id")))
    assert (audited.status, audited.review_kind, audited.owner) == ("needs_review", "audit", member)
    model_label = audited.prediction.label.name

    # Its page shows the uploader neither a decision nor the model's guess.
    detail = home.context.new_page()  # the member's session, in a second tab
    detail.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    detail.goto(f"{base}/photos/{audited.id}/")
    expect(detail.locator("[data-role=status]")).to_have_text("Awaiting expert")
    expect(detail.locator("[data-role=reason]")).to_have_text(review.AUDIT_REASON)
    expect(detail.locator("table.probs")).to_have_count(0)
    assert model_label not in detail.locator("main").inner_text()

    # The expert: the queue, then the keyboard only.
    queue = open_page(browser, problems)
    log_in(queue, base, "expert")
    queue.goto(f"{base}/review/?ordering=uncertainty")
    expect(queue.locator("h1")).to_contain_text("2 waiting, most uncertain first")
    queue.screenshot(path="/tmp/e2e-review-queue-start.png", full_page=True)

    with queue.expect_navigation():
        queue.keyboard.press("s")  # Start reviewing: claims the first photo and opens it
    expect(queue.locator("h1")).to_have_text(f"Review photo {uncertain.id}")
    expect(queue.locator("[data-role=claim]")).to_contain_text("Yours until")
    assert Photo.objects.get(pk=uncertain.id).claimed_by == expert

    with queue.expect_navigation():
        queue.keyboard.press(str(labels.index("monstera") + 1))

    # The next photo opens by itself, claimed: the audit.
    expect(queue.locator("p.message")).to_have_text(f"Decision saved for photo {uncertain.id}.")
    expect(queue.locator("h1")).to_contain_text(f"Review photo {audited.id}")
    expect(queue.locator("h1 .badge")).to_have_text("audit")
    assert Photo.objects.get(pk=audited.id).claimed_by == expert
    queue.screenshot(path="/tmp/e2e-review-audit.png", full_page=True)
    # Until the expert confirms, the uploader still sees it awaiting an expert.
    expect(card.locator("[data-role=status]")).to_have_text("Awaiting expert")
    assert Photo.objects.get(pk=audited.id).status == Photo.Status.NEEDS_REVIEW

    with queue.expect_navigation():
        queue.keyboard.press(str(labels.index(model_label) + 1))  # confirms the model's label

    expect(queue.locator("p.message")).to_have_text(f"Decision saved for photo {audited.id}.")
    expect(queue.locator("table.queue")).to_contain_text("Nothing to review.")
    audited.refresh_from_db()
    assert (audited.status, audited.final_label.name, audited.label_source, audited.reviewed_by) == (
        "final", model_label, "audit", expert)
    assert ReviewDecision.objects.get(photo=audited).kind == "audit"
    uncertain.refresh_from_db()
    assert (uncertain.status, uncertain.final_label.name, uncertain.label_source) == ("final", "monstera", "expert")

    # The uploader's page, never reloaded, now shows the confirmed label.
    expect(card.locator("[data-role=status]")).to_have_text(f"{model_label} (expert)", timeout=15_000)

    # The audit is measured.
    queue.goto(f"{base}/review/audits/")
    expect(queue.locator("#audit-stats")).to_contain_text("1 correct of 1 audited")
    queue.screenshot(path="/tmp/e2e-review-audits.png", full_page=True)
    assert problems == []
