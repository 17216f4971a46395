"""Reads for photos, labels and the review queue."""

import time
from pathlib import Path

from django.conf import settings
from django.db.models import Case, Count, Exists, F, Min, OuterRef, Q, Value, When
from django.utils import timezone

from .models import Label, LabelVote, Photo, Prediction, ReviewDecision, Webhook, WebhookDelivery, is_expert


def photos_visible_to(user):
    """Members see their own photos; experts and staff see everyone's."""
    qs = Photo.objects.select_related("prediction__label", "prediction__model_version", "final_label", "reviewed_by", "owner")
    return qs if is_expert(user) else qs.filter(owner=user)


def own_photos(user, *, status: str = ""):
    """The user's own photos, newest first; `status` one of Photo.Status or "" for all."""
    photos = photos_visible_to(user).filter(owner=user)
    return photos.filter(status=status) if status else photos


def photo_updates(user, seen: dict[int, str], *, wait: float = 0.0):
    """(photos, missing ids): the photos of `seen` ({id: status the client last saw}) whose status
    is no longer that one, and the ids this user cannot see. When there are none yet, waits up to
    `wait` seconds for a change (labeling.changes), then answers with whatever there is."""
    from .changes import wait_for_change

    visible = photos_visible_to(user)  # decides member or expert once, not at every re-read
    # Most reads find nothing changed: they ask only for (id, status), which costs a fraction of
    # building the full rows with their five joins; those are read for the changed photos alone.
    statuses = visible.filter(id__in=list(seen)).order_by().values_list("id", "status")

    def read():
        current = dict(statuses.all())  # .all(): a fresh query at every re-read
        changed_ids = [photo_id for photo_id, status in current.items() if status != seen[photo_id]]
        changed = list(visible.filter(id__in=changed_ids).order_by("id")) if changed_ids else []
        # A photo deleted between the two reads is missing, not silently dropped.
        missing = sorted(set(seen) - set(current) | set(changed_ids) - {p.id for p in changed})
        return (changed, missing) if changed or missing else None

    return wait_for_change(list(seen), read, wait) or ([], [])


# The orderings a client may ask for, by name. Only these keys are accepted from a request;
# the ORM expressions they stand for are ours, so no client text ever reaches order_by().
PHOTO_ORDERINGS = {
    "-uploaded_at": ("-uploaded_at", "-id"),
    "uploaded_at": ("uploaded_at", "id"),
}
PHOTO_DEFAULT_ORDERING = "-uploaded_at"
# What the model knows least about first: photos without a prediction, then unfamiliar photos
# (unlike all it learned from: however sure it says it is), then the smallest top-2 margin.
_LEAST_KNOWN = Case(When(prediction__isnull=True, then=Value(0)),
                    When(Prediction.unfamiliar_q("prediction__"), then=Value(1)), default=Value(2))
_MOST_UNCERTAIN_FIRST = (_LEAST_KNOWN.asc(), F("prediction__margin").asc(nulls_first=True), "uploaded_at", "id")
REVIEW_ORDERINGS = {
    # Most uncertain first: photos without a prediction, then unfamiliar ones, then the smallest top-2 margin.
    "uncertainty": _MOST_UNCERTAIN_FIRST,
    "age": ("uploaded_at", "id"),  # oldest first
    "margin": _MOST_UNCERTAIN_FIRST,  # the earlier names, still accepted
    "uploaded_at": ("uploaded_at", "id"),
    "-uploaded_at": ("-uploaded_at", "-id"),
}
REVIEW_DEFAULT_ORDERING = "uncertainty"


def photos_list(user, *, status=None, ordering=PHOTO_DEFAULT_ORDERING, label=None, owner=None):
    """The photos `user` may see, optionally of one status, final label and uploader, in one
    of PHOTO_ORDERINGS."""
    qs = photos_visible_to(user)
    if status is not None:
        qs = qs.filter(status=Photo.Status(status))
    if label is not None:
        qs = qs.filter(final_label__name=label)
    if owner is not None:
        qs = qs.filter(owner__username=owner)
    return qs.order_by(*PHOTO_ORDERINGS[ordering])


def review_queue(*, ordering=REVIEW_DEFAULT_ORDERING, label=None, viewer=None, now=None):
    """Photos awaiting an expert, by default most uncertain (smallest top-2 margin) first, then oldest.

    label: only photos whose model's top label has this name (audits left out: their guess is
    hidden until decided, and the filter would tell it). viewer: the expert working the
    queue, who is not shown photos another expert holds a live claim on, nor the disputes they
    labelled themselves: another expert adjudicates those (see labeling.review).
    """
    qs = (
        Photo.objects.filter(status=Photo.Status.NEEDS_REVIEW)
        .select_related("prediction__label", "prediction__model_version", "owner", "claimed_by")
        .order_by(*REVIEW_ORDERINGS[ordering])
    )
    if label:
        qs = qs.filter(prediction__label__name=label).exclude(review_kind=Photo.ReviewKind.AUDIT)
    if viewer is not None:
        qs = qs.exclude(Q(claimed_by__isnull=False) & ~Q(claimed_by=viewer)
                        & Q(claim_expires_at__gt=now or timezone.now()))
        voted = LabelVote.objects.filter(photo=OuterRef("pk"), user=viewer)
        qs = qs.exclude(Q(review_kind=Photo.ReviewKind.ADJUDICATION) & Exists(voted))
    return qs


def review_grid(*, label, viewer, now=None):
    """What the grid lets `viewer` confirm at once: photos awaiting review whose model answer is
    `label`, most confident first. Only the uncertain ones: an audit is decided blind, a dispute
    with the labellers' votes in view, and an unfamiliar photo on its own page, which says so."""
    return (review_queue(label=label, viewer=viewer, now=now).filter(review_kind=Photo.ReviewKind.UNCERTAIN)
            .exclude(Prediction.unfamiliar_q("prediction__")).order_by("-prediction__confidence", "id"))


def review_grid_labels(*, viewer, now=None) -> list[tuple[str, int]]:
    """(the model's answer, photos the grid would show for it), most photos first."""
    rows = (review_queue(viewer=viewer, now=now).filter(review_kind=Photo.ReviewKind.UNCERTAIN,
                                                        prediction__isnull=False)
            .exclude(Prediction.unfamiliar_q("prediction__"))
            .order_by().values_list("prediction__label__name").annotate(n=Count("id")))
    return sorted(rows, key=lambda row: (-row[1], row[0]))


def latest_decision_by(photo_id: int):
    """The id of the expert who made the photo's latest review decision, or None."""
    return (ReviewDecision.objects.filter(photo_id=photo_id).order_by("-id")
            .values_list("expert_id", flat=True).first())


def labels_all():
    """The labels people may choose (review, cleaning, labelling): retired ones are hidden, though
    photos decided with them keep them. See labels_including_retired for everything."""
    return Label.objects.filter(retired=False)


def photo_history(photo, *, show_prediction=True):
    """Everything that happened to a photo, oldest first: upload, prediction, decisions (with
    corrections: label before → after), what the labellers' votes decided, cleaning.
    show_prediction=False leaves out what the model said (an audit's uploader does not see it
    until an expert decides)."""
    events = [{"at": photo.uploaded_at, "what": "uploaded", "who": photo.owner.username, "detail": ""}]
    prediction = getattr(photo, "prediction", None)
    if prediction:
        events.append({"at": prediction.created_at, "what": "predicted", "who": f"model v{prediction.model_version_id}",
                       "detail": f"{prediction.label.name} ({prediction.confidence:.0%})" if show_prediction else ""})
    for d in photo.decisions.select_related("expert", "label", "label_before"):
        after = "rejected" if d.rejected else d.label.name
        if d.kind == "correction":
            before = d.label_before.name if d.label_before else d.status_before
            what = f"corrected {before} → {after}"
        else:
            what = "rejected" if d.rejected else f"decided {d.label.name}"
            if d.kind == Photo.ReviewKind.AUDIT:
                what = f"audit: {what}"
        events.append({"at": d.created_at, "what": what, "who": d.expert.username,
                       "detail": f"{d.status_before} → {d.status_after}" + (f"; {d.reason}" if d.reason else "")})
    for e in photo.events.select_related("user", "label_before", "label_after"):
        detail = ""
        if e.action == "relabel":
            detail = f"{e.label_before.name if e.label_before else '—'} → {e.label_after.name}"
        if e.model_version_id:
            detail += f" (from model v{e.model_version_id}'s losses)"
        events.append({"at": e.created_at, "what": e.action, "who": e.user.username, "detail": detail.strip()})
    outcomes = list(photo.labelling_outcomes.select_related("label"))
    vote_times = list(photo.votes.values_list("created_at", flat=True)) if outcomes else []
    for o in outcomes:
        # The votes an outcome counted were all cast by the time it was recorded.
        single = o.status_after != Photo.Status.NEEDS_REVIEW and sum(t <= o.created_at for t in vote_times) == 1
        events.append({"at": o.created_at, "what": _outcome_what(o, single),
                       "who": "labeller" if single else "labellers",
                       "detail": f"{o.status_before} → {o.status_after}; {o.tally}"})
    return sorted(events, key=lambda ev: ev["at"])


def _outcome_what(outcome, single):
    """single: one labeller's vote decided it (LABELLING_OVERLAP 1), which is no consensus."""
    if outcome.status_after == Photo.Status.NEEDS_REVIEW:
        return "sent to adjudication"
    return f"{'one labeller' if single else 'consensus'}: {outcome.label.name if outcome.label_id else 'rejected'}"


# --- shared labelling, label management, team statistics ----------------------------------


def labels_including_retired():
    """Every label, retired ones too (label management, the labels API)."""
    return Label.objects.all()


def label_usage(label) -> dict:
    """Where a label is used; a label used anywhere is retired, never deleted."""
    from classifier.models import ModelVersion, PhotoLoss

    from .models import LabelVote, Photo, PhotoEvent, Prediction, ReviewDecision

    return {
        "photos": Photo.objects.filter(final_label=label).count(),
        "predictions": Prediction.objects.filter(label=label).count(),
        "votes": LabelVote.objects.filter(label=label).count(),
        "decisions": ReviewDecision.objects.filter(Q(label=label) | Q(label_before=label)).count(),
        "cleaning_events": PhotoEvent.objects.filter(Q(label_before=label) | Q(label_after=label)).count(),
        "model_versions": ModelVersion.objects.filter(labels__contains=[label.name]).count()
        if _json_contains_supported() else sum(label.name in (v or []) for v in
                                               ModelVersion.objects.values_list("labels", flat=True)),
        "losses": PhotoLoss.objects.filter(label=label.name).count(),
    }


def _json_contains_supported() -> bool:
    from django.db import connection

    return connection.features.supports_json_field_contains


def label_in_use(label) -> bool:
    return any(label_usage(label).values())


def labels_with_counts():
    """Label management's list: every label with its number of labelled photos and of votes."""
    from django.db.models import Count, IntegerField, OuterRef, Subquery, Value
    from django.db.models.functions import Coalesce

    from .models import LabelVote

    def count_of(qs):
        return Coalesce(Subquery(qs.order_by().values("x").annotate(c=Count("id")).values("c"),
                                 output_field=IntegerField()), 0)

    photos = Photo.objects.filter(final_label=OuterRef("pk")).annotate(x=Value(1))
    votes = LabelVote.objects.filter(label=OuterRef("pk")).annotate(x=Value(1))
    return Label.objects.annotate(photo_count=count_of(photos), vote_count=count_of(votes))


def _vote_count_subquery():
    from django.db.models import Count, OuterRef, Subquery

    from .models import LabelVote

    return Subquery(LabelVote.objects.filter(photo=OuterRef("pk")).order_by().values("photo")
                    .annotate(c=Count("id")).values("c"))


def _photos_open_to_labelling():
    """Photo.open_to_labelling as a query, annotated with n_votes."""
    from django.db.models.functions import Coalesce

    return (
        Photo.objects.filter(excluded_from_training=False)
        .filter(Q(status=Photo.Status.FINAL, label_source=Photo.LabelSource.MODEL)
                | Q(status=Photo.Status.NEEDS_REVIEW, review_kind__in=[Photo.ReviewKind.UNCERTAIN, ""]))
        .annotate(n_votes=Coalesce(_vote_count_subquery(), 0))
    )


def photos_needing_labels(*, overlap=None):
    """Photos the shared workspace serves: open to labelling (not excluded from training, without
    a label a person vouched for: auto-accepted by the model, or waiting in the queue because the
    model was unsure), with fewer than LABELLING_OVERLAP votes. Audits and adjudications are for
    experts. Annotated with n_votes."""
    from django.conf import settings

    return _photos_open_to_labelling().filter(n_votes__lt=overlap or settings.LABELLING_OVERLAP)


def photos_with_all_votes_undecided(*, overlap=None):
    """Photos still open to labelling that have LABELLING_OVERLAP votes or more: there are some
    only after the setting was lowered, and their votes decide them (labelling.labelling_next)."""
    from django.conf import settings

    return _photos_open_to_labelling().filter(n_votes__gte=overlap or settings.LABELLING_OVERLAP)


def photo_needs_labels(photo, *, n_votes, overlap=None) -> bool:
    """The same rule as photos_needing_labels, for one (locked) row."""
    from django.conf import settings

    return n_votes < (overlap or settings.LABELLING_OVERLAP) and photo.open_to_labelling


def labelling_candidates(user, *, now, exclude_ids=()):
    """What labelling_next may serve `user`, best first.

    Left out: photos `user` has labelled, and, while labellers are blind to the model
    (LABELLING_SHOW_MODEL_GUESS off), photos `user` uploaded: their page showed the uploader the
    model's guess. Ordered by tier, then most informative first (no
    prediction, then unfamiliar photos, then the smallest top-2 margin of the model), then photos that already have
    votes (closest to a decision), then oldest. Tier 0: nobody else holds the photo; tier 1:
    another labeller holds a live assignment on it (or an expert a live review claim); tier 2:
    `user` was served it before and skipped it or let the lease lapse.
    """
    from django.db.models import BooleanField

    from .models import LabellingAssignment, LabelVote

    held = LabellingAssignment.objects.filter(photo=OuterRef("pk"), expires_at__gt=now).exclude(user=user)
    mine_before = LabellingAssignment.objects.filter(photo=OuterRef("pk"), user=user)
    voted = LabelVote.objects.filter(photo=OuterRef("pk"), user=user)
    claimed = Q(claimed_by__isnull=False) & ~Q(claimed_by=user) & Q(claim_expires_at__gt=now)
    photos = photos_needing_labels()
    if not settings.LABELLING_SHOW_MODEL_GUESS:
        photos = photos.exclude(owner=user)
    return (
        photos
        .exclude(Exists(voted))
        .exclude(id__in=list(exclude_ids))
        .annotate(
            skipped=Exists(mine_before),
            busy=Case(When(Exists(held), then=Value(True)), When(claimed, then=Value(True)),
                      default=Value(False), output_field=BooleanField()),
        )
        .order_by("skipped", "busy", _LEAST_KNOWN.asc(), F("prediction__margin").asc(nulls_first=True), "-n_votes",
                  "uploaded_at", "id")
    )


def labelling_votes(photo):
    """Every label given to a photo and by whom, oldest first (for the experts)."""
    return photo.votes.select_related("user", "label").order_by("created_at", "id")


# Photo.is_example_of as a filter on the examples' through rows: an example whose photo was
# corrected to another label (or rejected) since it was chosen is left out, not shown as this label's.
_STILL_AN_EXAMPLE = Q(photo__status=Photo.Status.FINAL, photo__final_label_id=F("label_id"))


def label_examples(labels):
    """{label id: [example photos]} for the labelling and review pages: the photos chosen as
    examples that are still labelled with the label."""
    through = Label.examples.through
    rows = (through.objects.filter(_STILL_AN_EXAMPLE, label_id__in=[label.id for label in labels])
            .select_related("photo").order_by("photo_id"))
    examples = {}
    for row in rows:
        examples.setdefault(row.label_id, []).append(row.photo)
    return examples


def photo_visible_to_labeller(user, photo_id) -> bool:
    """A labeller may see a photo served to them, one they labelled, or a label's example, on top
    of the photos they may see anyway."""
    from .models import LabellingAssignment, LabelVote

    if photos_visible_to(user).filter(id=photo_id).exists():
        return True
    return (LabellingAssignment.objects.filter(photo_id=photo_id, user=user).exists()
            or LabelVote.objects.filter(photo_id=photo_id, user=user).exists()
            or Label.examples.through.objects.filter(_STILL_AN_EXAMPLE, photo_id=photo_id,
                                                     label__retired=False).exists())


def dataset_photos(*, include_model=False):
    """The labelled set an export holds: final photos not excluded from training, with a label a
    person vouched for (and, when asked, the model's own auto-accepted labels too). The photos
    training uses (classifier.services.training_rows), so a retired label's photos are left out:
    importing the export elsewhere would otherwise bring the retired label back into use."""
    sources = list(Photo.HUMAN_VERIFIED_SOURCES) + ([Photo.LabelSource.MODEL] if include_model else [])
    return (Photo.objects.filter(status=Photo.Status.FINAL, excluded_from_training=False,
                                 label_source__in=sources, final_label__isnull=False, final_label__retired=False)
            .select_related("final_label", "owner", "reviewed_by", "prediction").order_by("final_label__name", "id"))


def dataset_counts(*, include_model=False):
    """{label name: number of photos} of what an export holds."""
    from django.db.models import Count

    rows = (dataset_photos(include_model=include_model).order_by().values("final_label__name")
            .annotate(n=Count("id")).order_by("final_label__name"))
    return {row["final_label__name"]: row["n"] for row in rows}



def team_stats(*, overlap=None) -> dict:
    """Per labeller and per label: how many labels, agreement with the others (Cohen's kappa of
    each labeller against the others, Fleiss' kappa overall and per label) and accuracy against
    the experts' decisions where both exist. "Not a plant / unusable" is the category None."""
    from django.conf import settings

    from .models import LabelVote
    from .stats import team_statistics

    votes = [(photo_id, username, label) for photo_id, username, label in
             LabelVote.objects.values_list("photo_id", "user__username", "label__name")]
    voted_photos = {photo_id for photo_id, _, _ in votes}
    expert = {}
    decided = (Photo.objects.filter(id__in=voted_photos, status__in=[Photo.Status.FINAL, Photo.Status.REJECTED])
               .filter(Q(decided_by=Photo.DecidedBy.EXPERT)
                       | Q(label_source__in=[Photo.LabelSource.EXPERT, Photo.LabelSource.AUDIT]))
               .values_list("id", "status", "final_label__name"))
    for photo_id, status, label in decided:
        expert[photo_id] = label if status == Photo.Status.FINAL else None
    return team_statistics(votes, expert, raters=overlap or settings.LABELLING_OVERLAP)


# --- files no row refers to ------------------------------------------------------------------


def files_unreferenced(folder: Path, referenced: set, *, root: Path | None = None,
                       min_age_seconds: float) -> list[Path]:
    """Files under `folder` whose path relative to `root` (default: the folder) is not in
    `referenced`, last written at least `min_age_seconds` ago: a file just written may belong
    to a row not yet committed."""
    root = root or folder
    if not folder.is_dir():
        return []
    cutoff = time.time() - min_age_seconds
    return sorted(path for path in folder.rglob("*")
                  if path.is_file() and path.relative_to(root).as_posix() not in referenced
                  and path.stat().st_mtime <= cutoff)


def photo_files_unreferenced(*, min_age_seconds: float) -> list[Path]:
    """Stored photo files (originals and working copies) that no photo refers to: left by a
    process killed between writing the file and committing its row (photo_upload removes its
    files on any error it sees)."""
    referenced = set()
    for image, working in Photo.objects.values_list("image", "working_image").iterator():
        referenced.update(name for name in (image, working) if name)
    root = Path(settings.MEDIA_ROOT)
    return files_unreferenced(root / "photos", referenced, root=root, min_age_seconds=min_age_seconds)


def webhooks_with_latest() -> list[tuple]:
    """Every webhook with its latest delivery (or None), how many wait to be sent and since when
    the oldest of them waits (old ones with no attempt: no webhooks worker is running)."""
    hooks = list(Webhook.objects.select_related("created_by"))
    waiting = {row[0]: row[1:] for row in WebhookDelivery.objects
               .filter(webhook__in=hooks, state__in=[WebhookDelivery.State.PENDING, WebhookDelivery.State.SENDING])
               .values_list("webhook_id").annotate(n=Count("id"), since=Min("created_at"))
               .values_list("webhook_id", "n", "since")}
    # One query per webhook: a site has a handful.
    return [(hook, hook.deliveries.first(), *waiting.get(hook.id, (0, None))) for hook in hooks]


def webhook_delivery_counts(webhook) -> dict:
    """Its deliveries by state: {"delivered": 12, "failed": 1, ...}."""
    return dict(webhook.deliveries.order_by().values_list("state").annotate(n=Count("id")).values_list("state", "n"))
