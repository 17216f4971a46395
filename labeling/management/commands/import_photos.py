import tempfile
import zipfile
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from labeling.export import safe_extract
from labeling.services import photos_import_folder


class Command(BaseCommand):
    help = ("Import labelled photos from DIR/<label>/<file> (the layout fastai's parent_label reads), such as an "
            "unzipped export (or its zip): the manifest.csv of an export restores each label's source, who and when.")

    def add_arguments(self, parser):
        parser.add_argument("directory")
        parser.add_argument("--owner", help="Username that owns the imported photos (default: the first staff user).")
        parser.add_argument("--synthetic", action="store_true", help="Mark the photos as generated, not real.")

    def handle(self, directory, owner=None, synthetic=False, **options):
        users = get_user_model().objects
        user = users.filter(username=owner).first() if owner else users.filter(is_staff=True).order_by("id").first()
        if user is None:
            raise CommandError(f"No user {owner!r}." if owner else "No staff user to own the photos; pass --owner.")
        try:
            if str(directory).lower().endswith(".zip") and Path(directory).is_file():
                # An export's zip (manage.py export_dataset, the site's export): unzipped, then imported.
                with tempfile.TemporaryDirectory(prefix="import-") as unzipped:
                    try:
                        left_out = safe_extract(directory, unzipped, max_member_bytes=settings.UPLOAD_MAX_BYTES)
                    except (ValueError, zipfile.BadZipFile) as exc:
                        raise CommandError(f"{directory}: {exc}") from None
                    report = photos_import_folder(directory=unzipped, owner=user, synthetic=synthetic)
                    report.refused[:0] = [(f"{directory}:{name}", why) for name, why in left_out]
            else:
                report = photos_import_folder(directory=directory, owner=user, synthetic=synthetic)
        except FileNotFoundError as exc:
            raise CommandError(str(exc)) from None
        for path, why in report.refused:
            self.stderr.write(f"refused {path}: {why}")
        if options["verbosity"] > 0:  # every file not taken is named, a duplicate too
            for path, why in report.skipped:
                self.stdout.write(f"skipped {path}: {why}")
        self.stdout.write(self.style.SUCCESS(report.summary()))
