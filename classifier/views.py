from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Q
from django.http import FileResponse, Http404, HttpResponse, HttpResponseBadRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.dateparse import parse_datetime
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from labeling import selectors as labeling_selectors
from labeling.models import Photo, is_expert
from labeling import review, services as labeling_services
from labeling.views import login_or_token_required, paged, role_required, staff_required

from . import evaluation, explain, selectors, services
from .inference import ModelIntegrityError, stream_sha256
from .forms import TrainingForm
from .models import PhotoLoss


@staff_required
def training_runs(request):
    form = TrainingForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        options = dict(form.cleaned_data)
        activate = options.pop("activate")
        include_model_labels = options.pop("include_model_labels", False)
        try:
            run = services.training_run_start(user=request.user, options=options, activate=activate,
                                              include_model_labels=include_model_labels)
        except services.TrainingRunConflict as exc:
            messages.error(request, str(exc))
        except ValueError as exc:
            form.add_error(None, str(exc))
        else:
            if run.status == run.Status.FAILED:  # the queue could not be reached: the run says why
                messages.error(request, f"Training run {run.id} failed to start: {run.error}")
            else:
                messages.success(request, f"Training run {run.id} queued.")
            return redirect("training-run", pk=run.pk)
    return render(request, "classifier/training_runs.html", {
        "form": form, "runs": selectors.training_runs()[:50], "active_run": selectors.active_training_run(),
        "since_active": selectors.since_active_version(),
    })


@staff_required
def training_run(request, pk):
    run = get_object_or_404(selectors.training_runs(), pk=pk)
    data_sources = sorted(((run.metrics or {}).get("data_sources") or {}).items())  # photos per label source
    previous = selectors.previous_trained_run(run) if run.data else None
    changes = evaluation.data_changes(run.data, previous) if previous is not None else None
    return render(request, "classifier/training_run.html",
                  {"run": run, "data_sources": data_sources, "changes": changes})


@staff_required
@require_POST
def training_run_cancel(request, pk):
    run = get_object_or_404(selectors.training_runs(), pk=pk)
    if services.training_run_cancel(run_id=run.id):
        messages.info(request, f"Cancelling run {run.id}.")
    else:
        messages.warning(request, f"Run {run.id} has already ended.")
    return redirect("training-run", pk=run.pk)


MODEL_VERSIONS_PER_PAGE = 10  # each card holds its tables and pictures


def _with_details(version, threshold, leave_out, floors):
    """What a version's card shows beyond its row."""
    version.calibration_measured = version.calibration()
    version.at_threshold = review.on_validation(version.calibration_measured, threshold, leave_out, floors)
    version.overturned = review.overturned(version.id)
    familiarity = version.familiarity_measured = version.familiarity()
    if familiarity is not None:
        version.familiarity_cutoff = familiarity.cutoff(settings.UNFAMILIAR_SHARE)
        version.familiarity_flagged = familiarity.below(version.familiarity_cutoff)
        version.familiarity_least, version.familiarity_median = familiarity.quantile(0), familiarity.quantile(0.5)
    # Shown for the shadow version and for any that ran in shadow mode before.
    version.shadow_stats = (evaluation.shadow_agreement(version)
                            if version.is_shadow or version.shadow_predictions.exists() else None)
    return version


def _card_context(versions):
    threshold = float(settings.CONFIDENCE_THRESHOLD)
    leave_out, floors = review.not_saved_by_model(), review.label_floors()
    for version in versions:
        _with_details(version, threshold, leave_out, floors)
    # The version an activation form says it replaces: the one active now, wherever it is listed.
    return {"active_id": getattr(selectors.active_model_version(), "id", None), "threshold": threshold,
            "unfamiliar_check": settings.UNFAMILIAR_CHECK}


@login_required
def model_versions(request):
    shown = paged(request, selectors.model_versions(), MODEL_VERSIONS_PER_PAGE)
    versions = list(shown["page"].object_list)
    # The active and shadow versions, when another page lists them, are linked at the top.
    pinned = [v for v in selectors.model_versions().filter(Q(is_active=True) | Q(is_shadow=True)).order_by("-is_active")
              if v not in versions]
    return render(request, "classifier/model_versions.html", {
        **shown, "versions": versions, "pinned": pinned, "activations": selectors.model_activations()[:20],
        **_card_context(versions)})


@login_required
def model_version(request, pk):
    version = get_object_or_404(selectors.model_versions(), pk=pk)
    activations = selectors.model_activations().filter(Q(version=version) | Q(replaced=version))[:20]
    return render(request, "classifier/model_version.html",
                  {"version": version, "activations": activations, **_card_context([version])})


@staff_required
@require_POST
def model_version_shadow(request, pk):
    version = get_object_or_404(selectors.model_versions(), pk=pk)
    enabled = request.POST.get("enabled") == "1"
    try:
        services.model_version_shadow(version_id=version.id, enabled=enabled)
    except services.ModelVersionConflict as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Model version {version.id} {'now runs' if enabled else 'no longer runs'} "
                                  "in shadow mode.")
    return redirect(_local_path(request, request.POST.get("next")) or "model-versions")  # back to the page it came from


@staff_required
@require_POST
def model_version_activate(request, pk):
    version = get_object_or_404(selectors.model_versions(), pk=pk)
    # The page sends the version it showed active ("" for none), so that an activation by
    # someone else since it was loaded is refused rather than replaced unseen.
    replacing = request.POST.get("replacing")
    try:
        services.model_version_activate(version_id=version.id, user=request.user, replacing=(
            services.ANY_VERSION if replacing is None else int(replacing) if replacing.isdigit() else None))
    except services.ModelVersionConflict as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Model version {version.id} is now active.")
    return redirect(_local_path(request, request.POST.get("next")) or "model-versions")


@login_or_token_required
@staff_required
def model_version_download(request, pk):
    """The exported learner, the file fastai's load_learner reads (as the book deploys it): for
    staff, who may run it elsewhere. Session or API token. The bytes sent are the bytes checked
    against the registry's sha256; a file that is missing or changed is refused, not sent."""
    version = get_object_or_404(selectors.model_versions(), pk=pk)
    try:
        handle = open(version.path, "rb")
    except FileNotFoundError:
        raise Http404(f"Model version {version.id}'s file is missing.") from None
    if stream_sha256(handle) != version.sha256:
        handle.close()
        return HttpResponse(f"Model version {version.id}'s file is not the file that was registered (its sha256 "
                            "differs): it is not sent.", status=409, content_type="text/plain; charset=utf-8")
    handle.seek(0)
    response = FileResponse(handle, as_attachment=True, content_type="application/octet-stream",
                            filename=f"plantsite-model-{version.id}-{version.architecture}-{version.image_size}px.pkl")
    response["X-Checksum-SHA256"] = version.sha256
    return response


@login_required
def model_version_confusion(request, pk):
    return _model_picture(get_object_or_404(selectors.model_versions(), pk=pk), "confusion_png")


def _model_picture(version, key):
    name = version.metrics.get(key)
    if not name or not (version.path.parent / name).exists():
        raise Http404("No such picture for this version.")
    return FileResponse(open(version.path.parent / name, "rb"), content_type="image/png")


@login_required
def photo_explain(request, pk):
    """Where the model looked (Grad-CAM) for a photo's prediction: its top label, or ?label=.
    Whoever may see the photo and its prediction; nobody while the prediction is hidden (an
    audit pending), as the map would show what the model answered."""
    photo = get_object_or_404(labeling_selectors.photos_visible_to(request.user), pk=pk)
    prediction = getattr(photo, "prediction", None)
    if prediction is None or review.prediction_hidden_from(photo, request.user):
        raise Http404("This photo has no prediction to explain.")
    return _explained(photo, prediction.model_version, request.GET.get("label") or prediction.label.name)


def _explained(photo, version, label):
    """The Grad-CAM picture of `photo` under `version` for `label`, as a response."""
    if not version.explainable:
        raise Http404(f"Model version {version.id} sees the image as a single cell: there is no where to show.")
    if label not in version.labels:
        # Plain text: the label is the client's own text.
        return HttpResponseBadRequest(f"Model version {version.id} has no label {label!r}.",
                                      content_type="text/plain; charset=utf-8")
    try:
        png = explain.explanation_png(version, photo.model_input_path, label, cache_key=f"photo-{photo.pk}")
    except (ModelIntegrityError, explain.CannotExplain, OSError) as exc:
        raise Http404(f"Cannot show where model version {version.id} looked: {exc}") from None
    response = HttpResponse(png, content_type="image/png")
    response["Cache-Control"] = "private, max-age=3600"
    response["X-Content-Type-Options"] = "nosniff"
    return response


similar_required = role_required(is_expert, "Only experts and staff can see the photos a model learned from.")


@similar_required
def photo_similar(request, pk):
    """The photos the version that predicted this one learned from, nearest to it first (in its
    own features), with the labels they were trained with. For experts: they show other
    members' photos. Not while an audit hides the model's answer: the neighbours' labels tell it."""
    photo = get_object_or_404(labeling_selectors.photos_visible_to(request.user), pk=pk)
    prediction = getattr(photo, "prediction", None)
    if prediction is None or review.prediction_hidden_from(photo, request.user):
        raise Http404("This photo has no prediction to compare with.")
    result = selectors.similar_photos(photo)
    return render(request, "classifier/photo_similar.html",
                  {"photo": photo, "version": result.version, "neighbours": result.found, "why": result.why})


# The cleaner's refusal names the cleaner, not the review pages.
cleaner_required = role_required(is_expert, "Only experts and staff can clean the training data.")


@cleaner_required
def model_version_explain(request, pk, photo_id):
    """Where one version looked for ?label= on any photo, for the cleaner: a high loss is often
    explained by what the model looked at (a watermark, the pot). Not for a photo whose pending
    audit hides the model's answer."""
    version = get_object_or_404(selectors.model_versions(), pk=pk)
    photo = get_object_or_404(labeling_selectors.photos_visible_to(request.user), pk=photo_id)
    if review.prediction_hidden_from(photo, request.user):
        raise Http404("This photo's audit is pending: no model's answer is shown until it is decided.")
    label = request.GET.get("label", "")
    if not label:
        return HttpResponseBadRequest("Say which label: ?label=.", content_type="text/plain; charset=utf-8")
    return _explained(photo, version, label)


@cleaner_required
def model_version_cleaner(request, pk):
    """The book's ImageClassifierCleaner: photos by loss, per label and split, with actions."""
    version = get_object_or_404(selectors.model_versions(), pk=pk)
    label = request.GET.get("label") if request.GET.get("label") in version.labels else ""
    split = request.GET.get("split") if request.GET.get("split") in PhotoLoss.Split.values else ""
    losses = selectors.photo_losses(version, label=label, split=split)[:100]
    return render(request, "classifier/cleaner.html", {
        "version": version, "losses": losses, "label": label, "split": split,
        "splits": PhotoLoss.Split.values, "all_labels": labeling_selectors.labels_all(),
        "has_train_losses": version.losses.filter(split=PhotoLoss.Split.TRAIN).exists(),
    })


@cleaner_required
@require_POST
def model_version_clean_photo(request, pk, photo_id):
    version = get_object_or_404(selectors.model_versions(), pk=pk)
    try:
        labeling_services.photo_clean(photo_id=photo_id, user=request.user, action=request.POST.get("action", ""),
                                      label_name=request.POST.get("label"), model_version=version,
                                      seen_decided_at=_datetime_param(request.POST.get("decided_at")))
    except Photo.DoesNotExist:
        raise Http404("No such photo.") from None
    except (labeling_services.CleaningError, labeling_services.UnknownLabel) as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Photo {photo_id}: {request.POST.get('action')} recorded.")
    return HttpResponseRedirect(_local_path(request, request.POST.get("next"))
                                or reverse("model-version-cleaner", args=[pk]))


def _local_path(request, raw):
    """`next` when it is a path on this site, else None. A bare word such as "cleaner" passes
    Django's host check, and redirect() would have taken it for a URL name."""
    if raw and raw.startswith("/") and url_has_allowed_host_and_scheme(
            raw, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return raw
    return None


@cleaner_required
def model_version_top_losses(request, pk):
    """The book's plot_top_losses: validation photos of every member, so for experts only (as the
    cleaner it belongs to); members see others' photos nowhere else."""
    return _model_picture(get_object_or_404(selectors.model_versions(), pk=pk), "top_losses_png")


@login_required
def model_versions_compare(request):
    versions = list(selectors.model_versions())
    chosen = {key: _version_param(request.GET.get(key), versions) for key in ("a", "b")}
    result, visible = None, set()
    if chosen["a"] and chosen["b"]:
        try:
            result = evaluation.model_versions_compare(chosen["a"], chosen["b"])
        except ModelIntegrityError as exc:
            messages.error(request, str(exc))
        else:
            # A member sees the photos that differ as numbers, except their own.
            visible = set(labeling_selectors.photos_visible_to(request.user).filter(
                id__in=[d["photo"].id for d in result["differences"]]).values_list("id", flat=True))
    return render(request, "classifier/compare.html", {"versions": versions, "a": chosen["a"], "b": chosen["b"],
                                                       "result": result, "visible": visible,
                                                       "limit": evaluation.COMPARE_LIMIT})


def _datetime_param(raw):
    """An ISO 8601 date and time from a form's hidden field; None when absent or malformed."""
    try:
        return parse_datetime(raw or "")
    except ValueError:  # well-formed but impossible, e.g. month 13
        return None


def _version_param(raw, versions):
    """Only ids of existing versions are accepted; anything else is ignored."""
    return next((v for v in versions if raw and raw.isascii() and raw.isdigit() and v.id == int(raw)), None)
