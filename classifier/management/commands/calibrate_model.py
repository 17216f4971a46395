from django.core.management.base import BaseCommand, CommandError

from classifier import services
from classifier.models import ModelVersion


class Command(BaseCommand):
    help = ("Measure the calibration (reliability table, expected calibration error, what a threshold would save) "
            "of model versions trained before training recorded it, on the validation photos their run froze.")

    def add_arguments(self, parser):
        parser.add_argument("versions", nargs="*", type=int, help="Version ids (measured again if measured already).")
        parser.add_argument("--missing", action="store_true", help="Every version without a recorded calibration.")

    def handle(self, versions, missing, **options):
        if bool(versions) == missing:
            raise CommandError("Name the versions to measure, or pass --missing for every version without one.")
        if missing:
            versions = [v.id for v in ModelVersion.objects.order_by("id") if v.calibration() is None]
            if not versions:
                self.stdout.write("Every model version has its calibration recorded.")
                return
        unknown = set(versions) - set(ModelVersion.objects.filter(id__in=versions).values_list("id", flat=True))
        if unknown:
            raise CommandError(f"No model version {', '.join(map(str, sorted(unknown)))}.")
        failed = 0
        for version_id in versions:
            try:
                measured = services.model_version_calibrate(version_id=version_id)
            except (services.CalibrationUnavailable, services.ModelVersionUnusable) as exc:
                failed += 1
                self.stderr.write(f"Version {version_id}: not measured. {exc}")
                continue
            gone = f"; {measured.missing} deleted or unreadable, left out" if measured.missing else ""
            self.stdout.write(self.style.SUCCESS(
                f"Version {version_id}: expected calibration error {measured.ece:.3f} on {measured.photos} "
                f"validation photos{gone}."))
        if failed:
            raise CommandError(f"{failed} of {len(versions)} version(s) could not be measured.")
