"""Confirm many at once, in headless Chromium: the expert unticks the wrong photo (the count on
the button follows), confirms the rest, and only the unticked one is still waiting."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from labeling.models import Photo
from tests.factories import LabelFactory, PhotoFactory, PredictionFactory

from .test_browser import logged_in_page

pytestmark = [pytest.mark.integration, pytest.mark.browser]


def test_an_expert_unticks_the_wrong_photo_and_confirms_the_rest(live_server, browser, member, expert):
    monstera = LabelFactory(name="monstera")
    photos = []
    for confidence in (0.7, 0.6, 0.5):
        photo = PhotoFactory(owner=member, status=Photo.Status.NEEDS_REVIEW, review_kind=Photo.ReviewKind.UNCERTAIN)
        PredictionFactory(photo=photo, label=monstera, confidence=confidence)
        photos.append(photo)
    wrong = photos[1]
    problems = []
    page = logged_in_page(browser, problems, live_server.url, "expert", "/review/")

    page.click("text=Confirm many at once")
    expect(page.locator("#grid-confirm")).to_have_text("Confirm the 3 ticked as monstera")
    page.click(f".tile:has(input[value='{wrong.id}']) img")
    expect(page.locator(f"input[value='{wrong.id}']")).not_to_be_checked()
    expect(page.locator("#grid-confirm")).to_have_text("Confirm the 2 ticked as monstera")
    page.screenshot(path="/tmp/e2e-review-grid.png", full_page=True)
    with page.expect_navigation():
        page.click("#grid-confirm")

    expect(page.locator(".message").first).to_have_text("Confirmed 2 photos as monstera.")
    expect(page.locator("input[name=photos]")).to_have_count(1)
    statuses = dict(Photo.objects.filter(id__in=[p.id for p in photos]).values_list("id", "status"))
    assert statuses == {photos[0].id: "final", wrong.id: "needs_review", photos[2].id: "final"}
    assert problems == []
