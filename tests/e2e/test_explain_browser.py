"""Where the model looked, in headless Chromium: a photo's page open while its prediction is
stored gets the section with the result, and the picture is made only when the section is
opened."""
from __future__ import annotations

import pytest
from django.core.files.base import ContentFile
from playwright.sync_api import expect

from labeling import services
from labeling.models import Photo
from tests.factories import PhotoFactory
from tests.paths import FLOWERS as FLOWERS_DIR

from .test_browser import logged_in_page

pytestmark = [pytest.mark.integration, pytest.mark.browser]

FLOWER = sorted((FLOWERS_DIR / "roses").glob("*.jpg"))[0]


def test_the_map_arrives_with_the_result_and_is_made_when_opened(explainable_model, live_server, browser, member):
    photo = PhotoFactory(owner=member, status=Photo.Status.QUEUED,
                         image=ContentFile(FLOWER.read_bytes(), name="flower.jpg"))
    problems, asked = [], []
    page = logged_in_page(browser, problems, live_server.url, "member", f"/photos/{photo.id}/")
    page.on("request", lambda request: "explain.png" in request.url and asked.append(request.url))
    expect(page.locator("[data-role=status]")).to_have_text("Predicting…")

    services.photo_predict(photo.id)  # what the worker does: the page learns it without a reload

    section = page.locator("[data-role=explain]")
    expect(section).to_have_count(1, timeout=15_000)
    expect(section.locator("summary")).to_have_text("Where the model looked")
    page.wait_for_timeout(500)
    assert asked == []  # closed: nothing is computed for a page nobody looks at
    section.locator("summary").click()
    picture = section.locator("img")
    expect(picture).to_be_visible()
    page.wait_for_function("img => img.complete && img.naturalWidth === 288", arg=picture.element_handle())
    assert asked == [f"{live_server.url}/photos/{photo.id}/explain.png"]
    page.screenshot(path="/tmp/e2e-explain.png", full_page=True)
    assert problems == []
