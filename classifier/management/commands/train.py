import time

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from classifier import services
from classifier.models import TrainingRun
from classifier.tasks import training_run_execute
from classifier.training import ARCHITECTURES, TrainingOptions

DEFAULTS = TrainingOptions()


class Command(BaseCommand):
    help = ("Train a model on the human-verified photos (with --include-model-labels, also on the model's "
            "own auto-accepted ones). Runs the training task here and shows its progress, or with --enqueue "
            "sends it to the training worker.")

    def add_arguments(self, parser):
        parser.add_argument("--architecture", choices=ARCHITECTURES, default=DEFAULTS.architecture)
        parser.add_argument("--image-size", type=int, default=DEFAULTS.image_size)
        parser.add_argument("--epochs", type=int, default=DEFAULTS.epochs)
        parser.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size)
        parser.add_argument("--learning-rate", type=float, default=DEFAULTS.learning_rate,
                            help="Omit with --lr-find to use the learning-rate finder.")
        parser.add_argument("--lr-find", action="store_true", help="Use the learning-rate finder.")
        parser.add_argument("--no-pretrained", action="store_true", help="Train from scratch.")
        parser.add_argument("--cleaning-folds", type=int, default=0)
        parser.add_argument("--seed", type=int, default=DEFAULTS.seed,
                            help="Random seed (augmentation, shuffling, initial weights), as the API's seed.")
        parser.add_argument("--activate", action="store_true", help="Activate the new version if the run succeeds.")
        parser.add_argument("--include-model-labels", action="store_true",
                            help="Also train on the model's own auto-accepted labels (recorded with the run).")
        parser.add_argument("--enqueue", action="store_true", help="Send the run to the training worker and return.")
        parser.add_argument("--user", help="Staff username recorded as the run's starter.")

    def handle(self, *args, **opts):
        user = get_user_model().objects.filter(username=opts["user"], is_staff=True).first() if opts["user"] else None
        if opts["user"] and user is None:
            raise CommandError(f"--user {opts['user']!r} names no staff account.")
        options = {
            "architecture": opts["architecture"], "image_size": opts["image_size"], "epochs": opts["epochs"],
            "batch_size": opts["batch_size"], "learning_rate": None if opts["lr_find"] else opts["learning_rate"],
            "pretrained": not opts["no_pretrained"], "cleaning_folds": opts["cleaning_folds"], "seed": opts["seed"],
        }
        try:
            run = services.training_run_start(user=user, options=options, activate=opts["activate"],
                                              enqueue=opts["enqueue"],
                                              include_model_labels=opts["include_model_labels"])
        except (services.TrainingRunConflict, ValueError) as exc:
            raise CommandError(str(exc)) from None
        if opts["enqueue"]:
            if run.status == TrainingRun.Status.FAILED:
                raise CommandError(f"Run {run.id} failed: {run.error}")
            self.stdout.write(f"Training run {run.id} queued for the training worker.")
            return
        self.stdout.write(f"Training run {run.id} with {options} ...")
        started = time.monotonic()
        training_run_execute.apply(args=[run.id])
        run = TrainingRun.objects.get(id=run.id)
        for line in run.log.splitlines():
            self.stdout.write(f"  {line}")
        if run.status != TrainingRun.Status.SUCCEEDED:
            raise CommandError(f"Run {run.id} {run.status}: {run.error}")
        self.stdout.write(self.style.SUCCESS(
            f"Run {run.id} created model version {run.model_version_id} in {time.monotonic() - started:.0f} s on "
            f"{run.device}: error rate {run.metrics['error_rate']:.3f} on {run.metrics['valid_count']} photos"
            f"{'; activated' if opts['activate'] else ''}."))
