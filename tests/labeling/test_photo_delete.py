"""Deleting a photo: its owner while the team has not worked on it (an upload by mistake), an
admin at any time (a privacy request). The row goes with everything recorded about it, and its
files once that commits."""

import threading
from pathlib import Path
from unittest import mock

import pytest
from django.conf import settings
from django.core.files.base import ContentFile
from django.db import connection, transaction
from django.test import Client

from classifier.models import PhotoLoss
from labeling import services
from labeling.models import Label, LabelVote, Photo, PhotoEvent, Prediction, ReviewDecision
from tests.factories import PhotoFactory, PredictionFactory, jpeg_bytes
from tests.threads import at_once, hold_locks_until_another_waits


def _client(user):
    client = Client()
    client.force_login(user)
    return client


def _files(photo):
    return [Path(settings.MEDIA_ROOT) / name for name in (photo.image.name, photo.working_image.name) if name]


@pytest.fixture
def big_upload(member):
    """An upload large enough to have a working copy: two files to remove."""
    photo = services.photo_upload(owner=member, fileobj=ContentFile(jpeg_bytes(size=(1600, 1200)), name="big.jpg"))
    assert len(_files(photo)) == 2 and all(path.exists() for path in _files(photo))
    return photo


@pytest.fixture
def reviewed(member, expert):
    """A member's photo the model was unsure of, decided by an expert."""
    photo = PredictionFactory(photo__owner=member).photo
    services.review_decide(photo_id=photo.id, expert=expert, label_name="monstera")
    return photo


def test_the_owner_deletes_an_upload_from_its_page_and_its_files_go_with_it(member, big_upload,
                                                                            django_capture_on_commit_callbacks):
    client = _client(member)
    assert 'data-role="delete"' in client.get(f"/photos/{big_upload.id}/").content.decode()
    confirm = client.get(f"/photos/{big_upload.id}/delete/").content.decode()
    assert f"Delete photo {big_upload.id}</button>" in confirm and "cannot be undone" in confirm

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/photos/{big_upload.id}/delete/", follow=True)

    assert response.redirect_chain[-1][0] == "/"
    assert f"Photo {big_upload.id} is deleted." in response.content.decode()
    assert not Photo.objects.filter(id=big_upload.id).exists()
    assert not any(path.exists() for path in _files(big_upload))


def test_the_owner_may_not_delete_a_photo_the_team_has_worked_on(member, reviewed):
    client = _client(member)

    confirm = client.get(f"/photos/{reviewed.id}/delete/").content.decode()
    post = client.post(f"/photos/{reviewed.id}/delete/", follow=True).content.decode()
    api = client.delete(f"/api/v1/photos/{reviewed.id}/")

    assert "has been labelled or reviewed by the team" in confirm and "</button>" not in confirm.split("<main>")[1]
    assert "ask an admin to delete it" in post
    assert api.status_code == 409 and "ask an admin" in api.json()["detail"]
    assert Photo.objects.filter(id=reviewed.id).exists()


def test_a_cleaning_action_or_being_a_labels_example_is_team_work_too(member, expert):
    cleaned, example = PhotoFactory(owner=member), PhotoFactory(owner=member)
    PhotoEvent.objects.create(photo=cleaned, user=expert, action=PhotoEvent.Action.EXCLUDE)
    Label.objects.create(name="fern").examples.add(example)

    for photo in (cleaned, example):
        assert _client(member).delete(f"/api/v1/photos/{photo.id}/").status_code == 409


def test_a_vote_is_team_work_too(member, other_member):
    from labeling import labelling

    photo = PredictionFactory(photo__owner=member, confidence=0.1).photo
    assert labelling.labelling_next(other_member).id == photo.id
    labelling.label_vote(photo_id=photo.id, user=other_member, label_name="monstera")

    assert _client(member).delete(f"/api/v1/photos/{photo.id}/").status_code == 409


def test_an_admin_deletes_a_reviewed_photo_with_everything_recorded_about_it(staff, reviewed,
                                                                            django_capture_on_commit_callbacks):
    PhotoLoss.objects.create(model_version=reviewed.prediction.model_version, photo=reviewed, split="valid",
                             loss=1.0, probabilities={})
    PhotoEvent.objects.create(photo=reviewed, user=staff, action=PhotoEvent.Action.KEEP)
    assert ReviewDecision.objects.filter(photo=reviewed).exists()

    with django_capture_on_commit_callbacks(execute=True):
        response = _client(staff).delete(f"/api/v1/photos/{reviewed.id}/")

    assert response.status_code == 204
    for model in (Photo, Prediction, ReviewDecision, PhotoEvent, PhotoLoss, LabelVote):
        field = "id" if model is Photo else "photo_id"
        assert not model.objects.filter(**{field: reviewed.id}).exists(), model.__name__
    assert not any(path.exists() for path in _files(reviewed))


def test_an_admins_confirmation_names_whose_photo_it_is(staff, reviewed):
    page = _client(staff).get(f"/photos/{reviewed.id}/delete/").content.decode()

    assert f"It is {reviewed.owner.username}'s photo." in page
    assert f"Delete photo {reviewed.id}</button>" in page


def test_an_expert_may_not_delete_another_members_photo_and_a_member_does_not_see_it(expert, other_member, member):
    photo = PhotoFactory(owner=member)

    assert _client(expert).delete(f"/api/v1/photos/{photo.id}/").status_code == 403
    assert _client(expert).post(f"/photos/{photo.id}/delete/").status_code == 403
    assert 'data-role="delete"' not in _client(expert).get(f"/photos/{photo.id}/").content.decode()
    assert _client(other_member).delete(f"/api/v1/photos/{photo.id}/").status_code == 404
    assert _client(other_member).post(f"/photos/{photo.id}/delete/").status_code == 404
    assert Photo.objects.filter(id=photo.id).exists()


def test_deleting_twice_is_a_404_the_second_time(member):
    photo = PhotoFactory(owner=member)
    client = _client(member)

    assert client.delete(f"/api/v1/photos/{photo.id}/").status_code == 204
    assert client.delete(f"/api/v1/photos/{photo.id}/").status_code == 404


def test_a_photo_deleted_while_queued_is_not_predicted_and_fails_nothing(member, active_model):
    photo = PhotoFactory(owner=member, status=Photo.Status.QUEUED)
    services.photo_delete(photo_id=photo.id, user=member)

    assert services.photo_predict(photo.id) is None
    services.photo_mark_failed(photo.id, "its file is gone")  # the task's failure handler: nothing to mark
    assert not Photo.objects.filter(id=photo.id).exists()


def test_a_decision_on_a_photo_deleted_after_the_views_lookup_is_a_404_not_a_500(expert, member):
    photo = PredictionFactory(photo__owner=member).photo
    decide = services.review_decide

    def deleted_first(**kwargs):
        services.photo_delete(photo_id=kwargs["photo_id"], user=member)
        return decide(**kwargs)

    client = Client(raise_request_exception=False)
    client.force_login(expert)
    with mock.patch.object(services, "review_decide", deleted_first):
        api = client.post(f"/api/v1/photos/{photo.id}/review/", {"label": "monstera"}, content_type="application/json")

    assert api.status_code == 404 and api.json() == {"detail": "Not found."}


@pytest.mark.django_db(transaction=True)
def test_an_owner_deleting_while_an_experts_decision_commits_waits_for_it_and_is_refused(member, expert):
    assert connection.vendor == "postgresql"
    photo = PredictionFactory(photo__owner=member).photo
    outcome = {}
    holding = threading.Event()
    done = threading.Event()

    def expert_decides_first():
        with transaction.atomic():
            services.review_decide(photo_id=photo.id, expert=expert, label_name="monstera")
            holding.set()
            hold_locks_until_another_waits(or_until=done)

    def owner_deletes():
        try:
            assert holding.wait(timeout=10)
            services.photo_delete(photo_id=photo.id, user=member)
            outcome["deleted"] = True
        except services.PhotoDeleteRefused as exc:
            outcome["refused"] = str(exc)
        finally:
            done.set()

    at_once([expert_decides_first, owner_deletes])

    assert "ask an admin" in outcome.get("refused", "")
    assert Photo.objects.get(id=photo.id).status == Photo.Status.FINAL


@pytest.mark.django_db(transaction=True)
def test_an_expert_deciding_as_the_owner_deletes_finds_the_photo_gone(member, expert):
    photo = PredictionFactory(photo__owner=member).photo
    outcome = {}
    holding, done = threading.Event(), threading.Event()

    def owner_deletes_first():
        with transaction.atomic():
            services.photo_delete(photo_id=photo.id, user=member)
            holding.set()
            hold_locks_until_another_waits(or_until=done)

    def expert_decides():
        try:
            assert holding.wait(timeout=10)
            services.review_decide(photo_id=photo.id, expert=expert, label_name="monstera")
        except Photo.DoesNotExist:
            outcome["gone"] = True
        finally:
            done.set()

    at_once([owner_deletes_first, expert_decides])

    assert outcome == {"gone": True}
    assert not Photo.objects.filter(id=photo.id).exists() and not ReviewDecision.objects.exists()


def test_an_experts_decision_on_a_photo_deleted_since_it_was_opened_says_so_on_the_queue(expert, member):
    photo = PredictionFactory(photo__owner=member).photo
    client = _client(expert)
    assert client.get(f"/review/{photo.id}/").status_code == 200
    services.photo_delete(photo_id=photo.id, user=member)

    response = client.post(f"/review/{photo.id}/", {"label": "monstera"}, follow=True)

    assert response.redirect_chain[-1][0] == "/review/"
    assert f"Not saved: photo {photo.id} no longer exists (it has been deleted)." in response.content.decode()
    assert client.get(f"/review/{photo.id}/").status_code == 404
