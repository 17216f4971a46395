"""A training run of hours survives what can happen around it: a database restart, a training
worker (re)starting elsewhere, a photo deleted meanwhile; and it trains on live labels only."""

from types import SimpleNamespace

import psycopg
import pytest
from django.db import connection

from classifier import services, tasks
from classifier.models import PhotoLoss, TrainingRun
from classifier.training import TrainingResult
from labeling.models import Label, Photo
from tests.factories import LabelFactory, PhotoFactory, UserFactory, start_photo_ids_where


def expert_labelled_photos(owner, n=6):
    """Alternately rose and daisy, each with a photo in the training split: a label with none is
    left out of a run (classifier.training.labels_without_training_rows)."""
    from classifier.training import is_validation

    start_photo_ids_where(lambda ids: all(any(not is_validation(i) for i in ids[k::2]) for k in (0, 1)), n)
    daisy, rose = LabelFactory(name="daisy"), LabelFactory(name="rose")
    return [PhotoFactory(owner=owner, status=Photo.Status.FINAL, final_label=daisy if i % 2 else rose,
                         label_source=Photo.LabelSource.EXPERT) for i in range(n)]


def result(out_of_sample=None):
    return TrainingResult(labels=["daisy", "rose"],
                          metrics={"error_rate": 0.5, "per_label": {}, "confusion_matrix": []},
                          history=[], device="cpu", pretrained_used=False, out_of_sample=out_of_sample or {})


def queued_run(staff):
    return services.training_run_start(user=staff, options={"epochs": 1}, enqueue=False)


def training_worker(hostname):
    return SimpleNamespace(hostname=hostname,
                           task_consumer=SimpleNamespace(queues=[SimpleNamespace(name="training")]))


@pytest.mark.django_db(transaction=True)
def test_a_database_restart_during_training_does_not_end_the_run(monkeypatch):
    staff = UserFactory(is_staff=True)
    expert_labelled_photos(staff)
    run = queued_run(staff)
    cancel_checks = []

    def train(rows, options, export_path, *, on_progress, should_cancel, **kwargs):
        on_progress(epoch=1, total_epochs=1, batch=1, total_batches=3, fraction=0.1)
        with psycopg.connect(host="127.0.0.1", user="postgres", dbname=connection.settings_dict["NAME"],
                             autocommit=True) as other:  # the server drops the run's connection
            other.execute("SELECT pg_terminate_backend(%s)", [connection.connection.info.backend_pid])
        on_progress(epoch=1, total_epochs=1, batch=2, total_batches=3, fraction=0.5)  # lost, not fatal
        cancel_checks.append(should_cancel())
        on_progress(epoch=1, total_epochs=1, batch=3, total_batches=3, fraction=0.9)  # a new connection
        export_path.write_bytes(b"model")
        return result()

    monkeypatch.setattr(services, "train", train)

    services.training_run_execute(run.id)

    run.refresh_from_db()
    assert run.status == TrainingRun.Status.SUCCEEDED and run.holds_slot is None
    assert cancel_checks == [False]


@pytest.mark.django_db(transaction=True)
def test_a_run_that_fails_on_a_broken_connection_is_still_recorded_failed(monkeypatch):
    staff = UserFactory(is_staff=True)
    expert_labelled_photos(staff)
    run = queued_run(staff)

    def train(rows, options, export_path, **kwargs):
        with psycopg.connect(host="127.0.0.1", user="postgres", dbname=connection.settings_dict["NAME"],
                             autocommit=True) as other:
            other.execute("SELECT pg_terminate_backend(%s)", [connection.connection.info.backend_pid])
        TrainingRun.objects.count()  # the training's own query meets the broken connection
        return result()

    monkeypatch.setattr(services, "train", train)

    services.training_run_execute(run.id)

    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED and run.holds_slot is None
    assert run.error.startswith("OperationalError")


@pytest.mark.django_db
def test_a_training_worker_starting_leaves_a_run_of_manage_py_train_running(monkeypatch):
    staff = UserFactory(is_staff=True)
    expert_labelled_photos(staff)
    run = queued_run(staff)

    def train(rows, options, export_path, **kwargs):
        tasks._fail_runs_orphaned_by_a_dead_worker(training_worker("training@host"))  # a deploy, meanwhile
        export_path.write_bytes(b"model")
        return result()

    monkeypatch.setattr(services, "train", train)

    tasks.training_run_execute.apply(args=[run.id])  # as manage.py train runs it: in this process

    run.refresh_from_db()
    assert run.status == TrainingRun.Status.SUCCEEDED and run.model_version is not None
    assert run.executor.startswith("process ")


@pytest.mark.django_db
def test_a_training_worker_starting_fails_only_the_runs_it_was_running():
    def running(executor):
        return TrainingRun.objects.create(status=TrainingRun.Status.RUNNING, holds_slot=None, executor=executor)

    mine, another_workers = running("training@gpu-box"), running("training@other-box")

    tasks._fail_runs_orphaned_by_a_dead_worker(training_worker("training@gpu-box"))

    mine.refresh_from_db()
    another_workers.refresh_from_db()
    assert (mine.status, mine.error) == (TrainingRun.Status.FAILED, services.WORKER_LOST)
    assert another_workers.status == TrainingRun.Status.RUNNING


@pytest.mark.django_db(transaction=True)
def test_a_photo_deleted_during_training_is_left_out_of_the_losses_not_the_end_of_the_run(monkeypatch):
    staff = UserFactory(is_staff=True)
    photos = expert_labelled_photos(staff)
    run = queued_run(staff)

    def train(rows, options, export_path, **kwargs):
        Photo.objects.filter(id=photos[0].id).delete()  # its owner's account removed, say
        export_path.write_bytes(b"model")
        return result({i: (0.5, {"daisy": 0.5, "rose": 0.5}) for i in range(len(rows))})

    monkeypatch.setattr(services, "train", train)

    services.training_run_execute(run.id)

    run.refresh_from_db()
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    assert set(PhotoLoss.objects.values_list("photo_id", flat=True)) == {p.id for p in photos[1:]}


@pytest.mark.django_db
def test_photos_whose_label_is_retired_are_not_trained_on():
    staff = UserFactory(is_staff=True)
    expert_labelled_photos(staff)
    Label.objects.filter(name="rose").update(retired=True)

    assert {label for _, label, _ in services.training_rows()} == {"daisy"}


@pytest.mark.django_db
def test_a_run_stopped_by_the_time_limit_ends_failed_and_says_so(monkeypatch, settings):
    from celery.exceptions import SoftTimeLimitExceeded

    staff = UserFactory(is_staff=True)
    expert_labelled_photos(staff)
    run = queued_run(staff)
    written = []

    def train(rows, options, export_path, **kwargs):
        export_path.write_bytes(b"half a model")
        written.append(export_path)
        raise SoftTimeLimitExceeded()  # what the worker raises in the task at its soft limit

    monkeypatch.setattr(services, "train", train)

    services.training_run_execute(run.id)

    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED
    assert run.error.startswith(f"Stopped by the time limit (TRAINING_HARD_TIME_LIMIT, "
                                f"{settings.TRAINING_HARD_TIME_LIMIT} s) before it finished")
    assert run.holds_slot is None
    assert not written[0].exists()


def test_the_soft_time_limit_comes_before_the_hard_one_with_time_to_record_the_failure(settings):
    task = tasks.training_run_execute
    assert task.time_limit == settings.TRAINING_HARD_TIME_LIMIT
    assert 0 < task.time_limit - task.soft_time_limit <= 300
    assert task.soft_time_limit >= 0.9 * task.time_limit


@pytest.mark.django_db
def test_a_queued_run_carries_no_time_limit_so_that_the_workers_own_applies():
    # The worker applies a message's limits over its own setting: the web process's
    # TRAINING_HARD_TIME_LIMIT must not travel with the task.
    from unittest import mock

    from plantsite.celery import app

    staff = UserFactory(is_staff=True)
    expert_labelled_photos(staff)
    run = queued_run(staff)
    with mock.patch.object(app.amqp, "send_task_message") as send:
        services._enqueue_training(run.id)

    (_producer, name, message), _kwargs = send.call_args
    assert name == "classifier.tasks.training_run_execute"
    assert message.headers["timelimit"] == [None, None]
    assert message.headers["argsrepr"] == repr([run.id])
