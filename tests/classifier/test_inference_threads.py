"""An inference process takes its share of the cores the worker is given: threads x pool processes
match the cores, unless INFERENCE_THREADS says how many threads each process has."""

import os
from types import SimpleNamespace

import pytest
from celery.concurrency import get_implementation

from classifier import cores, tasks


@pytest.fixture(autouse=True)
def _one_pool_process_again():
    yield
    cores.inference_pool_started(1)


@pytest.fixture
def threads_unset(settings):
    settings.INFERENCE_THREADS = None


@pytest.mark.parametrize("given, processes, threads", [(2, 1, 2), (2, 2, 1), (8, 2, 4), (8, 3, 2), (2, 4, 1)])
def test_unset_threads_are_the_cores_given_shared_among_the_pool_processes(
        threads_unset, monkeypatch, given, processes, threads):
    monkeypatch.setattr(cores, "given", lambda: given)
    cores.inference_pool_started(processes)

    assert cores.inference_threads() == threads
    assert cores.inference_plan() == (f"{processes} pool process(es) x {threads} inference thread(s) (its share) "
                                      f"on {given} core(s)")


def test_a_process_of_its_own_uses_all_the_cores_it_is_given(threads_unset, monkeypatch):
    monkeypatch.setattr(cores, "given", lambda: 6)

    assert cores.inference_threads() == 6


def test_inference_threads_set_in_the_environment_win(settings, monkeypatch):
    settings.INFERENCE_THREADS = 3
    monkeypatch.setattr(cores, "given", lambda: 2)
    cores.inference_pool_started(2)

    assert cores.inference_threads() == 3
    assert "x 3 inference thread(s) (INFERENCE_THREADS)" in cores.inference_plan()


def test_the_cores_given_follow_the_cpu_affinity():
    allowed = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(allowed)})
        assert cores.given() == 1
    finally:
        os.sched_setaffinity(0, allowed)
    assert cores.given() == len(allowed)


def test_a_cgroup_cpu_quota_caps_the_cores_given(monkeypatch):
    import celery.utils.sysinfo

    monkeypatch.setattr(celery.utils.sysinfo, "cgroup_cpu_quota", lambda: 0.5)  # docker --cpus 0.5

    assert cores.given() == 1


def _inference_worker(pool, concurrency):
    """What celeryd_after_setup hands over: a worker consuming the inference queue."""
    app = SimpleNamespace(amqp=SimpleNamespace(queues=SimpleNamespace(consume_from={"inference": None})))
    return SimpleNamespace(concurrency=concurrency, app=app, pool_cls=get_implementation(pool))


def test_the_worker_records_its_pool_size_before_it_forks_the_pool(threads_unset, monkeypatch, caplog):
    monkeypatch.setattr(cores, "given", lambda: 4)

    tasks._share_the_cores_among_the_pool(sender="inference@test", instance=_inference_worker("prefork", 2))

    assert cores.inference_threads() == 2
    assert "Inference: 2 pool process(es) x 2 inference thread(s) (its share) on 4 core(s)." in caplog.text


def test_a_solo_worker_runs_its_tasks_in_one_process_whatever_its_concurrency(threads_unset, monkeypatch):
    monkeypatch.setattr(cores, "given", lambda: 4)

    tasks._share_the_cores_among_the_pool(sender="inference@test", instance=_inference_worker("solo", 4))

    assert cores.inference_threads() == 4
