"""Settings for the test suite: real PostgreSQL and Redis on 127.0.0.1."""

import os

# Tests run against PostgreSQL unless told otherwise; set before base reads it.
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/plantsite")
# Playwright's sync API runs an event loop in the test thread; the ORM calls made by the
# live server and fixtures there are still synchronous and safe.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

from .base import *  # noqa: E402,F401,F403
from .env import env_bool, env_float, env_str  # noqa: E402

DEBUG = False
# The suite empties this Redis database: TEST_REDIS_URL only, never the REDIS_URL (or
# CELERY_BROKER_URL, CACHE_URL) a developer exported for `make run`.
REDIS_URL = env_str("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
CELERY_BROKER_URL = REDIS_URL
# Celery reads these from the environment before its settings.
for _name in ("CELERY_BROKER_URL", "CELERY_BROKER_READ_URL", "CELERY_BROKER_WRITE_URL"):
    os.environ.pop(_name, None)
# Per-test cache (cleared by a fixture) so that counters never leak between tests.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
# No random audits unless a test asks for them: routing tests must be deterministic. The
# audit tests (and worker processes started with AUDIT_FRACTION in their environment) set it.
AUDIT_FRACTION = env_float("AUDIT_FRACTION", 0.0, minimum=0.0, maximum=1.0)
# Nor unfamiliar photos: a photo unlike a tiny test model's few training photos would go to an
# expert. The familiarity tests turn it on.
UNFAMILIAR_CHECK = env_bool("UNFAMILIAR_CHECK", False)
# Short waits for photo updates: generated API requests (schemathesis) must not hang the suite.
PHOTO_UPDATES_MAX_WAIT = env_float("PHOTO_UPDATES_MAX_WAIT", 2.0, minimum=0.0)
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
