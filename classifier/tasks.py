from celery import shared_task
from django.conf import settings

from . import services


@shared_task(acks_late=True, time_limit=settings.TRAINING_HARD_TIME_LIMIT)
def training_run_execute(run_id):
    services.training_run_execute(run_id)
