"""Strict parsing of settings from environment variables.

A typo in an environment variable should stop the process at start-up with a message that
names the variable, not surface later as a surprising default.
"""

import math
import os
import re

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
    the broker then failed on every task with a resolver error)."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip()
    scheme, separator, rest = value.partition("://")
    if not separator or scheme not in schemes or not rest:
        # Without the value: a URL may hold a password.
        raise ImproperlyConfigured(f"{name} is not a URL like {schemes[0]}://HOST:PORT/... "
                                   f"(scheme {', '.join(schemes)}).")
    return value


def env_list(name, default=()):
    raw = os.environ.get(name)
    if raw is None:
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]
