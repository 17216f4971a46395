"""Limits on logins and uploads, counted in the shared cache so that every web process agrees."""

from django.conf import settings
from django.core.cache import cache
from rest_framework.throttling import UserRateThrottle


class UploadRateThrottle(UserRateThrottle):
    """Uploads per user (rate from UPLOAD_THROTTLE_RATE, e.g. "60/min")."""

    scope = "uploads"

    def get_rate(self):
        return settings.UPLOAD_THROTTLE_RATE

    def wait_message(self):
        wait = self.wait()
        seconds = int(wait) + 1 if wait else 1
        return f"Too many uploads: at most {settings.UPLOAD_THROTTLE_RATE}. Try again in {seconds} s."


def upload_allowed(request):
    """The page's form upload counts against the same limit as the API's."""
    throttle = UploadRateThrottle()
    return throttle.allow_request(request, None), throttle


class LoginLimiter:
    """Failed logins are counted per username and per client address; past the limit, every
    attempt for either is refused until the window passes, right password or not."""

    def __init__(self, request, username):
        self.keys = [f"login-fail:user:{(username or '').strip().lower()}",
                     f"login-fail:addr:{request.META.get('REMOTE_ADDR', '')}"]

    def blocked(self):
        return any((cache.get(key) or 0) >= settings.LOGIN_MAX_FAILURES for key in self.keys)

    def record_failure(self):
        for key in self.keys:
            if cache.add(key, 1, settings.LOGIN_FAILURE_WINDOW):
                continue
            try:
                cache.incr(key)
            except ValueError:  # expired between add and incr
                cache.add(key, 1, settings.LOGIN_FAILURE_WINDOW)

    @staticmethod
    def message():
        minutes = max(1, settings.LOGIN_FAILURE_WINDOW // 60)
        return f"Too many failed logins. Try again in {minutes} minute{'s' if minutes != 1 else ''}."
