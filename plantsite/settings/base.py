"""Settings shared by every environment. Each value can be overridden from the environment."""

from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from .env import env_bool, env_choice, env_float, env_hosts, env_int, env_origins, env_rate, env_str, env_url

BASE_DIR = Path(__file__).resolve().parent.parent.parent

SECRET_KEY = env_str("SECRET_KEY", "insecure-local-development-key-do-not-use-in-production")
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_hosts("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
# Behind a TLS proxy that serves the site at another origin than the one Django sees, form
# posts need that origin here (e.g. https://plants.example.org), or CSRF refuses them.
CSRF_TRUSTED_ORIGINS = env_origins("CSRF_TRUSTED_ORIGINS")
# Durations are bounded: a huge one overflowed the date arithmetic of every photo or run.
WEEK = 7 * 24 * 3600

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "labeling",
    "classifier",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # /healthz probed by IP address (a load balancer): the check, not a 400 for the Host.
    "labeling.middleware.HealthCheckHostMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # A database that is briefly away: 503 + Retry-After instead of a 500 (see handler500 too).
    "labeling.middleware.DatabaseUnavailableMiddleware",
    # A photo deleted while a request about it ran: 404, not a 500.
    "labeling.middleware.DeletedPhotoMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # Django's, but an API path without its slash is a 404 naming the path, not a redirect.
    "labeling.middleware.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    # A NUL character in the path, the query or a page form: 400, not PostgreSQL's DataError.
    "labeling.middleware.NullCharactersMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "labeling.middleware.SecurityHeadersMiddleware",
]

ROOT_URLCONF = "plantsite.urls"
WSGI_APPLICATION = "plantsite.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "labeling.context_processors.roles",
                "labeling.context_processors.result_polling",
            ],
        },
    },
]

# SQLite by default so that `make run` needs no database server; DATABASE_URL switches.
# Lower case: not a setting, so that its password never shows on a debug page.
_database_url = env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
try:
    DATABASES = {
        "default": dj_database_url.parse(
            _database_url,
            conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0, minimum=0),
            # A kept connection that died (a database restart) is replaced, not used and failed.
            conn_health_checks=True,
        )
    }
except ValueError as exc:  # dj-database-url's own message does not name the variable
    # Without the value: a database URL holds its password.
    raise ImproperlyConfigured(f"DATABASE_URL is not a database URL: {exc}") from None
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(BASE_DIR / "media")))
# A request's form fields (or a non-multipart body) above this are refused; its files are not
# counted here. Of a file, UploadLimitHandler keeps at most UPLOAD_MAX_BYTES + 1 bytes, which the
# photo checks refuse as too large (the rest is read and dropped, so the proxy in front should
# cap the body size); the files of a body up to FILE_UPLOAD_MAX_MEMORY_SIZE are kept in memory,
# those of a larger one in temporary files.
DATA_UPLOAD_MAX_MEMORY_SIZE = 25 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 25 * 1024 * 1024
FILE_UPLOAD_HANDLERS = [
    "labeling.upload_limits.UploadLimitHandler",  # first: it cuts each file before the others keep it
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first: its WWW-Authenticate challenge makes a request without credentials
        # a 401, not a 403. Session authentication (with CSRF) still serves the pages' fetches.
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Plantsite API",
    "DESCRIPTION": "Upload plant photos, read predictions, review, and train models.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Photos and training runs both have a `status`: named here, the schema's enums never
    # collide (drf-spectacular warns otherwise, and `check --deploy` fails on warnings).
    "ENUM_NAME_OVERRIDES": {
        "PhotoStatusEnum": "labeling.models.Photo.Status",
        "TrainingRunStatusEnum": "classifier.models.TrainingRun.Status",
    },
}

# Redis is the cache, the broker and the channel of photo updates.
REDIS_SCHEMES = ("redis", "rediss", "unix")
# Counters for login and upload limits live in Redis so that every web process agrees.
REDIS_URL = env_url("REDIS_URL", "redis://127.0.0.1:6379/0", REDIS_SCHEMES)
CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                      "LOCATION": env_url("CACHE_URL", REDIS_URL, REDIS_SCHEMES)}}
UPLOAD_THROTTLE_RATE = env_rate("UPLOAD_THROTTLE_RATE", "120/min")
LOGIN_MAX_FAILURES = env_int("LOGIN_MAX_FAILURES", 5, minimum=1)
LOGIN_MAX_FAILURES_PER_ADDRESS = env_int("LOGIN_MAX_FAILURES_PER_ADDRESS", 50, minimum=1)
LOGIN_FAILURE_WINDOW = env_int("LOGIN_FAILURE_WINDOW", 900, minimum=1, maximum=WEEK)

# --- Celery ---------------------------------------------------------------------------
CELERY_BROKER_URL = env_url("CELERY_BROKER_URL", REDIS_URL, REDIS_SCHEMES)
# `check --deploy` warns when the broker's Redis could lose queued tasks (no AOF, or eviction
# allowed). Off by default; production turns it on.
REDIS_REQUIRE_DURABLE = env_bool("REDIS_REQUIRE_DURABLE", False)
CELERY_RESULT_BACKEND = None  # results live in the database rows, not in Celery
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Celery's Django fixup closes the worker's database connection before and after every task
# unless this is set: a new PostgreSQL backend per photo. With it, plantsite/celery.py closes a
# connection only when it is broken or older than DATABASE_CONN_MAX_AGE, as Django does per request.
CELERY_DB_REUSE_MAX = 1000
CELERY_TASK_DEFAULT_QUEUE = "inference"
CELERY_TASK_ROUTES = {
    # Before "labeling.tasks.*" (the first matching pattern wins): an address that is slow to
    # answer must hold neither a prediction nor a training run.
    "labeling.tasks.webhook*": {"queue": "webhooks"},
    "labeling.tasks.*": {"queue": "inference"},
    "classifier.tasks.training_run_execute": {"queue": "training"},
    # On purpose not "training": that worker runs one task at a time, for hours, and a dead one
    # consumes nothing, so there the sweep that marks its runs failed would wait for the very
    # worker it is looking for. The sweep is a cheap UPDATE of stale rows.
    "classifier.tasks.training_runs_sweep_task": {"queue": "inference"},
}
TRAINING_HARD_TIME_LIMIT = env_int("TRAINING_HARD_TIME_LIMIT", 6 * 3600, minimum=60, maximum=WEEK)
# The broker must not hand a long training task to a second worker while the first still
# runs it: the visibility timeout outlasts the task's hard limit.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": TRAINING_HARD_TIME_LIMIT + 600}
CELERY_TASK_ALWAYS_EAGER = False
# The sweeper: photos queued longer than this are sent again; running training runs whose
# heartbeat is older than TRAINING_HEARTBEAT_TIMEOUT are marked failed.
SWEEP_QUEUED_AFTER_SECONDS = env_int("SWEEP_QUEUED_AFTER_SECONDS", 120, minimum=1, maximum=WEEK)
TRAINING_HEARTBEAT_TIMEOUT = env_int("TRAINING_HEARTBEAT_TIMEOUT", 600, minimum=10, maximum=WEEK)
# Processes that decode and augment photos for a training run; unset: up to 8 on a GPU
# (it trains faster than one core can feed it), none on the CPU (classifier.training.loader_workers).
TRAINING_LOADER_WORKERS = env_int("TRAINING_LOADER_WORKERS", None, minimum=0)
# Each sweep expires when the next is due: with the workers down for an hour, beat's messages
# would otherwise pile up (120 photo sweeps) and all run when they came back.
CELERY_BEAT_SCHEDULE = {
    "sweep-queued-photos": {"task": "labeling.tasks.photos_sweep_task", "schedule": 30.0,
                            "options": {"expires": 30.0}},
    "sweep-training-runs": {"task": "classifier.tasks.training_runs_sweep_task", "schedule": 60.0,
                            "options": {"expires": 60.0}},
    "sweep-webhook-deliveries": {"task": "labeling.tasks.webhook_deliveries_sweep_task", "schedule": 30.0,
                                 "options": {"expires": 30.0}},
}
# Webhooks (labeling.webhooks): how long one attempt may wait for the address to answer, and
# whether an address may be on the server's own network (a loopback or private address: its
# database, its Redis, a cloud's metadata service). Allowed for a local setup; production refuses.
# The site's address as people reach it (https://plants.example.com): webhooks link to photos'
# pages with it. Unset: no links.
SITE_URL = env_url("SITE_URL", "", ("https", "http")).rstrip("/")
WEBHOOK_TIMEOUT_SECONDS = env_float("WEBHOOK_TIMEOUT_SECONDS", 10.0, minimum=0.1, maximum=60.0)
WEBHOOK_ALLOW_PRIVATE_ADDRESSES = env_bool("WEBHOOK_ALLOW_PRIVATE_ADDRESSES", True)
# Delivered events are kept this long for the webhook's page, then removed by the sweeper.
WEBHOOK_DELIVERED_KEEP_DAYS = env_int("WEBHOOK_DELIVERED_KEEP_DAYS", 30, minimum=1)

# --- Plantsite ------------------------------------------------------------------------
# A prediction at or above this confidence is saved at once; below it an expert decides.
CONFIDENCE_THRESHOLD = env_float("CONFIDENCE_THRESHOLD", 0.8, minimum=0.0, maximum=1.0)
# A photo less like the photos the model learned from than all but UNFAMILIAR_SHARE of its
# validation photos were is unfamiliar: its answer is not saved on its own (classifier.familiarity).
UNFAMILIAR_CHECK = env_bool("UNFAMILIAR_CHECK", True)
UNFAMILIAR_SHARE = env_float("UNFAMILIAR_SHARE", 0.01, minimum=0.0, maximum=0.5)
UPLOAD_MAX_BYTES = env_int("UPLOAD_MAX_BYTES", 20 * 1024 * 1024, minimum=1)
UPLOAD_MAX_PIXELS = env_int("UPLOAD_MAX_PIXELS", 40_000_000, minimum=1)
# An upload whose longer side exceeds this also gets a downscaled JPEG working copy, which
# inference and training read instead of the original (the model sees far fewer pixels).
WORKING_COPY_MAX_SIDE = env_int("WORKING_COPY_MAX_SIDE", 1024, minimum=1)
# Where exported learners live; files are loaded only if their sha256 matches the registry.
MODEL_ROOT = Path(env_str("MODEL_ROOT", str(MEDIA_ROOT / "models")))
# Threads per inference worker process; unset: the cores the worker is given divided by its
# pool processes, so that threads x processes match the cores (classifier.cores).
INFERENCE_THREADS = env_int("INFERENCE_THREADS", None, minimum=1)
# Each inference worker process loads the active model right after it starts (in a thread), so
# that the first photo does not wait for it.
INFERENCE_WARM_UP = env_bool("INFERENCE_WARM_UP", True)
# Queued photos that have waited INFERENCE_BATCH_WAIT seconds are predicted together with the
# photo a task is predicting, up to INFERENCE_BATCH_SIZE in one batch (1: no batching). An idle
# worker process takes a photo's task within milliseconds, so a photo that has waited 0.2 s is
# waiting because every process is busy: batching it then costs no one anything.
INFERENCE_BATCH_SIZE = env_int("INFERENCE_BATCH_SIZE", 16, minimum=1)
INFERENCE_BATCH_WAIT = env_float("INFERENCE_BATCH_WAIT", 0.2, minimum=0.0, maximum=WEEK)
# GET /api/v1/photos/updates/ waits for a change at most this long, and each web process lets
# at most this many such requests wait at once (each holds a thread; keep it under the threads).
PHOTO_UPDATES_MAX_WAIT = env_float("PHOTO_UPDATES_MAX_WAIT", 25.0, minimum=0.0, maximum=300.0)
PHOTO_UPDATES_MAX_WAITERS = env_int("PHOTO_UPDATES_MAX_WAITERS", 8, minimum=0)
# Shared labelling: how many labellers see each photo, whether they see the model's guess,
# and how long a served photo is held for one labeller.
LABELLING_OVERLAP = env_int("LABELLING_OVERLAP", 2, minimum=1)
LABELLING_SHOW_MODEL_GUESS = env_bool("LABELLING_SHOW_MODEL_GUESS", False)
LABELLING_LEASE_SECONDS = env_int("LABELLING_LEASE_SECONDS", 300, minimum=1, maximum=WEEK)
# Review: how long an expert's claim on a photo lasts; the fraction of would-be auto-accepted
# predictions that go to review as an audit.
REVIEW_CLAIM_SECONDS = env_int("REVIEW_CLAIM_SECONDS", 600, minimum=1, maximum=WEEK)
AUDIT_FRACTION = env_float("AUDIT_FRACTION", 0.05, minimum=0.0, maximum=1.0)
DEMO_CREDENTIALS_FILE = Path(env_str("DEMO_CREDENTIALS_FILE", str(BASE_DIR / ".demo-credentials")))

LOG_LEVEL = env_choice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
}

if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # The web server and two workers share the file: wait for a lock instead of failing.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 30
