from datetime import timedelta
from types import SimpleNamespace

from django.utils import timezone

from classifier import services
from classifier.models import TrainingRun
from classifier.tasks import _fail_runs_orphaned_by_a_dead_worker
from tests.factories import ModelVersionFactory, TrainingRunFactory


def running_run(heartbeat_age, executor="training@host"):
    return TrainingRunFactory(status=TrainingRun.Status.RUNNING, holds_slot=True, executor=executor,
                              heartbeat_at=timezone.now() - heartbeat_age)


def test_a_running_run_whose_heartbeat_stopped_is_marked_failed(db):
    run = running_run(timedelta(minutes=30))
    active = ModelVersionFactory(is_active=True)

    assert services.training_runs_fail_stale(older_than=timedelta(minutes=10)) == 1

    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED
    assert "worker" in run.error
    assert run.holds_slot is None
    active.refresh_from_db()
    assert active.is_active


def test_a_run_with_a_fresh_heartbeat_keeps_running(db):
    run = running_run(timedelta(seconds=5))

    assert services.training_runs_fail_stale(older_than=timedelta(minutes=10)) == 0

    run.refresh_from_db()
    assert run.status == TrainingRun.Status.RUNNING


def _worker_consuming(*queues, hostname="training@host"):
    return SimpleNamespace(hostname=hostname,
                           task_consumer=SimpleNamespace(queues=[SimpleNamespace(name=q) for q in queues]))


def test_a_training_worker_coming_back_fails_the_run_it_was_running(db):
    run = running_run(timedelta(seconds=1))

    _fail_runs_orphaned_by_a_dead_worker(_worker_consuming("training"))

    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED
    assert run.error == services.WORKER_LOST


def test_an_inference_worker_starting_leaves_training_runs_alone(db):
    run = running_run(timedelta(seconds=1))

    _fail_runs_orphaned_by_a_dead_worker(_worker_consuming("inference"))

    run.refresh_from_db()
    assert run.status == TrainingRun.Status.RUNNING


def test_after_a_failed_run_a_new_run_can_start(db):
    running_run(timedelta(hours=1))
    services.training_runs_fail_stale(older_than=timedelta(minutes=10))

    run = services.training_run_start(user=None, options={"epochs": 1})

    assert run.status == TrainingRun.Status.QUEUED
