from django.core.management.base import BaseCommand, CommandError

from classifier import services
from classifier.models import ModelVersion

# What training records today that a version trained before may lack: (its name, whether the
# version has it, the service that adds it, the line that says what was added).
PARTS = [
    ("calibration", lambda v: v.calibration() is not None, services.model_version_calibrate,
     lambda r: f"expected calibration error {r.ece:.3f} on {r.photos} validation photos"),
    # The familiarity check needs the split kept with the features, which the first files lacked.
    ("features", lambda v: "familiarity" in v.metrics, services.model_version_keep_features,
     lambda r: f"features of {r.photos} photos kept for the similar photos and the familiarity check"),
    ("near copies", lambda v: "near_copies" in ((v.training_run.metrics or {}) if v.training_run else {}),
     services.model_version_find_near_copies,
     lambda r: f"{r.photos} photos compared: {r.across_split} validation photo(s) with a near copy among the "
               f"training photos, {r.different_labels} pair(s) with different labels"),
]


class Command(BaseCommand):
    help = ("Add to model versions trained before training recorded them: the calibration (reliability table, "
            "expected calibration error, what a threshold would save), the photos' features (similar photos, "
            "the familiarity check) and the near copies in their runs' data, measured on the photos their run froze.")

    def add_arguments(self, parser):
        parser.add_argument("versions", nargs="*", type=int, help="Version ids: everything is measured again.")
        parser.add_argument("--missing", action="store_true", help="Every version, for what it lacks.")

    def handle(self, versions, missing, **options):
        if bool(versions) == missing:
            raise CommandError("Name the versions to complete, or pass --missing for every version that lacks "
                               "something.")
        unknown = set(versions) - set(ModelVersion.objects.filter(id__in=versions).values_list("id", flat=True))
        if unknown:
            raise CommandError(f"No model version {', '.join(map(str, sorted(unknown)))}.")
        chosen = (ModelVersion.objects.order_by("id") if missing else ModelVersion.objects.filter(id__in=versions)
                  ).select_related("training_run")
        work = [(v.id, part) for v in chosen for part in PARTS if not (missing and part[1](v))]
        if not work:
            self.stdout.write("Every model version has its calibration, features and near copies recorded.")
            return
        failed = 0
        for version_id, (name, _, add, said) in work:
            try:
                result = add(version_id=version_id)
            except (services.FrozenDataUnavailable, services.ModelVersionUnusable) as exc:
                failed += 1
                self.stderr.write(f"Version {version_id}: no {name}. {exc}")
                continue
            gone = f"; {result.missing} deleted or unreadable, left out" if result.missing else ""
            self.stdout.write(self.style.SUCCESS(f"Version {version_id}: {said(result)}{gone}."))
        if failed:
            raise CommandError(f"{failed} of {len(work)} could not be added.")
