from datetime import timedelta

import pytest
from django.utils import timezone

from labeling import services
from labeling.models import Photo
from tests.factories import PhotoFactory


def test_a_photo_queued_too_long_is_sent_again(db, sent_predictions):
    stuck = PhotoFactory(status=Photo.Status.QUEUED, uploaded_at=timezone.now() - timedelta(minutes=10))

    count = services.photos_requeue_stuck(older_than=timedelta(minutes=2))

    assert count == 1
    sent_predictions.assert_called_once_with(stuck.id)


def test_a_recent_or_finished_photo_is_left_alone(db, sent_predictions):
    PhotoFactory(status=Photo.Status.QUEUED, uploaded_at=timezone.now())
    PhotoFactory(status=Photo.Status.FINAL, uploaded_at=timezone.now() - timedelta(hours=1))
    PhotoFactory(status=Photo.Status.NEEDS_REVIEW, uploaded_at=timezone.now() - timedelta(hours=1))

    assert services.photos_requeue_stuck(older_than=timedelta(minutes=2)) == 0
    sent_predictions.assert_not_called()


def test_the_periodic_sweep_uses_the_configured_threshold(db, sent_predictions, settings):
    settings.SWEEP_QUEUED_AFTER_SECONDS = 30
    stuck = PhotoFactory(status=Photo.Status.QUEUED, uploaded_at=timezone.now() - timedelta(seconds=45))
    from labeling.tasks import photos_sweep_task

    photos_sweep_task.apply()

    sent_predictions.assert_called_once_with(stuck.id)


def test_a_stuck_photo_is_sent_again_once_per_threshold_not_on_every_sweep(db, sent_predictions):
    stuck = PhotoFactory(status=Photo.Status.QUEUED, uploaded_at=timezone.now() - timedelta(minutes=10))

    counts = [services.photos_requeue_stuck(older_than=timedelta(minutes=2)) for _ in range(3)]
    Photo.objects.filter(id=stuck.id).update(resent_at=timezone.now() - timedelta(minutes=3))
    counts.append(services.photos_requeue_stuck(older_than=timedelta(minutes=2)))

    assert counts == [1, 0, 0, 1]
    assert sent_predictions.call_count == 2
