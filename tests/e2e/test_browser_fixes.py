"""The pages' JavaScript where a server answer or a key press is out of the ordinary: the training
page's polling (a deleted run, a logout, lost admin rights, a failing server), what it keeps up to date, the loss
curve's edge cases, the home page's refused uploads and the review page's keys."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

from classifier.models import TrainingRun
from labeling.models import Photo, ReviewDecision
from tests.factories import LabelFactory, PhotoFactory, jpeg_bytes

from .test_browser import log_in, logged_in_page, open_page

pytestmark = [pytest.mark.integration, pytest.mark.browser]

WAIT_MS = 15_000
RUN_API = re.compile(r"/api/v1/training-runs/\d+/$")


class RunRequests:
    """The training page's GETs of its run: when each was sent (time.monotonic) and each status."""

    def __init__(self, page):
        self.sent, self.statuses = [], []
        page.on("request", lambda r: RUN_API.search(r.url) and self.sent.append(time.monotonic()))
        page.on("response", lambda r: RUN_API.search(r.url) and self.statuses.append(r.status))


def wait_for_answers(page, requests, count):
    """Let the page's polling get `count` answers (a bounded wait, not a timed assertion)."""
    deadline = time.monotonic() + WAIT_MS / 1000 * 4
    while len(requests.statuses) < count:
        assert time.monotonic() < deadline, f"{len(requests.statuses)} answers, {count} wanted"
        page.wait_for_timeout(100)


def running_run():
    return TrainingRun.objects.create(status="running", total_epochs=3, options={"epochs": 3})


def finished_run(history):
    return TrainingRun.objects.create(status="succeeded", holds_slot=None, total_epochs=len(history),
                                      options={}, history=history)


# --- 1. The training page stops asking when asking again cannot help, and backs off otherwise --


def _delete_the_run(run, page, staff):
    run.delete()  # an admin deleted it in /admin/ meanwhile


def _log_out(run, page, staff):
    page.context.clear_cookies()  # logged out in another tab, or the session expired


def _take_staff_away(run, page, staff):
    staff.is_staff = False
    staff.save(update_fields=["is_staff"])


@pytest.mark.parametrize("change, status, message", [
    (_delete_the_run, 404, "This run no longer exists."),
    (_log_out, 401, "You are logged out: reload the page after logging in."),
    (_take_staff_away, 403, "You are no longer allowed to see this run: reload the page after logging in as an admin."),
])
def test_the_training_page_says_why_and_stops_asking_when_asking_again_cannot_help(live_server, browser, staff,
                                                                                   change, status, message):
    run = running_run()
    problems = []
    page = logged_in_page(browser, problems, live_server.url, "staff", "/")
    requests = RunRequests(page)
    page.goto(f"{live_server.url}/training/{run.id}/")
    wait_for_answers(page, requests, 1)
    change(run, page, staff)

    expect(page.locator("#training-run [data-role=error]")).to_have_text(message, timeout=WAIT_MS)
    expect(page.locator("#training-run [data-role=error]")).to_be_visible()
    page.wait_for_timeout(3000)  # the old page asked again every second
    assert requests.statuses.count(status) == 1, requests.statuses
    assert requests.statuses[-1] == status, requests.statuses
    assert [p for p in problems if f"HTTP {status}" not in p] == []


def test_the_training_page_asks_less_and_less_often_while_the_server_fails_then_carries_on(
        live_server, browser, staff):
    run = running_run()
    problems = []
    page = logged_in_page(browser, problems, live_server.url, "staff", "/")
    requests = RunRequests(page)
    failures = ["abort", "503"]  # a network failure, then a server error, then the server is back

    def answer(route):
        if not failures:
            route.continue_()
        elif failures.pop(0) == "abort":
            route.abort()
        else:
            route.fulfill(status=503, body="down for maintenance")

    page.route(RUN_API, answer)
    page.goto(f"{live_server.url}/training/{run.id}/")
    wait_for_answers(page, requests, 2)  # the 503 and the first real answer (the abort has none)
    gaps = [later - earlier for earlier, later in zip(requests.sent, requests.sent[1:])]
    # 2 s, then 4 s (the old page: 1 s each); a pause is never shorter than asked for. The
    # page may have asked again since its first real answer: only the first two gaps back off.
    assert len(gaps) >= 2 and gaps[0] > 1.5 and gaps[1] > 3.5, gaps

    TrainingRun.objects.filter(id=run.id).update(epoch=2)
    expect(page.locator("#training-run [data-role=epoch]")).to_have_text("2", timeout=WAIT_MS)
    expect(page.locator("#training-run [data-role=error]")).to_be_hidden()


# --- 2 and 3. What the run's API says while the page is open ---------------------------------


def test_the_training_page_shows_the_total_epochs_the_run_reports(live_server, browser, staff):
    run = TrainingRun.objects.create(status="queued", total_epochs=3, options={"epochs": 3})
    problems = []
    page = logged_in_page(browser, problems, live_server.url, "staff", f"/training/{run.id}/")
    total = page.locator("#training-run [data-role=total-epochs]")
    expect(total).to_have_text("3")

    TrainingRun.objects.filter(id=run.id).update(status="running", total_epochs=5)
    expect(total).to_have_text("5", timeout=WAIT_MS)
    assert problems == []


# The training page's "Data:" and "Label sources:" lines, whitespace collapsed: of the page
# at `url` as the server renders it, or of the open page when url is null.
DATA_LINES = """async (url) => {
  const doc = url ? new DOMParser().parseFromString(await (await fetch(url)).text(), "text/html") : document;
  return [...doc.querySelectorAll("#training-run p.hint")].map((p) => p.textContent.replace(/\\s+/g, " ").trim())
    .filter((text) => /^(Data|Label sources):/.test(text));
}"""


def test_the_training_page_shows_the_data_frozen_when_the_run_starts_as_a_reload_would(
        live_server, browser, staff):
    run = TrainingRun.objects.create(status="queued", total_epochs=3, options={"epochs": 3})
    problems = []
    page = logged_in_page(browser, problems, live_server.url, "staff", f"/training/{run.id}/")
    data_line = page.locator("#training-run p.hint", has_text="Data:")
    sources_line = page.locator("#training-run [data-role=data-sources]")
    expect(data_line).to_have_text("Data: 0 photos, hash —")
    expect(sources_line).to_have_text("Label sources: human-verified only (model labels excluded).")

    TrainingRun.objects.filter(id=run.id).update(
        status="running", data=[[1, "monstera", False], [2, "monstera", True], [3, "fern", False]],
        data_hash="abc123", metrics={"data_sources": {"import": 2, "expert": 1}})
    expect(data_line).to_have_text("Data: 3 photos, hash abc123", timeout=WAIT_MS)
    expect(sources_line).to_have_text(
        "Label sources: human-verified only (model labels excluded): expert 1, import 2.", timeout=WAIT_MS)

    # Word for word what the server renders into a fresh page.
    live = page.evaluate(DATA_LINES, None)
    assert len(live) == 2 and page.evaluate(DATA_LINES, page.url) == live, live
    assert problems == []


# --- 4. The loss curve ------------------------------------------------------------------------


def curve_points(page):
    """Every point the curve draws, as (x, y): the lines' vertices and the markers."""
    return page.evaluate("""() => {
      const svg = document.querySelector("#training-run [data-role=loss-curve]");
      const vertices = [...svg.querySelectorAll("polyline")].flatMap((line) =>
        line.getAttribute("points").split(" ").map((p) => p.split(",").map(Number)));
      const markers = [...svg.querySelectorAll("circle")].map((c) => [+c.getAttribute("cx"), +c.getAttribute("cy")]);
      return { vertices, markers };
    }""")


def test_a_one_epoch_run_shows_a_visible_point_per_loss(live_server, browser, staff):
    run = finished_run([{"epoch": 1, "train_loss": 1.2, "valid_loss": 0.9, "error_rate": 0.3}])
    problems = []
    page = logged_in_page(browser, problems, live_server.url, "staff", f"/training/{run.id}/")
    markers = page.locator("#training-run [data-role=loss-curve] circle")
    expect(markers).to_have_count(2, timeout=WAIT_MS)
    expect(markers.first).to_be_visible()
    expect(markers.last).to_be_visible()
    assert problems == []


def test_a_diverged_epoch_breaks_the_loss_curve_instead_of_dropping_to_zero(live_server, browser, staff):
    run = finished_run([{"epoch": 1, "train_loss": 1.2, "valid_loss": 0.9},
                        {"epoch": 2, "train_loss": 1.0, "valid_loss": 0.8},
                        {"epoch": 3, "train_loss": None, "valid_loss": None},
                        {"epoch": 4, "train_loss": 0.9, "valid_loss": 0.7},
                        {"epoch": 5, "train_loss": 0.8, "valid_loss": 0.6}])
    problems = []
    page = logged_in_page(browser, problems, live_server.url, "staff", f"/training/{run.id}/")
    curve = page.locator("#training-run [data-role=loss-curve]")
    # Epochs 1-2 and 4-5 of each series: two lines each, and a marker per number.
    expect(curve.locator("polyline")).to_have_count(4, timeout=WAIT_MS)
    expect(curve.locator("circle")).to_have_count(8)
    points = curve_points(page)
    zero_y = 140  # where a loss of 0 would be drawn
    assert all(y < zero_y - 10 for _, y in points["vertices"] + points["markers"]), points
    epoch_3_x = 10 + 380 * 2 / 4
    assert all(x != epoch_3_x for x, _ in points["vertices"] + points["markers"]), points
    assert problems == []


# --- 5. Home page uploads -------------------------------------------------------------------


def member_home(browser, problems, base_url):
    page = open_page(browser, problems, expected_errors=("/api/v1/photos/",))
    log_in(page, base_url, "member")
    return page


def test_an_upload_the_network_drops_says_so(live_server, browser, member, tmp_path):
    problems = []
    page = member_home(browser, problems, live_server.url)
    page.route("**/api/v1/photos/", lambda route: route.abort() if route.request.method == "POST" else route.continue_())
    photo = tmp_path / "fern.jpg"
    photo.write_bytes(jpeg_bytes())
    page.set_input_files("#id_image", str(photo))

    expect(page.locator("#upload-error")).to_have_text("fern.jpg: network error, not uploaded.", timeout=WAIT_MS)
    expect(page.locator("#upload-error")).to_be_visible()
    expect(page.locator("#photo-list .photo-card")).to_have_count(0)
    assert problems == []


def test_every_refused_upload_of_a_batch_is_listed_until_the_next_batch(live_server, browser, member, tmp_path):
    problems = []
    page = member_home(browser, problems, live_server.url)
    files = []
    for name in ("first.jpg", "second.jpg", "third.jpg"):
        files.append(tmp_path / name)
        files[-1].write_bytes(b"not an image")
    lines = page.locator("#upload-error > *")

    page.set_input_files("#id_image", [str(files[0]), str(files[1])])
    expect(lines).to_have_count(2, timeout=WAIT_MS)
    assert sorted(text.split(":")[0] for text in lines.all_inner_texts()) == ["first.jpg", "second.jpg"]

    page.set_input_files("#id_image", str(files[2]))  # a new batch: the old refusals go
    expect(lines).to_have_count(1, timeout=WAIT_MS)
    expect(lines).to_contain_text("third.jpg: ")
    assert problems == []


# --- 6. Review page keys ----------------------------------------------------------------------


def review_page(browser, problems, base_url, label_names):
    for name in label_names:
        LabelFactory(name=name)
    photo = PhotoFactory(status=Photo.Status.NEEDS_REVIEW, review_kind="uncertain")
    page = logged_in_page(browser, problems, base_url, "expert", f"/review/{photo.id}/")
    expect(page.locator("#review-form")).to_be_visible()
    return page, photo


def test_a_key_that_is_no_css_identifier_on_the_review_page_is_ignored(live_server, browser, expert):
    problems = []
    page, photo = review_page(browser, problems, live_server.url, ["monstera", "spider_plant"])
    page.keyboard.press('"')
    page.keyboard.press("\\")
    with page.expect_navigation():
        page.keyboard.press("1")  # the keys still work afterwards
    assert ReviewDecision.objects.filter(photo=photo).count() == 1
    assert problems == []


def test_the_review_page_offers_keys_for_the_first_nine_labels_only(live_server, browser, expert):
    problems = []
    page, _ = review_page(browser, problems, live_server.url, [f"plant_{i:02}" for i in range(1, 12)])
    buttons = page.locator("#review-form button[name=label]")
    expect(buttons).to_have_count(11)
    for i in range(9):
        assert buttons.nth(i).get_attribute("data-key") == str(i + 1)
        expect(buttons.nth(i).locator("kbd")).to_have_text(str(i + 1))
    for i in (9, 10):
        assert buttons.nth(i).get_attribute("data-key") is None
        expect(buttons.nth(i).locator("kbd")).to_have_count(0)
    assert problems == []
