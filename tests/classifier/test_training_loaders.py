"""Data-loading workers: a GPU gets processes that decode and augment the photos, the CPU none,
the training task may start them from Celery's daemonic pool process, and the exported model
carries none of them."""

import multiprocessing
from unittest import mock

import pytest
import torch
from fastai.learner import load_learner

from classifier import tasks
from classifier.demo_images import generate_dataset
from classifier.training import TrainingOptions, loader_workers, train

TINY = {"architecture": "resnet18", "image_size": 32, "epochs": 1, "batch_size": 4, "pretrained": False}


def test_the_cpu_trains_with_no_data_loading_workers():
    assert loader_workers(torch.device("cpu")) == 0


@pytest.mark.parametrize("cores, expected", [(1, 0), (2, 1), (4, 3), (9, 8), (64, 8)])
def test_a_gpu_gets_one_worker_fewer_than_the_cores_it_may_use_and_at_most_eight(cores, expected):
    with mock.patch("classifier.cores.given", return_value=cores):
        assert loader_workers(torch.device("cuda")) == expected


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_a_number_of_workers_asked_for_is_used_on_either_device(device):
    assert loader_workers(torch.device(device), 3) == 3
    assert loader_workers(torch.device(device), 0) == 0


def test_a_run_with_loading_workers_trains_and_exports_a_model_whose_loaders_start_none(tmp_path):
    generate_dataset(tmp_path / "data", per_label=4, size=64, seed=3)
    paths = sorted((tmp_path / "data").glob("*/*.jpg"))
    rows = [(str(p), p.parent.name, i % 4 == 0) for i, p in enumerate(paths)]

    result = train(rows, TrainingOptions(**TINY), tmp_path / "model.pkl", workers=2)

    assert any("2 data-loading workers" in line for line in result.log), result.log
    assert len(result.history) == 1
    exported = load_learner(tmp_path / "model.pkl", cpu=True)
    for dl in exported.dls.loaders:
        assert dl.fake_l.num_workers == 0
        assert dl.pin_memory is False
        assert dl.new().fake_l.num_workers == 0  # what test_dl and a user's own loaders build on


def _report_the_flag_inside_and_after(queue):
    # Runs in a daemonic process, as Celery's pool processes are.
    before = multiprocessing.current_process().daemon
    with tasks._children_allowed():
        child = multiprocessing.get_context("fork").Process(target=int)
        child.start()
        child.join()
        inside = child.exitcode
    queue.put((before, inside, multiprocessing.current_process().daemon))


def test_the_training_task_may_start_processes_from_a_daemonic_one_and_puts_the_flag_back():
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    process = context.Process(target=_report_the_flag_inside_and_after, args=(queue,), daemon=True)
    process.start()
    before, child_exit, after = queue.get(timeout=30)
    process.join(timeout=30)

    assert (before, child_exit, after) == (True, 0, True)


@pytest.mark.timeout(120)
def test_a_run_with_loading_workers_after_a_worker_ping_nobody_answered_does_not_hang(client, db, tmp_path):
    """The unanswered ping of /healthz used to leave a broker channel waiting for its reply in the
    app's connection pool; each forked loader worker then hung for ever closing it (kombu's
    after-fork cleanup), and the training with it."""
    assert client.get("/healthz").status_code == 503  # no worker runs here to answer
    generate_dataset(tmp_path / "data", per_label=4, size=64, seed=3)
    paths = sorted((tmp_path / "data").glob("*/*.jpg"))
    rows = [(str(p), p.parent.name, i % 4 == 0) for i, p in enumerate(paths)]

    result = train(rows, TrainingOptions(**TINY), tmp_path / "model.pkl", workers=2)

    assert len(result.history) == 1
