import functools
import mimetypes

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST
from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed

from . import selectors, services
from .forms import PhotoBrowseForm, UploadForm
from .image_checks import ImageRejected
from .models import Photo, is_expert
from .review import WAIT_WINDOW_DAYS, prediction_hidden_from, review_waits
from .throttling import upload_allowed


def forbidden(request, message):
    """The 403 page (templates/403.html), saying why in the words of the page refused."""
    return render(request, "403.html", {"message": message}, status=403)


def role_required(allowed, message):
    """A page decorator: the login page for a visitor, the 403 page saying `message` for a
    logged-in user `allowed(user)` refuses (Django's staff_member_required sent them to the
    admin's login page, as if logged out)."""
    def decorator(view):
        @functools.wraps(view)
        @login_required
        def wrapped(request, *args, **kwargs):
            if not allowed(request.user):
                return forbidden(request, message)
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


expert_required = role_required(is_expert, "Only experts and staff can review photos.")
staff_required = role_required(lambda user: user.is_staff, "Only staff can open this page.")


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
            return _home_page(request, form, status=429)
        files = request.FILES.getlist("image")
        if len(files) > 1:  # the file input is `multiple`: the form alone would keep only the last
            _upload_each(request, files)
            return redirect("home")
        if form.is_valid():
            try:
                photo = services.photo_upload(owner=request.user, fileobj=form.cleaned_data["image"])
            except ImageRejected as exc:
                form.add_error("image", exc.message)
            else:
                return redirect("photo-detail", pk=photo.pk)
    return _home_page(request, form)


PHOTOS_PER_PAGE = 50


def paged(request, items, per_page: int) -> dict:
    """?page= N of `items` (out of range: the last page), and the query string its pager's
    links keep (the filters, without the page): what templates/labeling/_pager.html reads."""
    query = request.GET.copy()
    query.pop("page", None)
    return {"page": Paginator(items, per_page).get_page(request.GET.get("page")), "query": query.urlencode()}


def _paged(request, photos) -> dict:
    shown = paged(request, photos, PHOTOS_PER_PAGE)
    return {"photos": shown["page"].object_list, **shown}


def _home_page(request, form, status=200):
    # ?status= one of the states (anything else: all).
    shown = request.GET.get("status", "")
    shown = shown if shown in Photo.Status.values else ""
    return render(request, "labeling/home.html", {
        "form": form, **_paged(request, selectors.own_photos(request.user, status=shown)), "shown_status": shown,
        "statuses": Photo.Status.choices,
        # The limits services.photo_upload checks, as set and as image_checks words its refusals.
        "max_megabytes": f"{round(settings.UPLOAD_MAX_BYTES / (1024 * 1024), 1):g}",
        "max_megapixels": f"{settings.UPLOAD_MAX_PIXELS / 1e6:g}",
    }, status=status)


def _upload_each(request, files):
    """Several files from the no-JavaScript form: each stored or refused on its own, as the
    page's script does, and each named in a message. Every file counts against the upload
    limit (the caller counted the first); past it, the rest are named as not uploaded."""
    for number, fileobj in enumerate(files):
        allowed, throttle = upload_allowed(request) if number else (True, None)
        if not allowed:
            names = ", ".join(f.name for f in files[number:])
            messages.error(request, f"Not uploaded: {names}. {throttle.wait_message()}")
            return
        try:
            photo = services.photo_upload(owner=request.user, fileobj=fileobj)
        except ImageRejected as exc:
            messages.error(request, f"{fileobj.name}: {exc.message}")
        else:
            messages.success(request, f"{fileobj.name}: uploaded as photo {photo.pk}.")


@login_required
def photo_detail(request, pk):
    photo = get_object_or_404(selectors.photos_visible_to(request.user), pk=pk)
    # What an expert's decision takes, for a photo that waits or may soon (its page updates live).
    waits = review_waits().all if photo.status in (Photo.Status.QUEUED, Photo.Status.NEEDS_REVIEW) else None
    return render(request, "labeling/photo_detail.html",
                  {"photo": photo, "show_prediction": not prediction_hidden_from(photo, request.user),
                   "may_delete": photo.may_be_deleted_by(request.user), "waits": waits,
                   "wait_days": WAIT_WINDOW_DAYS})


browse_required = role_required(is_expert, "Only experts and staff can see every photo.")


@browse_required
def photos_browse(request):
    """Every photo on the site, fifty a page, by state, label and uploader."""
    form = PhotoBrowseForm(request.GET, statuses=Photo.Status.choices,
                           labels=selectors.labels_including_retired().values_list("name", flat=True))
    filters = form.cleaned_data if form.is_valid() else {}
    photos = selectors.photos_list(request.user,
                                   **{key: filters.get(key) or None for key in ("status", "label", "owner")})
    failed = None  # admins may send every failed photo to the model again from the failed ones' list
    if request.user.is_staff and filters.get("status") == Photo.Status.FAILED:
        failed = Photo.objects.filter(status=Photo.Status.FAILED).count()
    return render(request, "labeling/photos_browse.html", {"form": form, "failed": failed, **_paged(request, photos)},
                  status=200 if form.is_valid() else 400)


@login_required
def photo_delete(request, pk):
    """GET: what deleting the photo removes, and a button; POST: delete it."""
    photo = get_object_or_404(selectors.photos_visible_to(request.user), pk=pk)
    if not photo.may_be_deleted_by(request.user):
        raise PermissionDenied("Only the photo's owner or an admin may delete it.")
    if request.method != "POST":
        refused = (services.TEAM_WORK.format(id=photo.pk)
                   if not request.user.is_staff and photo.worked_on_by_team() else "")
        return render(request, "labeling/photo_delete.html", {"photo": photo, "refused": refused})
    try:
        services.photo_delete(photo_id=photo.pk, user=request.user)
    except services.PhotoDeleteRefused as exc:
        messages.error(request, str(exc))
        return redirect("photo-detail", pk=photo.pk)
    except Photo.DoesNotExist:
        pass  # deleted a moment ago, in another tab: what was asked is done
    messages.success(request, f"Photo {photo.pk} is deleted.")
    return redirect("home")


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


@staff_required
@require_POST
def photos_retry_failed(request):
    retried = services.photos_retry_failed()
    messages.success(request, f"{len(retried)} failed photo{'s' if len(retried) != 1 else ''} queued for the "
                              "model again." if retried else "No photo's prediction has failed.")
    return redirect(f"{reverse('photos-browse')}?status=failed")


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
