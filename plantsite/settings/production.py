"""Production: refuses to start without a secret key and allowed hosts."""

from .base import *  # noqa: F401,F403
from .env import env_bool, env_hosts, env_int, env_str

SECRET_KEY = env_str("SECRET_KEY", required=True)
ALLOWED_HOSTS = env_hosts("ALLOWED_HOSTS", [])
if not ALLOWED_HOSTS:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured("The environment variable ALLOWED_HOSTS must be set.")
DEBUG = False
# Keep database connections for a minute (web threads and worker processes alike): a new
# PostgreSQL backend per request or per photo costs more than the work itself.
DATABASES["default"]["CONN_MAX_AGE"] = env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0)  # noqa: F405

SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
# A load balancer's health check comes over plain HTTP, straight to gunicorn: redirected, it
# only ever saw a 301. (Matched against the path without its leading slash.)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
SECURE_CONTENT_TYPE_NOSNIFF = True
# The broker's Redis must keep queued tasks across restarts and never evict them:
# `check --deploy` warns unless it runs with appendonly yes and maxmemory-policy noeviction.
REDIS_REQUIRE_DURABLE = env_bool("REDIS_REQUIRE_DURABLE", True)
# A webhook's address may not be on the server's own network unless this says so.
WEBHOOK_ALLOW_PRIVATE_ADDRESSES = env_bool("WEBHOOK_ALLOW_PRIVATE_ADDRESSES", False)
