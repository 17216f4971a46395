"""A photo whose prediction failed can be sent to the model again, by its owner or an expert."""


import pytest
from django.test import Client
from django.utils import timezone

from labeling import services
from labeling.models import Photo
from tests.factories import PhotoFactory


@pytest.fixture
def failed(member):
    return PhotoFactory(owner=member, status=Photo.Status.FAILED, decided_at=timezone.now(),
                        reason="Prediction failed: the photo's file is missing or cannot be read.")


def test_a_failed_photo_is_queued_again_and_sent_once(failed, sent_predictions, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        photo = services.photo_retry(photo_id=failed.id)

    assert (photo.status, photo.reason, photo.decided_at) == (Photo.Status.QUEUED, "", None)
    sent_predictions.assert_called_once_with(failed.id)
    with pytest.raises(services.RetryConflict):  # pressed twice: queued once
        services.photo_retry(photo_id=failed.id)


@pytest.mark.parametrize("status", [Photo.Status.QUEUED, Photo.Status.FINAL, Photo.Status.NEEDS_REVIEW,
                                    Photo.Status.REJECTED])
def test_only_a_failed_photo_can_be_predicted_again(member, sent_predictions, django_capture_on_commit_callbacks,
                                                    status):
    photo = PhotoFactory(owner=member, status=status)

    with django_capture_on_commit_callbacks(execute=True):  # what a commit would send
        with pytest.raises(services.RetryConflict, match="Only a photo whose prediction failed"):
            services.photo_retry(photo_id=photo.id)

    assert Photo.objects.get(id=photo.id).status == status
    sent_predictions.assert_not_called()


def test_the_api_retries_the_owners_photo_and_refuses_a_second_time_and_hides_others(
        failed, sent_predictions, api_for, other_member, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = api_for(failed.owner).post(f"/api/v1/photos/{failed.id}/retry/")
        again = api_for(failed.owner).post(f"/api/v1/photos/{failed.id}/retry/")
        others = api_for(other_member).post(f"/api/v1/photos/{failed.id}/retry/")

    assert response.status_code == 200 and response.json()["status"] == "queued"
    assert again.status_code == 409 and "Only a photo whose prediction failed" in again.json()["detail"]
    assert others.status_code == 404
    sent_predictions.assert_called_once_with(failed.id)  # by the first request only


def test_the_photo_page_offers_predict_again_for_a_failed_photo_only(failed, sent_predictions, member,
                                                                    django_capture_on_commit_callbacks):
    client = Client()
    client.force_login(member)

    page = client.get(f"/photos/{failed.id}/").content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        after = client.post(f"/photos/{failed.id}/retry/", follow=True).content.decode()

    assert 'data-role="retry"' in page
    assert f"Photo {failed.id} is queued for the model again." in after and 'data-role="retry"' not in after
    assert Photo.objects.get(id=failed.id).status == Photo.Status.QUEUED
    sent_predictions.assert_called_once_with(failed.id)


# --- every failed photo at once -------------------------------------------------------------


def test_every_failed_photo_is_queued_again_once_and_nothing_else(member, sent_predictions,
                                                                  django_capture_on_commit_callbacks):
    failed = [PhotoFactory(owner=member, status=Photo.Status.FAILED, reason="Prediction failed: x", attempts=2)
              for _ in range(3)]
    others = [PhotoFactory(owner=member, status=status) for status in (Photo.Status.FINAL, Photo.Status.QUEUED)]

    with django_capture_on_commit_callbacks(execute=True):
        queued = services.photos_retry_failed()

    assert queued == [p.id for p in failed]
    assert sorted(call.args[0] for call in sent_predictions.call_args_list) == queued
    for photo in Photo.objects.filter(id__in=queued):
        assert (photo.status, photo.reason, photo.attempts) == ("queued", "", 0)
    assert [Photo.objects.get(id=p.id).status for p in others] == ["final", "queued"]
    assert services.photos_retry_failed() == []  # pressed twice: queued once


def test_an_admin_retries_every_failed_photo_from_the_list_of_failed_ones(client, staff, member, sent_predictions,
                                                                          django_capture_on_commit_callbacks):
    photos = [PhotoFactory(owner=member, status=Photo.Status.FAILED) for _ in range(2)]
    client.force_login(staff)
    assert "Predict every failed photo again (2 in all)" in client.get("/photos/?status=failed").content.decode()
    assert 'id="retry-failed"' not in client.get("/photos/").content.decode()  # only where the failed are listed

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/photos/retry-failed/", follow=True)

    assert "2 failed photos queued for the model again." in response.content.decode()
    assert {Photo.objects.get(id=p.id).status for p in photos} == {"queued"}
    assert 'id="retry-failed"' not in response.content.decode()  # none failed now
    client.force_login(member)
    assert client.post("/photos/retry-failed/").status_code == 403


def test_the_api_answers_the_photos_it_queued_again(api_for, staff, member, sent_predictions):
    photo = PhotoFactory(owner=member, status=Photo.Status.FAILED)

    response = api_for(staff).post("/api/v1/photos/retry-failed/")

    assert response.status_code == 200 and response.json() == {"photos": [photo.id]}
