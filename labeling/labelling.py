"""Writes for the shared labelling workspace, label management and the site's bulk upload.

Labelling. Any member labels photos that have no verified label yet (see
selectors.photos_needing_labels), one at a time. The server decides who labels what:
`labelling_next` serves the most informative photo (the smallest top-2 margin of the model, no
prediction first) that the labeller has not labelled, passing over photos another labeller holds
a live assignment on (a lease of LABELLING_LEASE_SECONDS) while any other is available. The
candidate row is locked with SKIP LOCKED and checked again once locked, so two labellers asking
at the same moment are served different photos. Each photo gets up to LABELLING_OVERLAP votes;
with the last one the photo is decided: all the same label → final, source consensus; all "not
a plant / unusable" → rejected; otherwise it goes to the experts as an adjudication. With an
overlap of 1 the one vote decides it, recorded as source labeller (nobody agreed with it). Each
outcome is recorded (LabellingOutcome) for the photo's history.

Labels. A label in use is retired, never deleted; a retired label is hidden from the buttons
(selectors.labels_all) and kept on the photos decided with it.
"""

from __future__ import annotations

import io
import re
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from django.db.models import ProtectedError, Q, RestrictedError
from django.utils import timezone

from . import selectors
from .image_checks import ImageRejected
from .models import Label, LabelChange, LabellingAssignment, LabellingOutcome, LabelVote, Photo, PhotoEvent
from .services import ImportReport, label_to_give, photo_import_one

UNUSABLE = "not a plant / unusable"
MAX_EXAMPLES = 6
LABEL_NAME_RE = re.compile(r"^[a-z0-9_]{1,64}$")
LABEL_NAME_RULE = "Use 1 to 64 lowercase letters, digits or underscores (the folder name of an export)."


class LabellingConflict(Exception):
    """The vote cannot be taken (a 409): already labelled, enough votes, or not served to you."""


class AlreadyLabelled(LabellingConflict):
    """The labeller's second vote on a photo. same_answer: it repeats their first answer (a
    double click, a form or a request sent again), which a page may show as saved, and the API
    answer with the stored `vote`, rather than as an error."""

    def __init__(self, vote, same_answer: bool):
        self.vote = vote
        self.same_answer = same_answer
        super().__init__("You have already labelled this photo.")


class LabelInUse(Exception):
    """The label is used by photos, votes, decisions or models: retire it instead (a 409)."""


class LabelError(ValueError):
    """A label change that is not valid (a 400)."""


class LabelExists(LabelError):
    """A label of that name exists already, perhaps made a moment ago by another admin (a 409)."""


# --- serving photos -------------------------------------------------------------------------


def lease() -> timedelta:
    return timedelta(seconds=settings.LABELLING_LEASE_SECONDS)


def _lock_first(qs):
    """Lock the first row of `qs`, passing over rows another transaction holds (PostgreSQL).

    When another transaction holds every one (another labeller being served, a vote being
    saved), wait for the first: it may still need labels once they commit, and "nothing left"
    would be wrong. The caller checks the row again once it has the lock.
    """
    rows = qs.values_list("id", "skipped", "busy")
    if not connection.features.has_select_for_update_skip_locked:
        return rows.first()
    return (rows.select_for_update(skip_locked=True, of=("self",)).first()
            or rows.select_for_update(of=("self",)).first())


def _one_request_at_a_time(user):
    """Serialise one labeller's requests (two tabs asking at once): each would otherwise be
    assigned a photo of its own. FOR NO KEY UPDATE, as it conflicts only with itself and updates
    of the row, not with rows that refer to the user (their votes). A no-op on SQLite, which
    runs one writing transaction at a time anyway."""
    list(get_user_model().objects.select_for_update(no_key=True).filter(pk=user.pk).values_list("pk"))


def _settle_when_overdue(photo, votes, overlap):
    """A photo with all its votes but undecided (LABELLING_OVERLAP was lowered after it got them)
    is decided by the votes it has. `photo` is locked."""
    if len(votes) >= overlap and photo.open_to_labelling:
        _settle(photo, votes)


def _settle_overdue_photos(overlap):
    for photo_id in selectors.photos_with_all_votes_undecided(overlap=overlap).values_list("id", flat=True):
        photo = Photo.objects.select_for_update().filter(id=photo_id).first()
        if photo is not None:  # checked again under the lock: a vote may have decided it meanwhile
            _settle_when_overdue(photo, _votes_of(photo), overlap)


class _CandidateChanged(Exception):
    """The candidate locked was taken or finished between our read and our lock."""


def _lock_best_candidate(user, *, now, exclude_ids):
    """The id of the best candidate for `user`, locked and checked again since, or None when
    nothing is left."""
    for _ in range(20):  # each retry means another labeller changed a candidate meanwhile
        candidates = selectors.labelling_candidates(user, now=now, exclude_ids=exclude_ids)
        try:
            # A savepoint: a candidate passed over is unlocked again, so that a labeller waiting
            # in _lock_first never holds a row that another one waits for (a deadlock).
            with transaction.atomic():
                row = _lock_first(candidates)
                if row is None:
                    return None
                photo_id, skipped, busy = row
                # Read again: a statement that starts after we hold the lock sees every commit
                # made before we got it, such as another labeller's assignment.
                if candidates.filter(id=photo_id).values_list("skipped", "busy").first() != (skipped, busy):
                    raise _CandidateChanged  # taken or finished meanwhile: its rank changed
                return photo_id
        except _CandidateChanged:
            continue
    return None


def _before_assign(photo_id):
    """A hook between locking a candidate and recording its assignment (tests widen the race here)."""


def labelling_next(user, *, exclude_ids=()) -> Photo | None:
    """The photo `user` should label now, or None when there is nothing left for them.

    A live assignment of theirs is served again (a reload does not skip a photo). Otherwise the
    best candidate is locked, checked again with a fresh read (a concurrent labeller may have
    taken it between our read and our lock), and assigned to `user` until now + the lease.
    Photos left undecided with all their votes (the overlap was lowered) are decided first.
    """
    with transaction.atomic():
        _one_request_at_a_time(user)
        _settle_overdue_photos(settings.LABELLING_OVERLAP)
        now = timezone.now()
        # Housekeeping: the user's lapsed or skipped leases on photos that need no more labels.
        (LabellingAssignment.objects.filter(user=user, expires_at__lte=now)
         .exclude(photo__in=selectors.photos_needing_labels().values("id")).delete())
        mine = (LabellingAssignment.objects.filter(user=user, expires_at__gt=now)
                .filter(photo__in=selectors.labelling_candidates(user, now=now, exclude_ids=exclude_ids)
                        .values("id"))
                .order_by("-expires_at", "-id").first())
        if mine is not None:
            LabellingAssignment.objects.filter(id=mine.id).update(expires_at=now + lease())
            return Photo.objects.get(id=mine.photo_id)
        photo_id = _lock_best_candidate(user, now=now, exclude_ids=exclude_ids)
        if photo_id is None:
            return None
        _before_assign(photo_id)
        # The user's other live assignments end: one photo at a time.
        LabellingAssignment.objects.filter(user=user, expires_at__gt=now).exclude(photo_id=photo_id).update(
            expires_at=now)
        LabellingAssignment.objects.update_or_create(photo_id=photo_id, user=user,
                                                     defaults={"expires_at": now + lease()})
        return Photo.objects.get(id=photo_id)


def labelling_skip(user, photo_id, *, serve_next=True) -> Photo | None:
    """Release the user's assignment on a photo and serve another one (never the same at once).

    The released assignment is kept, expired: it ranks the photo last for this labeller, so
    it comes back to them only when nothing else is left.
    """
    LabellingAssignment.objects.filter(photo_id=photo_id, user=user).update(expires_at=timezone.now())
    return labelling_next(user, exclude_ids=[photo_id]) if serve_next else None


# --- votes ------------------------------------------------------------------------------------


def _vote_label(label_name, unusable):
    """The label of a vote, locked until the vote commits (services.label_to_give): a label
    deleted or retired meanwhile is seen as such here, not as a foreign key error at commit."""
    return None if unusable else label_to_give(label_name)


def _describe(votes) -> str:
    counts = Counter(v.label.name if v.label_id else UNUSABLE for v in votes)
    return ", ".join(f"{name} ×{n}" for name, n in sorted(counts.items()))


def label_vote(*, photo_id: int, user, label_name: str | None = None, unusable: bool = False) -> LabelVote:
    """Record one labeller's answer for a photo; the LABELLING_OVERLAP-th answer decides it.

    Raises UnknownLabel (unknown or retired label), LabellingConflict (a second vote of the
    same labeller, a photo that has all its votes or a verified label, a photo never served to
    this labeller) and Photo.DoesNotExist. An undecided photo that has all its votes (the
    overlap was lowered since) is decided by them, and the vote refused as for any photo that
    has its votes: the outcome does not depend on whether a vote or labelling_next meets it first.
    """
    overlap = settings.LABELLING_OVERLAP
    with transaction.atomic():
        # The label first, the photo second: label_update takes them in that order too (the
        # foreign key checks of its examples), so neither waits for the other in a cycle.
        label = _vote_label(label_name, unusable)
        # Row lock: votes on one photo are serialised, so exactly one of them is the last.
        photo = Photo.objects.select_for_update().get(id=photo_id)
        votes = _votes_of(photo)
        _settle_when_overdue(photo, votes, overlap)
        refusal = _vote_refusal(photo, votes, user, overlap, label)
        if refusal is None:
            return _vote_record(photo, votes, user, label, overlap)
    raise refusal  # out of the transaction: an overdue photo's decision is kept


def _votes_of(photo):
    return list(LabelVote.objects.filter(photo=photo).select_related("label", "user"))


def _vote_refusal(photo, votes, user, overlap, label) -> LabellingConflict | None:
    """Why `user` may not vote `label` (None: unusable) on the locked `photo` now, or None."""
    mine = next((v for v in votes if v.user_id == user.pk), None)
    if mine is not None:
        return AlreadyLabelled(mine, same_answer=mine.label_id == (label.id if label is not None else None))
    if not selectors.photo_needs_labels(photo, n_votes=len(votes), overlap=overlap):
        if len(votes) >= overlap:
            return LabellingConflict(f"This photo already has its {overlap} labels.")
        return LabellingConflict("This photo no longer needs labels (it has a verified label or is "
                                 f"{photo.get_status_display().lower()}).")
    if not LabellingAssignment.objects.filter(photo=photo, user=user).exists():
        return LabellingConflict("This photo was not served to you; ask for the next photo to label.")
    return None


def _vote_record(photo, votes, user, label, overlap) -> LabelVote:
    try:
        with transaction.atomic():
            vote = LabelVote.objects.create(photo=photo, user=user, label=label)
    except IntegrityError:
        raise LabellingConflict("You have already labelled this photo.") from None
    LabellingAssignment.objects.filter(photo=photo, user=user).delete()
    votes.append(vote)
    if len(votes) >= overlap:
        _settle(photo, votes)
    return vote


def _settle(photo, votes):
    answers = {v.label_id for v in votes}
    status_before = photo.status
    if len(votes) == 1:  # LABELLING_OVERLAP 1: one person's word, not an agreement
        label = votes[0].label
        photo.decide_by_labeller(label, reason="" if label is not None else f"The labeller said: {UNUSABLE}.")
    elif len(answers) == 1:
        label = votes[0].label
        reason = "" if label is not None else f"{len(votes)} labellers agreed: {UNUSABLE}."
        photo.decide_by_consensus(label, reason=reason)
    else:
        photo.route_to_adjudication(
            f"The {len(votes)} labellers disagreed ({_describe(votes)}): an expert will adjudicate.")
    photo.save()
    LabellingOutcome.objects.create(photo=photo, label=photo.final_label, status_before=status_before,
                                    status_after=photo.status, tally=_describe(votes))
    # Lapsed leases go; a live one stays until its holder answers (a 409 that says why, not a 404).
    LabellingAssignment.objects.filter(photo=photo, expires_at__lte=timezone.now()).delete()


# --- label management -----------------------------------------------------------------------


def _check_name(name):
    if not isinstance(name, str) or not LABEL_NAME_RE.match(name):
        raise LabelError(f"{name!r} is not a usable label name. {LABEL_NAME_RULE}")


def _example_photos(label, photo_ids):
    ids = []
    for value in photo_ids:
        try:
            ids.append(int(value))
        except (TypeError, ValueError):
            raise LabelError(f"{value!r} is not a photo id.") from None
    ids = list(dict.fromkeys(ids))
    if len(ids) > MAX_EXAMPLES:
        raise LabelError(f"Choose at most {MAX_EXAMPLES} example photos.")
    photos = {p.id: p for p in Photo.objects.filter(id__in=ids)}
    missing = [i for i in ids if i not in photos]
    if missing:
        raise LabelError(f"No photo with id {', '.join(map(str, missing))}.")
    # An example shows what the label looks like: only a photo decided with that label does
    # (selectors.label_examples leaves out one whose label was changed since).
    other = [i for i in ids if not photos[i].is_example_of(label)]
    if other:
        raise LabelError(f"Photo {', '.join(map(str, other))} is not labelled {label.name}: "
                         "not a good example of it.")
    return [photos[i] for i in ids]


UNCHANGED = object()  # label_update: an argument not given


def _threshold_said(threshold) -> str:
    return "the site's threshold" if threshold is None else f"threshold {threshold:g}"


@transaction.atomic
def label_create(*, name: str, description: str = "", example_ids=(), always_review: bool = False,
                 threshold: float | None = None, user=None) -> Label:
    _check_name(name)
    exists = LabelExists(f"A label named {name!r} exists already.")
    if Label.objects.filter(name=name).exists():
        raise exists
    try:
        with transaction.atomic():  # a savepoint: the caller's transaction survives a lost race
            label = Label.objects.create(name=name, description=description or "", always_review=always_review,
                                         threshold=threshold)
    except IntegrityError:  # created by someone else since the check, not committed then
        raise exists from None
    if example_ids:
        label.examples.set(_example_photos(label, example_ids))
    _record(label, user, ["created"] + (["always checked by an expert"] if always_review else [])
            + ([_threshold_said(threshold)] if threshold is not None else []))
    return label


@transaction.atomic
def label_update(*, label_id: int, description=None, retired=None, example_ids=None, always_review=None,
                 threshold=UNCHANGED, user=None) -> Label:
    """Change what may change: the description, the examples, retired or not, always reviewed
    or not, its own threshold (None: the site's) (never the name: predictions, models and
    exports refer to labels by name). A change of always_review or of the threshold applies to
    photos predicted from then on. What changed is recorded, with `user`, in the label's history."""
    label = Label.objects.select_for_update().get(id=label_id)
    changes = []
    if description is not None and description != label.description:
        label.description = description
        changes.append("description changed")
    if retired is not None and bool(retired) != label.retired:
        label.retired = bool(retired)
        changes.append("retired" if label.retired else "put back in use")
    if always_review is not None and bool(always_review) != label.always_review:
        label.always_review = bool(always_review)
        changes.append("always checked by an expert" if label.always_review else "no longer always checked")
    if threshold is not UNCHANGED and threshold != label.threshold:
        label.threshold = threshold
        changes.append(_threshold_said(threshold))
    label.save()
    if example_ids is not None:
        before = set(label.examples.values_list("id", flat=True))
        label.examples.set(_example_photos(label, example_ids))
        if set(label.examples.values_list("id", flat=True)) != before:
            changes.append(f"examples changed ({label.examples.count()} now)")
    _record(label, user, changes)
    return label


def _record(label, user, changes):
    LabelChange.objects.bulk_create([LabelChange(label=label, user=user, what=what) for what in changes])


@dataclass(frozen=True)
class Merged:
    label: Label
    into: Label
    photos: int
    votes: int


@transaction.atomic
def label_merge(*, label_id: int, into_id: int, user) -> Merged:
    """One plant under two names: every photo decided with `label_id` takes `into_id` instead
    (each recorded in its history as a relabel; the source and the decider stay, a person's label
    stays a person's), the labellers' votes for it count for the other, its examples join the
    other's while there is room, and it is retired (its history says into which). Predictions and
    decisions keep the name they were made with: they are what happened. Raises LabelError, or
    Label.DoesNotExist for a label that is not there."""
    if label_id == into_id:
        raise LabelError("A label cannot be merged into itself.")
    # Both rows locked, in id order (two merges at once cannot deadlock); a retired label is given
    # by nobody, so no photo takes it while this runs.
    locked = {label.id: label for label in Label.objects.select_for_update().filter(id__in=[label_id, into_id])
              .order_by("id")}
    if len(locked) < 2:
        raise Label.DoesNotExist("No such label.")
    label, into = locked[label_id], locked[into_id]
    if into.retired:
        raise LabelError(f"{into.name} is retired: put it back in use first, or merge into another label.")
    note = f"labels merged: {label.name} into {into.name}"
    examples = into.current_examples() + label.current_examples()  # read while each still has its own
    photos = list(Photo.objects.select_for_update().filter(final_label=label).order_by("id"))
    for photo in photos:
        photo.final_label = into
        photo.save(update_fields=["final_label"])  # webhooks hear of each
    PhotoEvent.objects.bulk_create([PhotoEvent(photo=photo, user=user, action=PhotoEvent.Action.RELABEL,
                                               label_before=label, label_after=into, note=note) for photo in photos])
    votes = LabelVote.objects.filter(label=label).update(label=into)
    into.examples.set(examples[:MAX_EXAMPLES])
    label.examples.clear()
    label.retired = True
    label.save(update_fields=["retired"])
    _record(label, user, [f"merged into {into.name} ({len(photos)} photos, {votes} votes moved); retired"])
    _record(into, user, [f"took in {label.name} ({len(photos)} photos, {votes} votes)"])
    return Merged(label=label, into=into, photos=len(photos), votes=votes)


@transaction.atomic
def label_delete(*, label_id: int) -> None:
    """Delete a label nothing uses yet; a label in use raises LabelInUse (retire it instead)."""
    label = Label.objects.select_for_update().get(id=label_id)
    usage = {k: v for k, v in selectors.label_usage(label).items() if v}
    if usage:
        what = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in usage.items())
        raise LabelInUse(f"The label {label.name!r} is in use ({what}): retire it instead of deleting it.")
    try:
        with transaction.atomic():
            label.examples.clear()
            label.delete()
    except (ProtectedError, RestrictedError):
        raise LabelInUse(f"The label {label.name!r} is in use: retire it instead of deleting it.") from None


# --- the site's bulk upload -----------------------------------------------------------------


@dataclass
class BulkResult:
    result: str           # accepted | duplicate | refused
    reason: str
    photo: Photo | None   # the new photo, or the one it duplicates


def _lock_digest(digest):
    """Two uploads of the same bytes at once: the second waits, then finds the first."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"photo-import:{digest}"])


def bulk_import_one(*, owner, fileobj, file_name: str, label: Label | None) -> BulkResult:
    """One file of the site's bulk upload, through the same photo_import_one as `import_photos`.

    With a label the photo is stored as labelled (an import); without, it is predicted like any
    upload. Either way a file whose bytes are already stored is a duplicate.
    """
    import hashlib

    max_bytes = settings.UPLOAD_MAX_BYTES
    try:
        fileobj.seek(0)
    except (AttributeError, OSError, ValueError):
        pass
    data = fileobj.read(max_bytes + 1)  # check_and_clean refuses what is over the limit
    digest = hashlib.sha256(data).hexdigest()
    report = ImportReport()
    with transaction.atomic():
        _lock_digest(digest)
        try:
            photo = photo_import_one(owner=owner, fileobj=io.BytesIO(data), label_name=label.name if label else None,
                                     report=report, source_name=file_name)
        except ImageRejected as exc:  # raised only if photo_import_one lets it through
            return BulkResult("refused", exc.message, None)
    if photo is not None:
        return BulkResult("accepted", "", photo)
    if report.skipped:
        # The same match as photo_import_one's duplicate check: the bytes uploaded or the file stored.
        existing = Photo.objects.filter(Q(sha256=digest) | Q(stored_sha256=digest)).order_by("id").first()
        return BulkResult("duplicate", report.skipped[0][1], existing)
    why = report.refused[0][1] if report.refused else "The file was not imported."
    return BulkResult("refused", why, None)


def bulk_upload_labels():
    """The labels a bulk upload may give (retired ones are not)."""
    return selectors.labels_all()


__all__ = [
    "AlreadyLabelled", "BulkResult", "LabelError", "LabelExists", "LabelInUse", "LabellingConflict", "UNUSABLE",
    "bulk_import_one", "label_create", "label_delete", "label_update", "label_vote", "labelling_next",
    "labelling_skip",
]
