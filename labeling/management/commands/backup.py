from django.core.management.base import BaseCommand, CommandError

from labeling.backup import BackupError, backup_create


class Command(BaseCommand):
    help = ("Write the database (accounts, labels, photos, reviews, training runs, model versions) and every "
            "media file (photos and models) to one .tar.gz archive. Restore it with `restore`.")

    def add_arguments(self, parser):
        parser.add_argument("path", help="The archive to write, e.g. plantsite-2026-11-26.tar.gz (replaced if it exists).")

    def handle(self, path, **options):
        try:
            report = backup_create(path)
        except BackupError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(self.style.SUCCESS(report.summary()))
        if report.missing:
            shown = ", ".join(report.missing[:5]) + (" ..." if len(report.missing) > 5 else "")
            self.stderr.write(self.style.WARNING(
                f"{len(report.missing)} file(s) that the database names are not in the backup (missing from the "
                f"disk, or file links): {shown}"))
