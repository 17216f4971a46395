"""(4) The prediction task retries transient errors (database or broker briefly away) with
exponential backoff, and after the last retry the photo is `failed` with the reason."""

from __future__ import annotations

from unittest import mock

import pytest
from celery.utils.time import get_exponential_backoff_interval
from django.db import InterfaceError, OperationalError
from kombu.exceptions import OperationalError as BrokerError

from labeling import tasks
from labeling.models import Photo
from tests.factories import PhotoFactory

task = tasks.photo_predict_task
TRANSIENT = [
    OperationalError("connection to server at \"127.0.0.1\", port 5432 failed: Connection refused"),
    InterfaceError("connection already closed"),
    BrokerError("Error 111 connecting to 127.0.0.1:6379. Connection refused."),
]


@pytest.fixture
def photo(db):
    return PhotoFactory(status=Photo.Status.QUEUED)


@pytest.fixture
def backoff():
    """The countdowns the task asks for, recorded (and computed as Celery computes them)."""
    with mock.patch("celery.app.autoretry.get_exponential_backoff_interval",
                    side_effect=get_exponential_backoff_interval) as spy:
        yield spy


def run_with(photo, side_effect):
    """Run the task as a worker would, in this process (retries included), the service replaced."""
    attempts = []

    def predict(photo_id, claimant):
        attempts.append(task.request.retries)
        run_with.claimants.append(claimant)
        effect = side_effect.pop(0) if isinstance(side_effect, list) else side_effect
        if isinstance(effect, BaseException):
            raise effect

    run_with.claimants = []
    with mock.patch.object(tasks.services, "photo_predict", side_effect=predict), \
            mock.patch.object(task, "retry", wraps=task.retry) as retry:
        result = task.apply(args=[photo.id], task_id="the-task")
    return result, attempts, retry


@pytest.mark.parametrize("error", TRANSIENT, ids=lambda e: type(e).__module__.split(".")[0] + "." + type(e).__name__)
def test_a_transient_error_is_retried_with_backoff_and_the_photo_fails_with_the_reason_after_the_last(
        photo, backoff, error):
    result, attempts, retry = run_with(photo, error)

    assert task.max_retries == 5
    assert attempts == [0, 1, 2, 3, 4, 5]  # the first try and five retries
    assert result.failed()
    # Exponential backoff (1, 2, 4, 8, 16 s, at most 60) with full jitter, asked for each retry.
    assert [c.kwargs["retries"] for c in backoff.call_args_list] == [0, 1, 2, 3, 4, 5]
    assert {(c.kwargs["factor"], c.kwargs["maximum"], c.kwargs["full_jitter"]) for c in backoff.call_args_list} == {
        (1, 60, True)}
    countdowns = [c.kwargs["countdown"] for c in retry.call_args_list]
    assert len(countdowns) == 6  # the sixth call is the one that gives up
    for n, countdown in enumerate(countdowns[:5]):
        assert 0 <= countdown <= min(60, 2 ** n)
    photo.refresh_from_db()
    assert photo.status == Photo.Status.FAILED
    assert photo.reason == "Prediction failed: the database or the queue stayed unavailable through every retry."
    assert photo.decided_at is not None


def test_an_error_that_passes_is_retried_and_the_photo_is_not_failed(photo, backoff):
    result, attempts, _ = run_with(photo, [TRANSIENT[0], None])

    assert result.successful()
    assert attempts == [0, 1]
    # The retry claims batch-mates in the same name, so it takes back what the first try claimed.
    assert run_with.claimants == ["the-task", "the-task"]
    photo.refresh_from_db()
    assert photo.status == Photo.Status.QUEUED  # what the (replaced) prediction left: not failed
    assert photo.reason == ""


def test_a_permanent_error_is_not_retried_and_the_photo_fails_at_once(photo, backoff):
    result, attempts, retry = run_with(photo, ValueError("cannot identify image file"))

    assert result.failed()
    assert attempts == [0]
    retry.assert_not_called()
    photo.refresh_from_db()
    assert photo.status == Photo.Status.FAILED
    assert photo.reason == "Prediction failed (ValueError); the worker's log has the details."


@pytest.mark.parametrize("error", [
    FileNotFoundError(2, "No such file or directory", "/srv/plantsite/media/photos/x.jpg"),
    OSError("cannot identify image file '/srv/plantsite/media/photos/x.jpg'"),
])
def test_a_failed_photo_says_its_file_cannot_be_read_without_the_servers_path(photo, backoff, error):
    run_with(photo, error)

    photo.refresh_from_db()
    assert photo.status == Photo.Status.FAILED
    assert photo.reason == "Prediction failed: the photo's file is missing or cannot be read."


def test_the_broker_settings_hold_a_long_task_and_lose_no_task_on_a_dead_worker(settings):
    from plantsite.celery import app

    assert app.conf.task_acks_late is True
    assert app.conf.task_reject_on_worker_lost is True
    assert app.conf.worker_prefetch_multiplier == 1
    assert settings.CELERY_TASK_ROUTES["labeling.tasks.*"] == {"queue": "inference"}
    # The broker must not give a running training task to a second worker.
    from classifier.tasks import training_run_execute

    assert app.conf.broker_transport_options["visibility_timeout"] > training_run_execute.time_limit
