import logging
from datetime import timedelta

from celery import Task, shared_task
from celery.exceptions import TimeLimitExceeded
from django.conf import settings
from django.db import InterfaceError, OperationalError
from kombu.exceptions import OperationalError as BrokerError

from . import services, webhooks

logger = logging.getLogger(__name__)

# Errors that pass when the database or broker comes back: retried with backoff.
TRANSIENT_ERRORS = (OperationalError, InterfaceError, BrokerError, ConnectionError, TimeoutError)


class PhotoTask(Task):
    def on_failure(self, exc, task_id, args, kwargs, einfo):
        # After the last retry (or a permanent error) the photo says why, never stays queued.
        photo_id = args[0] if args else kwargs.get("photo_id")
        logger.error("Prediction for photo %s failed for good: %s", photo_id, exc)
        services.photo_mark_failed(photo_id, failure_reason(exc))


def failure_reason(exc) -> str:
    """What the uploader reads: the kind of failure. An error's own text can name the server's
    paths or quote SQL; it is in the log (above), not here."""
    from classifier.inference import ModelIntegrityError

    if isinstance(exc, ModelIntegrityError):  # its message is written for the page
        return f"Prediction failed: {exc}"
    if isinstance(exc, TimeLimitExceeded):
        return (f"Prediction failed: it took longer than {PREDICTION_TIME_LIMIT} s, and its worker process "
                "was stopped.")
    if isinstance(exc, TRANSIENT_ERRORS):
        return "Prediction failed: the database or the queue stayed unavailable through every retry."
    if isinstance(exc, OSError):  # PIL's UnidentifiedImageError included
        return "Prediction failed: the photo's file is missing or cannot be read."
    return f"Prediction failed ({type(exc).__name__}); the worker's log has the details."


# A prediction takes well under a second, a worker process's first one the model's load too: one
# that runs this long is stuck (a hung file system, a native library), and would hold its worker
# process for ever. The process is stopped and replaced, and the photo fails saying so.
PREDICTION_TIME_LIMIT = 300


@shared_task(
    base=PhotoTask, bind=True, acks_late=True, autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=True, retry_backoff_max=60, max_retries=5, time_limit=PREDICTION_TIME_LIMIT,
)
def photo_predict_task(self, photo_id):
    # The task id names its batch claims: a retry or redelivery of this task takes them back.
    services.photo_predict(photo_id, claimant=self.request.id or "")


@shared_task(acks_late=True, ignore_result=True)
def photos_sweep_task():
    """Periodic: nothing stays queued forever."""
    services.photos_requeue_stuck(older_than=timedelta(seconds=settings.SWEEP_QUEUED_AFTER_SECONDS))


# An attempt waits WEBHOOK_TIMEOUT_SECONDS (at most 60) for the address: one running longer is stuck.
WEBHOOK_TIME_LIMIT = 180


@shared_task(acks_late=True, ignore_result=True, time_limit=WEBHOOK_TIME_LIMIT)
def webhook_deliver_task(delivery_id):
    webhooks.webhook_delivery_send(delivery_id)


@shared_task(acks_late=True, ignore_result=True)
def webhook_deliveries_sweep_task():
    """Periodic: no delivery is left unsent because a message or a worker process was lost."""
    webhooks.webhook_deliveries_sweep()
