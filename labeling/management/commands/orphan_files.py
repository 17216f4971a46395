from django.core.management.base import BaseCommand, CommandError

from classifier.selectors import model_files_unreferenced
from labeling.selectors import photo_files_unreferenced


class Command(BaseCommand):
    help = ("List the stored files that nothing refers to: photos (and working copies) without their row, and "
            "model files without their version, left by a process killed mid-write. With --delete, remove them.")

    def add_arguments(self, parser):
        parser.add_argument("--delete", action="store_true", help="Remove the files listed.")
        parser.add_argument("--min-age", type=float, default=86400.0, metavar="SECONDS",
                            help="Only files last written at least this long ago (default a day): a newer one may "
                                 "belong to an upload or a training run still in progress.")

    def handle(self, *args, delete=False, min_age=86400.0, **options):
        if min_age < 60:
            raise CommandError("--min-age must be at least 60 seconds: an upload in progress writes its file "
                               "before its row.")
        files = (photo_files_unreferenced(min_age_seconds=min_age)
                 + model_files_unreferenced(min_age_seconds=min_age))
        total = 0
        for path in files:
            size = path.stat().st_size
            total += size
            if delete:
                path.unlink(missing_ok=True)
            self.stdout.write(f"{'removed' if delete else 'unreferenced'} {path} ({size} bytes)")
        verb = "Removed" if delete else "Found"
        hint = "" if delete or not files else " Run again with --delete to remove them."
        self.stdout.write(self.style.SUCCESS(f"{verb} {len(files)} unreferenced file(s), {total} bytes.{hint}"))
