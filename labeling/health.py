"""GET /healthz: the state of the database, the broker and the workers."""

import logging

from django.db import connection
from django.http import JsonResponse

logger = logging.getLogger(__name__)


def _database():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _broker():
    from plantsite.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


def _workers():
    from plantsite.celery import app

    # A connection of its own, closed here: from the app's pool, a ping that no worker answered
    # left a channel still waiting for its reply in the pool, and a process forked later (a
    # training run's data loaders) hung for ever closing that channel in kombu's after-fork cleanup.
    with app.connection_for_read() as connection:
        replies = app.control.inspect(timeout=1.0, connection=connection).ping() or {}
    if not replies:
        raise RuntimeError("no Celery worker answered")
    return sorted(replies)


def healthz(request):
    checks, down = {}, []
    for name, check in (("database", _database), ("broker", _broker), ("workers", _workers)):
        if name == "workers" and "broker" in down:
            # Workers are reached through the broker; asking would only hang.
            checks[name] = {"ok": False, "error": "unknown: the broker is down"}
            down.append(name)
            continue
        try:
            result = check()
            checks[name] = {"ok": True, **({"names": result} if result else {})}
        except Exception as exc:  # every failure is reported by name, none crashes the check
            logger.warning("Health check: the %s is down: %s: %s", name, type(exc).__name__, exc)
            checks[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
            down.append(name)
    if not _shows_details(request, down):
        checks = {name: {"ok": check["ok"]} for name, check in checks.items()}
    body = {"status": "ok" if not down else "down", "down": down, "checks": checks}
    return JsonResponse(body, status=200 if not down else 503)


def _shows_details(request, down):
    """Errors name hosts, ports, databases and worker nodes: staff see them, anyone else (a
    load balancer, a monitor) sees what is up and what is down; the log has the errors. Who asks
    is known only from the database, so with it down nobody is shown them."""
    return "database" not in down and request.user.is_staff
