"""A member watching a photo's page sees, when the photo comes to wait for an expert, how long
experts take: the hint appears live, with the result."""

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from labeling.models import Photo, ReviewDecision
from tests.factories import LabelFactory, PhotoFactory

from .test_browser import FLOWER, WAIT_MS, logged_in_page

pytestmark = pytest.mark.integration


def test_the_photo_page_shows_how_long_experts_take_once_the_photo_waits_for_one(
        active_model, start_worker, live_server, browser, api_as, member, expert):
    earlier = PhotoFactory(status=Photo.Status.FINAL, uploaded_at=timezone.now() - timedelta(hours=3))
    ReviewDecision.objects.create(photo=earlier, expert=expert, label=LabelFactory(), status_before="needs_review",
                                  status_after="final", created_at=timezone.now() - timedelta(hours=1))
    uploaded = api_as(member).upload(FLOWER)
    assert uploaded.status_code == 201
    photo_id = uploaded.json()["id"]
    problems = []
    page = logged_in_page(browser, problems, live_server.url, member.username, f"/photos/{photo_id}/")
    hint = page.locator("[data-role=review-wait]")
    expect(page.locator("[data-role=status]")).to_have_text("Predicting…")
    expect(hint).to_be_hidden()

    start_worker("inference", CONFIDENCE_THRESHOLD="1.0")  # nothing is sure enough: an expert decides

    expect(page.locator("[data-role=status]")).to_have_text("Awaiting expert", timeout=WAIT_MS)
    expect(hint).to_be_visible()
    expect(hint).to_contain_text("experts decided half of the photos they were sent within 2 h of the upload")
    assert problems == []
