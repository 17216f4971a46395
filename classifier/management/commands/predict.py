from django.core.management.base import BaseCommand, CommandError
from PIL import Image

from classifier.cores import inference_threads
from classifier.inference import ModelIntegrityError, model_cache
from classifier.selectors import active_model_version


class Command(BaseCommand):
    help = "Predict image files with the active model (batched) and print each label and its probabilities."

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="+")
        parser.add_argument("--batch-size", type=int, default=16, help="Images per batch, at least 1 (16).")

    def handle(self, files, batch_size, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        version = active_model_version()
        if version is None:
            raise CommandError("No model version is active; train one and activate it first.")
        try:
            model = model_cache.get(version.id, version.path, version.sha256, threads=inference_threads())
        except (ModelIntegrityError, FileNotFoundError) as exc:
            raise CommandError(str(exc)) from None
        for start in range(0, len(files), batch_size):
            batch = files[start:start + batch_size]
            try:
                results = model.predict_paths(batch)
            except (OSError, ValueError, Image.DecompressionBombError) as exc:
                raise CommandError(f"Could not read one of {batch}: {exc}") from None
            for path, probabilities in zip(batch, results):
                ranked = sorted(probabilities.items(), key=lambda kv: kv[1], reverse=True)
                listing = "  ".join(f"{name}={p:.4f}" for name, p in ranked)
                self.stdout.write(f"{path}\t{ranked[0][0]}\t{listing}")
        self.stderr.write(f"Model version {version.id} ({version.architecture}).")
