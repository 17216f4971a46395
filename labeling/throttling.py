"""Limits on logins and uploads, counted in the shared cache so that every web process agrees."""

import hashlib
import logging
import unicodedata

from django.conf import settings
from django.core.cache import cache
from redis.exceptions import RedisError
from rest_framework.throttling import UserRateThrottle

logger = logging.getLogger(__name__)

# The counters live in Redis. When it is briefly away the limits are not enforced (logged),
# rather than every upload and login failing: Redis is also the broker, and the sweeper
# re-sends what was accepted meanwhile.
CACHE_ERRORS = (RedisError, ConnectionError, TimeoutError, OSError)


def _cache_down(what):
    logger.warning("The cache is unavailable: %s is not rate-limited until it is back.", what, exc_info=True)


class UploadRateThrottle(UserRateThrottle):
    """Uploads per user (rate from UPLOAD_THROTTLE_RATE, e.g. "60/min")."""

    scope = "uploads"

    def get_rate(self):
        return settings.UPLOAD_THROTTLE_RATE

    def allow_request(self, request, view):
        try:
            return super().allow_request(request, view)
        except CACHE_ERRORS:
            _cache_down("uploading")
            return True

    def wait_message(self):
        return too_many_uploads(self.wait())


def too_many_uploads(wait) -> str:
    """wait: seconds until the next upload is allowed; None when DRF cannot tell, which is when
    the limit was lowered below the uploads a user made within its window."""
    when = f"in {int(wait) + 1} s" if wait is not None else "when the limit's window has passed"
    return f"Too many uploads: at most {settings.UPLOAD_THROTTLE_RATE}. Try again {when}."


def upload_allowed(request):
    """The page's form upload counts against the same limit as the API's."""
    throttle = UploadRateThrottle()
    return throttle.allow_request(request, None), throttle


class LoginLimiter:
    """Failed logins are counted per username and per client address. Past LOGIN_MAX_FAILURES
    for a username, or LOGIN_MAX_FAILURES_PER_ADDRESS for an address, every attempt for it is
    refused until the window passes, right password or not.

    The address has a limit of its own, ten times larger by default: a whole team logs in from
    one address behind a proxy or a NAT, and one person's typos locked every account out.
    """

    def __init__(self, request, username):
        # The username is the client's text, of any length and any characters: the key holds
        # its digest, so that it stays short and valid for every cache backend. It is folded as
        # the login form folds it (NFKC), so that "ｓｔａｆｆ" counts against "staff", which it logs in as.
        folded = unicodedata.normalize("NFKC", (username or "").strip()).casefold()
        user = hashlib.sha256(folded.encode("utf-8", "surrogatepass")).hexdigest()
        self.keys = [f"login-fail:user:{user}",
                     f"login-fail:addr:{request.META.get('REMOTE_ADDR', '')}"]

    def blocked(self):
        limits = (settings.LOGIN_MAX_FAILURES, settings.LOGIN_MAX_FAILURES_PER_ADDRESS)
        try:
            return any((cache.get(key) or 0) >= limit for key, limit in zip(self.keys, limits))
        except CACHE_ERRORS:
            _cache_down("logging in")
            return False

    def record_failure(self):
        try:
            for key in self.keys:
                if cache.add(key, 1, settings.LOGIN_FAILURE_WINDOW):
                    continue
                try:
                    cache.incr(key)
                except ValueError:  # expired between add and incr
                    cache.add(key, 1, settings.LOGIN_FAILURE_WINDOW)
        except CACHE_ERRORS:
            _cache_down("logging in")

    @staticmethod
    def message():
        minutes = max(1, settings.LOGIN_FAILURE_WINDOW // 60)
        return f"Too many failed logins. Try again in {minutes} minute{'s' if minutes != 1 else ''}."
