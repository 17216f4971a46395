"""Writes for photos, predictions and reviews. Views, the API and tasks call these."""

from __future__ import annotations

import hashlib
import io
import logging
import math
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.text import slugify

from . import webhooks
from .changes import announce_photo_change
from .image_checks import check_and_clean, working_copy
from .models import Label, LabelChange, Photo, PhotoEvent, Prediction, photo_file_name

logger = logging.getLogger(__name__)


class ReviewConflict(Exception):
    """The photo is no longer awaiting review: somebody else decided it first."""


class UnknownLabel(Exception):
    pass


def label_to_give(label_name) -> Label:
    """The label a person gives a photo (a decision, a correction, a relabel): one that exists
    and is not retired. Call it in a transaction: the row stays locked until it ends, so that
    label_delete (which locks it too) cannot delete it between this check and the row that will
    refer to it."""
    label = Label.objects.select_for_update(no_key=True).filter(name=label_name).first() if label_name else None
    if label is None:
        raise UnknownLabel(f"Unknown label {label_name!r}.")
    if label.retired:
        raise UnknownLabel(f"The label {label.name!r} is retired; choose another one.")
    return label


def _enqueue_prediction(photo_id):
    from .tasks import photo_predict_task

    def send():
        try:
            photo_predict_task.delay(photo_id)
        except Exception:
            # The row and its file are committed already: a broker that is briefly away must
            # not turn the accepted upload into an error (nor delete its file). The photo stays
            # queued and the sweeper (photos_requeue_stuck) sends it again.
            logger.warning("Could not queue the prediction of photo %s; the sweeper will send it again.",
                           photo_id, exc_info=True)

    # Only after the upload commits: the worker must find the row and the file, and a
    # rolled-back upload must enqueue nothing.
    transaction.on_commit(send)


def photo_upload(*, owner, fileobj, synthetic=False, label=None) -> Photo:
    """Check and store an uploaded photo, then queue its prediction.

    With a label (imports), the photo is stored as already labelled by a person and is not
    predicted. Raises ImageRejected before anything is stored when the file is not acceptable.
    """
    clean = check_and_clean(fileobj, max_bytes=settings.UPLOAD_MAX_BYTES, max_pixels=settings.UPLOAD_MAX_PIXELS)
    storage = Photo._meta.get_field("image").storage
    # User-supplied names never reach a path: the stored name is generated.
    name = storage.save(photo_file_name(clean.extension), ContentFile(clean.content))
    working_name = ""
    try:
        working = working_copy(clean, settings.WORKING_COPY_MAX_SIDE)
        if working is not None:
            working_name = storage.save(working_copy_name(name), ContentFile(working))
        with transaction.atomic():
            photo = Photo(owner=owner, image=name, working_image=working_name, width=clean.width,
                          height=clean.height, sha256=clean.sha256, synthetic=synthetic,
                          stored_sha256=hashlib.sha256(clean.content).hexdigest())
            if label is not None:
                photo.label_by_import(label)
            photo.save()
            if label is None:
                _enqueue_prediction(photo.id)
    except BaseException:
        storage.delete(name)  # files are not transactional: no file without its row
        if working_name:
            storage.delete(working_name)
        raise
    # A new photo has no prediction yet. Saying so spares the query that serializing the answer
    # would make, so a database lost just after the commit cannot turn a stored upload into a 503.
    Photo.prediction.related.set_cached_value(photo, None)
    return photo


def working_copy_name(original_name: str) -> str:
    """photos/<uuid>.<ext> -> photos/<uuid>-work.jpg"""
    return f"{original_name.rsplit('.', 1)[0]}-work.jpg"


def photo_predict(photo_id: int, *, claimant: str = "") -> Photo | None:
    """Predict a queued photo with the active model and route it. Safe to run twice.

    Other photos that have already waited INFERENCE_BATCH_WAIT seconds in `queued` are claimed
    and predicted in the same batch (INFERENCE_BATCH_SIZE photos at most, oldest first). Nothing
    waits for a batch to fill, so a lone photo is predicted at once, alone. A photo that another
    task's worker process has claimed for its batch is left to that process. `claimant` names
    the claiming task (its Celery task id, the same in its retries and redeliveries), so a
    task run again takes back its own claims. Each photo's prediction is stored on its own under
    its row lock, so a duplicated or concurrent task stores nothing twice.
    """
    from classifier.cores import inference_threads
    from classifier.inference import model_cache
    from classifier.selectors import active_model_version

    photo = Photo.objects.filter(id=photo_id).first()
    if photo is None or photo.status != Photo.Status.QUEUED:
        if photo is not None and claimant and photo.batch_claimed_by == claimant:
            _release_claims_left_by(claimant)
        return photo
    version = active_model_version()
    if version is None:
        return _route_without_model(photo_id)
    model = model_cache.get(version.id, version.path, version.sha256, threads=inference_threads())
    if photo.attempts:
        # Interrupted before: predicted alone, so that a photo that kills its process cannot take
        # a batch down twice. The batch-mates of the try that died go back to their own tasks.
        if claimant:
            _release_claims_left_by(claimant, but=photo_id)
        if photo.attempts >= PREDICTION_MAX_INTERRUPTIONS:
            photo_mark_failed(photo_id, INTERRUPTED_TOO_OFTEN)
            return Photo.objects.filter(id=photo_id).first()
        mates = []
    else:
        mates = _claim_batch(photo, claimant or uuid.uuid4().hex)
    if mates is None:  # in another process's batch right now: that process stores it
        return Photo.objects.filter(id=photo_id).first()
    with _predicting([photo_id] + [m.id for m in mates]):
        return _predict_and_store(model, version, photo, mates)


# A photo whose prediction was begun this many times by a process that died before it ended
# (killed for memory, crashed in a native library, stopped by a deploy) fails instead of being
# delivered again, and again: the broker gives a dead worker's task back (task_reject_on_worker_lost).
PREDICTION_MAX_INTERRUPTIONS = 2
INTERRUPTED_TOO_OFTEN = (f"Prediction failed: the worker stopped {PREDICTION_MAX_INTERRUPTIONS} times while "
                         "predicting this photo (out of memory, or a crash); its log has the details. "
                         "Retry it, or upload a smaller copy.")


@contextmanager
def _predicting(photo_ids):
    """Photo.attempts counts the predictions of a photo that were begun and never ended: one is
    added (and committed) before the model runs, and taken back once the try ends in this
    process, with an answer or an error. What stays counts the processes that died meanwhile."""
    Photo.objects.filter(id__in=photo_ids).update(attempts=F("attempts") + 1)
    try:
        yield
    finally:
        Photo.objects.filter(id__in=photo_ids, attempts__gt=0).update(attempts=F("attempts") - 1)


def _predict_and_store(model, version, photo, mates):
    photo_id = photo.id
    if mates:
        try:
            batch = _predict(model, version, [photo] + mates)
        except Exception:  # noqa: BLE001 - a batch-mate's broken file must not fail this photo
            logger.warning("Batch prediction of photo %s with %s failed; predicting it alone.",
                           photo_id, [m.id for m in mates], exc_info=True)
            _release_batch_mates(mates)
            mates, batch = [], None
        if batch is not None:
            stored = _store_prediction(photo_id, version, *batch[0])
            for mate, answer in zip(mates, batch[1:]):
                _store_prediction(mate.id, version, *answer)
            _predict_in_shadow([photo] + mates)
            return stored
    stored = _store_prediction(photo_id, version, *_predict(model, version, [photo])[0])
    _predict_in_shadow([photo])
    return stored


def _predict(model, version, photos):
    """[(probabilities, (familiarity, cutoff))] per photo: what the model said, and how like the
    photos it learned from each one looks (classifier.familiarity)."""
    from classifier.familiarity import measure

    probabilities, features = model.predict_paths_with_features([p.model_input_path for p in photos])
    return list(zip(probabilities, measure(version, features, len(photos))))


def _predict_in_shadow(photos):
    """The shadow version predicts the same photos; its answers are stored for comparison only.
    Whatever goes wrong with it is logged and never touches the photos' own results."""
    from classifier import services as classifier_services
    from classifier.cores import inference_threads
    from classifier.inference import model_cache
    from classifier.selectors import shadow_model_version

    shadow = shadow_model_version()
    if shadow is None:
        return
    try:
        model = model_cache.get(shadow.id, shadow.path, shadow.sha256, threads=inference_threads())
        results = model.predict_paths([p.model_input_path for p in photos])
        classifier_services.shadow_predictions_store(shadow, zip((p.id for p in photos), results))
    except Exception:  # noqa: BLE001 - a broken shadow must not fail real predictions
        logger.exception("Shadow version %s could not predict photos %s.", shadow.id, [p.id for p in photos])


# How long a batch claim keeps other worker processes off a photo. Longer than any batch takes;
# when it lapses (a killed worker), the photo is predicted by the next task that comes for it
# (the sweeper sends one for every photo queued longer than SWEEP_QUEUED_AFTER_SECONDS).
BATCH_CLAIM = timedelta(seconds=60)


@transaction.atomic
def _claim_batch(photo, claimant) -> list[Photo] | None:
    """Claim `photo` and the queued photos that have waited long enough to be predicted with it;
    return the batch-mates, or None when `photo` is in another task's batch.

    A photo in another process's batch is left to it: with 16 uploads in flight, half of the
    tasks used to predict a photo that another process's batch was predicting too. Younger photos are left to their
    own task (another worker process may be about to start it, and a lone photo is not made to
    wait for others). Rows another process is claiming right now (locked) are skipped, so that
    two processes never wait for each other.
    """
    size = int(getattr(settings, "INFERENCE_BATCH_SIZE", 1))
    if size <= 1:
        return []
    now = timezone.now()
    own = Photo.objects.select_for_update(skip_locked=True).filter(id=photo.id).first()
    if own is not None and (own.status != Photo.Status.QUEUED or own.in_batch_of_another_task(claimant, now)):
        return None
    # Only rows this transaction could lock without waiting are written: two processes claiming
    # at once (each locking the other's photo as a batch-mate) must never wait for each other.
    # The photo itself is claimed too, unless another process is claiming it right now (then it
    # is predicted here anyway: that process may be storing it, or about to claim it).
    cutoff = now - timedelta(seconds=float(getattr(settings, "INFERENCE_BATCH_WAIT", 0.2)))
    mates = list(
        Photo.objects.select_for_update(skip_locked=True)
        .filter(status=Photo.Status.QUEUED, uploaded_at__lte=cutoff, attempts=0)  # interrupted ones go alone
        .filter(Q(batch_claimed_until__isnull=True) | Q(batch_claimed_until__lt=now) | Q(batch_claimed_by=claimant))
        .exclude(id=photo.id).order_by("uploaded_at", "id")[: size - 1]
    )
    claimed = [m.id for m in mates] + ([own.id] if own is not None else [])
    Photo.objects.filter(id__in=claimed).update(batch_claimed_until=now + BATCH_CLAIM, batch_claimed_by=claimant)
    return mates


def _release_claims_left_by(claimant, but=None):
    """An earlier try of this task claimed batch-mates and did not store them: it failed after
    storing its own photo, or its process died. Their own tasks left them to that batch, so they
    would wait for the sweeper; they are given back and sent again instead."""
    left = list(Photo.objects.filter(status=Photo.Status.QUEUED, batch_claimed_by=claimant).exclude(id=but))
    if left:
        logger.warning("Task %s left batch-mates %s unstored: sending them again.", claimant, [p.id for p in left])
        _release_batch_mates(left)


def _release_batch_mates(mates):
    """A failed batch gives its mates back. Their own tasks may have left them to this batch
    already, so each is sent again: it is then predicted, or reports its own failure."""
    ids = [m.id for m in mates]
    Photo.objects.filter(id__in=ids, status=Photo.Status.QUEUED).update(batch_claimed_until=None, batch_claimed_by="")
    for photo_id in ids:
        _enqueue_prediction(photo_id)


@transaction.atomic
def _route_without_model(photo_id):
    photo = Photo.objects.select_for_update().get(id=photo_id)
    if photo.status == Photo.Status.QUEUED:
        photo.route_to_review("No model is active yet: an expert will decide.")
        photo.save()
    return photo


@transaction.atomic
def _store_prediction(photo_id, version, probabilities, familiarity=(None, None)):
    """Store and route one photo's prediction. None when the photo is gone (deleted meanwhile).
    familiarity: (similarity with the nearest training photo, the cut-off in force)."""
    photo = Photo.objects.select_for_update().filter(id=photo_id).first()
    if photo is None or photo.status != Photo.Status.QUEUED:
        return photo  # a retried or duplicated task already stored the prediction
    if not _still_active(version):
        # An admin activated another version (a rollback, say) while this one predicted: its
        # answer is not the site's any more. The photo is sent again, for the active version.
        Photo.objects.filter(id=photo.id).update(batch_claimed_until=None, batch_claimed_by="")
        _enqueue_prediction(photo.id)
        return photo
    # A diverged model answers NaN or infinity, which JSON cannot hold: stored as null, and an
    # expert decides.
    finite = {name: p for name, p in probabilities.items() if math.isfinite(p)}
    ranked = sorted(finite.items(), key=lambda kv: kv[1], reverse=True) or [(next(iter(probabilities)), 0.0)]
    top_name, top_p = ranked[0]
    second_p = ranked[1][1] if len(ranked) > 1 else 0.0
    label, _ = Label.objects.get_or_create(name=top_name)
    prediction = Prediction.objects.create(
        photo=photo, model_version=version, label=label, confidence=top_p,
        margin=top_p - second_p, probabilities={name: finite.get(name) for name in probabilities},
        familiarity=familiarity[0], familiarity_cutoff=familiarity[1],
    )
    from .review import route_prediction  # a random AUDIT_FRACTION of would-be auto-accepts go to review

    if len(finite) < len(probabilities):
        photo.route_to_review("The model gave no usable probabilities (not a number): an expert will decide.")
    else:
        route_prediction(photo, prediction, settings.CONFIDENCE_THRESHOLD)
    photo.save()
    return photo


def _still_active(version) -> bool:
    """Whether `version` is the active model, its row share-locked until the store commits: an
    activation (which locks every version row, classifier.services._lock_registry) then waits
    for the store, or the store sees it. FOR SHARE, which Django's ORM cannot say, so that
    concurrent stores do not wait for each other; SQLite has one writer at a time anyway."""
    table = connection.ops.quote_name(type(version)._meta.db_table)
    lock = " FOR SHARE" if connection.vendor == "postgresql" else ""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT 1 FROM {table} WHERE id = %s AND is_active{lock}", [version.id])
        return cursor.fetchone() is not None


class PhotoDeleteRefused(Exception):
    """The owner may not delete a photo the team has worked on: only an admin can (a 409)."""


TEAM_WORK = ("Photo {id} has been labelled or reviewed by the team, and its label may train the model: "
             "ask an admin to delete it.")


@transaction.atomic
def photo_delete(*, photo_id: int, user) -> None:
    """Delete a photo with everything recorded about it (prediction, votes, decisions, history,
    losses) and, once that commits, its files. The caller has checked Photo.may_be_deleted_by.

    A photo the team has worked on (Photo.worked_on_by_team) may be training data: its owner is
    refused (PhotoDeleteRefused), an admin is not. Under the photo's row lock,
    as votes and decisions take it: one that comes first is seen, one that comes after finds no
    photo. A prediction running meanwhile finds the photo gone and stores nothing.
    Raises Photo.DoesNotExist when it is gone already."""
    photo = Photo.objects.select_for_update().get(id=photo_id)
    if not user.is_staff and photo.worked_on_by_team():
        raise PhotoDeleteRefused(TEAM_WORK.format(id=photo_id))
    storage = photo.image.storage
    names = [name for name in (photo.image.name, photo.working_image.name) if name]
    photo.delete()  # webhooks are told by the post_delete signal, as for any deletion
    logger.info("Photo %s deleted by %s (files %s).", photo_id, user.get_username(), names)
    # Files are not transactional: removed only once the rows are gone for good.
    transaction.on_commit(lambda: [storage.delete(name) for name in names])
    announce_photo_change(photo_id)  # a page watching it shows it is gone


class RetryConflict(Exception):
    """Only a photo whose prediction failed can be sent to the model again."""


def photo_retry(*, photo_id: int) -> Photo:
    """Send a failed photo to the model again, once what failed is fixed (its file is back, the
    database or the model is). Conditional on `failed`: two presses queue it once."""
    again = Photo.objects.filter(id=photo_id, status=Photo.Status.FAILED).update(**_queued_again())
    if not again:
        raise RetryConflict("Only a photo whose prediction failed can be predicted again.")
    _enqueue_prediction(photo_id)
    announce_photo_change(photo_id)
    return Photo.objects.get(id=photo_id)


def _queued_again() -> dict:
    """A failed photo's fields as it goes back to the model."""
    return dict(status=Photo.Status.QUEUED, reason="", decided_at=None, batch_claimed_until=None,
                batch_claimed_by="",
                attempts=0,  # a person asked again: the interruptions before no longer count
                resent_at=timezone.now())  # its task is on its way: the sweeper need not send another at once


@transaction.atomic
def photos_retry_failed() -> list[int]:
    """Every failed photo to the model again: after an outage (a model file, the database) has
    been fixed, rather than one "Predict again" per photo. The rows are locked, so a photo retried
    alone meanwhile is queued once. The ids queued, oldest first."""
    ids = list(Photo.objects.select_for_update().filter(status=Photo.Status.FAILED).order_by("id")
               .values_list("id", flat=True))
    Photo.objects.filter(id__in=ids).update(**_queued_again())
    for photo_id in ids:
        _enqueue_prediction(photo_id)
        announce_photo_change(photo_id)
    return ids


def photo_mark_failed(photo_id: int, reason: str) -> None:
    """A prediction that failed for good: the photo says why and is never silently dropped."""
    with transaction.atomic():
        if Photo.objects.filter(id=photo_id, status=Photo.Status.QUEUED).update(
            status=Photo.Status.FAILED, reason=reason[:2000], decided_at=timezone.now()
        ):
            webhooks.photo_failed(photo_id)
            announce_photo_change(photo_id)


def review_decide(*, photo_id: int, expert, label_name: str | None = None, reject: bool = False,
                  reason: str = "") -> Photo:
    """An expert's final call. A second decision on the same photo raises ReviewConflict; one on
    a photo another expert has a live claim on raises review.ClaimConflict (a ReviewConflict).
    The rules live in labeling.review."""
    from .review import review_decide as decide

    return decide(photo_id=photo_id, expert=expert, label_name=label_name, reject=reject, reason=reason)


IMPORT_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp"}


@dataclass
class ImportReport:
    imported: list = field(default_factory=list)   # [(path, label)]
    skipped: list = field(default_factory=list)    # [(path, why)]
    refused: list = field(default_factory=list)    # [(path, why)]
    labels_created: list = field(default_factory=list)

    def summary(self):
        return (f"Imported {len(self.imported)}, skipped {len(self.skipped)} duplicates, "
                f"refused {len(self.refused)}; new labels: {', '.join(self.labels_created) or 'none'}.")


def photo_import_one(*, owner, fileobj, label_name, synthetic=False, report: ImportReport, source_name: str):
    """Import one labelled file: the shared step of `import_photos` and the site's bulk upload.

    label_name None (the site's bulk upload with "let the model predict"): the photo is stored
    and predicted like any upload, still refused as a duplicate when its bytes are stored already.
    """
    from .image_checks import ImageRejected, read_limited

    try:
        # Never more than the upload limit in memory: a file from an archive may be of any size.
        data = read_limited(fileobj, settings.UPLOAD_MAX_BYTES)
    except ImageRejected as exc:
        report.refused.append((source_name, exc.message))
        return None
    digest = hashlib.sha256(data).hexdigest()
    if Photo.objects.filter(Q(sha256=digest) | Q(stored_sha256=digest)).exists():
        report.skipped.append((source_name, "duplicate of a photo already stored"))
        return None
    label, created = None, False
    try:
        with transaction.atomic():  # a refused photo leaves no new label behind
            if label_name is not None:
                label, created = _label_to_import(label_name)
            photo = photo_upload(owner=owner, fileobj=io.BytesIO(data), synthetic=synthetic, label=label)
            if created:  # in the label's history, as one made on the labels page is
                LabelChange.objects.create(label=label, user=owner, what="created by an import")
    except ImageRejected as exc:
        report.refused.append((source_name, exc.message))
        return None
    except UnknownLabel as exc:
        report.refused.append((source_name, str(exc)))
        return None
    if created:
        report.labels_created.append(label.name)
    report.imported.append((source_name, label.name if label is not None else None))
    return photo


def _label_to_import(label_name) -> tuple[Label, bool]:
    """The label an imported photo gets, created when new; UnknownLabel when it is retired, as
    the site's bulk upload refuses it. Locked as label_to_give locks it, until the caller's
    transaction ends: a label retired meanwhile (label_update locks it too) is seen retired here."""
    label, created = Label.objects.select_for_update(no_key=True).filter(name=label_name).first(), False
    if label is None:
        label, created = Label.objects.get_or_create(name=label_name)
        if not created:  # made by another import since the look-up: lock it too
            label = Label.objects.select_for_update(no_key=True).get(pk=label.pk)
    if label.retired:
        raise UnknownLabel(f"label {label.name} is retired")
    return label, created


def _folder_label_refusal(label_name) -> str:
    """Why a label folder's photos cannot be imported under the name it gives, or "" when they can."""
    from .labelling import LABEL_NAME_RE, LABEL_NAME_RULE

    if LABEL_NAME_RE.match(label_name):
        return ""
    # The name is slugified already (lowercase letters, digits, underscores): only its length is wrong.
    return f"the folder's name makes a label name of {len(label_name)} characters. {LABEL_NAME_RULE}"


def photos_import_folder(*, directory: Path, owner, synthetic=False) -> ImportReport:
    """Import DIR/<label>/<file> the way fastai's parent_label reads a folder tree."""
    report = ImportReport()
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory} is not a folder.")
    # An export's manifest.csv (labeling.export): each file's label source, who and when are restored.
    from .export import manifest_label_name, read_manifest, restore_provenance

    manifest = read_manifest(directory)
    entries = sorted(directory.iterdir())
    # Nothing is passed over without a word: a photo outside a label folder has no label.
    report.refused.extend((str(p), "not in a <label>/ folder, so it has no label") for p in entries
                          if p.is_file() and p.suffix.lower() in IMPORT_EXTENSIONS)
    for label_dir in (p for p in entries if p.is_dir()):
        label_name = slugify(label_dir.name).replace("-", "_")
        if not label_name:
            report.refused.append((str(label_dir), "the folder name is not a usable label name"))
            continue
        try:
            paths = sorted(label_dir.iterdir())
        except OSError as exc:
            report.refused.append((str(label_dir), f"the folder cannot be read ({exc.strerror or exc})"))
            continue
        unusable_name = _folder_label_refusal(label_name)
        for path in paths:
            if path.is_dir():
                report.refused.append((str(path), "a folder inside a label folder: photos go in DIR/<label>/"))
                continue
            if not path.is_file():
                continue
            if path.suffix.lower() not in IMPORT_EXTENSIONS:
                report.refused.append((str(path), "not a .jpg, .jpeg, .png or .webp file"))
                continue
            if unusable_name:  # each of its photos named, and the other folders still imported
                report.refused.append((str(path), unusable_name))
                continue
            row = manifest.get(path.relative_to(directory).as_posix())
            try:
                fh = open(path, "rb")
            except OSError as exc:  # one unreadable file must not stop the import half way
                report.refused.append((str(path), f"the file cannot be read ({exc.strerror or exc})"))
                continue
            with fh:
                photo = photo_import_one(owner=owner, fileobj=fh, label_name=manifest_label_name(row, label_name),
                                         synthetic=synthetic, report=report, source_name=str(path))
            if photo is not None and row:
                restore_provenance(photo, row)
    return report


def photos_requeue_stuck(*, older_than) -> int:
    """Send again the photos that have waited in `queued` too long: a broker that lost the
    message, or a worker killed while it held the task. Predicting is idempotent, so a
    photo that was merely slow is not harmed by a second message."""
    from .tasks import photo_predict_task

    now = timezone.now()
    cutoff = now - older_than
    not_resent_since = Q(resent_at__isnull=True) | Q(resent_at__lt=cutoff)
    stuck = Photo.objects.filter(not_resent_since, status=Photo.Status.QUEUED, uploaded_at__lt=cutoff)
    ids = []
    for photo_id in stuck.values_list("id", flat=True):
        # Conditional: of two sweeps at once, one sends the photo.
        if Photo.objects.filter(not_resent_since, id=photo_id).update(resent_at=now):
            photo_predict_task.delay(photo_id)
            ids.append(photo_id)
    if ids:
        logger.warning("Re-enqueued %d photos stuck in queued: %s", len(ids), ids[:20])
    return len(ids)


class CleaningError(Exception):
    pass


@transaction.atomic
def photo_clean(*, photo_id: int, user, action: str, label_name: str | None = None, model_version=None,
                note: str = "", seen_decided_at=None) -> Photo:
    """A data-cleaning action (the book's ImageClassifierCleaner): keep, relabel, exclude from
    training, or restore. Each is recorded in the photo's history; nothing is deleted.

    seen_decided_at: the photo's decided_at on the page the relabel came from; a photo decided
    again since (an expert's correction) is not relabelled over a decision the user never saw.
    """
    photo = Photo.objects.select_for_update().get(id=photo_id)
    before = photo.final_label
    after = before
    if action == PhotoEvent.Action.RELABEL:
        after = label_to_give(label_name)
        if photo.status != Photo.Status.FINAL:
            raise CleaningError("Only photos with a final label can be relabelled here; review the others.")
        if seen_decided_at is not None and photo.decided_at != seen_decided_at:
            raise CleaningError(f"Photo {photo.id} was decided again after this page was loaded: it is now "
                                f"{before.name if before else 'unlabelled'}. Reload the page to see it.")
        if after == before:  # as review_correct: a no-op would rewrite who decided it and how
            raise CleaningError(f"Nothing to correct: photo {photo.id} is already labelled {after.name}.")
        photo.relabel_by(user, after)
    elif action == PhotoEvent.Action.EXCLUDE:
        photo.excluded_from_training = True
    elif action == PhotoEvent.Action.RESTORE:
        photo.excluded_from_training = False
    elif action == PhotoEvent.Action.KEEP:
        if photo.status == Photo.Status.FINAL and photo.label_source == Photo.LabelSource.MODEL:
            # A person has looked and vouched for the model's label: it is theirs now, and
            # trains like any label a person gave (training leaves the model's own out).
            photo.relabel_by(user, before)
    else:
        raise CleaningError(f"Unknown action {action!r}; use keep, relabel, exclude or restore.")
    photo.save()
    PhotoEvent.objects.create(photo=photo, user=user, action=action, label_before=before, label_after=after,
                              model_version=model_version, note=note)
    return photo
