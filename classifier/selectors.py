from dataclasses import dataclass

from django.conf import settings

from .models import ModelActivation, ModelVersion, TrainingRun


def active_model_version():
    return ModelVersion.objects.filter(is_active=True).first()


def shadow_model_version():
    return ModelVersion.objects.filter(is_shadow=True).first()


def model_versions():
    return ModelVersion.objects.select_related("training_run")


def model_activations():
    """The registry's history, newest first."""
    return ModelActivation.objects.select_related("user", "run")


def training_runs():
    return TrainingRun.objects.select_related("model_version", "started_by")


def previous_trained_run(run):
    """The last run before `run` that succeeded: the one whose data `run`'s is compared with."""
    return (TrainingRun.objects.filter(status=TrainingRun.Status.SUCCEEDED, created_at__lt=run.created_at)
            .order_by("-created_at", "-id").first())


@dataclass
class SinceActive:
    """What a run started now would bring against the active version: the data (its run's
    frozen data against what a run would take now) and what people found of its answers here."""
    version: ModelVersion
    changes: object       # classifier.evaluation.DataChanges
    decided: int          # its predictions people decided here
    changed: int          # of those, how many ended with another label, or rejected
    unfamiliar: int       # its predictions whose photo looked unlike all it learned from


def since_active_version() -> SinceActive | None:
    """None without an active version trained here (its run's data frozen)."""
    from labeling.models import Prediction
    from labeling.review import overturned

    from .evaluation import data_changes
    from .services import training_rows

    version = active_model_version()
    run = version.training_run if version is not None else None
    if run is None or not run.data:
        return None
    # Compared like for like: the model's own labels only if the active version's run took them.
    rows = training_rows(include_model_labels=bool((run.metrics or {}).get("include_model_labels")))
    people = overturned(version.id, limit=0)
    unfamiliar = Prediction.objects.filter(Prediction.unfamiliar_q(), model_version=version).count()
    return SinceActive(version=version, changes=data_changes(rows, run), decided=people.decided,
                       changed=people.changed, unfamiliar=unfamiliar)


def active_training_run():
    return TrainingRun.objects.filter(status__in=TrainingRun.ACTIVE).first()


def photo_losses(version, *, label=None, split=None):
    """The cleaner's list: highest loss first. label and split are matched against fixed values only."""
    qs = version.losses.select_related("photo", "photo__final_label").order_by("-loss", "photo_id")
    if label:
        qs = qs.filter(label=label)
    if split:
        qs = qs.filter(split=split)
    return qs


def model_files_unreferenced(*, min_age_seconds: float):
    """Files in MODEL_ROOT that no model version refers to (its learner, confusion matrix and
    top-losses pictures, its photos' features), left by a training process killed before it
    registered or removed them. A queued or running run's files are its own, however old."""
    from labeling.selectors import files_unreferenced

    referenced = set()
    for version in ModelVersion.objects.only("file", "metrics").iterator():
        referenced.update(ModelVersion.file_names(version.file, version.metrics))
    active = tuple(f"model-{run_id}-" for run_id in TrainingRun.objects.filter(
        status__in=TrainingRun.ACTIVE).values_list("id", flat=True))
    return [path for path in files_unreferenced(settings.MODEL_ROOT, referenced, min_age_seconds=min_age_seconds)
            if not (active and path.name.startswith(active))]


@dataclass
class SimilarPhotos:
    version: object
    found: list  # [(classifier.similar.Neighbour, its Photo)], nearest first; photos deleted since left out
    why: str     # why none could be found, "" when they were


def similar_photos(photo) -> SimilarPhotos:
    """The photos the version that predicted `photo` learned from, nearest to it (classifier.similar)."""
    from labeling.models import Photo

    from . import similar
    from .inference import ModelIntegrityError

    version = photo.prediction.model_version
    if "neighbours_npz" not in version.metrics:
        return SimilarPhotos(version, [], f"Model version {version.id} kept no features of its photos: it was "
                                         f"trained before they were kept (manage.py complete_model_versions "
                                         f"{version.id} adds them).")
    try:
        found = similar.nearest(version, photo)
    except (OSError, ModelIntegrityError) as exc:
        return SimilarPhotos(version, [], f"Cannot compare with model version {version.id}'s photos: {exc}")
    photos = Photo.objects.select_related("final_label").in_bulk([n.photo_id for n in found])
    return SimilarPhotos(version, [(n, photos[n.photo_id]) for n in found if n.photo_id in photos], "")

