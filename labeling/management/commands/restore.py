from django.core.management.base import BaseCommand, CommandError

from labeling.backup import BackupError, backup_restore


class Command(BaseCommand):
    help = ("Restore an archive written by `backup`: its rows into the database and its files into MEDIA_ROOT "
            "and MODEL_ROOT. Refuses a database that already holds data unless --force.")

    def add_arguments(self, parser):
        parser.add_argument("path", help="The .tar.gz archive written by `manage.py backup`.")
        parser.add_argument("--force", action="store_true",
                            help="Replace everything in a database that already holds photos, users or models.")

    def handle(self, path, force=False, **options):
        try:
            report = backup_restore(path, force=force)
        except BackupError as exc:
            raise CommandError(str(exc)) from None
        if report.problems:
            raise CommandError(f"{report.summary()} The restored site is not whole.")
        self.stdout.write(self.style.SUCCESS(report.summary()))
