"""The real pages in headless Chromium: a member's upload updates live, an expert decides by key."""

from __future__ import annotations


from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from playwright.sync_api import expect

from labeling.models import Photo
from labeling.polling import RESULT_POLL_DELAYS_MS, result_poll_delay_ms
from tests.paths import FLOWERS as FLOWERS_DIR

from .conftest import PASSWORD

pytestmark = [pytest.mark.integration, pytest.mark.browser]

FLOWER = sorted((FLOWERS_DIR / "sunflowers").glob("*.jpg"))[0]
WAIT_MS = 60_000

# Records every text the upload cards' status shows, so a short-lived one is not missed.
RECORD_STATUSES = """() => {
  window.__statuses = [];
  const list = document.getElementById("photo-list");
  new MutationObserver(() => {
    const status = list.querySelector(".photo-card [data-role=status]");
    const text = status ? status.textContent.trim() : null;
    if (text && window.__statuses[window.__statuses.length - 1] !== text) window.__statuses.push(text);
  }).observe(list, { subtree: true, childList: true, characterData: true });
}"""


class WatchRequests:
    """Records the page's GET /api/v1/photos/updates/ requests and how many were open at once."""

    def __init__(self, page):
        self.urls, self.open, self.most_at_once = [], 0, 0
        page.on("request", self._started)
        page.on("requestfinished", self._ended)
        page.on("requestfailed", self._ended)

    @staticmethod
    def _is_watch(request):
        return "/api/v1/photos/updates/" in request.url

    def _started(self, request):
        if self._is_watch(request):
            self.urls.append(request.url)
            self.open += 1
            self.most_at_once = max(self.most_at_once, self.open)

    def _ended(self, request):
        if self._is_watch(request):
            self.open -= 1


def open_page(browser, problems, expected_errors=()):
    """A page that records page errors, console errors and failed requests in `problems`;
    URLs containing one of `expected_errors` may fail (a test that sends refused uploads)."""
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    # Failed loads are reported with their URL below; other console errors (CSP refusals) here.
    page.on("console", lambda message: message.type == "error" and not message.text.startswith(
        "Failed to load resource") and problems.append(f"console: {message.text}"))
    # The site has no favicon; Chromium asks for one anyway. Every other failed request counts.
    page.on("response", lambda response: response.status >= 400 and not response.url.endswith(
        "/favicon.ico") and not any(part in response.url for part in expected_errors) and problems.append(
        f"HTTP {response.status} {response.url}"))
    return page


def logged_in_page(browser, problems, base_url, username, path="/"):
    """open_page, logged in as `username` (a context of its own), then at `path`."""
    page = open_page(browser, problems)
    log_in(page, base_url, username)
    if path != "/":
        page.goto(f"{base_url}{path}")
    return page


def log_in(page, base_url, username, screenshot=None):
    page.goto(f"{base_url}/login/")
    if screenshot:
        page.screenshot(path=screenshot, full_page=True)
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    with page.expect_navigation():
        page.click("form.card button[type=submit]")
    assert page.url == f"{base_url}/", page.url
    expect(page.locator("header nav")).to_contain_text(f"Log out {username}")


def test_a_member_sees_the_upload_predicted_live_and_an_expert_decides_it_with_the_keyboard(
        active_model, start_worker, live_server, browser, member, expert):
    # The worker never finalises: every prediction waits for an expert.
    start_worker("inference", CONFIDENCE_THRESHOLD="1.0")
    base = live_server.url
    script = requests.get(f"{base}/static/plantsite.js", timeout=10)
    assert script.status_code == 200 and "javascript" in script.headers["Content-Type"]
    problems = []

    home = open_page(browser, problems)
    log_in(home, base, "member", screenshot="/tmp/e2e-login.png")
    assert home.evaluate("typeof setUpUpload") == "function", "plantsite.js did not run under the CSP"
    # The page asks for the result on the server's schedule: quick first, then 250 ms at most.
    asks = len(RESULT_POLL_DELAYS_MS) + 3
    assert home.evaluate(f"[...Array({asks}).keys()].map(resultPollDelay)") == [
        result_poll_delay_ms(i) for i in range(asks)]
    expect(home.locator("#no-photos")).to_have_text("No photos yet.")
    home.evaluate("window.__noReload = 'still the same document'")
    watching = WatchRequests(home)
    navigations = []
    home.on("framenavigated", lambda frame: frame == home.main_frame and navigations.append(frame.url))
    home.evaluate(RECORD_STATUSES)

    home.set_input_files("#id_image", str(FLOWER))

    card = home.locator("#photo-list .photo-card").first
    expect(card.locator("[data-role=status]")).to_have_text("Awaiting expert", timeout=WAIT_MS)
    statuses = home.evaluate("window.__statuses")
    assert statuses[0] == "Predicting…" and statuses[-1] == "Awaiting expert", statuses
    assert home.evaluate("window.__noReload") == "still the same document"
    assert navigations == []
    expect(home.locator("#no-photos")).to_have_count(0)
    expect(home.locator("#upload-error")).to_be_hidden()
    photo_id = int(card.get_attribute("data-photo-id"))
    photo = Photo.objects.select_related("prediction").get(pk=photo_id)
    assert (photo.status, photo.owner, photo.prediction.model_version_id) == (
        "needs_review", member, active_model.id)
    home.screenshot(path="/tmp/e2e-home.png", full_page=True)

    review = open_page(browser, problems)  # a new context: the expert's own session
    log_in(review, base, "expert")
    review.goto(f"{base}/review/")
    expect(review.locator("h1")).to_contain_text("1 waiting")
    review.screenshot(path="/tmp/e2e-review-queue.png", full_page=True)
    with review.expect_navigation():
        review.click(f"a.queue-item[href='/review/{photo_id}/']")
    expect(review.locator("h1")).to_have_text(f"Review photo {photo_id}")
    expect(review.locator("#review-form button[data-key='1']")).to_contain_text("dieffenbachia")
    review.screenshot(path="/tmp/e2e-review-photo.png", full_page=True)

    with review.expect_navigation():
        review.keyboard.press("1")

    expect(review.locator("p.message")).to_have_text(f"Decision saved for photo {photo_id}.")
    expect(review.locator("table.queue")).to_contain_text("Nothing to review.")
    review.screenshot(path="/tmp/e2e-review-decided.png", full_page=True)
    photo.refresh_from_db()
    assert (photo.status, photo.final_label.name, photo.decided_by, photo.reviewed_by) == (
        "final", "dieffenbachia", "expert", expert)

    # The member's page, still not reloaded, shows the expert's decision by itself.
    expect(card.locator("[data-role=status]")).to_have_text("dieffenbachia (expert)", timeout=15_000)
    assert home.evaluate("window.__noReload") == "still the same document"
    # It learned both changes by asking the server to wait for them, one request at a time.
    asked = [parse_qs(urlsplit(url).query) for url in watching.urls]
    assert asked and all(q["photos"][0].startswith(f"{photo_id}:") and float(q["wait"][0]) > 0 for q in asked), asked
    assert {q["photos"][0] for q in asked} >= {f"{photo_id}:queued", f"{photo_id}:needs_review"}
    assert watching.most_at_once == 1
    assert navigations == []
    home.screenshot(path="/tmp/e2e-home-decided.png", full_page=True)
    assert problems == []
