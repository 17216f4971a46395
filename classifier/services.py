"""Writes for training runs and the model registry."""

from __future__ import annotations

import logging
import os
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.utils import timezone

from labeling import webhooks
from labeling.models import Photo

from . import familiarity, near_copies, similar
from .calibration import summarise
from .cores import inference_threads
from .inference import file_sha256, model_cache
from .models import ModelActivation, ModelVersion, PhotoLoss, ShadowPrediction, TrainingRun
from .training import (TrainingCancelled, TrainingOptions, data_hash, is_validation,
                       labels_without_training_rows, train)

logger = logging.getLogger(__name__)

WORKER_LOST = "The worker running this training stopped before it finished."


class TrainingRunConflict(Exception):
    """Another training run is queued or running."""


class TrainingDataError(Exception):
    pass


# Keys of run.options that are not TrainingOptions: what to do with the result, and which data to use.
RUN_ONLY_OPTIONS = ("activate", "include_model_labels")


def training_run_start(*, user, options: dict | None = None, activate: bool = False, enqueue: bool = True,
                       include_model_labels: bool = False) -> TrainingRun:
    """Record a run and queue it on the training queue. Raises ValueError for bad options.

    include_model_labels=True also trains on the model's own auto-accepted labels: an explicit
    choice, recorded in run.options. enqueue=False leaves the sending to the caller
    (bootstrap_demo runs the task in-process).
    """
    parsed = TrainingOptions.from_dict(options or {})
    try:
        with transaction.atomic():
            run = TrainingRun.objects.create(
                started_by=user, total_epochs=parsed.epochs,
                options={**parsed.as_dict(), "activate": bool(activate),
                         "include_model_labels": bool(include_model_labels)},
            )
            if enqueue:
                transaction.on_commit(lambda: _enqueue_training(run.id))
        run.refresh_from_db()  # failed already when the queue could not be reached
    except IntegrityError:
        # The unique slot is held by the active run: refused by the database itself.
        active = TrainingRun.objects.filter(status__in=TrainingRun.ACTIVE).first()
        raise TrainingRunConflict(
            f"Training run {active.id if active else ''} is still {active.status if active else 'active'}; "
            "wait for it to finish or cancel it."
        ) from None
    return run


def _enqueue_training(run_id):
    from .tasks import training_run_execute

    try:
        # No time limits in the message: Celery would put the sender's there, and the worker
        # applies a message's limits over its own (TRAINING_HARD_TIME_LIMIT as the worker has it).
        training_run_execute.apply_async(args=[run_id], time_limit=None, soft_time_limit=None)
    except Exception:  # noqa: BLE001 - a run nobody will execute must not hold the slot for ever
        logger.exception("Training run %s could not be queued.", run_id)
        _fail_unsent(run_id)


UNSENT = "The training queue could not be reached (is Redis running?); start the run again when it is."


@transaction.atomic
def _fail_unsent(run_id):
    run = TrainingRun.objects.select_for_update().get(id=run_id)
    if run.status == TrainingRun.Status.QUEUED:
        _finish(run, TrainingRun.Status.FAILED, UNSENT)


def training_sources(include_model_labels: bool = False) -> tuple:
    """The label sources a run trains on: the human-verified ones, plus the model's own on request."""
    sources = tuple(Photo.HUMAN_VERIFIED_SOURCES)
    return sources + (Photo.LabelSource.MODEL,) if include_model_labels else sources


def _training_photos(include_model_labels: bool = False):
    # A retired label's photos keep it, but a model trained on it would go on predicting it, and
    # every such photo would go to experts who can no longer choose it.
    return Photo.objects.filter(status=Photo.Status.FINAL, excluded_from_training=False,
                                label_source__in=training_sources(include_model_labels),
                                final_label__retired=False)


def training_rows(include_model_labels: bool = False):
    """The labelled photos to train on: by default only human-verified ones (imports, consensus,
    one labeller's answer, expert decisions and audits), never the model's own auto-accepted labels."""
    photos = _training_photos(include_model_labels).select_related("final_label").order_by("id")
    return [[p.id, p.final_label.name, is_validation(p.id)] for p in photos]


def training_source_counts(photo_ids) -> dict:
    """{label_source: number of photos} for a run's data."""
    counts = {}
    for source in Photo.objects.filter(id__in=photo_ids).values_list("label_source", flat=True):
        counts[source] = counts.get(source, 0) + 1
    return dict(sorted(counts.items()))


def training_run_execute(run_id: int, *, executor: str = "") -> TrainingRun:
    """Run a queued training run to the end. Safe to run twice: only a queued run starts.
    executor: the worker's node name, or which process runs it (TrainingRun.executor)."""
    now = timezone.now()
    claimed = TrainingRun.objects.filter(id=run_id, status=TrainingRun.Status.QUEUED).update(
        status=TrainingRun.Status.RUNNING, started_at=now, heartbeat_at=now, executor=executor[:255]
    )
    run = TrainingRun.objects.get(id=run_id)
    if not claimed:
        # Still running: the broker redelivered the task, the worker that ran it died mid-run.
        return _end_running(run_id, TrainingRun.Status.FAILED, WORKER_LOST)
    try:
        return _train(run)
    except TrainingCancelled:
        return _end_running(run_id, TrainingRun.Status.CANCELLED, CANCELLED)
    except SoftTimeLimitExceeded:
        # The worker's warning, a little before its hard limit kills the process: the run says
        # so, where the kill would have left it to read "Interrupted (Ctrl-C...)".
        return _end_running(run_id, TrainingRun.Status.FAILED, time_limit_reached())
    except Exception as exc:  # the run must end failed with its reason, whatever broke
        logger.exception("Training run %s failed", run_id)
        if isinstance(exc, DatabaseError):
            connection.close()  # a broken connection could not record the failure: a new one
        return _end_running(run_id, TrainingRun.Status.FAILED, f"{type(exc).__name__}: {exc}")
    except BaseException:
        # Ctrl-C in `manage.py train` or bootstrap_demo: left running, the run held the one
        # training slot, and `make run` could never start again.
        _end_running(run_id, TrainingRun.Status.CANCELLED, INTERRUPTED)
        raise


INTERRUPTED = "Interrupted (Ctrl-C, or its process was stopped) before it finished; the active model is unchanged."


CANCELLED = "Cancelled by an admin; the active model is unchanged."


def time_limit_reached() -> str:
    return (f"Stopped by the time limit (TRAINING_HARD_TIME_LIMIT, {settings.TRAINING_HARD_TIME_LIMIT} s) "
            "before it finished; the active model is unchanged. Train fewer epochs or a smaller model, "
            "or raise the limit.")


@transaction.atomic
def _end_running(run_id, status, error) -> TrainingRun:
    """End a running run, unless something else has ended it meanwhile (the sweeper, when its
    heartbeat stopped): the first end stands."""
    run = TrainingRun.objects.select_for_update().get(id=run_id)
    if run.status == TrainingRun.Status.RUNNING:
        _finish(run, status, error)
    return run


def _train(run):
    options = TrainingOptions.from_dict({k: v for k, v in run.options.items() if k not in RUN_ONLY_OPTIONS})
    include_model_labels = bool(run.options.get("include_model_labels", False))
    rows = training_rows(include_model_labels=include_model_labels)
    # The model reads each photo's working copy when it has one (labeling.models.Photo.model_input_path).
    paths = {p.id: p.model_input_path
             for p in Photo.objects.filter(id__in=[r[0] for r in rows]).only("id", "image", "working_image")}
    # A photo whose file is gone (removed by hand, a disk restored without it) is left out and
    # named: one lost file used to fail every run until someone found it.
    missing = [r[0] for r in rows if r[0] not in paths or not os.path.exists(paths[r[0]])]
    rows = [r for r in rows if r[0] not in set(missing)]
    # After the missing files: a label whose only training photo is gone has none left either.
    untrained = labels_without_training_rows(rows)
    rows = [r for r in rows if r[1] not in untrained]
    # Provenance: how many photos of each label source the run uses, kept with its metrics.
    sources = {"data_sources": training_source_counts([r[0] for r in rows]),
               "include_model_labels": include_model_labels, "missing_files": missing,
               "labels_without_training_photos": untrained,
               # Generated demo images (bootstrap_demo, import_photos --synthetic): a model trained
               # on them says so wherever it is shown, rather than pass for one trained on photos.
               "synthetic_photos": Photo.objects.filter(id__in=[r[0] for r in rows], synthetic=True).count(),
               # The same picture twice: across the split it flatters the validation scores, with
               # two labels one is wrong (classifier.near_copies).
               "near_copies": near_copies.summarise(rows, paths)}
    run.data = rows
    run.data_hash = data_hash(rows)
    run.metrics = sources
    run.log = "\n".join(_left_out_lines(missing, untrained))
    run.save(update_fields=["data", "data_hash", "metrics", "log"])
    fit_rows = [(str(paths[pid]), label, valid) for pid, label, valid in rows]
    settings.MODEL_ROOT.mkdir(parents=True, exist_ok=True)
    stem = f"model-{run.id}-{uuid.uuid4().hex[:8]}"
    export_path = settings.MODEL_ROOT / f"{stem}.pkl"
    confusion_png = settings.MODEL_ROOT / f"{stem}-confusion.png"
    top_losses_png = settings.MODEL_ROOT / f"{stem}-top-losses.png"
    neighbours_npz = settings.MODEL_ROOT / f"{stem}-features.npz"

    def on_progress(*, epoch, total_epochs, batch, total_batches, fraction, history=None):
        fields = {"epoch": epoch, "total_epochs": total_epochs, "batch": batch, "total_batches": total_batches,
                  "progress": fraction, "heartbeat_at": timezone.now()}
        if history is not None:
            fields["history"] = history
        _despite_a_database_restart(run.id, "write its progress",
                                    lambda: TrainingRun.objects.filter(id=run.id).update(**fields))

    def should_cancel():
        return _despite_a_database_restart(
            run.id, "check for a cancel", lambda: TrainingRun.objects.filter(id=run.id, cancel_requested=True).exists())

    files = (export_path, confusion_png, top_losses_png, neighbours_npz)
    try:
        with _heartbeat(run.id):
            result = train(fit_rows, options, export_path, on_progress=on_progress, should_cancel=should_cancel,
                           confusion_png=confusion_png, top_losses_png=top_losses_png,
                           workers=settings.TRAINING_LOADER_WORKERS)
            if result.features is not None:
                _keep_features(neighbours_npz, rows, result)
    except BaseException:
        _remove(files)  # no orphan files from a cancelled or failed run
        raise
    try:
        return _register(run.id, result, options, rows, sources, files)
    except BaseException:
        _remove(files)  # nothing refers to them: the transaction that would have was rolled back
        raise


def _keep_features(path, rows, result):
    """Optional, as computing them is: a full disk costs the reviews their similar photos and the
    worker its familiarity check, not the run its model."""
    try:
        similar.save(path, [r[0] for r in rows], [r[1] for r in rows], result.features, [r[2] for r in rows])
    except OSError as exc:
        result.log.append(similar.NOT_KEPT.format(exc))
        return
    measured = familiarity.summarise(result.features, [r[2] for r in rows])
    if measured is not None:
        result.metrics["familiarity"] = measured


def _left_out_lines(missing, untrained):
    """The run log's first lines: what was left out of the frozen data, and why."""
    lines = [f"Left out {len(missing)} photo(s) whose file is missing: {missing}."] if missing else []
    lines += [f"Left out label {label}: its {count} photo(s) all fall in the validation split; "
              "add more photos of it." for label, count in untrained.items()]
    return lines


@transaction.atomic
def _register(run_id, result, options, rows, sources, files):
    """Register the trained model as a version of the succeeded run (and activate it if asked)."""
    export_path, confusion_png, top_losses_png, neighbours_npz = files
    # The run must still be running, and not cancelled, under its row lock: an admin may have
    # cancelled it after its last check (in the last batch), or the sweeper may have failed it
    # and freed the slot for another run. Either decision stands; this model is not kept.
    run = TrainingRun.objects.select_for_update().get(id=run_id)
    if run.status != TrainingRun.Status.RUNNING or run.cancel_requested:
        _remove(files)
        if run.status == TrainingRun.Status.RUNNING:
            return _finish(run, TrainingRun.Status.CANCELLED, CANCELLED)
        logger.warning("Training run %s finished training after it had ended %s (%s): its model is not "
                       "registered.", run.id, run.status, run.error)
        return run
    version = ModelVersion.objects.create(
        training_run=run, file=export_path.name, sha256=file_sha256(export_path),
        size=export_path.stat().st_size, labels=result.labels, architecture=options.architecture,
        image_size=options.image_size,
        metrics={**result.metrics, "confusion_png": confusion_png.name, "top_losses_png": top_losses_png.name,
                 **({"neighbours_npz": neighbours_npz.name} if neighbours_npz.exists() else {}),
                 "pretrained": result.pretrained_used, "synthetic_photos": sources["synthetic_photos"],
                 "data_count": len(rows)},
    )
    _store_losses(version, rows, result.out_of_sample)
    run.model_version = version
    run.metrics = {**result.metrics, **sources}
    run.history = result.history
    run.device = result.device[:32]
    run.log = "\n".join([run.log, *result.log] if run.log else result.log)
    run.save()
    _finish(run, TrainingRun.Status.SUCCEEDED, "")
    if run.options.get("activate"):
        _activate_unless_changed(run, version)
    return run


def _activate_unless_changed(run, version):
    """Activate the run's new version, unless someone activated a version while it trained:
    an admin who rolled back a bad model meanwhile made a choice this run's starter never saw."""
    _lock_registry()
    since = (ModelVersion.objects.filter(activated_at__gt=run.created_at).exclude(id=version.id)
             .order_by("-activated_at").first())
    if since is None:
        model_version_activate(version_id=version.id, run=run)
        return
    run.log = "\n".join(filter(None, [run.log, (
        f"Not activated: version {since.id} was activated while this run trained, and this run "
        "would have replaced it unseen. Activate this version from the models page if it should.")]))
    run.save(update_fields=["log"])


def _remove(files):
    for path in files:
        path.unlink(missing_ok=True)


# How often a training run's heartbeat is written, whatever the training is doing (more often
# when TRAINING_HEARTBEAT_TIMEOUT is short: at least three beats within it).
HEARTBEAT_SECONDS = 30.0


@contextmanager
def _heartbeat(run_id):
    """Write the run's heartbeat every HEARTBEAT_SECONDS while its block runs.

    The sweeper fails a run whose heartbeat is older than TRAINING_HEARTBEAT_TIMEOUT, meaning
    that its worker is gone. The progress reports beat too, but only in training batches: the
    learning-rate finder, validation, evaluation and export have none, and a long one of
    those made a healthy run look dead. This thread beats as long as the process lives.
    """
    stop = threading.Event()
    every = min(HEARTBEAT_SECONDS, settings.TRAINING_HEARTBEAT_TIMEOUT / 3)

    def beat():
        try:
            while not stop.wait(every):
                _despite_a_database_restart(run_id, "write its heartbeat", lambda: TrainingRun.objects.filter(
                    id=run_id, status=TrainingRun.Status.RUNNING).update(heartbeat_at=timezone.now()))
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=beat, name=f"training-run-{run_id}-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _despite_a_database_restart(run_id, what, query):
    """query(), or None when the database is briefly away: a restart of a few seconds must not
    end a run of hours. The next call tries again on a new connection (Django opens one)."""
    try:
        return query()
    except DatabaseError:
        logger.warning("Training run %s: could not %s; it goes on.", run_id, what, exc_info=True)
        connection.close()
        return None


def _store_losses(version, rows, out_of_sample):
    # A photo deleted during the run (its owner's account removed) would fail the whole insert,
    # and with it a run of hours, on its foreign key.
    existing = set(Photo.objects.filter(id__in=[rows[i][0] for i in out_of_sample]).values_list("id", flat=True))
    PhotoLoss.objects.bulk_create([
        PhotoLoss(model_version=version, photo_id=rows[i][0], label=rows[i][1],
                  split=PhotoLoss.Split.VALID if rows[i][2] else PhotoLoss.Split.TRAIN,
                  loss=loss, probabilities=probabilities)
        for i, (loss, probabilities) in out_of_sample.items() if rows[i][0] in existing
    ])


def _finish(run, status, error):
    run.status = status
    run.error = error
    run.holds_slot = None  # frees the one-active-run slot
    run.finished_at = timezone.now()
    if status == TrainingRun.Status.SUCCEEDED:
        run.progress = 1.0
    run.save(update_fields=["status", "error", "holds_slot", "finished_at", "progress"])
    return run


def training_run_cancel(*, run_id: int) -> bool:
    """Ask a run to stop. A queued run stops at once; a running one at its next batch."""
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().get(id=run_id)
        if run.status == TrainingRun.Status.QUEUED:
            _finish(run, TrainingRun.Status.CANCELLED, "Cancelled before it started; the active model is unchanged.")
            return True
        if run.status == TrainingRun.Status.RUNNING:
            TrainingRun.objects.filter(id=run_id).update(cancel_requested=True)
            return True
    return False


def _lock_registry():
    """Lock every version row, in id order: two changes of which version is active (or shadow)
    then run one after the other. Locking only the target row was not enough: the second change
    did not see the first's newly active row, and its save broke the one-active-version
    constraint (an IntegrityError, a 500) instead of taking over from it."""
    list(ModelVersion.objects.select_for_update().order_by("id").values_list("id", flat=True))


class ModelVersionConflict(Exception):
    """The registry is not in a state that allows the change: the API's 409."""


class ModelVersionUnusable(ModelVersionConflict):
    """The version's file is missing, or is not the file that was registered."""


class ModelVersionAlreadyActive(ModelVersionConflict):
    """Activating the active version: another admin may have done it a moment ago."""


def _check_file(version):
    """Activated or shadowed with a file that is gone, a version would fail every new photo."""
    try:
        intact = file_sha256(version.path) == version.sha256
    except OSError:
        intact = False
    if not intact:
        logger.warning("Model version %s: %s is missing or its sha256 differs.", version.id, version.path)
        raise ModelVersionUnusable(f"Model version {version.id}'s file is missing or is not the file that was "
                                   "registered: it cannot predict.")


class ModelVersionChanged(ModelVersionConflict):
    """Another version was activated since the caller looked: replacing it unseen is refused."""


# model_version_activate(replacing=ANY_VERSION): no check of which version is active now.
ANY_VERSION = object()


@transaction.atomic
def model_version_activate(*, version_id: int, replacing=ANY_VERSION, user=None, run=None) -> ModelVersion:
    """Make one version the active model (also how an admin rolls back to an earlier one), and
    record who did (`user`, or the training `run` started with "activate") in its history.

    replacing: the id of the version the caller saw active (None: none was). If another is
    active now (a second admin activated or rolled back meanwhile), ModelVersionChanged: that
    choice was never seen, and must not be overwritten silently.
    Raises ModelVersionUnusable when its file cannot be used, ModelVersionAlreadyActive when it
    is the active version already (its activated_at is left as it was)."""
    _check_file(ModelVersion.objects.get(id=version_id))
    _lock_registry()
    version = ModelVersion.objects.get(id=version_id)
    if version.is_active:
        raise ModelVersionAlreadyActive(f"Model version {version.id} is already the active version.")
    active = ModelVersion.objects.filter(is_active=True).values_list("id", flat=True).first()
    if replacing is not ANY_VERSION and active != replacing:
        raise ModelVersionChanged(
            f"The active version changed since you looked: it is {_version_name(active)} now, not "
            f"{_version_name(replacing)}. Look at the models again before you replace it.")
    ModelVersion.objects.filter(is_active=True).exclude(id=version_id).update(is_active=False)
    version.is_active = True
    version.is_shadow = False  # a shadow that is promoted stops being a shadow
    version.activated_at = timezone.now()
    version.save(update_fields=["is_active", "is_shadow", "activated_at"])
    activation = ModelActivation.objects.create(version=version, replaced_id=active, user=user, run=run,
                                                created_at=version.activated_at)
    webhooks.model_activated(activation)
    return version


def _version_name(version_id) -> str:
    return f"version {version_id}" if version_id is not None else "no version"


class ShadowError(ModelVersionConflict):
    pass


@transaction.atomic
def model_version_shadow(*, version_id: int, enabled: bool = True) -> ModelVersion:
    """Put a version in shadow mode (it predicts every new photo beside the active one, unseen
    by users), replacing any other shadow; or take it out of shadow mode."""
    _lock_registry()
    version = ModelVersion.objects.get(id=version_id)
    if enabled:
        if version.is_active:
            raise ShadowError("The active version cannot also run in shadow mode.")
        _check_file(version)
        ModelVersion.objects.filter(is_shadow=True).exclude(id=version_id).update(is_shadow=False)
    version.is_shadow = enabled
    version.save(update_fields=["is_shadow"])
    return version


class FrozenDataUnavailable(Exception):
    """What a version is measured on is gone: no frozen data (not trained here), or no photo left."""


@dataclass
class CalibrationMeasured:
    version_id: int
    photos: int   # validation photos predicted
    missing: int  # validation photos deleted since, or whose file cannot be read
    ece: float | None


def model_version_calibrate(*, version_id: int) -> CalibrationMeasured:
    """Measure the calibration of a version trained before training recorded it: predict the
    validation photos its run froze, with its own file, and store the result as training would
    have. The worker's path gives the probabilities training's get_preds would (within 1e-4),
    so at most a photo at a bin's very edge could land a thousandth away. Running it again
    measures again and stores the same."""
    version = ModelVersion.objects.select_related("training_run").get(id=version_id)
    rows = [(pid, label) for pid, label, valid in (version.training_run.data if version.training_run else []) if valid]
    if not rows:
        raise FrozenDataUnavailable(f"Model version {version.id} has no frozen validation photos to measure it on "
                                     "(it was not trained here, or its run's data is gone).")
    _check_file(version)
    photos = Photo.objects.in_bulk([pid for pid, _ in rows])
    confidences, correct, answers = [], [], []
    model = model_cache.get(version.id, version.path, version.sha256, threads=inference_threads())
    for (pid, label), probabilities in zip(rows, _each_or_none(model, [photos.get(pid) for pid, _ in rows])):
        if probabilities is not None:
            top = max(probabilities, key=probabilities.get)  # the first of a tie, as training's argmax
            confidences.append(probabilities[top])
            correct.append(top == label)
            answers.append(top)
    if not confidences:
        raise FrozenDataUnavailable(f"None of model version {version.id}'s {len(rows)} validation photos can be "
                                     "read any more: nothing to measure.")
    summary = summarise(confidences, correct, answers)
    with transaction.atomic():
        locked = ModelVersion.objects.select_for_update().get(id=version.id)  # metrics is one JSON value
        locked.metrics = {**locked.metrics, "calibration": summary,
                          "calibration_measured": {"at": timezone.now().isoformat(), "photos": len(confidences),
                                                   "missing": len(rows) - len(confidences)}}
        locked.save(update_fields=["metrics"])
    return CalibrationMeasured(version_id=version.id, photos=len(confidences), missing=len(rows) - len(confidences),
                               ece=summary["ece"])


@dataclass
class FeaturesKept:
    version_id: int
    photos: int   # photos of its data whose features were kept
    missing: int  # photos deleted since, or whose file is gone


def model_version_keep_features(*, version_id: int) -> FeaturesKept:
    """Keep the features of a version trained before training kept them (classifier.similar),
    computed as training computes them (fastai's test_dl, the version's own learner) on the
    photos its run froze that are still here. Running it again writes them again."""
    version = ModelVersion.objects.select_related("training_run").get(id=version_id)
    rows = [tuple(row) for row in (version.training_run.data if version.training_run else [])]
    if not rows:
        raise FrozenDataUnavailable(f"Model version {version.id} has no frozen data to take features of "
                                    "(it was not trained here, or its run's data is gone).")
    _check_file(version)
    photos = Photo.objects.in_bulk([pid for pid, *_ in rows])
    kept = [(pid, label, valid, photos[pid].model_input_path) for pid, label, valid in rows
            if pid in photos and os.path.exists(photos[pid].model_input_path)]
    if not kept:
        raise FrozenDataUnavailable(f"None of model version {version.id}'s {len(rows)} photos is here any more.")
    loaded = model_cache.get(version.id, version.path, version.sha256, threads=inference_threads())
    vectors = similar.embed_learner_rows(loaded.learner, [path for *_, path in kept])
    name = f"{version.path.stem}-features.npz"
    valid = [valid for _, _, valid, _ in kept]
    similar.save(version.path.parent / name, [pid for pid, *_ in kept], [label for _, label, *_ in kept], vectors,
                 valid)
    measured = familiarity.summarise(vectors, valid)
    with transaction.atomic():
        locked = ModelVersion.objects.select_for_update().get(id=version.id)  # metrics is one JSON value
        locked.metrics = {**locked.metrics, "neighbours_npz": name}
        if measured is None:  # every photo left of one split is gone
            locked.metrics.pop("familiarity", None)
        else:
            locked.metrics["familiarity"] = measured
        locked.save(update_fields=["metrics"])
    return FeaturesKept(version_id=version.id, photos=len(kept), missing=len(rows) - len(kept))


@dataclass
class NearCopiesFound:
    version_id: int
    photos: int   # photos of its run's data hashed
    missing: int  # deleted since, or whose file cannot be read
    across_split: int
    different_labels: int


def model_version_find_near_copies(*, version_id: int) -> NearCopiesFound:
    """Look for near copies in the data of a version's run trained before runs did
    (classifier.near_copies), among its photos still here, and keep them with the run as a run
    would have. Running it again looks again."""
    version = ModelVersion.objects.select_related("training_run").get(id=version_id)
    rows = [tuple(row) for row in (version.training_run.data if version.training_run else [])]
    if not rows:
        raise FrozenDataUnavailable(f"Model version {version.id} has no frozen data to look for near copies in "
                                    "(it was not trained here, or its run's data is gone).")
    photos = Photo.objects.in_bulk([pid for pid, *_ in rows])
    found = near_copies.summarise(rows, {pid: photo.model_input_path for pid, photo in photos.items()})
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().get(id=version.training_run_id)  # metrics is one JSON value
        run.metrics = {**(run.metrics or {}), "near_copies": found}
        run.save(update_fields=["metrics"])
    return NearCopiesFound(version_id=version.id, photos=found["photos"], missing=len(rows) - found["photos"],
                           across_split=found["across_split"], different_labels=found["different_labels"])


def _each_or_none(model, photos):
    """Each photo's probabilities, None for a deleted photo or an unreadable file. Batched; a
    batch that fails is predicted one photo at a time, so one bad file costs only itself."""
    batch_size = 64
    for start in range(0, len(photos), batch_size):
        batch = photos[start:start + batch_size]
        readable = [p for p in batch if p is not None and os.path.exists(p.model_input_path)]
        try:
            found = dict(zip((p.id for p in readable), model.predict_paths([p.model_input_path for p in readable])))
        except Exception:  # noqa: BLE001 - a broken file fails its batch: each is tried alone
            found = {}
            for photo in readable:
                try:
                    found[photo.id] = model.predict_paths([photo.model_input_path])[0]
                except Exception:  # noqa: BLE001
                    logger.warning("Calibrating model version: photo %s cannot be predicted.", photo.id, exc_info=True)
        yield from (found.get(p.id) if p is not None else None for p in batch)


def model_cache_warm_up() -> list[int]:
    """Load the active version (and the shadow one, if any) into this process's model cache, so
    that the first photo after a worker starts does not wait seconds for it. Returns the ids
    loaded; anything that goes wrong is logged, and the first task then loads the model itself."""
    from django.db import connection

    from .selectors import active_model_version, shadow_model_version

    loaded = []
    try:
        for version in (active_model_version(), shadow_model_version()):
            if version is not None:
                model_cache.get(version.id, version.path, version.sha256, threads=inference_threads())
                loaded.append(version.id)
        if loaded:
            logger.info("Warmed up model version(s) %s.", ", ".join(map(str, loaded)))
    except Exception:  # noqa: BLE001 - a warm-up is only a head start
        logger.warning("Could not warm up the model cache; the first prediction will load it.", exc_info=True)
    finally:
        connection.close()  # this thread's own connection
    return loaded


def shadow_predictions_store(version, results) -> None:
    """results: (photo_id, {label: p}) pairs. A photo predicted twice keeps its first record."""
    results = list(results)
    # A photo deleted while it was predicted would fail the whole insert (its foreign key).
    existing = set(Photo.objects.filter(id__in=[pid for pid, _ in results]).values_list("id", flat=True))
    rows = []
    for photo_id, probabilities in results:
        if photo_id not in existing:
            continue
        label, confidence = max(probabilities.items(), key=lambda kv: kv[1])
        rows.append(ShadowPrediction(photo_id=photo_id, model_version=version, label=label,
                                     confidence=confidence, probabilities=probabilities))
    ShadowPrediction.objects.bulk_create(rows, ignore_conflicts=True)


def training_runs_fail_orphaned(*, worker: str) -> int:
    """Called when a training worker starts: it runs one task at a time, so any run it still
    has marked running lost it (killed, or the machine restarted). Runs of other workers and
    of `manage.py train` processes are the heartbeat sweeper's to judge."""
    return _fail_running(TrainingRun.objects.filter(status=TrainingRun.Status.RUNNING, executor=worker))


def training_runs_fail_stale(*, older_than) -> int:
    """The sweeper's check: a running run whose heartbeat stopped has lost its worker."""
    cutoff = timezone.now() - older_than
    return _fail_running(TrainingRun.objects.filter(status=TrainingRun.Status.RUNNING, heartbeat_at__lt=cutoff))


def _fail_running(runs) -> int:
    failed = 0
    for run_id in runs.values_list("id", flat=True):
        with transaction.atomic():
            run = TrainingRun.objects.select_for_update().get(id=run_id)
            if run.status == TrainingRun.Status.RUNNING:
                _finish(run, TrainingRun.Status.FAILED, WORKER_LOST)
                failed += 1
                logger.warning("Training run %s marked failed: its worker is gone.", run_id)
    return failed
