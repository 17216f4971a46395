"""A photo whose prediction never ends in its process (the process is killed for memory, or
crashes in a native library) is counted: predicted alone the next time, and failed for good the
time after, instead of being given back by the broker for ever. The real kill is in
tests/faults/test_worker_killed.py; here the count itself."""

import pytest
from celery.exceptions import TimeLimitExceeded

from labeling import services
from labeling.models import Photo, Prediction
from labeling.tasks import failure_reason
from tests.factories import PhotoFactory

pytestmark = pytest.mark.django_db


def counted_while_predicting(active_model, monkeypatch):
    """Patches the active model's prediction to record the photos' counts as the model runs."""
    from classifier.inference import model_cache

    seen = []
    model = model_cache.get(active_model.id, active_model.path, active_model.sha256, threads=1)
    real = model.predict_paths_with_features

    def predict_paths_with_features(paths):
        seen.append(dict(Photo.objects.filter(status=Photo.Status.QUEUED).values_list("id", "attempts")))
        return real(paths)

    monkeypatch.setattr(model, "predict_paths_with_features", predict_paths_with_features)
    return seen


def test_a_prediction_is_counted_before_the_model_runs_and_taken_back_when_it_ends(active_model, monkeypatch):
    photo = PhotoFactory(status=Photo.Status.QUEUED)
    seen = counted_while_predicting(active_model, monkeypatch)

    services.photo_predict(photo.id, claimant="task-1")

    assert seen == [{photo.id: 1}]
    photo.refresh_from_db()
    assert photo.status != Photo.Status.QUEUED and photo.attempts == 0


def test_a_prediction_that_raises_is_taken_back_too(active_model, monkeypatch):
    photo = PhotoFactory(status=Photo.Status.QUEUED)
    monkeypatch.setattr(Photo, "model_input_path", property(lambda self: "/nonexistent/photo.jpg"))

    with pytest.raises(OSError):
        services.photo_predict(photo.id, claimant="task-1")

    photo.refresh_from_db()
    assert (photo.status, photo.attempts) == (Photo.Status.QUEUED, 0)


def test_a_photo_interrupted_once_is_predicted_alone_and_its_old_batch_mates_are_sent_again(
        active_model, monkeypatch, settings, sent_predictions, django_capture_on_commit_callbacks):
    settings.INFERENCE_BATCH_SIZE, settings.INFERENCE_BATCH_WAIT = 8, 0.0
    interrupted = PhotoFactory(status=Photo.Status.QUEUED, attempts=1, batch_claimed_by="task-1")
    mate = PhotoFactory(status=Photo.Status.QUEUED, batch_claimed_by="task-1")  # the try that died claimed it
    waiting = PhotoFactory(status=Photo.Status.QUEUED)
    seen = counted_while_predicting(active_model, monkeypatch)

    with django_capture_on_commit_callbacks(execute=True):
        services.photo_predict(interrupted.id, claimant="task-1")

    assert seen == [{interrupted.id: 2, mate.id: 0, waiting.id: 0}]  # alone: nobody else counted
    assert set(Prediction.objects.values_list("photo_id", flat=True)) == {interrupted.id}
    sent_predictions.assert_called_once_with(mate.id)
    assert Photo.objects.get(id=mate.id).batch_claimed_by == ""
    assert Photo.objects.get(id=interrupted.id).attempts == 1  # the try that died still counts


def test_an_interrupted_photo_is_never_taken_into_another_photos_batch(active_model, monkeypatch, settings):
    settings.INFERENCE_BATCH_SIZE, settings.INFERENCE_BATCH_WAIT = 8, 0.0
    interrupted = PhotoFactory(status=Photo.Status.QUEUED, attempts=1)
    fine = PhotoFactory(status=Photo.Status.QUEUED)
    other = PhotoFactory(status=Photo.Status.QUEUED)

    services.photo_predict(fine.id, claimant="task-2")

    assert set(Prediction.objects.values_list("photo_id", flat=True)) == {fine.id, other.id}
    assert Photo.objects.get(id=interrupted.id).status == Photo.Status.QUEUED


def test_a_photo_interrupted_twice_fails_with_the_reason_and_is_not_predicted(active_model, monkeypatch):
    photo = PhotoFactory(status=Photo.Status.QUEUED, attempts=services.PREDICTION_MAX_INTERRUPTIONS)
    seen = counted_while_predicting(active_model, monkeypatch)

    services.photo_predict(photo.id, claimant="task-1")

    photo.refresh_from_db()
    assert seen == []
    assert photo.status == Photo.Status.FAILED
    assert photo.reason == services.INTERRUPTED_TOO_OFTEN
    assert not Prediction.objects.filter(photo=photo).exists()


def test_retrying_a_failed_photo_forgets_the_interruptions(sent_predictions):
    photo = PhotoFactory(status=Photo.Status.FAILED, attempts=2, reason=services.INTERRUPTED_TOO_OFTEN)

    services.photo_retry(photo_id=photo.id)

    photo.refresh_from_db()
    assert (photo.status, photo.attempts) == (Photo.Status.QUEUED, 0)


def test_a_prediction_stopped_by_the_time_limit_says_so():
    from labeling.tasks import PREDICTION_TIME_LIMIT, photo_predict_task

    assert photo_predict_task.time_limit == PREDICTION_TIME_LIMIT
    assert failure_reason(TimeLimitExceeded(PREDICTION_TIME_LIMIT)) == (
        f"Prediction failed: it took longer than {PREDICTION_TIME_LIMIT} s, and its worker process was stopped.")
