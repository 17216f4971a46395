from django.core.management.base import BaseCommand, CommandError

from labeling.export import export_dataset_to_path


class Command(BaseCommand):
    help = ("Write the labelled data set to PATH.zip: a folder per label (what fastai's parent_label reads) "
            "and manifest.csv (file, label, source, who, when, agreement, synthetic). `import_photos` reads it back.")

    def add_arguments(self, parser):
        parser.add_argument("path", help="Where to write the zip (replaced if it exists).")
        parser.add_argument("--include-model", action="store_true",
                            help="Also the model's own auto-accepted labels (by default only labels a person vouched for).")

    def handle(self, path, include_model=False, **options):
        if not path.lower().endswith(".zip"):
            raise CommandError("The path must end with .zip.")
        try:
            summary = export_dataset_to_path(path, include_model=include_model)
        except OSError as exc:
            raise CommandError(f"Could not write {path}: {exc}") from None
        self.stdout.write(self.style.SUCCESS(f"{summary.describe()} Written to {path}."))
