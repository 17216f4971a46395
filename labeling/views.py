import functools
import mimetypes

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.http import FileResponse, Http404, HttpResponse, HttpResponseForbidden
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST
from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed

from . import selectors, services
from .forms import UploadForm
from .image_checks import ImageRejected
from .models import is_expert
from .review import prediction_hidden_from
from .throttling import upload_allowed


def expert_required(view):
    @login_required
    def wrapped(request, *args, **kwargs):
        if not is_expert(request.user):
            return HttpResponseForbidden("Only experts and staff can review photos.")
        return view(request, *args, **kwargs)

    wrapped.__name__ = view.__name__
    return wrapped


def staff_required(view):
    """The staff's pages: the login page for a visitor, a 403 for a logged-in member or expert
    (Django's staff_member_required sent them to the admin's login page, as if logged out)."""
    @functools.wraps(view)
    @login_required
    def wrapped(request, *args, **kwargs):
        if not request.user.is_staff:
            return HttpResponseForbidden("Only staff can open this page.")
        return view(request, *args, **kwargs)

    return wrapped


def login_or_token_required(view):
    """login_required that also takes the API's token (Authorization: Token ...): for the photo
    files whose URLs the API answers with, so that a token client can fetch what it is shown."""
    @functools.wraps(view)
    def wrapped(request, *args, **kwargs):
        if not request.user.is_authenticated and request.META.get("HTTP_AUTHORIZATION"):
            try:
                found = TokenAuthentication().authenticate(request)
            except AuthenticationFailed as exc:
                response = HttpResponse(str(exc.detail), status=401, content_type="text/plain; charset=utf-8")
                response["WWW-Authenticate"] = "Token"
                return response
            if found is not None:
                request.user = found[0]
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        return view(request, *args, **kwargs)

    return wrapped


@login_required
def home(request):
    form = UploadForm()
    if request.method == "POST":  # the no-JavaScript upload; the page itself uploads with fetch
        form = UploadForm(request.POST, request.FILES)
        allowed, throttle = upload_allowed(request)
        if not allowed:
            form.add_error(None, throttle.wait_message())
            return render(request, "labeling/home.html", {"form": form, "photos": []}, status=429)
        if form.is_valid():
            try:
                photo = services.photo_upload(owner=request.user, fileobj=form.cleaned_data["image"])
            except ImageRejected as exc:
                form.add_error("image", exc.message)
            else:
                return redirect("photo-detail", pk=photo.pk)
    photos = selectors.photos_visible_to(request.user).filter(owner=request.user)[:50]
    return render(request, "labeling/home.html", {"form": form, "photos": photos})


@login_required
def photo_detail(request, pk):
    photo = get_object_or_404(selectors.photos_visible_to(request.user), pk=pk)
    return render(request, "labeling/photo_detail.html",
                  {"photo": photo, "show_prediction": not prediction_hidden_from(photo, request.user)})


@login_required
@require_POST
def photo_retry(request, pk):
    photo = get_object_or_404(selectors.photos_visible_to(request.user), pk=pk)
    try:
        services.photo_retry(photo_id=photo.pk)
    except services.RetryConflict as exc:
        messages.warning(request, str(exc))
    else:
        messages.success(request, f"Photo {photo.pk} is queued for the model again.")
    return redirect("photo-detail", pk=photo.pk)


@login_or_token_required
def photo_file(request, name):
    """Photos are served only to those who may see them, never sniffed as another type."""
    photo = get_object_or_404(selectors.photos_visible_to(request.user), image=f"photos/{name}")
    return serve_photo_file(photo)


def serve_photo_file(photo):
    """The stored original, inline under a generated name, never sniffed as another type."""
    content_type = mimetypes.guess_type(photo.image.name)[0] or "application/octet-stream"
    try:
        response = FileResponse(photo.image.open("rb"), content_type=content_type)
    except FileNotFoundError:
        raise Http404("The file is missing.") from None
    response["Content-Disposition"] = f'inline; filename="photo-{photo.pk}.{photo.image.name.rsplit(".", 1)[-1]}"'
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, max-age=3600"
    return response


# The review queue and review pages are in labeling/review_views.py.


@login_required
def photo_history(request, pk):
    photo = get_object_or_404(selectors.photos_visible_to(request.user), pk=pk)
    events = selectors.photo_history(photo, show_prediction=not prediction_hidden_from(photo, request.user))
    correctable = is_expert(request.user) and photo.status in (photo.Status.FINAL, photo.Status.REJECTED)
    return render(request, "labeling/photo_history.html", {
        "photo": photo, "events": events, "correctable": correctable,
        "labels": selectors.labels_all() if correctable else [],
    })
