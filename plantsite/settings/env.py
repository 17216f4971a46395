"""Strict parsing of settings from environment variables.

A typo in an environment variable should stop the process at start-up with a message that
names the variable, not surface later as a surprising default.
"""

import math
import os
import re
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def env_str(name, default=None, *, required=False):
    value = os.environ.get(name)
    if value is None or value == "":
        if required:
            raise ImproperlyConfigured(f"The environment variable {name} must be set.")
        return default
    return value


def env_bool(name, default=False):
    raw = os.environ.get(name)
    value = (raw or "").strip().lower()
    if not value:  # unset, as for every other kind: `REDIS_REQUIRE_DURABLE=` turned the checks off
        return default
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use 1/0, true/false, yes/no).")


def env_int(name, default, *, minimum=None, maximum=None):
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer.") from None
    _check_bounds(name, value, minimum, maximum)
    return value


def env_float(name, default, *, minimum=None, maximum=None):
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number.") from None
    # float() reads "nan" and "inf" too: NaN passes every bound (its comparisons are all false),
    # and either would break the arithmetic of whatever setting it is.
    if not math.isfinite(value):
        raise ImproperlyConfigured(f"{name}={raw!r} is not a finite number.")
    _check_bounds(name, value, minimum, maximum)
    return value


def _check_bounds(name, value, minimum, maximum):
    if minimum is not None and maximum is not None and not minimum <= value <= maximum:
        raise ImproperlyConfigured(f"{name}={value} must be between {minimum} and {maximum}.")
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} must be at least {minimum}.")
    if maximum is not None and value > maximum:
        raise ImproperlyConfigured(f"{name}={value} must be at most {maximum}.")


# A rate as DRF's throttles read it: a count, a slash, a period of which DRF reads only the
# first letter (so "10/fortnight" passed until the first upload failed with a KeyError).
_RATE = re.compile(r"^\d+/(s|sec|second|seconds|m|min|minute|minutes|h|hour|hours|d|day|days)$")


def env_rate(name, default):
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip()
    if not _RATE.match(value):
        raise ImproperlyConfigured(f"{name}={raw!r} is not a rate like 120/min (per s, min, hour or day).")
    return value


def env_choice(name, default, choices):
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.strip() not in choices:
        raise ImproperlyConfigured(f"{name}={raw!r} is not one of {', '.join(choices)}.")
    return raw.strip()


def env_url(name, default, schemes):
    """A URL whose scheme is one of `schemes` ("redis:/host" or "garbage" passed start-up, and
    the broker then failed on every task with a resolver error), whose port is a port, and whose
    path is a Redis database number where the scheme is redis or rediss.

    The messages never hold the value: a URL may hold a password."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip()
    scheme, separator, rest = value.partition("://")
    if not separator or scheme not in schemes or not rest:
        raise ImproperlyConfigured(f"{name} is not a URL like {schemes[0]}://HOST:PORT/... "
                                   f"(scheme {', '.join(schemes)}).")
    # A port like "abc" passed, and every login then failed with a 500 when the cache client
    # parsed it (a ValueError, not one of the cache errors the login limits survive).
    try:
        parts = urlsplit(value)
        readable = parts.port != 0  # .port raises for one that is not digits or is above 65535
    except ValueError:  # that, or an IPv6 host without its closing "]"
        readable = False
    if not readable:
        raise ImproperlyConfigured(f"{name} has a host or port that cannot be read: the port must be a "
                                   f"number from 1 to 65535 (e.g. {schemes[0]}://HOST:6379/0). {_PASSWORD_HINT}")
    # redis-py and kombu read the path as the database number; kombu refused "/notadb" only
    # when the first task was sent.
    if scheme in ("redis", "rediss") and not _REDIS_DB_PATH.fullmatch(parts.path):
        raise ImproperlyConfigured(f"{name} must end with a database number like /0, or nothing, after "
                                   f"HOST:PORT. {_PASSWORD_HINT}")
    return value


# The path of a redis:// URL: none, "/" (database 0, as redis-py and kombu both read it) or "/N".
_REDIS_DB_PATH = re.compile(r"(/[0-9]*)?")
# A password holding one of these cuts the URL short, and its rest reads as a port or a path.
_PASSWORD_HINT = "A password's / ? # @ must be percent-encoded (%2F %3F %23 %40)."


def env_list(name, default=()):
    raw = os.environ.get(name)
    if raw is None:
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_hosts(name, default=()):
    """Host names as Django's ALLOWED_HOSTS matches them. "a.com b.com" or "https://a.com" passed
    start-up, and then every request was a 400: no Host header ever matches such an entry."""
    hosts = env_list(name, default)
    for host in hosts:
        bracketed = host.startswith("[") and host.endswith("]")  # an IPv6 address, e.g. [::1]
        # "/": a scheme or a path; ":" outside brackets: a port, which Django never compares.
        if "/" in host or any(c.isspace() for c in host) or (":" in host and not bracketed):
            raise ImproperlyConfigured(f"{name} has {host!r}: it takes comma-separated host names like "
                                       "plants.example.org (no scheme, path or port; .example.org for its "
                                       "subdomains too).")
    return hosts


def env_origins(name, default=()):
    """Origins as Django's CSRF_TRUSTED_ORIGINS compares them with a request's Origin header:
    a scheme and a host (and port), nothing after. Django's own check of the scheme runs with
    manage.py's commands, not when gunicorn starts; without one, every form post is a 403."""
    origins = env_list(name, default)
    for origin in origins:
        scheme, separator, rest = origin.partition("://")
        if scheme not in ("http", "https") or not separator or not rest or "/" in rest:
            raise ImproperlyConfigured(f"{name} has {origin!r}: each entry must start with https:// (or "
                                       "http://) and name only the host, like https://plants.example.org.")
    return origins
