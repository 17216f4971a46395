import logging
import sys

from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import DisallowedHost
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpResponse, JsonResponse
from django.middleware import common
from django.urls import is_valid_path
from django.views import defaults

from .health import healthz
from .models import Photo

logger = logging.getLogger(__name__)


class SecurityHeadersMiddleware:
    """A Content-Security-Policy on every page: scripts and styles only from this site."""

    POLICY = (
        "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
        "object-src 'none'; base-uri 'self'; frame-ancestors 'none'; form-action 'self'"
    )

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.setdefault("Content-Security-Policy", self.POLICY)
        response.setdefault("X-Content-Type-Options", "nosniff")
        return response


class HealthCheckHostMiddleware:
    """/healthz answers a probe whose Host is not in ALLOWED_HOSTS instead of a 400.

    Load balancers and orchestrators probe a server by its address (`Host: 10.0.3.7:8000`),
    which changes with every container and which ALLOWED_HOSTS need not list. Such a probe gets
    the check without details, and no session is read for it: the answer names no host, so the
    Host check guards nothing there. Everything else still gets Django's 400. Placed before the
    first middleware that reads the Host (CommonMiddleware)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path_info == "/healthz":
            try:
                request.get_host()
            except DisallowedHost:
                request.user = AnonymousUser()
                return healthz(request)
        return self.get_response(request)


NULL_CHARACTER = "The request contains a NUL character (%00), which no field here accepts."


class NullCharactersMiddleware:
    """A NUL character in the path, the query string or a page form's fields is a 400.

    PostgreSQL text cannot hold one, so any lookup with it fails with a DataError: a 500 from
    every view that passes a raw parameter on (a media file name, a label name in a form). The
    API's serializers refuse it already (DRF's CharField); this is the one place for the rest.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if "\x00" in request.path or _has_null(request.GET):
            return _bad_request(request, NULL_CHARACTER)
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        # Page forms only: CsrfViewMiddleware has parsed their fields already. The API's views
        # (csrf-exempt) read their own bodies through DRF's parsers, which must see them unread.
        if request.method == "POST" and not getattr(view_func, "csrf_exempt", False) and _has_null(request.POST):
            return _bad_request(request, NULL_CHARACTER)
        return None


def _has_null(query_dict) -> bool:
    return any("\x00" in key or any("\x00" in value for value in values) for key, values in query_dict.lists())


def _is_api(request) -> bool:
    return request.path.startswith("/api/")


def _bad_request(request, message):
    if _is_api(request):
        return JsonResponse({"detail": message}, status=400)
    return HttpResponse(message, status=400, content_type="text/plain; charset=utf-8")


DATABASE_UNAVAILABLE = "The database is unavailable; try again shortly."
RETRY_AFTER_SECONDS = 10
# Errors of a database that is down, restarting or unreachable: not bugs, and they pass.
DATABASE_DOWN_ERRORS = (OperationalError, InterfaceError)

_UNAVAILABLE_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Temporarily unavailable - Plantsite</title></head>
<body><h1>Temporarily unavailable</h1>
<p>The database is unavailable; try again shortly.</p></body></html>
"""


def database_unavailable_response(request):
    """503 with Retry-After: JSON for the API, a plain page (no template, no database) otherwise."""
    if _is_api(request):
        response = JsonResponse({"detail": DATABASE_UNAVAILABLE}, status=503)
    else:
        response = HttpResponse(_UNAVAILABLE_PAGE, status=503, content_type="text/html; charset=utf-8")
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


class DatabaseUnavailableMiddleware:
    """A database that is briefly away is a 503 with a clear message, not a 500.

    `process_exception` sees what views raise, which covers the lazy session and user lookups
    (they run in the view, on first use of request.user). What another middleware raises
    after the view (the session save) reaches `server_error`, the project's handler500.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, DATABASE_DOWN_ERRORS):
            logger.warning("Database unavailable during %s %s: %s", request.method, request.path,
                           str(exception).strip()[:300])
            return database_unavailable_response(request)
        return None


class DeletedPhotoMiddleware:
    """A photo deleted between a view's lookup and its service's row lock (its owner deleted it
    as an expert's decision arrived): the service's Photo.DoesNotExist is the 404 the lookup
    would have given a moment later, not a 500."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, Photo.DoesNotExist):
            return page_not_found(request, Http404("No such photo: it has been deleted."))
        return None


def server_error(request):
    """handler500: a database error raised outside a view is still a 503, anything else a 500
    (in JSON for the API, whose clients parse the answer)."""
    exception = sys.exc_info()[1]
    if isinstance(exception, DATABASE_DOWN_ERRORS):
        return database_unavailable_response(request)
    if _is_api(request):
        return JsonResponse({"detail": "Server error: it has been logged."}, status=500)
    return defaults.server_error(request)


def page_not_found(request, exception):
    """handler404: for the API, JSON like its views' own 404s; a path that lacks only its final
    slash is named (CommonMiddleware below does not redirect the API there)."""
    if not _is_api(request):
        return defaults.page_not_found(request, exception)
    detail = "Not found."
    if not request.path.endswith("/") and is_valid_path(f"{request.path_info}/", getattr(request, "urlconf", None)):
        detail = f"Not found: API paths end with a slash ({request.path}/)."
    return JsonResponse({"detail": detail}, status=404)


class CommonMiddleware(common.CommonMiddleware):
    """Django's, except that an API path without its final slash is not redirected: clients
    follow a 301 with a GET, so a POST (a review, a retry) was lost and answered 405."""

    def should_redirect_with_slash(self, request):
        return not _is_api(request) and super().should_redirect_with_slash(request)
