"""Pages of the labelling workspace, label management, bulk upload, export and the team page."""


import re
from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from . import labelling, review, selectors
from .models import Label, Photo
from .services import UnknownLabel
from .views import login_or_token_required, serve_photo_file, staff_required


def _examples_for(labels):
    examples = selectors.label_examples(labels)
    return [(label, examples.get(label.id, [])) for label in labels]


@login_required
@require_http_methods(["GET", "POST"])
def labelling_page(request):
    """One photo at a time, served by the server; a button and a key per label."""
    if request.method == "POST":
        return _labelling_submit(request)
    skipped = _photo_id(request.GET.get("skipped", ""))
    photo = labelling.labelling_next(request.user, exclude_ids=() if skipped is None else [skipped])
    if photo is not None:
        photo = Photo.objects.select_related("prediction__label").get(pk=photo.pk)
    labels = list(selectors.labels_all())
    guess = None
    if photo is not None and settings.LABELLING_SHOW_MODEL_GUESS:
        guess = getattr(photo, "prediction", None)
    return render(request, "labeling/labelling.html", {
        "photo": photo, "labels_with_examples": _examples_for(labels), "guess": guess,
        "overlap": settings.LABELLING_OVERLAP, "skipped": skipped,
    })


# At most 18 digits: any such number fits the photo id's bigint, so no query fails on it.
PHOTO_ID_RE = re.compile(r"[0-9]{1,18}")


def _photo_id(value):
    """A photo id from the page (the photo labelled or skipped, ?skipped=); None for anything
    but plain ASCII digits."""
    return int(value) if PHOTO_ID_RE.fullmatch(value) else None


def _labelling_submit(request):
    photo_id = _photo_id(request.POST.get("photo", ""))
    if photo_id is None:
        messages.error(request, "No photo given.")
        return redirect("labelling")
    if request.POST.get("skip"):
        labelling.labelling_skip(request.user, photo_id, serve_next=False)
        messages.info(request, f"Skipped photo {photo_id}.")
        # The next page leaves it out, as the API's skip does: never the same photo at once.
        return redirect(f"{reverse('labelling')}?{urlencode({'skipped': photo_id})}")
    unusable = bool(request.POST.get("unusable"))
    label_name = request.POST.get("label") or None
    if not unusable and not label_name:
        messages.error(request, "Choose a label, 'not a plant / unusable', or skip.")
        return redirect("labelling")
    # A lease that lapsed while the labeller looked, and the photo decided meanwhile: their
    # assignment is gone, so the photo is no longer theirs to see. As the API's 409 does, say
    # why, here with the next photo, not with a bare 404. Said alike for an id that never was.
    no_longer = f"Not saved: photo {photo_id} no longer needs your label."
    if not selectors.photo_visible_to_labeller(request.user, photo_id):
        messages.warning(request, no_longer)
        return redirect("labelling")
    answer = labelling.UNUSABLE if unusable else label_name
    try:
        labelling.label_vote(photo_id=photo_id, user=request.user, label_name=None if unusable else label_name,
                             unusable=unusable)
    except UnknownLabel as exc:
        messages.error(request, str(exc))
    except labelling.AlreadyLabelled as exc:
        if exc.same_answer:  # a double click, or the form sent again: the first one saved it
            messages.success(request, f"Saved: {answer} for photo {photo_id}.")
        else:
            messages.warning(request, f"Not saved: {exc}")
    except labelling.LabellingConflict as exc:
        messages.warning(request, f"Not saved: {exc}")
    except Photo.DoesNotExist:
        messages.warning(request, no_longer)
    else:
        messages.success(request, f"Saved: {answer} for photo {photo_id}.")
    return redirect("labelling")


@login_or_token_required
def labelling_photo_file(request, pk):
    """A photo served to a labeller (or one they labelled, or a label's example)."""
    if not selectors.photo_visible_to_labeller(request.user, pk):
        raise Http404("No such photo.")
    return serve_photo_file(get_object_or_404(Photo, pk=pk))


# --- label management -----------------------------------------------------------------------


class LabelCreateForm(forms.Form):
    name = forms.RegexField(regex=r"^[a-z0-9_]{1,64}$", max_length=64, error_messages={
        "invalid": labelling.LABEL_NAME_RULE}, help_text=labelling.LABEL_NAME_RULE)
    description = forms.CharField(required=False, max_length=5000, widget=forms.Textarea(attrs={"rows": 2}))


class LabelEditForm(forms.Form):
    description = forms.CharField(required=False, max_length=5000, widget=forms.Textarea(attrs={"rows": 3}))
    always_review = forms.BooleanField(required=False, label="Always checked by an expert",
                                       help_text="The model's answer with this label is never saved on its own, "
                                                 "however sure it is: for labels whose mistakes cost too much "
                                                 "(a poisonous look-alike). Applies to photos predicted from now on.")
    threshold = forms.FloatField(
        required=False, min_value=0.0, max_value=1.0, label="Its own threshold",
        widget=forms.NumberInput(attrs={"step": "0.001", "placeholder": "the site's"}),
        help_text="The model saves this answer on its own only at or above this confidence, when it is higher than "
                  "the site's threshold: for labels whose mistakes cost more than most. Empty: the site's. Applies to "
                  "photos predicted from now on.")
    example_ids = forms.CharField(required=False, max_length=500, label="Add example photos by id",
                                  help_text="Photo ids, separated by commas or spaces; they join the ticked photos "
                                            f"below (up to {labelling.MAX_EXAMPLES} examples in all).")


def _label_edit_post(request, label):
    """(the form to show again, None) or (None, the redirect once it is done)."""
    action = request.POST.get("action", "save")
    if action in ("retire", "unretire"):
        labelling.label_update(label_id=label.id, retired=action == "retire", user=request.user)
        messages.success(request, f"Label {label.name} {'retired' if action == 'retire' else 'back in use'}.")
        return None, redirect("label-edit", pk=label.pk)
    if action == "merge":
        return None, _label_merge_post(request, label)
    if action == "delete":
        try:
            labelling.label_delete(label_id=label.id)
        except labelling.LabelInUse as exc:
            messages.error(request, str(exc))
            return None, redirect("label-edit", pk=label.pk)
        messages.success(request, f"Label {label.name} deleted.")
        return None, redirect("labels")
    form = LabelEditForm(request.POST)
    if form.is_valid():
        ids = request.POST.getlist("example") + _parse_ids(form.cleaned_data["example_ids"])
        try:
            labelling.label_update(label_id=label.id, description=form.cleaned_data["description"],
                                   example_ids=list(dict.fromkeys(ids)),
                                   always_review=form.cleaned_data["always_review"],
                                   threshold=form.cleaned_data["threshold"], user=request.user)
        except labelling.LabelError as exc:
            form.add_error("example_ids", str(exc))
        else:
            messages.success(request, f"Label {label.name} saved.")
            return None, redirect("label-edit", pk=label.pk)
    return form, None


def _label_merge_post(request, label):
    into = _photo_id(request.POST.get("into", ""))  # an id, read as photo ids are
    if into is None or request.POST.get("confirm") != "yes":
        messages.error(request, "Choose the label to merge into and tick the box to confirm: nothing was merged.")
        return redirect("label-edit", pk=label.pk)
    try:
        merged = labelling.label_merge(label_id=label.id, into_id=into, user=request.user)
    except (labelling.LabelError, Label.DoesNotExist) as exc:
        messages.error(request, str(exc))
        return redirect("label-edit", pk=label.pk)
    messages.success(request, f"{merged.label.name} merged into {merged.into.name}: {merged.photos} photos and "
                              f"{merged.votes} votes moved; {merged.label.name} is retired.")
    return redirect("label-edit", pk=merged.into.pk)


def _parse_ids(text):
    return [part for part in text.replace(",", " ").split() if part]


@staff_required
@require_http_methods(["GET", "POST"])
def labels_page(request):
    form = LabelCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            label = labelling.label_create(name=form.cleaned_data["name"], description=form.cleaned_data["description"],
                                           user=request.user)
        except labelling.LabelError as exc:
            form.add_error("name", str(exc))
        else:
            messages.success(request, f"Label {label.name} created.")
            return redirect("label-edit", pk=label.pk)
    labels = list(selectors.labels_with_counts().prefetch_related("examples"))
    return render(request, "labeling/labels.html", {"labels": labels, "form": form},
                  status=400 if form.errors else 200)


@staff_required
@require_http_methods(["GET", "POST"])
def label_edit(request, pk):
    label = get_object_or_404(Label, pk=pk)
    examples = label.current_examples()
    form = LabelEditForm(initial={"description": label.description, "always_review": label.always_review,
                                  "threshold": label.threshold})
    if request.method == "POST":
        try:
            form, done = _label_edit_post(request, label)
        except Label.DoesNotExist:  # deleted since it was looked up above
            raise Http404("No such label.") from None
        if done is not None:
            return done
    usage = selectors.label_usage(label)
    # The current examples first, then this label's photos to pick from.
    saved_ids = {p.id for p in examples}
    candidates = examples + [p for p in Photo.objects.filter(final_label=label, status=Photo.Status.FINAL)
                             .order_by("-decided_at", "-id")[:48] if p.id not in saved_ids]
    # Ticked: the saved examples, or after a refused save the admin's own ticks, not lost.
    example_ids = saved_ids
    if request.method == "POST":
        example_ids = {pk for pk in map(_photo_id, request.POST.getlist("example")) if pk is not None}
    return render(request, "labeling/label_edit.html", {
        "label": label, "form": form, "examples": examples, "example_ids": example_ids,
        "changes": label.changes.select_related("user")[:20],
        "candidates": candidates, "usage": usage, "in_use": any(usage.values()),
        "max_examples": labelling.MAX_EXAMPLES, "site_threshold": float(settings.CONFIDENCE_THRESHOLD),
        "evidence": review.label_threshold_evidence(label),
        "merge_targets": selectors.labels_all().exclude(id=label.id),
    }, status=400 if form.errors else 200)


# --- bulk upload, export, team --------------------------------------------------------------


@staff_required
def bulk_upload(request):
    return render(request, "labeling/bulk_upload.html", {"labels": labelling.bulk_upload_labels()})


@staff_required
def export_page(request):
    verified = selectors.dataset_counts()
    with_model = selectors.dataset_counts(include_model=True)
    rows = [(name, verified.get(name, 0), n) for name, n in with_model.items()]
    return render(request, "labeling/export.html", {
        "rows": rows, "verified_total": sum(verified.values()), "with_model_total": sum(with_model.values()),
    })


@login_required
def team_page(request):
    stats = selectors.team_stats()
    return render(request, "labeling/team.html", {"stats": stats, "overlap": settings.LABELLING_OVERLAP,
                                                  "unusable": labelling.UNUSABLE})
