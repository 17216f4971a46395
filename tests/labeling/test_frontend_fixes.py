"""What the pages render for their script and their readers: the photo page's retry form and
decision line, the alert region for a stopped watcher, the file inputs' names, the CSRF failure
page and the cleaner's way back to its row. The script's behaviour is tested in a browser
(tests/e2e/test_frontend_fixes.py)."""

import re

import pytest
from django.test import Client
from django.utils import timezone

from classifier.models import PhotoLoss
from labeling.middleware import SecurityHeadersMiddleware
from labeling.models import Photo
from tests.factories import LabelFactory, ModelVersionFactory, PhotoFactory


def client_for(user):
    client = Client()
    client.force_login(user)
    return client


def tag(html, pattern):
    """The one opening tag matching `pattern` (a regex inside the tag)."""
    found = re.findall(rf"<[^>]*{pattern}[^>]*>", html)
    assert len(found) == 1, found
    return found[0]


# --- 8. the photo page: what its script needs to add "Predict again" and "Decided by" ------------


@pytest.mark.django_db
@pytest.mark.parametrize("status", ["queued", "needs_review", "failed"])
def test_the_photo_page_tells_its_script_where_to_retry_the_photo_whatever_its_status(member, status):
    photo = PhotoFactory(owner=member, status=status)
    html = client_for(member).get(f"/photos/{photo.pk}/").content.decode()
    assert f'data-retry-url="/photos/{photo.pk}/retry/"' in tag(html, f'data-photo-id="{photo.pk}"')
    assert ('data-role="retry-form"' in html) is (status == "failed")


@pytest.mark.django_db
def test_the_photo_page_has_a_hidden_decided_by_line_until_a_person_decides(member, expert):
    photo = PhotoFactory(owner=member, status=Photo.Status.QUEUED)
    page = client_for(member)
    assert " hidden" in tag(page.get(f"/photos/{photo.pk}/").content.decode(), 'data-role="decided-by"')

    Photo.objects.filter(pk=photo.pk).update(status=Photo.Status.FINAL, final_label=LabelFactory(name="fern"),
                                             decided_by="expert", reviewed_by=expert, decided_at=timezone.now())
    html = page.get(f"/photos/{photo.pk}/").content.decode()
    assert " hidden" not in tag(html, 'data-role="decided-by"')
    assert '<span data-role="reviewer">expert</span>' in html


# --- 7. an alert region for "you are logged out" ------------------------------------------------


@pytest.mark.django_db
def test_the_home_and_photo_pages_have_an_alert_region_for_a_stopped_watcher(member):
    photo = PhotoFactory(owner=member)
    page = client_for(member)
    for path in ("/", f"/photos/{photo.pk}/"):
        region = tag(page.get(path).content.decode(), 'id="watch-error"')
        assert 'role="alert"' in region, path


# --- 11. labels, the CSRF failure page, the cleaner's way back ------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("path, user", [("/", "member"), ("/import/", "staff")])
def test_the_upload_file_inputs_are_named_for_screen_readers(request, path, user):
    html = client_for(request.getfixturevalue(user)).get(path).content.decode()
    assert 'aria-label="Photos to upload"' in tag(html, 'type="file"')


@pytest.mark.django_db
def test_a_form_failing_its_csrf_check_gets_the_sites_own_page_under_its_csp(member):
    client = Client(enforce_csrf_checks=True)
    client.force_login(member)
    response = client.post("/logout/")
    assert response.status_code == 403
    html = response.content.decode()
    assert "Your form had expired or came from another page: go back, reload and try again." in html
    assert "/static/plantsite.css" in html and "<style" not in html and " style=" not in html
    assert response["Content-Security-Policy"] == SecurityHeadersMiddleware.POLICY


@pytest.mark.django_db
def test_a_cleaner_action_leads_back_to_the_photos_row(expert):
    version = ModelVersionFactory()
    label = LabelFactory(name="monstera")
    photo = PhotoFactory(status=Photo.Status.FINAL, final_label=label, decided_by="expert", decided_at=timezone.now())
    PhotoLoss.objects.create(model_version=version, photo=photo, split="valid", label="monstera", loss=2.5,
                             probabilities={"monstera": 0.1, "spider_plant": 0.9})
    page = client_for(expert)
    path = f"/models/{version.pk}/cleaner/?split=valid"
    html = page.get(path).content.decode()
    assert f'id="photo-{photo.pk}"' in tag(html, f'data-photo-id="{photo.pk}"')
    next_path = re.search(r'name="next" value="([^"]*)"', html).group(1).replace("&amp;", "&")
    decided_at = re.search(r'name="decided_at" value="([^"]*)"', html).group(1)

    response = page.post(f"/models/{version.pk}/cleaner/{photo.pk}/",
                         {"next": next_path, "decided_at": decided_at, "action": "keep"})
    assert response.status_code == 302
    assert response["Location"] == f"{path}#photo-{photo.pk}"


def test_a_photos_status_and_a_training_runs_are_announced_to_screen_readers_when_they_change(member, staff):
    from tests.factories import TrainingRunFactory

    photo = PhotoFactory(owner=member, status=Photo.Status.QUEUED)
    run = TrainingRunFactory()
    as_member, as_staff = Client(), Client()
    as_member.force_login(member)
    as_staff.force_login(staff)

    for page in (as_member.get("/").content.decode(), as_member.get(f"/photos/{photo.id}/").content.decode()):
        assert re.search(r'data-role="status" aria-live="polite"', page)
    run_page = as_staff.get(f"/training/{run.id}/").content.decode()
    assert '<p aria-live="polite">Status: <strong data-role="status">' in run_page
    assert re.search(r'data-role="error" role="alert"', run_page)
    # The bulk upload's running count ("3 accepted, 1 duplicate, 0 refused, 2 to go…"), read whole.
    bulk_page = as_staff.get("/import/").content.decode()
    assert 'data-role="summary" class="hint" role="status" aria-live="polite" aria-atomic="true"' in bulk_page
