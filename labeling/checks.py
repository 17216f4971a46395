"""Deployment checks (`manage.py check --deploy`) for the Redis that Celery uses as its broker.

The broker holds the only copy of every queued prediction and training task. A Redis that
keeps them only in memory loses them all when it restarts, and one allowed to evict keys
drops them silently under memory pressure: production's broker must run with
`--appendonly yes --maxmemory-policy noeviction`. These two are checked when
REDIS_REQUIRE_DURABLE is on (production's default); a broker that cannot be reached is
reported whatever it is set to.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from django.conf import settings
from django.core.checks import Warning, register

W_APPENDONLY = "plantsite.W001"
W_EVICTION = "plantsite.W002"
W_UNREACHABLE = "plantsite.W003"
W_UNREADABLE = "plantsite.W004"
CONNECT_TIMEOUT = 2.0  # seconds: a check must not hang on a broker that does not answer

DURABLE_HINT = ("Run the broker's Redis with `--appendonly yes --maxmemory-policy noeviction` (or set them in "
                "redis.conf), or set REDIS_REQUIRE_DURABLE=0 where losing queued tasks on a restart is acceptable.")


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


@register("plantsite", deploy=True)
def broker_redis_is_durable(app_configs=None, **kwargs):
    import redis

    url = settings.CELERY_BROKER_URL
    if not url.startswith(("redis://", "rediss://", "unix://")):
        return []  # another broker: nothing Redis-specific to check
    shown = _without_password(url)
    client = redis.Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=CONNECT_TIMEOUT)
    try:
        client.ping()
        if not settings.REDIS_REQUIRE_DURABLE:
            return []
        try:
            config = {**client.config_get("appendonly"), **client.config_get("maxmemory-policy")}
        except redis.RedisError as exc:  # e.g. a managed Redis that disables CONFIG
            return [Warning(f"Could not read the configuration of the broker's Redis at {shown}: {exc}",
                            hint=DURABLE_HINT, id=W_UNREADABLE)]
    except redis.RedisError as exc:
        return [Warning(f"The Celery broker's Redis at {shown} cannot be reached: {exc}",
                        hint="Start Redis, or correct REDIS_URL / CELERY_BROKER_URL.", id=W_UNREACHABLE)]
    finally:
        client.close()
    found = []
    appendonly = _text(config.get("appendonly"))
    if appendonly != "yes":
        found.append(Warning(
            f"The broker's Redis at {shown} runs with appendonly {appendonly or 'unset'}: a restart loses every "
            "queued task.", hint=DURABLE_HINT, id=W_APPENDONLY))
    policy = _text(config.get("maxmemory-policy"))
    if policy != "noeviction":
        found.append(Warning(
            f"The broker's Redis at {shown} runs with maxmemory-policy {policy or 'unset'}: under memory pressure "
            "it may evict queued tasks.", hint=DURABLE_HINT, id=W_EVICTION))
    return found


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")
