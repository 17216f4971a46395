import hashlib
import os
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

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
        target = Path(path)
        if target.is_dir():
            target = target / f"plantsite-v{model.id}-{model.architecture}.pkl"
        if target.resolve() == model.path.resolve():
            raise CommandError(f"{target} is the registry's own file of version {version}; choose another path.")
        try:
            data = model.path.read_bytes()
        except OSError as exc:
            raise CommandError(f"The file of version {version} cannot be read ({model.path}: {exc.strerror}).") from None
        # The bytes that are checked are the bytes that are written.
        if hashlib.sha256(data).hexdigest() != model.sha256:
            raise CommandError(f"The file of version {version} does not match its recorded sha256; not exported.")
        # Written aside and renamed: a full disk or a missing folder leaves no truncated learner.
        partial = target.with_name(f".{target.name}.partial")
        try:
            partial.write_bytes(data)
            os.replace(partial, target)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise CommandError(f"Could not write {target}: {exc.strerror or exc}.") from None
        self.stdout.write(self.style.SUCCESS(
            f"Exported version {model.id} to {target} (sha256 {model.sha256}); load it with fastai's load_learner."))
