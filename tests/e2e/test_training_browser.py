"""An admin trains from the site: starts a run, watches its progress move, activates the version."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from classifier.models import ModelVersion, TrainingRun
from tests.factories import import_photos_on_both_sides_of_the_split

from .test_browser import logged_in_page

pytestmark = [pytest.mark.integration, pytest.mark.browser]

READ_PROGRESS = "() => document.querySelector('#training-run [data-role=progress]').value"


def test_an_admin_starts_a_run_watches_progress_and_activates_the_new_version(
        training_worker, live_server, browser, staff, tmp_path):
    import_photos_on_both_sides_of_the_split(tmp_path, staff, per_label=8, seed=4)
    problems = []
    page = logged_in_page(browser, problems, live_server.url, "staff", "/training/")
    page.fill("#id_image_size", "32")
    page.fill("#id_epochs", "4")
    page.fill("#id_batch_size", "4")
    page.uncheck("#id_pretrained")
    with page.expect_navigation():
        page.click("#training-form button[type=submit]")
    assert re.search(r"/training/\d+/$", page.url), page.url

    # The page polls the API: the bar must move without a reload, and finish.
    seen = set()
    page.evaluate("() => { window.__marker = 'no reload'; }")
    for _ in range(240):
        seen.add(round(page.evaluate(READ_PROGRESS), 3))
        if page.locator("#training-run").get_attribute("data-status") in ("succeeded", "failed", "cancelled"):
            break
        page.wait_for_timeout(250)
    expect(page.locator("#training-run [data-role=status]")).to_have_text("succeeded", timeout=60_000)
    assert page.evaluate("() => window.__marker") == "no reload"
    assert len({p for p in seen if 0 < p < 1}) >= 1, seen  # progress was seen between start and end
    assert page.evaluate(READ_PROGRESS) == 1
    expect(page.locator("#training-run [data-role=loss-curve] polyline")).to_have_count(2)
    page.screenshot(path="/tmp/e2e-training-run.png", full_page=True)

    run = TrainingRun.objects.get()
    page.click("#training-run [data-role=model-version] a")
    version = page.locator(f".model-version[data-version-id='{run.model_version_id}']")
    with page.expect_navigation():
        version.locator("button", has_text="Activate this version").click()
    expect(page.locator(f".model-version[data-version-id='{run.model_version_id}'] .badge.active")).to_be_visible()
    assert page.url.endswith(f"/models/{run.model_version_id}/"), page.url  # the version's own page, and back to it
    page.screenshot(path="/tmp/e2e-models.png", full_page=True)
    assert ModelVersion.objects.get(is_active=True).id == run.model_version_id
    assert problems == []
