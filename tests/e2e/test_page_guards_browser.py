"""Guards on the real pages in headless Chromium: what a stray key or a vanished photo must not do."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect

from labeling.models import Photo, ReviewDecision
from tests.factories import LabelFactory, PhotoFactory, PredictionFactory

from .test_browser import WatchRequests, log_in, logged_in_page, open_page

pytestmark = [pytest.mark.integration, pytest.mark.browser]


def test_enter_in_the_reason_field_saves_nothing_and_a_key_pressed_twice_saves_one_decision(
        live_server, browser, member, expert):
    monstera = LabelFactory(name="monstera")
    LabelFactory(name="spider_plant")
    first = PredictionFactory(photo__owner=member, label=monstera).photo
    second = PredictionFactory(photo__owner=member, label=monstera).photo
    problems = []
    page = logged_in_page(browser, problems, live_server.url, "expert", f"/review/{first.id}/")

    # Typing a rejection's reason and pressing Enter used to save the first label with it.
    page.fill("input[name=reason]", "blurry, not a plant")
    page.press("input[name=reason]", "Enter")
    time.sleep(1.0)
    assert page.url == f"{live_server.url}/review/{first.id}/"
    assert not ReviewDecision.objects.exists()
    assert Photo.objects.get(pk=first.id).status == Photo.Status.NEEDS_REVIEW

    # A key pressed twice while the next page loads: one decision, and no false "Not saved".
    page.locator("h1").click()  # out of the text field: keys are shortcuts again
    with page.expect_navigation():
        page.keyboard.press("1")
        page.keyboard.press("1")
    expect(page.locator("h1")).to_contain_text(f"Review photo {second.id}")
    expect(page.locator("p.message")).to_have_text(f"Decision saved for photo {first.id}.")
    assert list(ReviewDecision.objects.values_list("photo_id", "label__name")) == [(first.id, "monstera")]
    assert problems == []


def test_a_watched_photo_that_disappears_is_not_asked_about_again(live_server, browser, member):
    queued = PhotoFactory(owner=member)  # queued: the page watches it for its result
    problems = []
    page = open_page(browser, problems)
    watch = WatchRequests(page)
    log_in(page, live_server.url, "member")
    card = page.locator(f'.photo-card[data-photo-id="{queued.id}"]')
    expect(card).to_have_count(1)
    deadline = time.monotonic() + 10
    while not watch.urls and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert watch.urls, "the page never asked about its queued photo"

    Photo.objects.filter(id=queued.id).delete()  # an admin deletes it, say

    expect(card.locator("[data-role=status]")).to_have_text("No longer available", timeout=10_000)
    asked = len(watch.urls)
    page.wait_for_timeout(2000)
    assert len(watch.urls) == asked, f"{len(watch.urls) - asked} more requests for a photo that is gone"
    assert problems == []
