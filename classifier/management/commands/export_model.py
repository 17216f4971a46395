import shutil
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from classifier.inference import file_sha256
from classifier.models import ModelVersion


class Command(BaseCommand):
    help = "Copy a model version's exported learner (a fastai .pkl for load_learner) to PATH, checked by sha256."

    def add_arguments(self, parser):
        parser.add_argument("version", type=int)
        parser.add_argument("path")

    def handle(self, version, path, **options):
        model = ModelVersion.objects.filter(id=version).first()
        if model is None:
            raise CommandError(f"No model version {version}.")
        if not model.path.exists():
            raise CommandError(f"The file of version {version} is missing ({model.path}).")
        if file_sha256(model.path) != model.sha256:
            raise CommandError(f"The file of version {version} does not match its recorded sha256; not exported.")
        target = Path(path)
        if target.is_dir():
            target = target / f"plantsite-v{model.id}-{model.architecture}.pkl"
        shutil.copyfile(model.path, target)
        self.stdout.write(self.style.SUCCESS(
            f"Exported version {model.id} to {target} (sha256 {model.sha256}); load it with fastai's load_learner."))
