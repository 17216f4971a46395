"""The shared labelling workspace in headless Chromium: two members label with the keyboard only,
they disagree on one photo, and an expert adjudicates it on the review page seeing both votes.
Then an admin bulk-uploads files, each with its own progress bar and result."""

from __future__ import annotations

import hashlib

import pytest
from playwright.sync_api import expect

from labeling.models import LabelVote, Photo
from tests.factories import LabelFactory, ModelVersionFactory, PhotoFactory, PredictionFactory, jpeg_bytes
from tests.paths import FLOWERS as FLOWERS_DIR

from .test_browser import log_in, open_page


pytestmark = [pytest.mark.browser]

FLOWERS = sorted((FLOWERS_DIR / "tulips").glob("*.jpg"))[:2]


def press(page, key):
    """One key, and the page it leads to."""
    with page.expect_navigation():
        page.keyboard.press(key)


def shown_photo(page) -> int:
    return int(page.locator("#labelling").get_attribute("data-photo-id"))


def uncertain_photo(margin):
    photo = PhotoFactory(status=Photo.Status.NEEDS_REVIEW, review_kind=Photo.ReviewKind.UNCERTAIN,
                         reason="The model is 55% sure, below the 80% threshold: an expert will decide.")
    PredictionFactory(photo=photo, margin=margin, label=LabelFactory(name="monstera"),
                      model_version=ModelVersionFactory(), probabilities={"monstera": 0.55, "spider_plant": 0.45})
    return photo


def test_two_members_label_by_keyboard_and_an_expert_adjudicates_their_disagreement(
        live_server, browser, member, other_member, expert):
    LabelFactory(name="monstera")
    LabelFactory(name="spider_plant")
    LabelFactory(name="old_fern", retired=True)
    first, second = uncertain_photo(0.05), uncertain_photo(0.30)
    base = live_server.url
    problems = []

    ann = open_page(browser, problems)
    log_in(ann, base, "member")
    ann.goto(f"{base}/label/")
    assert ann.evaluate("typeof setUpLabellingKeys") == "function"
    assert shown_photo(ann) == first.id  # the least sure first
    expect(ann.locator("#labelling-form button[data-key='1']")).to_contain_text("monstera")
    expect(ann.locator("#labelling-form button[data-key='2']")).to_contain_text("spider_plant")
    expect(ann.locator("#labelling-form")).not_to_contain_text("old_fern")  # retired
    # Blind: no guess, no probabilities, no reason mentioning the model.
    expect(ann.locator("[data-role=model-guess]")).to_have_count(0)
    expect(ann.locator("main")).not_to_contain_text("55%")
    expect(ann.locator("meter")).to_have_count(0)
    assert ann.evaluate("document.getElementById('labelling-photo').naturalWidth") > 0
    ann.screenshot(path="/tmp/e2e-labelling.png", full_page=True)

    press(ann, "s")  # skip: the other photo
    assert shown_photo(ann) == second.id

    bob = open_page(browser, problems)
    log_in(bob, base, "other")
    bob.goto(f"{base}/label/")
    assert shown_photo(bob) == first.id  # released by the skip; the second is ann's now

    press(ann, "1")  # ann: second is monstera
    expect(ann.locator("p.message")).to_have_text(f"Saved: monstera for photo {second.id}.")
    press(bob, "2")  # bob: first is spider_plant
    assert shown_photo(bob) == second.id
    assert shown_photo(ann) == first.id  # she skipped it, but nothing else is left for her

    press(ann, "2")  # ann: first is spider_plant too → consensus
    expect(ann.locator("#nothing-to-label")).to_be_visible()
    press(bob, "x")  # bob: second is not a plant → ann said monstera: they disagree
    expect(bob.locator("#nothing-to-label")).to_be_visible()
    bob.screenshot(path="/tmp/e2e-labelling-done.png", full_page=True)

    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, first.final_label.name, first.label_source, first.decided_by) == (
        "final", "spider_plant", "consensus", "consensus")
    assert (second.status, second.review_kind) == ("needs_review", "adjudication")
    assert LabelVote.objects.count() == 4

    review = open_page(browser, problems)
    log_in(review, base, "expert")
    review.goto(f"{base}/review/{second.id}/")
    votes = review.locator("#votes")
    expect(votes).to_contain_text("they disagreed")
    expect(votes.locator("tr[data-labeller='member'] [data-role=vote-label]")).to_have_text("monstera")
    expect(votes.locator("tr[data-labeller='other'] [data-role=vote-label]")).to_have_text("not a plant / unusable")
    expect(review.locator("#review-form")).not_to_contain_text("old_fern")
    review.screenshot(path="/tmp/e2e-adjudication.png", full_page=True)

    with review.expect_navigation():
        review.keyboard.press("1")

    second.refresh_from_db()
    assert (second.status, second.final_label.name, second.label_source, second.reviewed_by) == (
        "final", "monstera", "expert", expert)
    assert second.decisions.get().kind == "adjudication"

    review.goto(f"{base}/team/")
    expect(review.locator("#team-labellers tr[data-labeller='member']")).to_contain_text("2")
    expect(review.locator("#team-labellers tr[data-labeller='other']")).to_be_visible()
    assert problems == []


def test_an_admin_bulk_uploads_files_each_with_its_own_progress_and_result(live_server, browser, staff, tmp_path):
    LabelFactory(name="tulip")
    existing = tmp_path / "already.jpg"
    existing.write_bytes(jpeg_bytes(colour=(200, 30, 30)))
    stored = PhotoFactory(sha256=hashlib.sha256(existing.read_bytes()).hexdigest())
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"this is not an image")
    files = [str(p) for p in FLOWERS] + [str(existing), str(broken)]
    base = live_server.url
    problems = []

    page = open_page(browser, problems, expected_errors=("/api/v1/imports/",))  # the refused file
    log_in(page, base, "staff")
    page.goto(f"{base}/import/")
    page.select_option("#bulk-label", "tulip")
    page.set_input_files("#bulk-files", files)

    expect(page.locator("#bulk-summary")).to_have_attribute("data-done", "1", timeout=30_000)
    items = page.locator("#bulk-results li.bulk-item")
    expect(items).to_have_count(4)
    results = {items.nth(i).locator(".bulk-name").inner_text(): items.nth(i).get_attribute("data-result")
               for i in range(4)}
    assert results == {FLOWERS[0].name: "accepted", FLOWERS[1].name: "accepted", "already.jpg": "duplicate",
                       "broken.jpg": "refused"}
    assert all(items.nth(i).locator("progress").evaluate("p => p.value") == 1 for i in range(4))
    expect(page.locator("#bulk-results li[data-result=refused]")).to_contain_text(
        "refused: Unsupported file type")
    expect(page.locator("#bulk-results li[data-result=duplicate]")).to_contain_text(f"duplicate of photo {stored.id}")
    expect(page.locator("#bulk-summary")).to_have_text("2 accepted, 1 duplicate, 1 refused.")
    page.screenshot(path="/tmp/e2e-bulk-upload.png", full_page=True)
    assert sorted(Photo.objects.filter(final_label__name="tulip").values_list("label_source", flat=True)) == [
        "import", "import"]
    assert problems == []
