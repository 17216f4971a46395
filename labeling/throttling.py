"""Limits on logins and uploads, counted in the shared cache so that every web process agrees."""

import hashlib
import logging
import math
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
    """Uploads per user: at most UPLOAD_THROTTLE_RATE (e.g. "120/min") in any period of its length.

    Counted with the cache's atomic add and incr. DRF's own throttle reads a user's list of recent
    requests, appends and writes it back, so uploads sent at once all read the same list: 16 at
    once passed a limit of 5. Two fixed windows stand in for a sliding one: the previous window's
    count weighs by the share of it that still lies within the last `duration` seconds.
    """

    scope = "uploads"

    def get_rate(self):
        return settings.UPLOAD_THROTTLE_RATE

    def allow_request(self, request, view):
        key = self.get_cache_key(request, view)
        if self.rate is None or key is None:
            return True
        try:
            return self._count(key)
        except CACHE_ERRORS:
            _cache_down("uploading")
            return True

    def _count(self, key):
        self.now = self.timer()
        window = int(self.now // self.duration)
        current = f"{key}:{window}"
        try:
            cache.add(current, 0, self.duration * 2)  # kept while it is the previous window too
            count = cache.incr(current)
        except ValueError:  # evicted or flushed between the two: this upload is the first
            cache.set(current, count := 1, self.duration * 2)
        self.previous = cache.get(f"{key}:{window - 1}") or 0
        weight = 1 - (self.now / self.duration) % 1  # the previous window's share of the last period
        if self.previous * weight + count <= self.num_requests:
            return True
        self.count = count - 1
        try:
            cache.decr(current)  # a refused upload does not count against the next ones
        except ValueError:
            pass
        return False

    def wait(self):
        """Seconds until an upload would be allowed again (after a refusal); None when never."""
        limit, into = self.num_requests, (self.now / self.duration) % 1
        if self.count + 1 <= limit:
            # In this window, once enough of the previous one has slid out of the last period.
            return (1 - (limit - self.count - 1) / self.previous - into) * self.duration
        if limit < 1:
            return None
        # In the next window, where this one's count weighs less and less.
        return (1 - into + 1 - (limit - 1) / self.count) * self.duration

    def wait_message(self):
        return too_many_uploads(self.wait())


def too_many_uploads(wait) -> str:
    """wait: seconds until the next upload is allowed; None when none ever is (a limit of 0)."""
    when = f"in {retry_after(wait)} s" if wait is not None else "when the limit's window has passed"
    return f"Too many uploads: at most {settings.UPLOAD_THROTTLE_RATE}. Try again {when}."


def retry_after(wait) -> int:
    """Whole seconds to wait, rounded up: an answer that says 2 s must not be refused at 1.9."""
    return max(1, math.ceil(wait))


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
