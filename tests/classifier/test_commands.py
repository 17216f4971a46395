"""The management commands: `import_photos` (labelled folder trees, generated and real) and
`bootstrap_demo` (labels, accounts, synthetic photos and a starter model, idempotently)."""

import hashlib
import io
import os
import shutil
import stat
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import transaction
from django.test import override_settings
from PIL import Image, ImageOps

from classifier import services as classifier_services
from classifier.demo_images import LABELS, generate_dataset
from classifier.models import ModelVersion, TrainingRun
from labeling.management.commands.bootstrap_demo import Command
from labeling.models import EXPERTS_GROUP, Label, Photo
from tests.factories import LabelFactory, start_photo_ids_where
from tests.paths import FLOWERS



def run_command(*args, **options):
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def generated_images(tmp_path_factory):
    directory = tmp_path_factory.mktemp("generated")
    generate_dataset(directory, per_label=2, size=64, seed=3)
    return directory


@pytest.fixture
def messy_tree(tmp_path, generated_images):
    """Six generated photos of the three demo labels, plus a PNG in a folder whose name needs
    slugifying, a byte-for-byte duplicate under another name, a text file named .jpg and a
    .txt file."""
    tree = tmp_path / "tree"
    shutil.copytree(generated_images, tree)
    (tree / "Snake Plant").mkdir()
    Image.open(tree / "monstera" / "monstera_001.jpg").save(tree / "Snake Plant" / "snake.png")
    shutil.copy(tree / "monstera" / "monstera_000.jpg", tree / "monstera" / "zz_same_bytes.jpg")
    (tree / "monstera" / "broken.jpg").write_text("this is not a photo")
    (tree / "spider_plant" / "notes.txt").write_text("watered on Monday")
    return tree


# --- import_photos ---------------------------------------------------------------------


def test_import_photos_reports_imported_skipped_and_refused_files_and_creates_missing_labels(db, staff, messy_tree):
    LabelFactory(name="monstera")

    out, err = run_command("import_photos", str(messy_tree))

    assert "Imported 7, skipped 1 duplicates, refused 2; new labels: snake_plant, dieffenbachia, spider_plant." in out
    assert f"refused {messy_tree / 'monstera' / 'broken.jpg'}: Unsupported file type" in err
    assert f"refused {messy_tree / 'spider_plant' / 'notes.txt'}: not a .jpg, .jpeg, .png or .webp file" in err
    assert set(Label.objects.values_list("name", flat=True)) == {*LABELS, "snake_plant"}


def test_import_photos_names_what_it_cannot_take_and_goes_on(db, staff, messy_tree, monkeypatch):
    shutil.copy(messy_tree / "monstera" / "monstera_000.jpg", messy_tree / "loose.jpg")
    (messy_tree / "monstera" / "nested").mkdir()
    unreadable = messy_tree / "dieffenbachia" / "dieffenbachia_000.jpg"
    real_open = open

    def denied(path, *args, **kwargs):  # the tests run as root, which chmod does not stop
        if str(path) == str(unreadable):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", denied)
    out, err = run_command("import_photos", str(messy_tree))

    assert "Imported 6, skipped 1 duplicates, refused 5" in out
    assert f"refused {messy_tree / 'loose.jpg'}: not in a <label>/ folder, so it has no label" in err
    assert f"refused {messy_tree / 'monstera' / 'nested'}: a folder inside a label folder" in err
    assert f"refused {unreadable}: the file cannot be read (Permission denied)" in err


def test_imported_photos_are_final_labelled_by_import_and_owned_by_the_first_staff_user(db, staff, messy_tree):
    run_command("import_photos", str(messy_tree))

    photos = Photo.objects.select_related("final_label")
    assert photos.count() == 7
    assert {p.final_label.name for p in photos} == {*LABELS, "snake_plant"}
    assert all(p.status == Photo.Status.FINAL and p.label_source == Photo.LabelSource.IMPORT
               and p.decided_by == Photo.DecidedBy.IMPORT and p.owner == staff and not p.synthetic for p in photos)
    assert photos.filter(final_label__name="monstera").count() == 2  # the duplicate is stored once
    assert all(Path(p.image.path).is_file() for p in photos)


def test_importing_the_same_tree_twice_imports_nothing_new(db, staff, messy_tree):
    run_command("import_photos", str(messy_tree))
    stored = set(Photo.objects.values_list("id", "sha256"))

    out, err = run_command("import_photos", str(messy_tree), verbosity=2)

    assert "Imported 0, skipped 8 duplicates, refused 2; new labels: none." in out
    assert sum(line.startswith("skipped ") for line in out.splitlines()) == 8
    assert set(Photo.objects.values_list("id", "sha256")) == stored


def test_import_photos_marks_photos_synthetic_and_uses_the_named_owner(db, staff, member, generated_images):
    out, _ = run_command("import_photos", str(generated_images), owner="member", synthetic=True)

    assert "Imported 6," in out
    assert Photo.objects.filter(owner=member, synthetic=True).count() == 6


def test_import_photos_refuses_an_unknown_owner_a_missing_folder_and_a_site_without_staff(db, member, tmp_path):
    with pytest.raises(CommandError, match="No user 'nobody'"):
        run_command("import_photos", str(tmp_path), owner="nobody")
    with pytest.raises(CommandError, match="No staff user"):
        run_command("import_photos", str(tmp_path))
    with pytest.raises(CommandError, match="is not a folder"):
        run_command("import_photos", str(tmp_path / "missing"), owner="member")
    assert not Photo.objects.exists()


def test_import_photos_imports_real_flower_photos(db, staff, tmp_path):
    tree = tmp_path / "flowers"
    originals = {}
    for label in ("daisy", "roses"):
        (tree / label).mkdir(parents=True)
        for source in sorted((FLOWERS / label).glob("*.jpg"))[:3]:
            shutil.copy(source, tree / label / source.name)
            originals[hashlib.sha256(source.read_bytes()).hexdigest()] = (label, source)

    out, err = run_command("import_photos", str(tree))

    assert "Imported 6, skipped 0 duplicates, refused 0; new labels: daisy, roses." in out
    assert err == ""
    for photo in Photo.objects.select_related("final_label"):
        label, source = originals[photo.sha256]
        assert photo.final_label.name == label
        with Image.open(source) as original:
            assert (photo.width, photo.height) == ImageOps.exif_transpose(original).size
        with Image.open(photo.image.path) as stored:
            assert stored.format == "JPEG" and stored.size == (photo.width, photo.height)


# --- bootstrap_demo --------------------------------------------------------------------


def every_fourth_id_is_validation(key, percent=20):
    """Twelve demo photos and the real hashed split leave the validation split empty about
    one time in fifteen; a fixed split keeps the test deterministic."""
    return int(key) % 4 == 0


@pytest.fixture(scope="module")
def bootstrapped(django_db_setup, django_db_blocker, tmp_path_factory):
    """`bootstrap_demo --per-label 4 --image-size 32 --epochs 1` run twice, once for the module,
    inside a transaction that is rolled back; what the tests read is recorded before that."""
    root = tmp_path_factory.mktemp("bootstrap")
    credentials = root / "demo-credentials"
    (root / "media").mkdir()
    with (django_db_blocker.unblock(),
          override_settings(DEMO_CREDENTIALS_FILE=credentials, MEDIA_ROOT=root / "media",
                            MODEL_ROOT=root / "media" / "models"),
          # No pretrained weights in an empty torch cache: the starter model trains from scratch.
          mock.patch.dict(os.environ, {"TORCH_HOME": str(root / "torch")}),
          mock.patch.object(classifier_services, "is_validation", every_fourth_id_is_validation),
          transaction.atomic()):
        out, err = bootstrap()
        first = SimpleNamespace(
            out=out, err=err, counts=counts(), credentials=credentials.read_text(),
            mode=stat.S_IMODE(credentials.stat().st_mode),
            labels=sorted(Label.objects.values_list("name", flat=True)),
            users={u.username: u for u in User.objects.all()},
            groups={u.username: list(u.groups.values_list("name", flat=True)) for u in User.objects.all()},
            photos=list(Photo.objects.all()), runs=list(TrainingRun.objects.all()),
            versions=list(ModelVersion.objects.all()),
        )
        out, err = bootstrap()
        second = SimpleNamespace(out=out, err=err, counts=counts(), credentials=credentials.read_text())
        transaction.set_rollback(True)
    return SimpleNamespace(first=first, second=second)


DEMO_PER_LABEL = 4


def bootstrap():
    next_photo_ids_straddle_the_split(DEMO_PER_LABEL * len(LABELS))
    return run_command("bootstrap_demo", per_label=DEMO_PER_LABEL, image_size=32, epochs=1)


def next_photo_ids_straddle_the_split(count):
    """A dozen generated photos left the validation split empty, failing the starter model's
    training, about once in fifteen runs."""
    from classifier.training import is_validation

    start_photo_ids_where(lambda ids: len({is_validation(i) for i in ids}) == 2, count)


def counts():
    return {model.__name__: model.objects.count() for model in (User, Label, Photo, ModelVersion, TrainingRun)}


def test_bootstrap_demo_creates_the_labels_and_three_accounts_with_their_roles(bootstrapped):
    first = bootstrapped.first

    assert first.labels == sorted(LABELS)
    assert set(first.users) == {"admin", "expert", "member"}
    admin, expert, member = (first.users[name] for name in ("admin", "expert", "member"))
    assert admin.is_staff and admin.is_superuser
    assert first.groups["expert"] == [EXPERTS_GROUP]
    assert not (expert.is_staff or expert.is_superuser)
    assert not (member.is_staff or member.is_superuser or first.groups["member"])


def test_bootstrap_demo_writes_working_passwords_to_a_credentials_file_only_its_owner_can_read(bootstrapped):
    first = bootstrapped.first

    assert first.mode == 0o600
    lines = first.credentials.splitlines()
    assert [line.split()[0] for line in lines] == ["admin", "expert", "member"]
    for line in lines:
        username, password = line.split()
        assert first.users[username].check_password(password)
        assert password in first.out  # shown once, on the run that created it


def test_bootstrap_demo_imports_synthetic_photos_and_activates_a_starter_model(bootstrapped):
    first = bootstrapped.first

    assert len(first.photos) == 4 * len(LABELS)
    assert all(p.synthetic and p.status == Photo.Status.FINAL and p.label_source == Photo.LabelSource.IMPORT
               for p in first.photos)
    [run], [version] = first.runs, first.versions
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    assert run.options["image_size"] == 32 and run.options["epochs"] == 1
    assert version.is_active and version.training_run_id == run.id
    assert version.labels == sorted(LABELS)
    assert f"Starter model version {version.id} is active" in first.out


def test_running_bootstrap_demo_again_changes_nothing_and_prints_no_passwords(bootstrapped):
    first, second = bootstrapped.first, bootstrapped.second
    passwords = [line.split()[1] for line in first.credentials.splitlines()]

    assert second.counts == first.counts
    assert second.credentials == first.credentials
    assert not any(password in second.out + second.err for password in passwords)
    assert "Demo accounts" not in second.out and "Training the starter model" not in second.out
    assert "Generating" not in second.out


def test_bootstrap_demo_refuses_a_per_label_count_below_one(db, settings, tmp_path):
    settings.DEMO_CREDENTIALS_FILE = tmp_path / "credentials"  # never the repository's own
    with pytest.raises(CommandError, match="--per-label must be at least 1"):
        run_command("bootstrap_demo", per_label=0)
    assert not Photo.objects.exists()
    assert not settings.DEMO_CREDENTIALS_FILE.exists()


def test_bootstrap_demo_refuses_bad_starter_options_before_it_creates_anything(db, settings, tmp_path):
    settings.DEMO_CREDENTIALS_FILE = tmp_path / "credentials"  # never the repository's own
    with pytest.raises(CommandError, match="image_size must be between 16 and 1024"):
        run_command("bootstrap_demo", per_label=1, image_size=8)

    assert counts() == {"User": 0, "Label": 0, "Photo": 0, "ModelVersion": 0, "TrainingRun": 0}
    assert not settings.DEMO_CREDENTIALS_FILE.exists()


def test_bootstrap_demo_makes_an_existing_credentials_file_readable_by_its_owner_only(db, settings, tmp_path,
                                                                                        monkeypatch):
    credentials = tmp_path / "credentials"
    credentials.write_text("")
    credentials.chmod(0o644)
    settings.DEMO_CREDENTIALS_FILE = credentials
    monkeypatch.setattr(Command, "_photos", lambda self, admin, per_label: None)
    monkeypatch.setattr(Command, "_starter_model", lambda self, admin, options: None)

    run_command("bootstrap_demo", per_label=1)

    assert credentials.stat().st_mode & 0o777 == 0o600
    assert len(credentials.read_text().splitlines()) == 3


def test_bootstrap_demo_creates_no_account_whose_password_it_cannot_keep(db, settings, tmp_path):
    settings.DEMO_CREDENTIALS_FILE = tmp_path / "missing-folder" / "credentials"

    with pytest.raises(CommandError, match="Cannot write the demo passwords to .*No such file or directory"):
        run_command("bootstrap_demo", per_label=1)

    assert not User.objects.exists()


def test_bootstrap_demo_says_so_when_the_queued_run_it_trained_did_not_ask_to_be_activated(db, staff, settings,
                                                                                            tmp_path):
    settings.DEMO_CREDENTIALS_FILE = tmp_path / "credentials"
    queued = classifier_services.training_run_start(
        user=staff, options={"image_size": 32, "epochs": 1, "pretrained": False}, activate=False, enqueue=False)

    out, _ = bootstrap()

    version = ModelVersion.objects.get(training_run=queued)
    assert not version.is_active
    assert f"Starter model version {version.id} is not active (its run did not ask for it)" in out
