import os
import secrets
import tempfile
import time
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from classifier import services as classifier_services
from classifier.demo_images import LABELS, generate_dataset
from classifier.models import ModelVersion, TrainingRun
from classifier.tasks import training_run_execute
from classifier.training import TrainingOptions
from labeling.models import EXPERTS_GROUP, Label, Photo
from labeling.services import photos_import_folder

DEMO_PER_LABEL = 60
# Small and quick on two CPU cores; an admin can train a bigger model from the site.
STARTER_OPTIONS = {"architecture": "resnet18", "image_size": 96, "epochs": 10, "batch_size": 16,
                   "learning_rate": 3e-3, "pretrained": True}
ACCOUNTS = (("admin", {"is_staff": True, "is_superuser": True}), ("expert", {}), ("member", {}))


class Command(BaseCommand):
    help = ("Create the demo labels, accounts, synthetic photos and starter model. Safe to run again. "
            "--per-label, --image-size and --epochs shrink the demo (the tests use 4 photos per label, "
            "32 px and one epoch); they only matter on the run that creates the photos or the model.")

    def add_arguments(self, parser):
        parser.add_argument("--per-label", type=int, default=DEMO_PER_LABEL,
                            help=f"Synthetic photos generated per label (default {DEMO_PER_LABEL}).")
        parser.add_argument("--image-size", type=int, default=STARTER_OPTIONS["image_size"],
                            help=f"Image size the starter model trains at (default {STARTER_OPTIONS['image_size']}).")
        parser.add_argument("--epochs", type=int, default=STARTER_OPTIONS["epochs"],
                            help=f"Epochs the starter model trains for (default {STARTER_OPTIONS['epochs']}).")

    def handle(self, *args, per_label, image_size, epochs, **options):
        if per_label < 1:
            raise CommandError("--per-label must be at least 1.")
        starter = {**STARTER_OPTIONS, "image_size": image_size, "epochs": epochs}
        try:  # before anything is created: a bad option must leave nothing half made
            TrainingOptions.from_dict(starter)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        for name in LABELS:
            Label.objects.get_or_create(name=name)
        admin = self._accounts()
        self._photos(admin, per_label)
        self._starter_model(admin, starter)

    def _accounts(self):
        missing = [(username, flags) for username, flags in ACCOUNTS
                   if not User.objects.filter(username=username).exists()]
        if missing:
            path = Path(settings.DEMO_CREDENTIALS_FILE)
            # Opened before any account exists: an account whose password could not be kept would
            # be skipped by every later run, its password never shown.
            try:
                # Created owner-only from the start: the passwords are never readable by others.
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            except OSError as exc:
                raise CommandError(f"Cannot write the demo passwords to {path}: {exc.strerror}.") from None
            os.fchmod(fd, 0o600)  # a file that was there already keeps its mode otherwise
            created = []
            with os.fdopen(fd, "a") as fh, transaction.atomic():
                experts = Group.objects.get_or_create(name=EXPERTS_GROUP)[0]
                for username, flags in missing:
                    password = secrets.token_urlsafe(12)
                    user = User.objects.create_user(username=username, password=password, **flags)
                    if username == "expert":
                        user.groups.add(experts)
                    fh.write(f"{username} {password}\n")
                    created.append((username, password))
            self.stdout.write(self.style.SUCCESS("Demo accounts (passwords shown once, kept in " f"{path}):"))
            for username, password in created:
                self.stdout.write(f"  {username:8} {password}")
        return User.objects.get(username="admin")

    def _photos(self, admin, per_label):
        if Photo.objects.filter(synthetic=True).exists():
            return
        self.stdout.write(f"Generating {per_label} synthetic photos per label...")
        with tempfile.TemporaryDirectory() as tmp:
            generate_dataset(Path(tmp), per_label=per_label, size=256, seed=0)
            report = photos_import_folder(directory=Path(tmp), owner=admin, synthetic=True)
        self.stdout.write(report.summary())

    def _starter_model(self, admin, starter_options):
        if ModelVersion.objects.exists():
            return
        run = TrainingRun.objects.filter(status=TrainingRun.Status.QUEUED).first()
        if run is None:
            run = classifier_services.training_run_start(user=admin, options=starter_options, activate=True,
                                                         enqueue=False)
        self.stdout.write(f"Training the starter model (run {run.id}) through the training task...")
        started = time.monotonic()
        # The same Celery task that admins trigger, executed here before the workers start.
        training_run_execute.apply(args=[run.id])
        run.refresh_from_db()
        if run.status != TrainingRun.Status.SUCCEEDED:
            raise CommandError(f"The starter model failed to train: {run.error}")
        # A run someone else queued keeps its own choice of activating the result or not.
        state = "is active" if run.model_version.is_active else "is not active (its run did not ask for it)"
        self.stdout.write(self.style.SUCCESS(
            f"Starter model version {run.model_version_id} {state}: error rate "
            f"{run.metrics['error_rate']:.3f} on {run.metrics['valid_count']} validation photos, "
            f"trained in {time.monotonic() - started:.0f} s on {run.device}."))
