"""(1) The inference worker is SIGKILLed while it holds a prediction task.

With the Redis transport the message of a killed worker stays "unacked" until the visibility
timeout (longer than the training task's hard limit: hours), so no other worker gets it: the
sweeper (`photos_sweep_task`, which sends photos queued too long again) is what recovers the
photo. After a new worker starts and the sweeper runs, every photo has exactly one prediction
and none stays queued.

Each test has a Redis of its own as the broker (`private_broker`), so that no other worker on
the machine can take, or flush, its messages.
"""

from __future__ import annotations

import base64
import json
import os
import signal
from collections import Counter

import pytest

from labeling.models import Photo, Prediction

from .conftest import flower_photos, wait_until

pytestmark = pytest.mark.integration

PHOTOS = 10
PREDICT_TASK = "labeling.tasks.photo_predict_task"


def broker_client():
    import redis

    from plantsite.celery import app

    return redis.Redis.from_url(app.conf.broker_url, socket_timeout=5)


def held_tasks(broker) -> dict[str, int]:
    """{task id: photo id} of the prediction messages delivered and not acknowledged: the Redis
    transport keeps them in its `unacked` hash as [message, exchange, routing key]."""
    held = {}
    for raw in broker.hvals("unacked"):
        message = json.loads(raw)[0]
        if message["headers"].get("task") != PREDICT_TASK:
            continue
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        held[message["headers"]["id"]] = args[0]
    return held


def held_photo_ids(broker) -> set[int]:
    return set(held_tasks(broker).values())


def frozen_if(group: int, look):
    """Stop the whole process group (SIGSTOP) and `look()`: when it finds what it looks for,
    the group stays stopped, so what was seen is what gets killed; otherwise it continues."""
    os.killpg(group, signal.SIGSTOP)
    found = None
    try:
        found = look()
    finally:
        if not found:
            os.killpg(group, signal.SIGCONT)
    return found


def queued(ids) -> set[int]:
    return set(Photo.objects.filter(id__in=ids, status=Photo.Status.QUEUED).values_list("id", flat=True))


# One photo per task: the worst case, where no later task of the same batch predicts the held
# photo as a batch-mate, so only the sweeper can recover it.
ONE_PHOTO_PER_TASK = {"INFERENCE_BATCH_SIZE": 1}
# No warm-up: the pool process then loads the model inside its first task, which keeps it in
# the middle of that task for seconds, where the test kills it. (Killed during a warm-up, before
# it has taken the task, it would simply be replaced and the task given to the new one.)
MODEL_LOADS_IN_THE_FIRST_TASK = {"INFERENCE_WARM_UP": "0"}


def test_a_worker_killed_while_it_holds_a_task_loses_no_photo(private_broker, active_model, start_worker, api_as,
                                                              member):
    broker = broker_client()
    as_member = api_as(member)
    ids = []
    for path in flower_photos(PHOTOS):
        response = as_member.upload(path)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    assert broker.llen("inference") == PHOTOS  # every task waits in the queue: no worker yet

    doomed = start_worker("inference", wait=False, **ONE_PHOTO_PER_TASK)
    group = doomed.process.pid  # the worker leads a process group of its own, with its pool child

    def holding_a_task_with_others_waiting():
        stuck = held_photo_ids(broker) & queued(ids)
        return stuck if stuck and broker.llen("inference") > 0 else None

    # The worker holds a task it has not finished (its first: loading the model, predicting)
    # while others wait in the queue.
    stuck = wait_until(lambda: holding_a_task_with_others_waiting() and frozen_if(
        group, holding_a_task_with_others_waiting), interval=0.02, what="the worker holding a task")
    os.killpg(group, signal.SIGKILL)
    doomed.process.wait(timeout=10)
    assert len(stuck) == 1, stuck  # prefetch 1: the worker held one task, no more

    survivor = start_worker("inference", SWEEP_QUEUED_AFTER_SECONDS=1, **ONE_PHOTO_PER_TASK)

    # The new worker predicts every photo still in the queue, but not the one the killed worker
    # held: its message is neither in the queue nor given to anyone until the visibility timeout.
    wait_until(lambda: queued(ids) == stuck, what="the new worker draining the queue")
    assert broker.llen("inference") == 0
    assert held_photo_ids(broker) >= stuck

    from labeling.tasks import photos_sweep_task

    photos_sweep_task.delay()  # what celery beat sends every 30 s

    wait_until(lambda: not queued(ids), what="every photo leaving `queued` after the sweep")
    assert survivor.process.poll() is None
    photos = Photo.objects.filter(id__in=ids)
    assert sorted(p.id for p in photos) == sorted(ids)
    for photo in photos:
        assert photo.status in (Photo.Status.FINAL, Photo.Status.NEEDS_REVIEW), (photo.id, photo.status, photo.reason)
    predictions = Counter(Prediction.objects.filter(photo_id__in=ids).values_list("photo_id", flat=True))
    assert predictions == Counter({photo_id: 1 for photo_id in ids})
    assert set(Prediction.objects.filter(photo_id__in=ids).values_list("model_version", flat=True)) == {active_model.id}


def pool_children(pid: int) -> set[int]:
    children = set()
    for path in (f"/proc/{pid}/task/{tid}/children" for tid in os.listdir(f"/proc/{pid}/task")):
        try:
            with open(path) as fh:
                children.update(int(child) for child in fh.read().split())
        except FileNotFoundError:
            pass
    return children


def test_a_pool_child_killed_mid_task_gives_the_task_back_and_its_worker_runs_it_again(
        private_broker, active_model, start_worker, api_as, member):
    """task_reject_on_worker_lost: when only the process running the task dies, the worker that
    survives it puts the message back in the queue (rather than marking the photo failed), and a
    new pool process predicts it. No sweeper is needed."""
    broker = broker_client()
    as_member = api_as(member)
    ids = [as_member.upload(path).json()["id"] for path in flower_photos(3)]

    worker = start_worker("inference", wait=False, **ONE_PHOTO_PER_TASK, **MODEL_LOADS_IN_THE_FIRST_TASK)

    def holding_a_task():
        held = {task_id: photo_id for task_id, photo_id in held_tasks(broker).items() if photo_id in queued(ids)}
        children = pool_children(worker.process.pid)
        return (held, children) if held and children else None

    held, children = wait_until(lambda: holding_a_task() and frozen_if(worker.process.pid, holding_a_task),
                                interval=0.02, what="the worker holding a task")
    for child in children:
        os.kill(child, signal.SIGKILL)  # the pool process only; its parent, the worker, lives on
    os.killpg(worker.process.pid, signal.SIGCONT)

    wait_until(lambda: not queued(ids), what="every photo leaving `queued`")
    assert worker.process.poll() is None
    log = worker.log()
    assert "WorkerLostError" in log
    (task_id,) = held
    assert log.count(f"[{task_id}] received") == 2, log  # given back, and delivered again
    for photo in Photo.objects.filter(id__in=ids):
        assert photo.status in (Photo.Status.FINAL, Photo.Status.NEEDS_REVIEW), (photo.id, photo.status, photo.reason)
    assert Counter(Prediction.objects.filter(photo_id__in=ids).values_list("photo_id", flat=True)) == Counter(
        {photo_id: 1 for photo_id in ids})


def test_a_photo_whose_prediction_kills_its_process_twice_fails_instead_of_coming_back_for_ever(
        private_broker, active_model, start_worker, api_as, member):
    """task_reject_on_worker_lost gives a dead process's task back, and a photo that kills every
    process predicting it (out of memory, a crash in a native library) came back for ever. Its
    file is made a FIFO here: every process that reads it blocks there, mid-prediction, and is
    killed, as the kernel would kill one out of memory."""
    as_member = api_as(member)
    [doomed_id, fine_id] = [as_member.upload(path).json()["id"] for path in flower_photos(2)]
    doomed = Photo.objects.get(id=doomed_id)
    path = doomed.model_input_path
    os.remove(path)
    os.mkfifo(path)

    worker = start_worker("inference", wait=False, **ONE_PHOTO_PER_TASK)

    def attempts():
        return Photo.objects.get(id=doomed_id).attempts

    for begun in (1, 2):
        # Begun, and blocked on the file: the count is written before the model reads it.
        wait_until(lambda: attempts() == begun, what=f"prediction {begun} of the photo beginning")
        children = wait_until(lambda: pool_children(worker.process.pid), what="the pool process")
        for child in children:
            os.kill(child, signal.SIGKILL)

    wait_until(lambda: Photo.objects.get(id=doomed_id).status == Photo.Status.FAILED,
               what="the photo failing on its third delivery")
    doomed.refresh_from_db()
    assert doomed.reason.startswith("Prediction failed: the worker stopped 2 times while predicting this photo")
    assert not Prediction.objects.filter(photo_id=doomed_id).exists()
    wait_until(lambda: Photo.objects.get(id=fine_id).status != Photo.Status.QUEUED, what="the other photo")
    assert Photo.objects.get(id=fine_id).status in (Photo.Status.FINAL, Photo.Status.NEEDS_REVIEW)
    assert worker.process.poll() is None
    assert worker.log().count("Task handler raised error: WorkerLostError") == 2
