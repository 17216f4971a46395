import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "plantsite.settings.local")

app = Celery("plantsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.task_prerun.connect
@signals.task_postrun.connect
def _close_old_database_connections(task=None, **kwargs):
    # What Django does around every request: a worker keeps its connection between tasks
    # (CELERY_DB_REUSE_MAX), and drops it here when it is broken or older than CONN_MAX_AGE.
    # Not for a task run eagerly, inside the caller's own transaction.
    if task is not None and getattr(task.request, "is_eager", False):
        return
    from django.db import close_old_connections

    close_old_connections()
