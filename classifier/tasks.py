import logging
import multiprocessing
import os
import threading
from contextlib import contextmanager
from datetime import timedelta

from celery import current_app, shared_task
from celery.signals import celeryd_after_setup, worker_process_init, worker_ready
from django.conf import settings

from . import cores, services

logger = logging.getLogger(__name__)


# The soft limit comes first, a little before the hard one kills the process: the run then ends
# failed with the reason, and its files are removed (classifier.services.training_run_execute).
TRAINING_SOFT_TIME_LIMIT = settings.TRAINING_HARD_TIME_LIMIT - min(300, settings.TRAINING_HARD_TIME_LIMIT // 10)


@shared_task(bind=True, acks_late=True, time_limit=settings.TRAINING_HARD_TIME_LIMIT,
             soft_time_limit=TRAINING_SOFT_TIME_LIMIT)
def training_run_execute(self, run_id):
    request = self.request
    executor = f"process {os.getpid()} on {request.hostname}" if request.is_eager else request.hostname
    with _children_allowed():
        services.training_run_execute(run_id, executor=executor or "")


@contextmanager
def _children_allowed():
    # Celery's pool processes are daemonic, and multiprocessing refuses to start a process from a
    # daemonic one, lest it outlive its parent. A GPU run's data-loading workers are such
    # processes, and they cannot outlive it: torch's DataLoader workers watch their parent and
    # exit when it is gone. So the flag is lifted for the run, and put back after it.
    config = multiprocessing.current_process()._config
    daemon = config.get("daemon")
    config["daemon"] = False
    try:
        yield
    finally:
        if daemon is None:
            config.pop("daemon", None)
        else:
            config["daemon"] = daemon


@shared_task(acks_late=True, ignore_result=True)
def training_runs_sweep_task():
    """Periodic: a run whose worker died is marked failed, not left running forever."""
    services.training_runs_fail_stale(older_than=timedelta(seconds=settings.TRAINING_HEARTBEAT_TIMEOUT))


@worker_ready.connect
def _fail_runs_orphaned_by_a_dead_worker(sender, **kwargs):
    # The training worker runs one task at a time: when it (re)starts, none of its runs can be
    # running. Another worker's, or a `manage.py train` process's, may well be.
    queues = {q.name for q in sender.task_consumer.queues} if getattr(sender, "task_consumer", None) else set()
    if "training" in queues:
        failed = services.training_runs_fail_orphaned(worker=sender.hostname)
        if failed:
            logger.warning("Marked %d training run(s) failed: their worker had died.", failed)


@celeryd_after_setup.connect
def _share_the_cores_among_the_pool(sender, instance, **kwargs):
    # Runs in the worker's main process before it forks its pool: each pool process then takes
    # its share of the cores for torch and ONNX Runtime (classifier.cores.inference_threads).
    # The solo pool runs its tasks one at a time in this process, whatever -c says.
    solo = getattr(instance.pool_cls, "__module__", "") == "celery.concurrency.solo"
    cores.inference_pool_started(1 if solo else instance.concurrency)
    if "inference" in (instance.app.amqp.queues.consume_from or {}):
        logger.info("Inference: %s.", cores.inference_plan())


@worker_process_init.connect
def _warm_up_the_model_after_fork(**kwargs):
    # Each inference worker process loads its model after the fork (never in the parent, whose
    # torch threads would not survive it). Celery gives this handler seconds before it kills the
    # process, and loading takes longer: a thread does it, and a task that arrives meanwhile
    # waits for the same load (ModelCache holds its lock while loading).
    queues = current_app.amqp.queues.consume_from or {current_app.conf.task_default_queue: None}
    if settings.INFERENCE_WARM_UP and "inference" in queues:
        threading.Thread(target=services.model_cache_warm_up, name="model-warm-up", daemon=True).start()
