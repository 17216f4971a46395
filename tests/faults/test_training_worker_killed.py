"""A training run whose worker dies is marked failed when the training worker comes back, and
cancelling a running run stops it; either way the active model stays as it was.

Real processes: a training worker consuming its own Redis (`private_broker`), SIGKILLed
mid-run; then a new one starts.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from classifier import services
from classifier.models import ModelVersion, TrainingRun
from tests.factories import import_photos_on_both_sides_of_the_split

from .conftest import wait_until

pytestmark = pytest.mark.integration

# Long enough that the run is still going when the test acts on it, tiny per epoch.
LONG_RUN = {"image_size": 32, "epochs": 60, "batch_size": 4, "pretrained": False}


@pytest.fixture
def labelled(staff, tmp_path):
    import_photos_on_both_sides_of_the_split(tmp_path, staff, per_label=6, seed=9)


def _running_with_progress(run_id):
    run = TrainingRun.objects.get(id=run_id)
    return run.status == TrainingRun.Status.RUNNING and run.batch > 0


def test_a_run_whose_worker_is_killed_is_marked_failed_when_the_worker_comes_back(
        private_broker, active_model, labelled, start_worker, staff):
    doomed = start_worker("training")
    run = services.training_run_start(user=staff, options=LONG_RUN, enqueue=False)
    services._enqueue_training(run.id)
    wait_until(lambda: _running_with_progress(run.id), timeout=120, what="the run training")

    os.killpg(doomed.process.pid, signal.SIGKILL)
    doomed.process.wait(timeout=10)
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.RUNNING  # nobody knows yet

    start_worker("training", restarts=doomed)

    wait_until(lambda: TrainingRun.objects.get(id=run.id).status == TrainingRun.Status.FAILED,
               what="the run marked failed")
    run.refresh_from_db()
    assert run.error == services.WORKER_LOST
    assert run.holds_slot is None and run.model_version is None
    assert list(ModelVersion.objects.filter(is_active=True)) == [active_model]
    # The slot is free: a new run can be started.
    assert services.training_run_start(user=staff, options={"epochs": 1}, enqueue=False).status == "queued"


def _descendants(pid):
    """Every process below pid, read from /proc (children of children included)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we looked
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


@pytest.mark.parametrize("loader_workers", [0, 2], ids=["photos-loaded-in-the-run", "two-loader-processes"])
def test_cancelling_a_running_run_stops_it_and_keeps_the_active_model(
        private_broker, active_model, labelled, start_worker, staff, api_as, loader_workers):
    worker = start_worker("training", TRAINING_LOADER_WORKERS=loader_workers)
    run = services.training_run_start(user=staff, options=LONG_RUN, enqueue=False)
    services._enqueue_training(run.id)
    wait_until(lambda: _running_with_progress(run.id), timeout=120, what="the run training")
    if loader_workers:
        wait_until(lambda: len(_descendants(worker.process.pid)) > 1, timeout=30,
                   what="loader processes running below the pool process")

    response = api_as(staff).post(f"/api/v1/training-runs/{run.id}/cancel/")
    assert response.status_code == 202, response.text

    wait_until(lambda: TrainingRun.objects.get(id=run.id).status == TrainingRun.Status.CANCELLED,
               what="the run cancelled")
    run.refresh_from_db()
    assert run.epoch < LONG_RUN["epochs"]
    assert "active model is unchanged" in run.error
    assert not ModelVersion.objects.exclude(id=active_model.id).exists()
    assert ModelVersion.objects.get(is_active=True) == active_model
    assert not list(active_model.path.parent.glob(f"model-{run.id}-*"))  # no orphan files
    # Nothing is left running below the worker but its one pool process: no loader processes.
    wait_until(lambda: len(_descendants(worker.process.pid)) == 1, timeout=30,
               what="only the pool process left below the worker")
