"""GET /healthz: the state of the database, the broker and the workers."""

from django.db import connection
from django.http import JsonResponse


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
            checks[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
            down.append(name)
    body = {"status": "ok" if not down else "down", "down": down, "checks": checks}
    return JsonResponse(body, status=200 if not down else 503)
