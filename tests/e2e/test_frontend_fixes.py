"""The pages' script where the reviewer found it wanting: which photos the watcher asks about,
how it waits out a failing server, what it says when the session is gone, the photo page kept
up to date, status words as the server writes them, one submission per form, drops beside the
drop zone, uploads that show up at once, three at a time, and wait out the upload limit.

No Celery worker: the server's answers that are hard to cause (a 503, a 401, a 429, a proxy's
host) are given by page.route; everything else is the live server's."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from classifier.models import TrainingRun
from labeling.models import Photo, ReviewDecision
from tests.factories import LabelFactory, PhotoFactory, jpeg_bytes

from .test_browser import log_in, logged_in_page, open_page
from .test_browser_fixes import review_page

pytestmark = [pytest.mark.integration, pytest.mark.browser]

WAIT_MS = 15_000
UPDATES = "/api/v1/photos/updates/"
UPLOADS = re.compile(r"/api/v1/(photos|imports)/$")


def page_as(browser, problems, base_url, username, path="/", expected_errors=()):
    page = open_page(browser, problems, expected_errors=expected_errors)
    log_in(page, base_url, username)
    if path != "/":
        page.goto(f"{base_url}{path}")
    return page


def photo_files(tmp_path, count):
    files = []
    for i in range(count):
        files.append(tmp_path / f"plant-{i}.jpg")
        files[-1].write_bytes(jpeg_bytes(colour=(10 + 40 * i, 120, 60)))
    return [str(f) for f in files]


def asked_photos(url):
    return re.search(r"photos=([^&]*)", url).group(1).split(",")


def hold_posts(page, pattern):
    """POSTs to `pattern` are held until the test lets them go (route.continue_())."""
    held = []
    page.route(pattern, lambda route: held.append(route) if route.request.method == "POST" else route.continue_())
    return held


def wait_until(page, condition, what, timeout_ms=WAIT_MS):
    deadline = time.monotonic() + timeout_ms / 1000
    while not condition():
        assert time.monotonic() < deadline, what
        page.wait_for_timeout(50)


# --- 1. A new upload is asked about first -------------------------------------------------------


# Records each ask of the watcher with the photo being predicted on the page when it was sent.
RECORD_ASKS = """() => {
  window.__asks = [];
  const send = window.fetch;
  window.fetch = (url, options) => {
    if (String(url).includes("/api/v1/photos/updates/")) {
      const queued = document.querySelector("#photo-list .photo-card[data-status=queued]");
      window.__asks.push([queued ? queued.dataset.photoId : null, String(url)]);
    }
    return send(url, options);
  };
}"""


def test_a_new_upload_is_asked_about_at_once_when_fifty_photos_already_await_an_expert(
        live_server, browser, member, tmp_path):
    for _ in range(50):
        PhotoFactory(owner=member, status=Photo.Status.NEEDS_REVIEW)
    problems = []
    page = logged_in_page(browser, problems, live_server.url, "member")
    expect(page.locator("#photo-list .photo-card")).to_have_count(50)
    page.evaluate(RECORD_ASKS)

    page.set_input_files("#id_image", photo_files(tmp_path, 1))
    new_card = page.locator("#photo-list .photo-card[data-status=queued]")
    expect(new_card).to_have_count(1, timeout=WAIT_MS)
    photo_id = new_card.get_attribute("data-photo-id")
    wait_until(page, lambda: any(new == photo_id for new, _ in page.evaluate("window.__asks")), "no ask since")
    # The ask its card's arrival set off; the old page asked about the 50 it had first, and about
    # this one only after their wait (up to 20 s).
    url = next(url for new, url in page.evaluate("window.__asks") if new == photo_id)
    assert f"{photo_id}:queued" in asked_photos(url) and len(asked_photos(url)) == 50, asked_photos(url)
    assert problems == []


# --- 2. The watcher backs off while the server fails -----------------------------------------


def test_the_photo_watcher_waits_longer_after_each_failure_honours_retry_after_and_recovers(
        live_server, browser, member):
    PhotoFactory(owner=member, status=Photo.Status.QUEUED)
    problems = []
    page = page_as(browser, problems, live_server.url, "member", expected_errors=(UPDATES,))
    answers = ["503", "abort", "abort", "unchanged", "abort"]  # then the real server
    sent = []

    def answer(route):
        sent.append(time.monotonic())
        what = answers.pop(0) if answers else None
        if what == "503":  # as labeling.middleware answers while the database is down
            route.fulfill(status=503, headers={"Retry-After": "2"}, content_type="application/json",
                          body=json.dumps({"detail": "The database is unavailable."}))
        elif what == "abort":
            route.abort()
        elif what == "unchanged":
            route.fulfill(status=200, content_type="application/json", body=json.dumps({"photos": [], "missing": []}))
        else:
            route.continue_()

    page.route(f"**{UPDATES}**", answer)
    page.reload()
    wait_until(page, lambda: len(sent) >= 6, f"{len(sent)} asks", timeout_ms=30_000)
    gaps = [later - earlier for earlier, later in zip(sent, sent[1:])]
    # Retry-After: 2 s; then 2 s and 4 s (doubling); after an answer the usual quick ask; after
    # the next failure 1 s again. The old page asked every 250 ms.
    assert gaps[0] >= 1.9 and 1.9 <= gaps[1] < 3.5 and gaps[2] >= 3.9, gaps
    assert gaps[3] < 0.9 and 0.9 <= gaps[4] < 1.9, gaps
    assert problems == []


# --- 3. The review form's hidden default button is hidden -------------------------------------


def test_the_review_forms_hidden_default_button_takes_no_space(live_server, browser, expert):
    problems = []
    page, _ = review_page(browser, problems, live_server.url, ["monstera", "spider_plant"])
    default = page.locator("#review-form > button[disabled][hidden]")
    expect(default).to_have_count(1)
    expect(default).to_be_hidden()
    assert problems == []


# --- 4. Status words as the server writes them --------------------------------------------------


# Each card's status as the server rendered it, and as the script renders the same photo from
# the API; whitespace collapsed.
LIVE_AND_SERVED = """async () => {
  const text = (el) => el.textContent.replace(/\\s+/g, " ").trim();
  const cards = [...document.querySelectorAll("#photo-list .photo-card")];
  return Promise.all(cards.map(async (card) => {
    const photo = await (await fetch(`/api/v1/photos/${card.dataset.photoId}/`)).json();
    return [text(card.querySelector("[data-role=status]")), text(photoCard(photo).querySelector("[data-role=status]"))];
  }));
}"""


def test_a_status_rendered_live_reads_as_the_server_renders_it_for_every_decider(live_server, browser, member):
    fern = LabelFactory(name="fern")
    now = timezone.now()
    for decided_by in Photo.DecidedBy.values:
        PhotoFactory(owner=member, status=Photo.Status.FINAL, final_label=fern, decided_by=decided_by, decided_at=now)
        PhotoFactory(owner=member, status=Photo.Status.REJECTED, decided_by=decided_by, decided_at=now)
    for status in (Photo.Status.QUEUED, Photo.Status.NEEDS_REVIEW, Photo.Status.FAILED):
        PhotoFactory(owner=member, status=status)
    problems = []
    page = logged_in_page(browser, problems, live_server.url, "member")
    pairs = page.evaluate(LIVE_AND_SERVED)
    assert len(pairs) == 2 * len(Photo.DecidedBy.values) + 3
    assert [served for served, live in pairs if served != live] == [], pairs
    served = {served for served, _ in pairs}
    assert {"fern (one labeller)", "Rejected by a labeller", "fern (imported)", "Rejected by labellers"} <= served
    assert problems == []


# --- 5. One submission per form ---------------------------------------------------------------


def _correction_form(base_url, browser, problems, expert):
    LabelFactory(name="fern")
    photo = PhotoFactory(status=Photo.Status.FINAL, final_label=LabelFactory(name="monstera"), decided_by="expert",
                         decided_at=timezone.now())
    page = logged_in_page(browser, problems, base_url, "expert", f"/photos/{photo.pk}/history/")
    page.select_option("#correct-form select[name=label]", "fern")
    page.fill("#correct-form input[name=reason]", "a fern")
    return page, "#correct-form button[type=submit]", f"/photos/{photo.pk}/correct/", \
        lambda: ReviewDecision.objects.filter(photo=photo).count()


def _training_form(base_url, browser, problems, staff):
    page = logged_in_page(browser, problems, base_url, "staff", "/training/")
    return page, "#training-form button[type=submit]", "/training/", lambda: TrainingRun.objects.count()


@pytest.mark.parametrize("form, user", [(_correction_form, "expert"), (_training_form, "staff")])
def test_a_second_click_while_the_form_is_being_sent_sends_nothing(live_server, browser, request, form, user):
    problems = []
    page, button, action, saved = form(live_server.url, browser, problems, request.getfixturevalue(user))
    held = hold_posts(page, f"**{action}")  # a slow answer: the user clicks again meanwhile
    # 300 ms after the first submission, a second click, then the form sent by other means than
    # its button (the Enter key): from the page itself, as the test cannot act during the
    # navigation.
    page.evaluate("""(selector) => {
      const button = document.querySelector(selector);
      button.form.addEventListener("submit", () => setTimeout(() => {
        button.click();
        button.form.requestSubmit();
      }, 300), { once: true });
    }""", button)
    page.click(button, no_wait_after=True)
    wait_until(page, lambda: len(held) == 1, "the form was not sent")
    page.wait_for_timeout(800)
    assert len(held) == 1  # the old page sent it again, and showed the second answer's refusal

    with page.expect_navigation():
        held.pop().continue_()
    assert saved() == 1
    assert page.locator("p.message.error:visible, p.message.warning:visible").all_inner_texts() == []
    assert problems == []


# --- 6. Drops beside the drop zone, and leaving while uploading -----------------------------


DROP_BESIDE_THE_ZONE = """() => {
  const data = new DataTransfer();
  data.items.add(new File(["x"], "plant.jpg", { type: "image/jpeg" }));
  const target = document.querySelector("h1");
  return ["dragover", "drop"].map((type) => {
    const event = new DragEvent(type, { bubbles: true, cancelable: true, dataTransfer: data });
    target.dispatchEvent(event);
    return event.defaultPrevented;
  });
}"""

LEAVING_IS_QUESTIONED = """() => {
  const event = new Event("beforeunload", { cancelable: true });
  window.dispatchEvent(event);
  return event.defaultPrevented;
}"""


@pytest.mark.parametrize("user, path, file_input, done", [
    ("member", "/", "#id_image", "#photo-list .photo-card"),
    ("staff", "/import/", "#bulk-files", "#bulk-results [data-result=accepted]"),
])
def test_a_drop_beside_the_zone_is_ignored_and_leaving_during_an_upload_is_questioned(
        live_server, browser, request, tmp_path, user, path, file_input, done):
    request.getfixturevalue(user)
    problems = []
    page = page_as(browser, problems, live_server.url, user, path)
    # The browser would open a file dropped where nothing takes it, in place of the page.
    assert page.evaluate(DROP_BESIDE_THE_ZONE) == [True, True]
    assert page.evaluate(LEAVING_IS_QUESTIONED) is False

    held = hold_posts(page, UPLOADS)
    page.set_input_files(file_input, photo_files(tmp_path, 1))
    wait_until(page, lambda: len(held) == 1, "the upload was not sent")
    assert page.evaluate(LEAVING_IS_QUESTIONED) is True

    held.pop().continue_()
    expect(page.locator(done)).to_have_count(1, timeout=WAIT_MS)
    assert page.evaluate(LEAVING_IS_QUESTIONED) is False
    assert problems == []


# --- 7. A logged-out page says so -------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/photos/{id}/"])
def test_a_page_whose_session_ended_says_so_instead_of_going_quiet(live_server, browser, member, path):
    photo = PhotoFactory(owner=member, status=Photo.Status.QUEUED)
    problems = []
    page = page_as(browser, problems, live_server.url, "member", expected_errors=(UPDATES,))
    # As DRF answers a request whose session has expired.
    page.route(f"**{UPDATES}**", lambda route: route.fulfill(
        status=401, headers={"WWW-Authenticate": "Token"}, content_type="application/json",
        body=json.dumps({"detail": "Authentication credentials were not provided."})))
    page.goto(live_server.url + path.format(id=photo.pk))
    error = page.locator("#watch-error[role=alert]")
    expect(error).to_have_text("You are logged out: log in again and reload this page.", timeout=WAIT_MS)
    expect(error).to_be_visible()
    assert problems == []


# --- 8. The photo page as the photo changes -------------------------------------------------


def test_the_photo_page_offers_predict_again_when_the_photo_fails_while_open(live_server, browser, member):
    photo = PhotoFactory(owner=member, status=Photo.Status.QUEUED)
    problems = []
    page = logged_in_page(browser, problems, live_server.url, "member", f"/photos/{photo.pk}/")
    retry = page.locator("[data-role=retry]")
    expect(retry).to_be_hidden()

    Photo.objects.filter(pk=photo.pk).update(status=Photo.Status.FAILED, reason="The file is not an image.")
    expect(page.locator("[data-role=status]")).to_have_text("Failed", timeout=WAIT_MS)
    expect(retry).to_be_visible()
    expect(page.locator("[data-role=reason]")).to_have_text("The file is not an image.")

    with page.expect_navigation():
        retry.click()
    expect(page.locator("p.message")).to_have_text(f"Photo {photo.pk} is queued for the model again.")
    assert Photo.objects.get(pk=photo.pk).status == Photo.Status.QUEUED
    assert problems == []


def test_the_photo_page_says_who_decided_when_an_expert_decides_while_open(live_server, browser, member, expert):
    photo = PhotoFactory(owner=member, status=Photo.Status.NEEDS_REVIEW)
    problems = []
    page = logged_in_page(browser, problems, live_server.url, "member", f"/photos/{photo.pk}/")
    decided = page.locator("[data-role=decided-by]")
    expect(decided).to_be_hidden()

    Photo.objects.filter(pk=photo.pk).update(status=Photo.Status.FINAL, final_label=LabelFactory(name="fern"),
                                             decided_by="expert", reviewed_by=expert, decided_at=timezone.now())
    expect(page.locator("[data-role=status]")).to_have_text("fern (expert)", timeout=WAIT_MS)
    expect(decided).to_be_visible()
    expect(decided).to_contain_text("Decided by expert at ")
    assert problems == []


# --- 9. Uploads show up at once, go three at a time, and wait out the upload limit ------------


def test_chosen_files_show_at_once_and_upload_three_at_a_time(live_server, browser, member, tmp_path):
    problems = []
    page = logged_in_page(browser, problems, live_server.url, "member")
    held = hold_posts(page, UPLOADS)
    page.set_input_files("#id_image", photo_files(tmp_path, 5))

    placeholders = page.locator("#photo-list .upload-card")
    expect(placeholders).to_have_count(5)
    expect(placeholders.filter(has_text="Uploading…")).to_have_count(3)
    wait_until(page, lambda: len(held) == 3, f"{len(held)} uploads sent")
    page.wait_for_timeout(300)
    assert len(held) == 3  # the old page sent all five at once

    held.pop(0).continue_()
    wait_until(page, lambda: len(held) == 3, "the fourth upload did not start when the first ended")
    expect(page.locator("#photo-list .photo-card")).to_have_count(1, timeout=WAIT_MS)
    while len(held) or placeholders.count():
        if held:
            held.pop(0).continue_()
        page.wait_for_timeout(50)
    expect(page.locator("#photo-list .photo-card")).to_have_count(5, timeout=WAIT_MS)
    assert problems == []


def test_an_upload_over_the_limit_is_sent_again_once_the_server_says_it_may(live_server, browser, member, tmp_path):
    problems = []
    page = page_as(browser, problems, live_server.url, "member", expected_errors=("/api/v1/photos/",))
    sent = []

    def answer(route):
        if route.request.method != "POST":
            return route.continue_()
        sent.append(time.monotonic())
        if len(sent) > 1:
            return route.continue_()
        route.fulfill(status=429, headers={"Retry-After": "2"}, content_type="application/json",
                      body=json.dumps({"detail": "Too many uploads: at most 120/min. Try again in 2 s."}))

    page.route(UPLOADS, answer)
    page.set_input_files("#id_image", photo_files(tmp_path, 1))
    expect(page.locator("#photo-list .upload-card")).to_contain_text("Too many uploads: trying again in 2 s…")
    expect(page.locator("#photo-list .photo-card")).to_have_count(1, timeout=WAIT_MS)
    assert len(sent) == 2 and sent[1] - sent[0] >= 1.9, sent
    expect(page.locator("#photo-list .upload-card")).to_have_count(0)
    expect(page.locator("#upload-error")).to_be_hidden()
    assert problems == []


# --- 10. Cards built by the script load their image from this site --------------------------


def test_an_uploaded_photos_card_loads_its_image_from_the_pages_own_host(
        live_server, browser, member, tmp_path, api_as):
    problems = []
    page = logged_in_page(browser, problems, live_server.url, "member")
    files = photo_files(tmp_path, 1)
    rewritten = []

    def behind_a_proxy(route):
        if route.request.method != "POST":
            return route.continue_()
        # The server's own answer to this upload (route.fetch() cannot resend a multipart body),
        # with its absolute URL naming the host a proxy forwards to, as behind one that rewrites Host.
        answer = api_as(member).upload(Path(files[0]))
        body = answer.json()
        body["image_url"] = body["image_url"].replace(live_server.url, "http://backend.invalid:8000")
        rewritten.append(body["image_url"])
        route.fulfill(status=answer.status_code, json=body)

    page.route(UPLOADS, behind_a_proxy)
    page.set_input_files("#id_image", files)
    image = page.locator("#photo-list .photo-card img")
    expect(image).to_have_count(1, timeout=WAIT_MS)
    assert rewritten[0].startswith("http://backend.invalid:8000/"), rewritten
    assert image.get_attribute("src").startswith("/"), image.get_attribute("src")
    wait_until(page, lambda: image.evaluate("img => img.complete && img.naturalWidth > 0"), "the image did not load")
    # Its status is announced to screen readers when the result arrives, as a served card's is.
    assert page.locator("#photo-list .photo-card [data-role=status]").get_attribute("aria-live") == "polite"
    assert problems == []


# --- A page in a background tab asks the server nothing ---------------------------------------


def set_visibility(page, state):
    """What the browser does when the tab is hidden or shown again."""
    page.evaluate("""(state) => {
      Object.defineProperty(document, "visibilityState", {value: state, configurable: true});
      document.dispatchEvent(new Event("visibilitychange"));
    }""", state)


def test_the_training_page_asks_nothing_while_its_tab_is_hidden_and_at_once_when_shown(live_server, browser, staff):
    from .test_browser_fixes import RunRequests, running_run, wait_for_answers

    run = running_run()
    problems = []
    page = page_as(browser, problems, live_server.url, "staff")
    requests = RunRequests(page)
    page.goto(f"{live_server.url}/training/{run.id}/")
    wait_for_answers(page, requests, 2)  # asking every second

    set_visibility(page, "hidden")
    page.wait_for_timeout(1500)  # the ask in flight, or its pause, ends
    asked = len(requests.sent)
    page.wait_for_timeout(3000)
    assert len(requests.sent) == asked  # the old page asked three more times

    TrainingRun.objects.filter(id=run.id).update(epoch=2)
    set_visibility(page, "visible")
    expect(page.locator("#training-run [data-role=epoch]")).to_have_text("2", timeout=2000)
    assert problems == []


def test_the_photo_watcher_asks_nothing_while_its_tab_is_hidden(live_server, browser, member):
    photo = PhotoFactory(owner=member, status=Photo.Status.QUEUED)
    problems = []
    page = page_as(browser, problems, live_server.url, "member")
    asks = []
    page.on("request", lambda r: asks.append(time.monotonic()) if UPDATES in r.url else None)
    page.reload()
    wait_until(page, lambda: len(asks) >= 2, "the watcher asking")

    set_visibility(page, "hidden")
    page.wait_for_timeout(2500)  # the ask in flight ends (the server answers a queued photo's within 2 s)
    asked = len(asks)
    page.wait_for_timeout(3000)
    assert len(asks) == asked

    Photo.objects.filter(id=photo.id).update(status=Photo.Status.NEEDS_REVIEW)
    set_visibility(page, "visible")
    expect(page.locator(f".photo-card[data-photo-id='{photo.id}'] [data-role=status]")).to_have_text(
        "Awaiting expert", timeout=5000)
    assert problems == []


def test_a_page_with_many_photos_in_flight_asks_about_them_in_one_request_when_it_loads(
        live_server, browser, member):
    # Each card's watch used to cut the request the previous card had just sent: a page of 50
    # photos awaiting a result opened with 50 requests, 49 of them aborted.
    for _ in range(10):
        PhotoFactory(owner=member, status=Photo.Status.NEEDS_REVIEW)
    problems = []
    page = page_as(browser, problems, live_server.url, "member", path="/team/")  # a page that watches nothing
    sent, failed = [], []
    page.on("request", lambda r: sent.append(r.url) if UPDATES in r.url else None)
    page.on("requestfailed", lambda r: failed.append(r.url) if UPDATES in r.url else None)
    page.goto(f"{live_server.url}/")
    page.wait_for_timeout(1500)

    assert failed == []
    assert len(sent) == 1 and len(asked_photos(sent[0])) == 10, sent
    assert problems == []
