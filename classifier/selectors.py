from .models import ModelVersion, TrainingRun


def active_model_version():
    return ModelVersion.objects.filter(is_active=True).first()


def shadow_model_version():
    return ModelVersion.objects.filter(is_shadow=True).first()


def model_versions():
    return ModelVersion.objects.select_related("training_run")


def training_runs():
    return TrainingRun.objects.select_related("model_version", "started_by")


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
