"""The pages added on 2026-12-02, driven in Chromium: older photos a page away, deleting an
upload by mistake, and changing one's password; none with a script error or a refused request."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from labeling.models import Photo
from tests.factories import PhotoFactory

from .test_browser import PASSWORD, logged_in_page, open_page

pytestmark = [pytest.mark.integration, pytest.mark.browser]


def test_a_member_pages_back_to_an_old_photo_and_deletes_it(live_server, browser, member, tmp_path):
    oldest = PhotoFactory(owner=member, status=Photo.Status.FINAL)
    for _ in range(50):
        PhotoFactory(owner=member, status=Photo.Status.FINAL)
    problems = []
    page = logged_in_page(browser, problems, live_server.url, "member")
    expect(page.locator("[data-role=photo-count]")).to_have_text("51 photos, page 1 of 2")
    expect(page.locator(f"#photo-list [data-photo-id='{oldest.id}']")).to_have_count(0)

    page.click("text=Older photos")
    page.click(f"#photo-list [data-photo-id='{oldest.id}'] a")
    page.click("[data-role=delete]")
    page.screenshot(path=str(tmp_path / "delete.png"), full_page=True)
    with page.expect_navigation():
        page.click(f"button:has-text('Delete photo {oldest.id}')")

    assert page.url == f"{live_server.url}/"
    expect(page.locator("main .message.success")).to_have_text(f"Photo {oldest.id} is deleted.")
    expect(page.locator("[data-role=photo-count]")).to_have_text("50 photos")
    assert not Photo.objects.filter(id=oldest.id).exists()
    assert problems == []


def test_a_member_changes_their_password_and_logs_in_with_it(live_server, browser, member):
    problems = []
    page = logged_in_page(browser, problems, live_server.url, "member")
    page.click("header nav >> text=Password")
    page.fill("#id_old_password", PASSWORD)
    page.fill("#id_new_password1", "a-new-long-passphrase-42")
    page.fill("#id_new_password2", "a-new-long-passphrase-42")
    with page.expect_navigation():
        page.click("button:has-text('Change password')")
    expect(page.locator("main .message.success")).to_contain_text("Your password is changed")

    again = open_page(browser, problems)
    again.goto(f"{live_server.url}/login/")
    again.fill("#id_username", "member")
    again.fill("#id_password", "a-new-long-passphrase-42")
    with again.expect_navigation():
        again.click("form.card button[type=submit]")
    assert again.url == f"{live_server.url}/"
    assert problems == []


def test_an_expert_finds_one_labels_photos_on_the_page_of_every_photo(live_server, browser, member, expert):
    from tests.factories import LabelFactory

    monstera, fern = LabelFactory(name="monstera"), LabelFactory(name="fern")
    ferns = [PhotoFactory(owner=member, status=Photo.Status.FINAL, final_label=fern) for _ in range(2)]
    PhotoFactory(owner=member, status=Photo.Status.FINAL, final_label=monstera)
    PhotoFactory(owner=member, status=Photo.Status.QUEUED)
    problems = []
    page = logged_in_page(browser, problems, live_server.url, "expert")
    page.click("header nav >> text=All photos")
    expect(page.locator("[data-role=photo-count]")).to_have_text("4 photos")

    page.select_option("#id_label", "fern")
    with page.expect_navigation():
        page.click("#photo-filter button")

    expect(page.locator("[data-role=photo-count]")).to_have_text("2 photos")
    assert sorted(int(i) for i in page.locator("#photo-list .photo-card").evaluate_all(
        "cards => cards.map(c => c.dataset.photoId)")) == sorted(p.id for p in ferns)
    assert problems == []
