"""How many CPU cores this process is given, and how inference shares them.

An inference worker runs several pool processes, each with its own torch and ONNX Runtime thread
pool. More threads than cores in all makes them wait on each other (and on the web server and the
database, which share the machine); fewer leaves cores idle. So each process gets the cores the
worker is given divided by its pool processes, unless INFERENCE_THREADS says otherwise.
"""

from __future__ import annotations

import os

# Pool processes sharing the cores; the Celery worker sets it before it forks them (see
# classifier.tasks). A process of its own (manage.py predict, a web process) is one.
_pool_processes = 1


def given() -> int:
    """The cores this process may use: its CPU affinity (taskset, cpusets, docker --cpuset-cpus),
    capped to a cgroup CPU quota (docker --cpus), counted the way Celery sizes its own pool."""
    try:
        from celery.utils.sysinfo import cpu_budget
    except ImportError:  # a bare training environment (scripts/gpu_check) has no Celery
        return len(os.sched_getaffinity(0))
    return cpu_budget(use_cgroup_quota=True).count


def inference_pool_started(processes: int) -> None:
    """Record how many pool processes the worker starts; they inherit it when forked."""
    global _pool_processes
    _pool_processes = max(1, int(processes))


def inference_threads() -> int:
    """Threads for each inference process: INFERENCE_THREADS, or else its share of the cores."""
    from django.conf import settings

    if settings.INFERENCE_THREADS is not None:
        return settings.INFERENCE_THREADS
    return max(1, given() // _pool_processes)


def inference_plan() -> str:
    """One line for the worker's log: who shares which cores."""
    from django.conf import settings

    threads = inference_threads()
    source = "INFERENCE_THREADS" if settings.INFERENCE_THREADS is not None else "its share"
    return (f"{_pool_processes} pool process(es) x {threads} inference thread(s) ({source}) "
            f"on {given()} core(s)")
