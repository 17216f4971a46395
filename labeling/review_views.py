"""The review pages: the queue, "Start reviewing", a photo under review, corrections, the audits."""

from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode
from django.views.decorators.http import require_http_methods, require_POST

from . import review, selectors, services
from .forms import CorrectionForm, ReviewForm, ReviewGridForm
from .models import Label, Photo
from .serializers import ReviewQueueQuerySerializer
from .views import expert_required

# The queue's ordering and label filter, kept for the expert's session so that "next photo"
# after a decision comes from the same view of the queue they started from.
QUEUE_PARAMS = "review_queue_params"


def queue_params(request, data=None):
    """(params, errors): the queue's ordering and label filter. From `data` (the page's query or
    form, checked against the allow-list) they are remembered for the session; without data
    they are the remembered ones, or the defaults."""
    defaults = {"ordering": selectors.REVIEW_DEFAULT_ORDERING, "label": ""}
    query = ReviewQueueQuerySerializer(data=request.session.get(QUEUE_PARAMS, {}) if data is None else data)
    if not query.is_valid():
        request.session.pop(QUEUE_PARAMS, None)
        return defaults, ({} if data is None else query.errors)
    params = {"ordering": query.validated_data["ordering"], "label": query.validated_data.get("label", "")}
    if data is not None:
        request.session[QUEUE_PARAMS] = {key: value for key, value in params.items() if value}
    return params, {}


def redirect_to_next(request, *, say_when_empty=False):
    """Claim the next photo of the expert's queue and open it; back to the queue when it is empty."""
    params, _ = queue_params(request)
    photo = review.review_claim_next(request.user, ordering=params["ordering"], label=params["label"] or None)
    if photo is None:
        if say_when_empty:
            messages.info(request, "Nothing to review right now.")
        return redirect("review-queue")
    return redirect("review-photo", pk=photo.pk)


ORDERING_CHOICES = (("uncertainty", "most uncertain first"), ("age", "oldest first"))


@expert_required
def review_queue(request):
    """The queue, without the photos other experts hold; ?ordering=uncertainty|age&label=<name>."""
    # A bare /review/ (the menu, "Back to the queue") shows the remembered view; the filter form
    # sends both fields, so choosing "most uncertain first, any label" goes back to the default.
    asked = "ordering" in request.GET or "label" in request.GET
    params, errors = queue_params(request, request.GET if asked else None)
    photos = selectors.review_queue(ordering=params["ordering"], label=params["label"] or None, viewer=request.user)
    ordering_text = dict(ORDERING_CHOICES).get(params["ordering"], params["ordering"])
    return render(request, "labeling/review_queue.html", {
        "photos": photos[:200], "count": photos.count(), "params": params, "errors": errors,
        "ordering_choices": ORDERING_CHOICES, "ordering_text": ordering_text, "labels": selectors.labels_all(),
        "waits": review.review_waits(), **_weekly_warnings(),
    }, status=400 if errors else 200)


def _weekly_warnings():
    """The active version's latest week of predictions, when it is recent (this week or the
    last), as "shifted_week" if its share saved on its own is unlike its validation photos' and
    as "unfamiliar_week" if more of its photos were unfamiliar (review.weeks_of_predictions):
    told where experts look every day."""
    from classifier.selectors import active_model_version

    version = active_model_version()
    latest = review.weeks_of_predictions(version.id, weeks=1) if version else []
    recent = timezone.now().date() - timedelta(days=13)  # a Monday at most 13 days ago: this week or the last
    week = latest[0] if latest and latest[0].week >= recent else None
    return {"shifted_week": week if week and week.shifted else None,
            "unfamiliar_week": week if week and week.more_unfamiliar else None}


GRID_SIZE = 24


@expert_required
@require_http_methods(["GET", "POST"])
def review_grid(request):
    """Many photos with one model answer at once: the expert unticks the wrong ones and confirms
    the rest, each recorded as that expert's decision; the unticked stay in the queue."""
    if request.method == "POST":
        form = ReviewGridForm(request.POST)
        if not form.is_valid():
            messages.error(request, "Not saved: " + " ".join(e for errors in form.errors.values() for e in errors))
            return redirect("review-grid")
        label = form.cleaned_data["label"]
        try:
            report = review.review_confirm_many(photo_ids=form.cleaned_data["photos"], expert=request.user,
                                                label_name=label)
        except services.UnknownLabel as exc:
            messages.error(request, f"Not saved: {exc}")
            return redirect("review-grid")
        _say_confirmed(request, report)
        return redirect(f"{reverse('review-grid')}?{urlencode({'label': label})}")
    labels = selectors.review_grid_labels(viewer=request.user)
    asked = request.GET.get("label", "")
    label = asked if asked in {name for name, _ in labels} else (labels[0][0] if labels and not asked else "")
    photos = list(selectors.review_grid(label=label, viewer=request.user)[:GRID_SIZE]) if label else []
    # Its description and example photos, to compare the tiles with.
    described = list(Label.objects.filter(name=label).prefetch_related("examples")) if label else []
    return render(request, "labeling/review_grid.html",
                  {"labels": labels, "label": label, "asked": asked, "photos": photos, "described": described})


def _say_confirmed(request, report):
    if report.confirmed:
        messages.success(request, f"Confirmed {len(report.confirmed)} photo{'s' if len(report.confirmed) != 1 else ''}"
                                  f" as {report.label}.")
    for _, why in report.refused:
        messages.warning(request, f"Not confirmed: {why}")
    if not report.confirmed and not report.refused:
        messages.info(request, "No photo was ticked: nothing confirmed.")


@expert_required
def review_photo(request, pk):
    """Opening a photo awaiting review claims it; one another expert holds shows who, not the form."""
    photo = selectors.photos_visible_to(request.user).filter(pk=pk).first()
    if photo is None:
        if request.method == "POST":  # experts see every photo: this one was deleted since it was opened
            messages.warning(request, f"Not saved: photo {pk} no longer exists (it has been deleted).")
            return redirect("review-queue")
        raise Http404("No such photo.")
    if request.method == "POST":
        return _review_submit(request, photo)
    held = None
    if photo.status == photo.Status.NEEDS_REVIEW:
        try:
            review.review_claim(photo.pk, request.user)
        except review.ClaimConflict as exc:
            held = exc
        except services.ReviewConflict:
            pass  # decided a moment ago: the page says so
        photo = selectors.photos_visible_to(request.user).select_related("claimed_by").get(pk=pk)
    blind = review.prediction_hidden_from(photo)
    prediction = getattr(photo, "prediction", None)
    return render(request, "labeling/review_photo.html", {
        "photo": photo, "labels": selectors.labels_all().prefetch_related("examples"),
        "blind_audit": blind,
        # How often people changed this answer of this version: how far to trust it here.
        "record": review.answer_record(prediction.model_version_id, prediction.label.name)
        if prediction and not blind else None,
        "next_photo": _next_photo(request, photo), "held": held, "votes": selectors.labelling_votes(photo),
    })


# The photos this session has opened, for "Skip to next": with the first other photo of the
# queue, the next of A was B and the next of B was A again (opening B releases A's claim).
PASSED = "review_passed"
PASSED_KEPT = 500


def _next_photo(request, photo):
    """The first photo of the expert's queue view that they have not opened since they last went
    round it; when every one has been, the round starts again. Never `photo` itself."""
    params, _ = queue_params(request)
    queue = selectors.review_queue(ordering=params["ordering"], label=params["label"] or None,
                                   viewer=request.user).exclude(pk=photo.pk)
    passed = request.session.get(PASSED, [])
    next_photo = queue.exclude(pk__in=passed).first()
    if next_photo is None:  # round the queue once: start again
        passed, next_photo = [], queue.first()
    request.session[PASSED] = [*(pk for pk in passed if pk != photo.pk), photo.pk][-PASSED_KEPT:]
    return next_photo


DECIDED_FIRST_BY = {
    Photo.DecidedBy.CONSENSUS: "The labellers agreed on it first.",
    Photo.DecidedBy.LABELLER: "A labeller decided it first.",
    Photo.DecidedBy.MODEL: "The model decided it first.",
    Photo.DecidedBy.IMPORT: "It was imported with a label meanwhile.",
}


def _decided_first_by(request, photo_id):
    """Who decided the photo before the expert's decision arrived, for the "Not saved" message:
    not always another expert (the labellers may have agreed on it meanwhile)."""
    photo = selectors.photos_visible_to(request.user).filter(pk=photo_id).first()
    if photo is not None and photo.decided_by == Photo.DecidedBy.EXPERT and photo.reviewed_by_id:
        return f"{photo.reviewed_by.username} decided it first."
    return DECIDED_FIRST_BY.get(photo.decided_by if photo else "", "It changed after you opened it.")


def _review_submit(request, photo):
    form = ReviewForm(request.POST)
    if not form.is_valid() or not (form.cleaned_data["reject"] or form.cleaned_data["label"]):
        messages.error(request, "Choose a label, or reject the photo.")
        return redirect("review-photo", pk=photo.pk)
    try:
        services.review_decide(photo_id=photo.pk, expert=request.user, label_name=form.cleaned_data["label"] or None,
                               reject=form.cleaned_data["reject"], reason=form.cleaned_data["reason"])
    except services.UnknownLabel as exc:
        messages.error(request, str(exc))
        return redirect("review-photo", pk=photo.pk)
    except review.ClaimConflict as exc:
        messages.warning(request, f"Not saved: {exc}")
        return redirect("review-queue")
    except services.ReviewConflict as exc:
        if selectors.latest_decision_by(photo.pk) == request.user.pk:  # the same form sent twice
            messages.info(request, f"Photo {photo.pk} is decided already: you decided it a moment ago.")
            return redirect_to_next(request)
        messages.warning(request, f"Not saved: {exc} {_decided_first_by(request, photo.pk)}")
        return redirect("review-photo", pk=photo.pk)
    messages.success(request, f"Decision saved for photo {photo.pk}.")
    return redirect_to_next(request)


@expert_required
@require_POST
def review_claim_next(request):
    """The queue's "Start reviewing" button."""
    _, errors = queue_params(request, request.POST)
    if errors:
        messages.error(request, " ".join(str(m) for ms in errors.values() for m in ms))
        return redirect("review-queue")
    return redirect_to_next(request, say_when_empty=True)


@expert_required
@require_POST
def photo_correct(request, pk):
    """The correction form on a photo's history page."""
    photo = get_object_or_404(selectors.photos_visible_to(request.user), pk=pk)
    form = CorrectionForm(request.POST)
    if not form.is_valid() or bool(form.cleaned_data["reject"]) == bool(form.cleaned_data["label"]):
        messages.error(request, "Choose a new label, or reject the photo.")
        return redirect("photo-history", pk=photo.pk)
    try:
        review.review_correct(photo_id=photo.pk, expert=request.user, label_name=form.cleaned_data["label"] or None,
                              reject=form.cleaned_data["reject"], reason=form.cleaned_data["reason"],
                              seen_decided_at=form.cleaned_data["decided_at"])
    except (services.UnknownLabel, review.CorrectionError, services.ReviewConflict) as exc:
        messages.error(request, f"Not corrected: {exc}")
    else:
        messages.success(request, f"Correction saved for photo {photo.pk}.")
    return redirect("photo-history", pk=photo.pk)


@expert_required
def review_audits(request):
    from classifier.selectors import active_model_version

    version = active_model_version()
    thresholds = review.threshold_evidence(version.id) if version else []
    return render(request, "labeling/review_audits.html",
                  {"stats": review.audit_stats(), "by_version": review.audit_stats_by_version(),
                   "by_label": review.audit_stats_by_label(),
                   "audits": review.recent_audits(), "threshold_version": version,
                   "thresholds": thresholds, "current": next((row for row in thresholds if row.current), None),
                   "weeks": review.weeks_of_predictions(version.id) if version else [],
                   "unfamiliar_share": settings.UNFAMILIAR_SHARE, "unfamiliar_check": settings.UNFAMILIAR_CHECK})
