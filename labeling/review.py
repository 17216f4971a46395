"""Expert review: claims on queue items, decisions, corrections and the audit sample.

Claims. An expert claims a photo when they open it (or ask for the next one). The claim is a
lease of REVIEW_CLAIM_SECONDS: while it lasts the photo is hidden from the other experts'
queues and their decisions on it are refused (ClaimConflict, a 409). A lapsed claim simply
stops counting, so the photo is back in the queue without any clean-up job. An expert holds one
claim at a time: claiming a photo returns the one they held before to the queue. A decision
releases the claim.

Audits. A random AUDIT_FRACTION of the predictions that would have been auto-accepted go to
the queue as audits instead. The uploader sees "awaiting expert", like any review, and not the
model's guess. The expert's decision on an audit is recorded with kind "audit" and, with a
label, label_source "audit"; the measured accuracy of auto-accepted predictions is the share
of audited photos whose label (after any later correction) is the model's top label, with a
Wilson 95% interval.

Adjudications. An expert who labelled a disputed photo is not shown it in the queue, and may not
claim or decide it (VotedOnDispute, a 409): the team's accuracy is measured against the experts'
decisions, and their own call would be counted as the truth for their own vote.

Corrections. A decided photo (final or rejected, by a person, an import or the model) can be
corrected by an expert: a new ReviewDecision of kind "correction" with the label before; the
earlier records stay as they were.
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass
from datetime import date, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Avg, BooleanField, Count, ExpressionWrapper, F, Min, Q
from django.db.models.functions import TruncWeek
from django.utils import timezone

from .models import LabelVote, Photo, Prediction, ReviewDecision, is_expert
from .services import ReviewConflict, label_to_give

CORRECTION = "correction"
AUDIT_REASON = "Picked at random for an expert's check: an expert will decide."
Z_95 = 1.959963984540054  # the standard normal's 97.5% quantile

# The draw that picks audits. Tests seed it (or pass their own Random) to be deterministic.
_audit_rng = random.Random()
# Celery forks its pool after this module is imported, and Python reseeds only the module-level
# `random` in a child: without this, every worker process drew the same audits.
os.register_at_fork(after_in_child=lambda: _audit_rng.seed())


class ClaimConflict(ReviewConflict):
    """Another expert holds a live claim on the photo."""

    def __init__(self, photo):
        self.holder = photo.claimed_by.username if photo.claimed_by_id else ""
        self.expires_at = photo.claim_expires_at
        super().__init__(
            f"Photo {photo.pk} is being reviewed by {self.holder} until "
            f"{timezone.localtime(self.expires_at):%H:%M:%S}; it returns to the queue if they leave it."
        )


class VotedOnDispute(ClaimConflict):
    """The expert labelled the disputed photo themselves: another expert adjudicates it, or the
    team's accuracy against the experts would be measured against the expert's own vote. A kind
    of ClaimConflict (a 409) so that the pages treat it as a photo held by someone else: the
    message instead of the form, and "Not saved" for a decision."""

    def __init__(self, photo):
        self.holder, self.expires_at = "", None
        ReviewConflict.__init__(  # not ClaimConflict's message: nobody holds a claim
            self, f"You labelled photo {photo.pk} yourself, so another expert adjudicates the labellers' "
                  "disagreement over it.")


class CorrectionError(Exception):
    """The correction would change nothing."""


# --- the audit sample ---------------------------------------------------------------


def audit_draw(rng=None) -> bool:
    """True with probability AUDIT_FRACTION."""
    fraction = float(settings.AUDIT_FRACTION)
    if fraction <= 0:
        return False
    return (rng or _audit_rng).random() < fraction


def route_prediction(photo, prediction, threshold, *, rng=None):
    """Photo.route, except that a random AUDIT_FRACTION of the predictions it would accept go to
    review as audits. Only would-be-accepted predictions take part in the draw. The reason the
    uploader reads names no label."""
    if not Photo.why_an_expert_decides(prediction, threshold) and audit_draw(rng):
        photo.route_to_review(AUDIT_REASON, kind=Photo.ReviewKind.AUDIT)
    else:
        photo.route(prediction, threshold)
    return photo


def prediction_hidden_from(photo, user=None) -> bool:
    """While an audit is pending, nobody is shown the model's guess: not its uploader, and not the
    expert deciding it, whose call measures the model (audit_stats) and must not lean on the very
    answer it measures. Once decided, the guess is shown to all who may see the photo."""
    return photo.status == Photo.Status.NEEDS_REVIEW and photo.review_kind == Photo.ReviewKind.AUDIT


# --- claims -------------------------------------------------------------------------


def claim_lease() -> timedelta:
    return timedelta(seconds=settings.REVIEW_CLAIM_SECONDS)


def claimable_by(expert, now) -> Q:
    """Rows `expert` may claim: unclaimed, lapsed, or already theirs."""
    return (Q(claimed_by__isnull=True) | Q(claim_expires_at__isnull=True) | Q(claim_expires_at__lte=now)
            | Q(claimed_by=expert))


def voted_on_dispute(photo, expert) -> bool:
    """`expert` gave one of the labels that disagreed on the photo now awaiting adjudication."""
    return (photo.review_kind == Photo.ReviewKind.ADJUDICATION
            and LabelVote.objects.filter(photo_id=photo.pk, user_id=expert.pk).exists())


def held_by_other(photo, expert, now=None) -> bool:
    now = now or timezone.now()
    return bool(photo.claimed_by_id and photo.claimed_by_id != expert.pk and photo.claim_expires_at
                and photo.claim_expires_at > now)


def _take(photo_id, expert, now) -> bool:
    """The conditional UPDATE that claims a row. Two experts racing for one row: the second
    UPDATE waits for the first to commit, re-reads the row and no longer matches."""
    taken = (Photo.objects.filter(id=photo_id, status=Photo.Status.NEEDS_REVIEW)
             .filter(claimable_by(expert, now))
             .update(claimed_by=expert, claim_expires_at=now + claim_lease()))
    if taken:
        # One claim per expert: the photo they held before goes back to the queue.
        Photo.objects.filter(claimed_by=expert).exclude(id=photo_id).update(claimed_by=None, claim_expires_at=None)
    return bool(taken)


def review_claim(photo_id: int, expert) -> Photo:
    """Claim (or renew the claim on) one photo awaiting review.

    Raises ClaimConflict while another expert's claim is live, VotedOnDispute (a ClaimConflict)
    when `expert` labelled the disputed photo themselves, ReviewConflict when the photo no longer
    awaits review, Photo.DoesNotExist when there is no such photo.
    """
    now = timezone.now()
    photo = Photo.objects.get(id=photo_id)
    if voted_on_dispute(photo, expert):  # checked again under the row lock by review_decide
        raise VotedOnDispute(photo)
    with transaction.atomic():
        if _take(photo_id, expert, now):
            return Photo.objects.select_related("claimed_by").get(id=photo_id)
    photo = Photo.objects.select_related("claimed_by").get(id=photo_id)
    if photo.status != Photo.Status.NEEDS_REVIEW:
        raise ReviewConflict(f"This photo is no longer awaiting review (it is {photo.get_status_display()}).")
    raise ClaimConflict(photo)


def review_claim_next(expert, *, ordering=None, label=None) -> Photo | None:
    """Claim the first photo of `expert`'s queue (see selectors.review_queue), or None.

    Experts asking at the same moment get different photos: the candidate row is locked with
    SKIP LOCKED, so a row another expert is claiming right now is passed over, not waited for.
    """
    from . import selectors

    ordering = ordering or selectors.REVIEW_DEFAULT_ORDERING
    for _ in range(5):  # a candidate lost to a concurrent single-photo claim: look again
        with transaction.atomic():
            now = timezone.now()
            candidate = (
                selectors.review_queue(ordering=ordering, label=label, viewer=expert, now=now)
                .select_related(None)
                .select_for_update(skip_locked=True, of=("self",))
                .values_list("id", flat=True)
                .first()
            )
            if candidate is None:
                return None
            if _take(candidate, expert, now):
                return Photo.objects.select_related("claimed_by").get(id=candidate)
    return None


def review_release(photo_id: int, expert) -> bool:
    """Give a claim back. Only its holder can; a live claim of another expert is a ClaimConflict."""
    released = Photo.objects.filter(id=photo_id, claimed_by=expert).update(claimed_by=None, claim_expires_at=None)
    if released:
        return True
    photo = Photo.objects.select_related("claimed_by").get(id=photo_id)
    if held_by_other(photo, expert):
        raise ClaimConflict(photo)
    return False


# --- decisions and corrections ------------------------------------------------------


def _label_or_raise(label_name, reject):
    return None if reject else label_to_give(label_name)


@transaction.atomic
def review_decide(*, photo_id: int, expert, label_name: str | None = None, reject: bool = False,
                  reason: str = "") -> Photo:
    """An expert's call on a photo awaiting review: a label, or a rejection.

    A second decision raises ReviewConflict; a decision on a photo another expert has a live
    claim on raises ClaimConflict, and one on a dispute the expert labelled themselves
    VotedOnDispute. The claim is released.
    """
    label = _label_or_raise(label_name, reject)
    # Row lock: two experts deciding at once are serialised, and the second sees the new state.
    photo = Photo.objects.select_for_update().get(id=photo_id)
    if photo.status != Photo.Status.NEEDS_REVIEW:
        raise ReviewConflict(f"This photo is no longer awaiting review (it is {photo.get_status_display()}).")
    if held_by_other(photo, expert):
        photo = Photo.objects.select_related("claimed_by").get(id=photo_id)
        raise ClaimConflict(photo)
    if voted_on_dispute(photo, expert):
        raise VotedOnDispute(photo)
    before, label_before = photo.status, photo.final_label
    kind = photo.review_kind or Photo.ReviewKind.UNCERTAIN
    photo.decide_by_expert(expert, label=label, reason=reason)
    if kind == Photo.ReviewKind.AUDIT and label is not None:
        photo.label_source = Photo.LabelSource.AUDIT
    photo.claimed_by = None
    photo.claim_expires_at = None
    photo.save()
    ReviewDecision.objects.create(
        photo=photo, expert=expert, kind=kind, label_before=label_before, label=label, rejected=reject,
        reason=reason, status_before=before, status_after=photo.status,
    )
    return photo


@dataclass
class ConfirmReport:
    label: str
    confirmed: list  # photo ids decided with the label
    refused: list    # (photo id, why), each left as it was


class NotConfirmable(ReviewConflict):
    """A photo the grid may not confirm: an audit (blind), a dispute, or another answer of the model's."""


def review_confirm_many(*, photo_ids, expert, label_name: str) -> ConfirmReport:
    """The grid's "confirm": decide each photo with `label_name`, the model's own answer for it,
    as review_decide would one at a time, each in its own transaction. A photo decided or claimed
    by another expert meanwhile, deleted, or not the model's `label_name`, is refused and left as
    it was, with why; the others are decided. Raises UnknownLabel (nothing done) for a label
    that does not exist or is retired."""
    with transaction.atomic():
        label_to_give(label_name)  # checked once up front: a bad label refuses the whole request
    report = ConfirmReport(label=label_name, confirmed=[], refused=[])
    for photo_id in dict.fromkeys(photo_ids):
        try:
            _confirm(photo_id, expert, label_name)
        except Photo.DoesNotExist:
            report.refused.append((photo_id, f"Photo {photo_id} no longer exists."))
        except ReviewConflict as exc:
            report.refused.append((photo_id, str(exc)))
        else:
            report.confirmed.append(photo_id)
    return report


@transaction.atomic
def _confirm(photo_id, expert, label_name):
    label_to_give(label_name)  # the label's lock before the photo's, as review_decide takes them
    photo = Photo.objects.select_for_update(of=("self",)).select_related("prediction__label").get(id=photo_id)
    prediction = getattr(photo, "prediction", None)
    if photo.status == Photo.Status.NEEDS_REVIEW and photo.review_kind != Photo.ReviewKind.UNCERTAIN:
        # An audit must be decided blind, and a dispute with the labellers' votes in view.
        kind = "an audit" if photo.review_kind == Photo.ReviewKind.AUDIT else "a dispute"
        raise NotConfirmable(f"Photo {photo_id} is {kind}: decide it on its own page.")
    if prediction is None or prediction.label.name != label_name:
        raise NotConfirmable(f"The model did not answer {label_name} for photo {photo_id}.")
    if photo.status == Photo.Status.NEEDS_REVIEW and prediction.unfamiliar:
        # Unlike anything the model learned from: looked at on its own, with why, not ticked in a row.
        raise NotConfirmable(f"Photo {photo_id} is unlike the photos the model learned from: decide it on its own "
                             "page.")
    review_decide(photo_id=photo_id, expert=expert, label_name=label_name)


@transaction.atomic
def review_correct(*, photo_id: int, expert, label_name: str | None = None, reject: bool = False,
                   reason: str = "", seen_decided_at=None) -> Photo:
    """Correct a decided photo (final or rejected). Adds a "correction" decision recording the
    label and state before; nothing earlier is changed or removed.

    seen_decided_at: the photo's decided_at when the expert looked at it. If another decision
    has come since (another expert's correction, a cleaning relabel), this one would silently
    replace a decision the expert never saw: ReviewConflict instead.
    """
    label = _label_or_raise(label_name, reject)
    photo = Photo.objects.select_for_update().get(id=photo_id)
    if photo.status not in (Photo.Status.FINAL, Photo.Status.REJECTED):
        raise ReviewConflict(f"Only a decided photo can be corrected; this one is {photo.get_status_display()}"
                             + (": review it instead." if photo.status == Photo.Status.NEEDS_REVIEW else "."))
    if seen_decided_at is not None and photo.decided_at != seen_decided_at:
        now = photo.final_label.name if photo.final_label_id else photo.get_status_display().lower()
        raise ReviewConflict(f"This photo was decided again after you opened it: it is now {now}. "
                             "Look at its history, then correct it again if it still needs it.")
    if reject and photo.status == Photo.Status.REJECTED:
        raise CorrectionError("Nothing to correct: the photo is already rejected.")
    if label is not None and photo.status == Photo.Status.FINAL and photo.final_label_id == label.id:
        raise CorrectionError(f"Nothing to correct: the photo is already labelled {label.name}.")
    before, label_before = photo.status, photo.final_label
    photo.decide_by_expert(expert, label=label, reason=reason)
    photo.save()
    ReviewDecision.objects.create(
        photo=photo, expert=expert, kind=CORRECTION, label_before=label_before, label=label, rejected=reject,
        reason=reason, status_before=before, status_after=photo.status,
    )
    return photo


# --- audit statistics ---------------------------------------------------------------


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float] | None:
    """The Wilson score interval for a binomial proportion (None when n is 0)."""
    if n <= 0:
        return None
    if not 0 <= successes <= n:
        raise ValueError("successes must be between 0 and n")
    return wilson_bounds(successes / n, n, z)


def wilson_bounds(p: float, n: float, z: float = Z_95) -> tuple[float, float]:
    """The Wilson interval around a proportion p measured on n (> 0) trials; n may be an
    effective sample size (a weighted estimate's), which need not be a whole number."""
    z2 = z * z
    denominator = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denominator
    # At 0 or n successes a bound is exactly 0 or 1; rounding must not move it off.
    low = 0.0 if p == 0 else max(0.0, centre - half)
    high = 1.0 if p == 1 else min(1.0, centre + half)
    return low, high


@dataclass
class AuditStats:
    audited: int
    correct: int
    accuracy: float | None
    ci_low: float | None
    ci_high: float | None
    fraction_setting: float


# An audited photo was right when it ended final with the model's label (the expert's, or a later correction's).
AUDIT_CORRECT = Q(status=Photo.Status.FINAL, final_label=F("prediction__label"))


def audited_photos():
    """Photos whose audit an expert has decided, each once."""
    return Photo.objects.filter(decisions__kind=Photo.ReviewKind.AUDIT).distinct()


def audit_stats(version_id=None, label=None) -> AuditStats:
    """Measured accuracy of auto-accepted predictions: an audited photo counts as correct when
    its label (the expert's, or a later correction's) is the model's top label. version_id: only
    the predictions of that model version (after a rollback, the versions' audits differ);
    label: only those where the model said this label."""
    photos = audited_photos()
    if version_id is not None:
        photos = photos.filter(prediction__model_version_id=version_id)
    if label is not None:
        photos = photos.filter(prediction__label__name=label)
    audited = photos.count()
    correct = photos.filter(AUDIT_CORRECT).count()
    interval = wilson_interval(correct, audited)
    return AuditStats(
        audited=audited, correct=correct, accuracy=correct / audited if audited else None,
        ci_low=interval[0] if interval else None, ci_high=interval[1] if interval else None,
        fraction_setting=float(settings.AUDIT_FRACTION),
    )


def audit_stats_by_version() -> list[tuple[int, AuditStats]]:
    """(version id, its audit stats) for every version whose predictions were audited, newest first."""
    versions = (audited_photos().order_by().values_list("prediction__model_version_id", flat=True).distinct())
    return [(version_id, audit_stats(version_id)) for version_id in sorted(set(versions), reverse=True)]


def audit_stats_by_label() -> list[tuple[str, AuditStats]]:
    """(the model's label, its audit stats) for every label the audited predictions gave, the
    least accurate first: where auto-accepting is least safe."""
    labels = audited_photos().order_by().values_list("prediction__label__name", flat=True).distinct()
    rows = [(label, audit_stats(label=label)) for label in set(labels)]
    return sorted(rows, key=lambda row: (row[1].accuracy, row[0]))


def recent_audits(limit=100):
    """The latest decided audits, newest first, for the audits page."""
    return (ReviewDecision.objects.filter(kind=Photo.ReviewKind.AUDIT)
            .select_related("photo__prediction__label", "photo__final_label", "label", "expert")
            .order_by("-created_at", "-id")[:limit])


# --- choosing the confidence threshold ------------------------------------------------

THRESHOLD_CANDIDATES = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


@dataclass
class OnValidation:
    """What a threshold does with a version's validation photos, as training measured them."""
    photos: int                   # validation photos with a measured confidence
    accepted: int                 # of those, at or above the threshold
    accepted_share: float | None
    accuracy: float | None        # the share of the accepted whose top label was right
    ci_low: float | None
    ci_high: float | None


def not_saved_by_model() -> frozenset:
    """The names of the labels the model may not save on its own, however sure (Label.NOT_SAVED_BY_MODEL)."""
    from .models import Label

    return frozenset(Label.objects.filter(Label.NOT_SAVED_BY_MODEL).values_list("name", flat=True))


def label_floors() -> dict:
    """{label name: its own threshold} for the labels that have one (Label.threshold)."""
    from .models import Label

    return dict(Label.objects.filter(threshold__isnull=False).values_list("name", "threshold"))


# Predictions below their label's own threshold (Label.threshold): never saved on their own at
# the site's threshold, whatever it is. The isnull term keeps the labels without one in a negation.
BELOW_LABEL_THRESHOLD = Q(label__threshold__isnull=False, label__threshold__gt=F("confidence"))
PHOTO_BELOW_LABEL_THRESHOLD = Q(prediction__label__threshold__isnull=False,
                                prediction__label__threshold__gt=F("prediction__confidence"))


def on_validation(calibration, threshold, leave_out=frozenset(), floors=None) -> OnValidation | None:
    """None for a version trained before calibration was recorded. leave_out: labels that are
    never saved on their own (not_saved_by_model); floors: the labels' own thresholds (label_floors)."""
    if calibration is None:
        return None
    accepted, right = calibration.accepted(threshold, leave_out, floors)
    interval = wilson_interval(right, accepted) or (None, None)
    return OnValidation(photos=calibration.photos, accepted=accepted,
                        accepted_share=accepted / calibration.photos if calibration.photos else None,
                        accuracy=right / accepted if accepted else None, ci_low=interval[0], ci_high=interval[1])


@dataclass
class ThresholdRow:
    threshold: float
    current: bool
    accepted_share: float | None  # of the version's predictions, the share at or above it
    checked: int                  # of those, how many people decided
    accuracy: float | None        # estimated accuracy of what the threshold would accept
    ci_low: float | None
    ci_high: float | None
    # The same on the version's validation photos: what training promised, beside what people found.
    validation: OnValidation | None = None


def threshold_table(confidences, checked, thresholds, current, calibration=None,
                    leave_out=frozenset(), floors=None) -> list[ThresholdRow]:
    """What each threshold would do, from one version's predictions.

    confidences: every prediction's confidence, None for one the model may not save on its own
    whatever its confidence (a label in leave_out). checked: (confidence, correct, weight) of the
    predictions people decided that it could have saved, each weighted by the inverse of its
    chance of being checked: everything below the threshold in force goes to people (weight 1),
    above it only the audit sample (1 / AUDIT_FRACTION). Unweighted, the fully checked band below
    the threshold would swamp the sampled one above it. The interval is Wilson's on the effective sample size
    (Kish: (sum of weights)^2 / sum of squared weights). calibration: the version's, for the
    same on its validation photos (floors: the labels' own thresholds, as there)."""
    rows = []
    for t in sorted({*thresholds, current}):
        above = [(correct, weight) for confidence, correct, weight in checked if confidence >= t]
        total = sum(weight for _, weight in above)
        accuracy = sum(weight for correct, weight in above if correct) / total if total else None
        interval = (wilson_bounds(accuracy, total * total / sum(weight * weight for _, weight in above))
                    if total else (None, None))
        rows.append(ThresholdRow(
            threshold=t, current=t == current, checked=len(above), accuracy=accuracy,
            accepted_share=sum(1 for c in confidences if c is not None and c >= t) / len(confidences)
            if confidences else None,
            ci_low=interval[0], ci_high=interval[1], validation=on_validation(calibration, t, leave_out, floors)))
    return rows


def decided_by_people(photos):
    """Of `photos`, those a person decided after the model: the uncertain ones, the audits and
    the adjudications (not the model's own saves, nor imports that were never predicted)."""
    return (photos.filter(status__in=[Photo.Status.FINAL, Photo.Status.REJECTED])
            .exclude(decided_by=Photo.DecidedBy.MODEL).exclude(review_kind=""))


def threshold_evidence(version_id) -> list[ThresholdRow]:
    """threshold_table for one model version's predictions on this site. Ties at the top (which
    always go to an expert, whatever the threshold) are left out; the audit weight is the
    AUDIT_FRACTION in force now."""
    from classifier.models import ModelVersion

    version = ModelVersion.objects.only("metrics").filter(pk=version_id).first()
    leave_out = not_saved_by_model()
    predictions = Photo.objects.filter(prediction__model_version_id=version_id, prediction__margin__gt=0)
    # A label the model may not save on its own (retired, always checked), a photo unlike the
    # ones it learned from, or an answer below its label's own threshold, is accepted by no
    # threshold of the site's (a label's own threshold only asks for more: Label.threshold_in_force).
    never = (Q(prediction__label__name__in=leave_out) | Prediction.unfamiliar_q("prediction__")
             | PHOTO_BELOW_LABEL_THRESHOLD)
    confidences = [None if not_saved else confidence for confidence, not_saved in
                   predictions.annotate(never=ExpressionWrapper(never, output_field=BooleanField()))
                   .values_list("prediction__confidence", "never")]
    audit_weight = 1 / settings.AUDIT_FRACTION if settings.AUDIT_FRACTION > 0 else 1.0
    decided = (decided_by_people(predictions).exclude(never)
               .values_list("prediction__confidence", "status", "final_label_id", "prediction__label_id",
                            "review_kind"))
    checked = [(confidence, status == Photo.Status.FINAL and final == predicted,
                audit_weight if kind == Photo.ReviewKind.AUDIT else 1.0)
               for confidence, status, final, predicted, kind in decided]
    return threshold_table(confidences, checked, THRESHOLD_CANDIDATES, float(settings.CONFIDENCE_THRESHOLD),
                           calibration=version.calibration() if version else None, leave_out=leave_out,
                           floors=label_floors())


@dataclass
class LabelThresholdRow:
    threshold: float
    in_force: bool                  # the label's threshold in force (Label.threshold_in_force)
    validation: OnValidation | None  # of the validation photos the active version answered with the label


@dataclass
class LabelEvidence:
    """What to set a label's own threshold from: the active version's validation photos that it
    gave this answer, at each threshold from the site's up; the audits of the answer here; and
    how often people changed it here."""
    version_id: int
    rows: list
    audits: AuditStats
    record: Overturned


def label_threshold_evidence(label) -> LabelEvidence | None:
    """None without an active version."""
    from classifier.selectors import active_model_version

    version = active_model_version()
    if version is None:
        return None
    calibration = version.calibration()
    answered = calibration.for_answer(label.name) if calibration is not None else None
    site = float(settings.CONFIDENCE_THRESHOLD)
    in_force = label.threshold_in_force(site)
    candidates = sorted({t for t in THRESHOLD_CANDIDATES if t >= site} | {site, in_force})
    return LabelEvidence(
        version_id=version.id,
        rows=[LabelThresholdRow(t, t == in_force, on_validation(answered, t)) for t in candidates],
        audits=audit_stats(label=label.name), record=answer_record(version.id, label.name))


# --- week by week ----------------------------------------------------------------------

MONITORED_WEEKS = 12


@dataclass
class WeekRow:
    week: date                     # its Monday
    predictions: int
    mean_confidence: float
    confident: int                 # at or above the threshold in force, with a label the model may save
    confident_share: float
    ci_low: float                  # Wilson 95% interval of confident_share
    ci_high: float
    audited: int                   # audits of that week's predictions an expert has decided
    audit_accuracy: float | None   # the share of those carrying the model's label
    # The week's share differs from the validation photos' by more than chance explains (two
    # proportions, both uncertain, at 1%): the photos uploaded that week are not like the ones the
    # version was measured on.
    shifted: bool
    # Photos unlike every photo the version learned from (classifier.familiarity), and whether
    # there were more of them than of its validation photos, beyond chance (the same test).
    unfamiliar: int = 0
    more_unfamiliar: bool = False

    @property
    def unfamiliar_share(self) -> float:
        return self.unfamiliar / self.predictions


def weeks_of_predictions(version_id, weeks=MONITORED_WEEKS) -> list[WeekRow]:
    """One version's predictions week by week, the latest `weeks` weeks that had any, newest
    first: how many, how sure, what share the threshold in force would save on its own (beside
    the share of its validation photos; the labels it may not save are left out of both), and
    what that week's audits found."""
    from classifier.models import ModelVersion

    threshold = float(settings.CONFIDENCE_THRESHOLD)
    leave_out = not_saved_by_model()
    version = ModelVersion.objects.only("metrics").filter(pk=version_id).first()
    expected = on_validation(version.calibration() if version else None, threshold, leave_out, label_floors())
    familiarity = version.familiarity() if version else None
    # The validation photos the check in force would flag: UNFAMILIAR_SHARE of them, or fewer.
    flagged = familiarity.below(familiarity.cutoff(settings.UNFAMILIAR_SHARE)) if familiarity else None
    predictions = (Prediction.objects.filter(model_version_id=version_id)
                   .annotate(week=TruncWeek("created_at")).values("week")
                   .annotate(n=Count("id"), mean=Avg("confidence"),
                             confident=Count("id", filter=Q(confidence__gte=threshold)
                                             & ~Q(label__name__in=leave_out) & ~Prediction.unfamiliar_q()
                                             & ~BELOW_LABEL_THRESHOLD),
                             unfamiliar=Count("id", filter=Prediction.unfamiliar_q()))
                   .order_by("-week")[:weeks])
    audits = {row["week"]: row for row in (
        audited_photos().filter(prediction__model_version_id=version_id)
        .annotate(week=TruncWeek("prediction__created_at")).values("week")
        .annotate(n=Count("id", distinct=True),
                  correct=Count("id", distinct=True, filter=AUDIT_CORRECT))
        .order_by())}
    rows = []
    for row in predictions:
        low, high = wilson_interval(row["confident"], row["n"])
        audit = audits.get(row["week"], {"n": 0, "correct": 0})
        rows.append(WeekRow(
            week=row["week"].date(), predictions=row["n"], mean_confidence=row["mean"], confident=row["confident"],
            confident_share=row["confident"] / row["n"], ci_low=low, ci_high=high, audited=audit["n"],
            audit_accuracy=audit["correct"] / audit["n"] if audit["n"] else None,
            shifted=expected is not None and proportions_differ(row["confident"], row["n"], expected.accepted,
                                                                 expected.photos),
            unfamiliar=row["unfamiliar"],
            more_unfamiliar=(flagged is not None and row["unfamiliar"] / row["n"] > flagged / familiarity.photos
                             and proportions_differ(row["unfamiliar"], row["n"], flagged, familiarity.photos))))
    return rows


Z_99 = 2.5758293035489  # the standard normal's 99.5% quantile


def proportions_differ(x1: int, n1: int, x2: int, n2: int, z: float = Z_99) -> bool:
    """Whether x1/n1 and x2/n2 differ by more than chance explains: the pooled two-proportion z
    test, two-sided at 1% by default. Both samples count as uncertain: a validation split of
    twenty photos does not make a week look shifted that a larger one would not."""
    if not n1 or not n2:
        return False
    pooled = (x1 + x2) / (n1 + n2)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return spread > 0 and abs(x1 / n1 - x2 / n2) / spread > z


# --- where people changed the model's answer --------------------------------------------

REJECTED = "rejected"  # in a pair, for a photo people rejected (not a plant, unusable)


@dataclass
class Overturned:
    decided: int   # the version's predictions people decided
    changed: int   # of those, how many ended with another label, or rejected
    pairs: list    # [(the model's label, people's label or REJECTED, photos)], most first

    @property
    def share(self) -> float | None:
        return self.changed / self.decided if self.decided else None


def answer_record(version_id, label_name) -> Overturned:
    """overturned, for one answer of one version: of its `label_name` answers people decided
    here, how many they changed. Shown beside that answer on the review page."""
    return overturned(version_id, limit=0, answer=label_name)


def overturned(version_id, limit=5, answer=None) -> Overturned:
    """Where people changed one version's answers on this site: the mistakes it makes here, as
    most_confused shows the ones it made on its validation photos. Only the predictions people
    decided count (those below the threshold, and the audits), so the share is not its error
    rate: the uncertain ones are over-represented."""
    decided = decided_by_people(Photo.objects.filter(prediction__model_version_id=version_id))
    if answer is not None:
        decided = decided.filter(prediction__label__name=answer)
    rows = (decided.values("prediction__label__name", "final_label__name", "status")
            .annotate(n=Count("id")).order_by())
    pairs, total = [], 0
    for row in rows:
        total += row["n"]
        people = REJECTED if row["status"] == Photo.Status.REJECTED else row["final_label__name"]
        if people != row["prediction__label__name"]:
            pairs.append((row["prediction__label__name"], people, row["n"]))
    pairs.sort(key=lambda pair: (-pair[2], pair[0], pair[1]))
    return Overturned(decided=total, changed=sum(n for _, _, n in pairs), pairs=pairs[:limit])


# --- how long photos wait for an expert ---------------------------------------------------

WAIT_WINDOW_DAYS = 28


def wait_text(seconds: float) -> str:
    """A wait as people say it: "40 s", "12 min", "2.5 h", "3 days"."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.2g} h" if seconds < 10 * 3600 else f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.2g} days" if seconds < 10 * 86400 else f"{seconds / 86400:.0f} days"


def _nearest_rank(ordered: list[float], q: float) -> float:
    return ordered[max(math.ceil(q * len(ordered)) - 1, 0)]


@dataclass(frozen=True)
class Waits:
    """Experts' decisions and how long after the upload they came, in seconds."""

    decided: int
    median: float | None
    p90: float | None

    @classmethod
    def of(cls, seconds) -> Waits:
        ordered = sorted(seconds)
        if not ordered:
            return cls(0, None, None)
        return cls(len(ordered), _nearest_rank(ordered, 0.5), _nearest_rank(ordered, 0.9))

    @property
    def median_text(self) -> str:
        return wait_text(self.median) if self.median is not None else ""

    @property
    def p90_text(self) -> str:
        return wait_text(self.p90) if self.p90 is not None else ""


@dataclass(frozen=True)
class ReviewWaits:
    days: int
    waiting: int
    oldest: float | None  # seconds since the upload of the photo that has waited longest
    all: Waits
    by_kind: dict  # review kind -> Waits: what the queue's three kinds of work take

    @property
    def oldest_text(self) -> str:
        return wait_text(self.oldest) if self.oldest is not None else ""


def review_waits(now=None, days: int = WAIT_WINDOW_DAYS) -> ReviewWaits:
    """How long the photos experts decided in the last `days` waited, from their upload to the
    decision (what the uploader waited; an adjudication's includes the labellers' time), and
    what waits now. A correction is not a wait."""
    now = now or timezone.now()
    rows = (ReviewDecision.objects.filter(created_at__gt=now - timedelta(days=days), created_at__lte=now)
            .exclude(kind=CORRECTION).values_list("kind", "created_at", "photo__uploaded_at"))
    seconds: dict[str, list[float]] = {kind: [] for kind in Photo.ReviewKind.values}
    for kind, decided_at, uploaded_at in rows:
        seconds.setdefault(kind, []).append(max((decided_at - uploaded_at).total_seconds(), 0.0))
    queue = Photo.objects.filter(status=Photo.Status.NEEDS_REVIEW).aggregate(n=Count("id"), first=Min("uploaded_at"))
    oldest = max((now - queue["first"]).total_seconds(), 0.0) if queue["first"] else None
    return ReviewWaits(days=days, waiting=queue["n"], oldest=oldest,
                       all=Waits.of([s for values in seconds.values() for s in values]),
                       by_kind={kind: Waits.of(values) for kind, values in seconds.items()})
