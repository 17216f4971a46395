"""(2) The broker (Redis) restarts while photos are being uploaded.

The upload commits the row and the file first and sends the prediction task after the commit:
when the broker is away at that moment the upload is still accepted (201) and the photo stays
queued until the sweeper sends it again. Every accepted photo reaches a decided state; no row
exists for anything that was not accepted.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from datetime import timedelta
from unittest import mock

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from kombu.exceptions import OperationalError as BrokerError

from labeling import services
from labeling.models import Photo, Prediction
from tests.factories import jpeg_bytes

from .conftest import WAIT, flower_photos, wait_until

DOWN_SECONDS = 3      # how long Redis stays away
BEFORE, AFTER = 3, 4  # uploads accepted before the restart, and made after it
MAX_UPLOADS = 40


@pytest.mark.integration
def test_uploads_during_a_broker_restart_are_all_decided(private_broker, start_worker, active_model, api_as, member,
                                                         caplog):
    redis_server = private_broker
    worker = start_worker("inference", SWEEP_QUEUED_AFTER_SECONDS=2)
    as_member = api_as(member)
    photos = flower_photos(MAX_UPLOADS)
    caplog.set_level(logging.WARNING, logger="labeling.services")

    enough_before = threading.Event()
    restart = {"down_at": None, "up_at": None, "error": None}

    def restart_redis():
        try:
            enough_before.wait(timeout=WAIT)
            redis_server.kill()  # SIGKILL: no goodbye; what was queued survives in the append-only file
            restart["down_at"] = time.monotonic()
            time.sleep(DOWN_SECONDS)
            redis_server.start()  # same port, same data directory
            restart["up_at"] = time.monotonic()
        except BaseException as exc:  # reported by the test thread
            restart["error"] = exc

    restarter = threading.Thread(target=restart_redis, name="redis-restarter", daemon=True)
    restarter.start()
    uploads = []  # (started, finished, status, body)
    try:
        for path in photos:
            started = time.monotonic()
            response = as_member.upload(path)
            uploads.append((started, time.monotonic(), response.status_code, response.text))
            assert response.status_code == 201, response.text
            if len(uploads) == BEFORE:
                enough_before.set()
            if restart["up_at"] and sum(1 for u in uploads if u[0] > restart["up_at"]) >= AFTER:
                break
    finally:
        enough_before.set()
        restarter.join(timeout=WAIT)
    assert restart["error"] is None, restart["error"]
    assert restart["up_at"], "the restart did not finish while uploading"

    accepted = [json.loads(body)["id"] for *_, status, body in uploads if status == 201]
    down, up = restart["down_at"], restart["up_at"]
    while_down = [u for u in uploads if down < u[0] and u[1] < up]
    assert while_down, f"no upload was made while Redis was down: {[u[:3] for u in uploads]}"
    # Accepted while the broker was away: the task could not be sent, and the log says so.
    assert "the sweeper will send it again" in caplog.text
    # Nothing exists that was not accepted.
    assert sorted(Photo.objects.values_list("id", flat=True)) == sorted(accepted)

    from labeling.tasks import photos_sweep_task

    def all_decided():
        if not Photo.objects.filter(id__in=accepted, status=Photo.Status.QUEUED).exists():
            return True
        photos_sweep_task.delay()  # what celery beat sends every 30 s, sooner
        return False

    wait_until(all_decided, interval=3, what="every accepted photo leaving `queued`")
    assert worker.process.poll() is None, "the worker did not survive the broker's restart"
    for photo in Photo.objects.filter(id__in=accepted):
        assert photo.status in (Photo.Status.FINAL, Photo.Status.NEEDS_REVIEW), (photo.id, photo.status, photo.reason)
    predictions = Counter(Prediction.objects.filter(photo_id__in=accepted).values_list("photo_id", flat=True))
    assert predictions == Counter({photo_id: 1 for photo_id in accepted})


def test_an_upload_is_accepted_when_the_broker_is_away_and_the_sweeper_sends_it_later(
        api_for, member, media_root, django_capture_on_commit_callbacks, caplog):
    """The depth of the fix: the row and the file are committed before the task is sent, so a
    failed send is logged, not raised (which had made a stored upload a 500 and deleted its file)."""
    image = SimpleUploadedFile("leaf.jpg", jpeg_bytes(), content_type="image/jpeg")
    away = BrokerError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
    with mock.patch("labeling.tasks.photo_predict_task.delay", side_effect=away) as delay, \
            django_capture_on_commit_callbacks(execute=True):
        response = api_for(member).post("/api/v1/photos/", {"image": image}, format="multipart")

    assert response.status_code == 201, response.content
    photo = Photo.objects.get(id=response.json()["id"])
    delay.assert_called_once_with(photo.id)
    assert photo.status == Photo.Status.QUEUED
    assert (media_root / photo.image.name).is_file()
    assert f"Could not queue the prediction of photo {photo.id}" in caplog.text

    with mock.patch("labeling.tasks.photo_predict_task.delay") as delay:
        assert services.photos_requeue_stuck(older_than=timedelta(0)) == 1
    delay.assert_called_once_with(photo.id)

