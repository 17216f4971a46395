"""The inference worker predicts photos that have been waiting in one batch with the photo its
task is for; a lone photo is predicted alone and at once; every photo is stored exactly once."""

from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.utils import timezone

from classifier.inference import LoadedModel
from labeling.models import Photo, Prediction
from labeling.services import photo_predict
from tests.factories import PhotoFactory


@pytest.fixture
def predict_calls(monkeypatch):
    """Records the paths of every predict_paths call, predicting as usual."""
    calls = []
    original = LoadedModel.predict_paths

    def spy(self, paths):
        calls.append(list(paths))
        return original(self, paths)

    monkeypatch.setattr(LoadedModel, "predict_paths", spy)
    return calls


def _waiting(n, seconds=5, **kwargs):
    """Queued photos uploaded `seconds` ago, oldest first."""
    now = timezone.now()
    return [PhotoFactory(uploaded_at=now - timedelta(seconds=seconds + n - i), **kwargs) for i in range(n)]


@pytest.mark.django_db
def test_a_lone_photo_is_predicted_alone(active_model, predict_calls):
    photo = PhotoFactory()

    photo_predict(photo.id)

    assert predict_calls == [[photo.image.path]]
    assert Prediction.objects.filter(photo=photo).count() == 1


@pytest.mark.django_db
def test_photos_that_have_waited_are_predicted_in_the_same_batch_and_stored_once(active_model, predict_calls):
    waiting = _waiting(3)
    photo = PhotoFactory()

    returned = photo_predict(photo.id)

    assert predict_calls == [[photo.image.path] + [p.image.path for p in waiting]]
    assert returned.id == photo.id and returned.status != Photo.Status.QUEUED
    for p in [photo, *waiting]:
        p.refresh_from_db()
        assert p.status in (Photo.Status.FINAL, Photo.Status.NEEDS_REVIEW)
        assert Prediction.objects.filter(photo=p).count() == 1
        assert Prediction.objects.get(photo=p).model_version == active_model

    # Their own tasks come later and find nothing to do.
    before = {p.id: (p.status, p.decided_at, p.reason) for p in waiting}
    for p in waiting:
        photo_predict(p.id)
    assert len(predict_calls) == 1
    for p in waiting:
        p.refresh_from_db()
        assert (p.status, p.decided_at, p.reason) == before[p.id]
        assert Prediction.objects.filter(photo=p).count() == 1


@pytest.mark.django_db
def test_a_batched_photo_gets_the_probabilities_it_would_get_alone(active_model):
    from classifier.inference import model_cache

    waiting = _waiting(2)
    photo = PhotoFactory()
    model = model_cache.get(active_model.id, active_model.path, active_model.sha256)
    alone = {p.id: model.predict_paths([p.image.path])[0] for p in [photo, *waiting]}

    photo_predict(photo.id)

    for p in [photo, *waiting]:
        stored = Prediction.objects.get(photo=p).probabilities
        assert stored.keys() == alone[p.id].keys()
        assert max(abs(stored[k] - alone[p.id][k]) for k in stored) <= 1e-4


@pytest.mark.django_db
def test_photos_uploaded_a_moment_ago_are_left_to_their_own_task(active_model, predict_calls, settings):
    settings.INFERENCE_BATCH_WAIT = 30
    recent = _waiting(2, seconds=1)
    photo = PhotoFactory()

    photo_predict(photo.id)

    assert predict_calls == [[photo.image.path]]
    assert all(Photo.objects.get(id=p.id).status == Photo.Status.QUEUED for p in recent)


@pytest.mark.django_db
def test_a_batch_holds_at_most_inference_batch_size_photos_oldest_first(active_model, predict_calls, settings):
    settings.INFERENCE_BATCH_SIZE = 3
    waiting = _waiting(5)
    photo = PhotoFactory()

    photo_predict(photo.id)

    assert predict_calls == [[photo.image.path, waiting[0].image.path, waiting[1].image.path]]
    assert [Photo.objects.get(id=p.id).status == Photo.Status.QUEUED for p in waiting] == [False, False] + [True] * 3


@pytest.mark.django_db
def test_a_batch_size_of_one_turns_batching_off(active_model, predict_calls, settings):
    settings.INFERENCE_BATCH_SIZE = 1
    _waiting(2)
    photo = PhotoFactory()

    photo_predict(photo.id)

    assert predict_calls == [[photo.image.path]]


@pytest.mark.django_db
def test_a_batch_mate_with_a_broken_file_does_not_fail_the_photo(active_model, predict_calls):
    (broken,) = _waiting(1, image=ContentFile(b"not an image at all", name="broken.jpg"))
    photo = PhotoFactory()

    photo_predict(photo.id)

    assert predict_calls == [[photo.image.path, broken.image.path], [photo.image.path]]
    assert Prediction.objects.filter(photo=photo).count() == 1
    broken.refresh_from_db()
    assert broken.status == Photo.Status.QUEUED  # its own task reports its own failure
    with pytest.raises(Exception):
        photo_predict(broken.id)
    assert not Prediction.objects.filter(photo=broken).exists()
