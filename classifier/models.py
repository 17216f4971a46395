from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from classifier.calibration import Calibration
from classifier.familiarity import Familiarity


class TrainingRun(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    ACTIVE = (Status.QUEUED, Status.RUNNING)

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    # True while queued or running, NULL afterwards: a unique index on it lets the database,
    # not a check-then-insert race, guarantee that only one run is active at a time.
    holds_slot = models.BooleanField(null=True, default=True)
    options = models.JSONField(default=dict)
    started_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    device = models.CharField(max_length=32, blank=True)
    progress = models.FloatField(default=0.0)
    epoch = models.PositiveIntegerField(default=0)
    total_epochs = models.PositiveIntegerField(default=0)
    batch = models.PositiveIntegerField(default=0)
    total_batches = models.PositiveIntegerField(default=0)
    metrics = models.JSONField(default=dict, blank=True)
    # Per-epoch losses for the run's page: [{"epoch", "train_loss", "valid_loss", "error_rate"}].
    history = models.JSONField(default=list, blank=True)
    # The frozen training set: [[photo_id, label, is_valid], ...] and its hash.
    data = models.JSONField(default=list, blank=True)
    data_hash = models.CharField(max_length=64, blank=True)
    log = models.TextField(blank=True)
    error = models.TextField(blank=True)
    cancel_requested = models.BooleanField(default=False)
    # Refreshed with every progress report: a running run whose heartbeat stops has lost its worker.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # Who runs it: a training worker's node name, or "process <pid> on <host>" for `manage.py
    # train` and bootstrap_demo, which train in their own process. A worker that (re)starts
    # fails only its own runs.
    executor = models.CharField(max_length=255, blank=True)
    model_version = models.OneToOneField(
        "ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["holds_slot"], name="one_active_training_run"),
        ]

    def __str__(self):
        return f"Training run {self.pk} ({self.status})"

    @property
    def is_active(self):
        return self.status in self.ACTIVE


# resnet and xresnet (training.ARCHITECTURES) halve the image five times before their head.
FEATURE_STRIDE = 32


class ModelVersion(models.Model):
    training_run = models.ForeignKey(TrainingRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    file = models.CharField(max_length=255, help_text="Path of the exported learner, relative to MODEL_ROOT.")
    sha256 = models.CharField(max_length=64)
    size = models.PositiveBigIntegerField()
    labels = models.JSONField(help_text="The model's output classes, in order.")
    architecture = models.CharField(max_length=32)
    image_size = models.PositiveIntegerField()
    metrics = models.JSONField(default=dict)
    is_active = models.BooleanField(default=False)
    # Shadow mode (the book's "limited scope" step): predicts every new photo beside the active
    # model; its results are stored and compared, and nobody sees them as answers.
    is_shadow = models.BooleanField(default=False)
    activated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["is_active"], condition=Q(is_active=True), name="one_active_model"),
            models.UniqueConstraint(fields=["is_shadow"], condition=Q(is_shadow=True), name="one_shadow_model"),
            models.CheckConstraint(condition=~Q(is_active=True, is_shadow=True), name="active_is_not_shadow"),
        ]

    def __str__(self):
        return f"v{self.pk} {self.architecture}"

    @property
    def path(self):
        return settings.MODEL_ROOT / self.file

    @property
    def error_rate(self):
        return self.metrics.get("error_rate")

    # The files next to the learner that `metrics` names: backups carry them, orphan_files keeps them.
    FILE_METRICS = ("confusion_png", "top_losses_png", "neighbours_npz")

    @classmethod
    def file_names(cls, file, metrics) -> list[str]:
        """The learner's name and those of the files beside it, from a row's `file` and `metrics`
        (a dumped row's too)."""
        metrics = metrics if isinstance(metrics, dict) else {}
        return [name for name in (file, *(metrics.get(key) for key in cls.FILE_METRICS)) if name]

    @property
    def explainable(self) -> bool:
        """Whether Grad-CAM can show where it looked (classifier.explain): the architectures
        offered shrink the image FEATURE_STRIDE times, and a 1 x 1 grid has no "where"."""
        return self.image_size >= 2 * FEATURE_STRIDE

    def calibration(self):
        """Its validation photos' confidences against their accuracy (classifier.calibration); None
        for a version trained before these were recorded."""
        data = self.metrics.get("calibration")
        return Calibration.from_dict(data) if data else None

    def familiarity(self):
        """Its validation photos' similarity with its nearest training photo
        (classifier.familiarity); None for a version trained before it was kept."""
        data = self.metrics.get("familiarity")
        return Familiarity.from_dict(data) if data else None

    def most_confused(self, limit: int = 5) -> list[tuple[str, str, int]]:
        """The book's interp.most_confused: (actual, predicted, validation photos) for the pairs
        of labels the version mixed up most, from its confusion matrix (rows actual, columns
        predicted, in `labels` order); the largest first, ties by name."""
        matrix = self.metrics.get("confusion_matrix") or []
        pairs = [(self.labels[i], self.labels[j], count)
                 for i, row in enumerate(matrix) for j, count in enumerate(row) if i != j and count > 0]
        return sorted(pairs, key=lambda pair: (-pair[2], pair[0], pair[1]))[:limit]


class ModelActivation(models.Model):
    """The registry's history: who made which version the active one, when, and which version
    it replaced (an activation of an older version is a rollback). Never changed afterwards."""

    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="activations")
    replaced = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # A person (the models page, the API), or nobody for a run started with "activate": then `run`.
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                             related_name="+")
    run = models.ForeignKey(TrainingRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]

    @property
    def is_rollback(self) -> bool:
        return self.replaced_id is not None and self.replaced_id > self.version_id


class PhotoLoss(models.Model):
    """A photo's loss under a model version, from a model that did not train on it: the
    validation split from the version itself, training photos from the k-fold cleaning pass."""

    class Split(models.TextChoices):
        TRAIN = "train"
        VALID = "valid"

    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="losses")
    photo = models.ForeignKey("labeling.Photo", on_delete=models.CASCADE, related_name="losses")
    split = models.CharField(max_length=8, choices=Split.choices)
    label = models.CharField(max_length=64, help_text="The label the photo was trained with.")
    loss = models.FloatField(null=True)
    probabilities = models.JSONField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["model_version", "photo"], name="one_loss_per_photo_and_version")]
        indexes = [models.Index(fields=["model_version", "split", "label"])]

    @property
    def ranked(self):
        return sorted(self.probabilities.items(), key=lambda kv: kv[1], reverse=True)


class ShadowPrediction(models.Model):
    """What a shadow version said about a photo. Never shown to users, never routes a photo."""

    photo = models.ForeignKey("labeling.Photo", on_delete=models.CASCADE, related_name="shadow_predictions")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="shadow_predictions")
    label = models.CharField(max_length=64)
    confidence = models.FloatField()
    probabilities = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["photo", "model_version"], name="one_shadow_prediction")]
