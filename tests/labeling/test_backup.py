"""`manage.py backup` and `manage.py restore`: the whole site in one archive, and back.

The round trip runs against committed rows (transactional_db): a site with accounts, labels,
uploaded photos, a prediction, an expert's decision, a training run and the active model
is backed up, the database is flushed and MEDIA_ROOT emptied, and the restore must bring back
every row and every file byte for byte, with a model the registry still accepts.
"""

import hashlib
import io
import json
import os
import shutil
import stat
import tarfile
from pathlib import Path
from unittest import mock

import pytest
from django.contrib.auth.models import Group, User
from django.core.files.base import ContentFile
from django.core.management import call_command
from django.core.management.base import CommandError
from django.core.serializers.base import DeserializationError
from rest_framework.authtoken.models import Token

from classifier.inference import file_sha256, model_cache
from classifier.models import ModelVersion, TrainingRun
from labeling import backup, services
from labeling.models import EXPERTS_GROUP, Label, Photo, Prediction, ReviewDecision
from tests.factories import PhotoFactory, PredictionFactory, TrainingRunFactory, UserFactory, jpeg_bytes


def media_files(root: Path) -> dict[str, str]:
    """relative path -> sha256 of every file under root."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def snapshot() -> dict:
    """Every row the backup is responsible for, as plain values."""
    return {
        "users": list(User.objects.order_by("id").values(
            "id", "username", "password", "is_staff", "is_superuser", "is_active", "email", "date_joined")),
        "memberships": sorted(User.groups.through.objects.values_list("user__username", "group__name")),
        "groups": list(Group.objects.order_by("name").values_list("name", flat=True)),
        "tokens": sorted(Token.objects.values_list("key", "user__username")),
        "labels": list(Label.objects.order_by("id").values()),
        "photos": list(Photo.objects.order_by("id").values()),
        "predictions": list(Prediction.objects.order_by("id").values()),
        "decisions": list(ReviewDecision.objects.order_by("id").values()),
        "training_runs": list(TrainingRun.objects.order_by("id").values()),
        "model_versions": list(ModelVersion.objects.order_by("id").values()),
    }


@pytest.fixture
def small_model(transactional_db, settings):
    """An active model version whose file is a few bytes: enough for the tests that are not
    about loading the learner (the real one is 45 MB and slows every archive down)."""
    settings.MODEL_ROOT.mkdir(parents=True, exist_ok=True)
    path = settings.MODEL_ROOT / "small.pkl"
    path.write_bytes(b"not a learner, but bytes with a sha256")
    for name in ("dieffenbachia", "monstera", "spider_plant"):
        Label.objects.get_or_create(name=name)
    return ModelVersion.objects.create(
        file=path.name, sha256=file_sha256(path), size=path.stat().st_size,
        labels=["dieffenbachia", "monstera", "spider_plant"], architecture="resnet18", image_size=32,
        is_active=True, metrics={"error_rate": 0.5})


@pytest.fixture
def site(small_model, settings, sent_predictions):
    return make_site(small_model, settings)


@pytest.fixture
def site_with_a_real_learner(transactional_db, active_model, settings, sent_predictions):
    return make_site(active_model, settings)


def make_site(model_version, settings):
    """A small working site: accounts, labels, photos with real image files, a prediction
    routed to review, an expert's decision on it, a training run and its active model."""
    active_model = model_version
    admin = UserFactory(username="admin", is_staff=True, is_superuser=True)
    expert = UserFactory(username="expert", expert=True)
    member = UserFactory(username="member")
    Token.objects.create(user=member)
    monstera = Label.objects.get(name="monstera")
    Label.objects.create(name="fern", description="Not in the model yet.")

    run = TrainingRunFactory(started_by=admin, total_epochs=1, epoch=1, progress=1.0,
                             metrics={"error_rate": 0.5}, history=[{"epoch": 0, "train_loss": 1.2}])
    active_model.training_run = run
    active_model.save()
    run.model_version = active_model
    run.save()
    (settings.MODEL_ROOT / "tiny-confusion.png").write_bytes(b"\x89PNG not really")

    uploaded = [services.photo_upload(owner=member, fileobj=ContentFile(jpeg_bytes(colour=(20 * i, 90, 40)),
                                                                         name=f"p{i}.jpg"))
                for i in range(3)]
    reviewed = uploaded[0]
    Photo.objects.filter(id=reviewed.id).update(status=Photo.Status.NEEDS_REVIEW)
    PredictionFactory(photo=reviewed, model_version=active_model, label=monstera, confidence=0.55, margin=0.1,
                      probabilities={"monstera": 0.55, "spider_plant": 0.45, "dieffenbachia": 0.0})
    services.review_decide(photo_id=reviewed.id, expert=expert, label_name="spider_plant", reason="Striped leaves.")
    PhotoFactory(owner=admin, status=Photo.Status.FINAL, final_label=monstera,
                 label_source=Photo.LabelSource.IMPORT, decided_by=Photo.DecidedBy.IMPORT,
                 image=ContentFile(jpeg_bytes(colour=(200, 10, 10)), name="imported.jpg"))
    return {"model_version": active_model}


def wipe(media_root):
    call_command("flush", interactive=False, verbosity=0)
    shutil.rmtree(media_root)
    media_root.mkdir()


# --- the round trip ------------------------------------------------------------------


def test_a_backup_restored_into_an_emptied_site_brings_back_every_row_and_every_file(
        site_with_a_real_learner, media_root, settings, tmp_path):
    archive = tmp_path / "site.tar.gz"
    before_rows, before_files = snapshot(), media_files(media_root)
    assert len(before_rows["photos"]) == 4 and len(before_rows["decisions"]) == 1
    assert any(name.startswith("models/") for name in before_files)

    call_command("backup", str(archive), verbosity=0)
    wipe(media_root)
    assert Photo.objects.count() == 0 and User.objects.count() == 0 and media_files(media_root) == {}
    call_command("restore", str(archive), verbosity=0)

    assert snapshot() == before_rows
    assert media_files(media_root) == before_files
    version = ModelVersion.objects.get(is_active=True)
    assert file_sha256(version.path) == version.sha256
    model_cache.clear()
    loaded = model_cache.get(version.id, version.path, version.sha256)  # the registry's check before unpickling
    assert loaded.labels == version.labels


def test_after_a_restore_new_rows_get_fresh_ids_and_logins_still_work(site, media_root, tmp_path, sent_predictions):
    archive = tmp_path / "site.tar.gz"
    highest = Photo.objects.order_by("-id").first().id
    call_command("backup", str(archive), verbosity=0)
    wipe(media_root)
    call_command("restore", str(archive), verbosity=0)

    photo = services.photo_upload(owner=User.objects.get(username="member"),
                                  fileobj=ContentFile(jpeg_bytes(colour=(1, 2, 3)), name="new.jpg"))

    assert photo.id > highest
    assert User.objects.get(username="member").check_password("pw-for-tests-1")
    assert User.objects.get(username="expert").groups.filter(name=EXPERTS_GROUP).exists()


def test_the_archive_holds_the_database_dump_a_manifest_and_every_media_file(site, media_root, tmp_path):
    archive = tmp_path / "site.tar.gz"

    report = backup.backup_create(archive)

    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        manifest = json.load(tar.extractfile("manifest.json"))
        dumped = {row["model"] for row in json.load(tar.extractfile("db.json"))}
    expected_files = {("models/" + n[len("models/"):]) if n.startswith("models/") else "media/" + n
                      for n in media_files(media_root)}
    assert names == {"manifest.json", "db.json"} | expected_files
    assert {f["name"] for f in manifest["files"]} == expected_files
    assert dumped == {"auth.user", "auth.group", "authtoken.token", "labeling.label", "labeling.photo",
                      "labeling.prediction", "labeling.reviewdecision", "classifier.trainingrun",
                      "classifier.modelversion"}
    assert report.files == len(expected_files)
    assert manifest["database"]["rows"]["labeling.photo"] == 4


def test_the_backup_leaves_out_content_types_permissions_and_sessions(site, tmp_path):
    archive = tmp_path / "site.tar.gz"
    backup.backup_create(archive)

    with tarfile.open(archive) as tar:
        models = {row["model"] for row in json.load(tar.extractfile("db.json"))}

    assert not models & {"contenttypes.contenttype", "auth.permission", "sessions.session", "admin.logentry"}


# --- refusals -----------------------------------------------------------------------


def test_restore_refuses_a_database_that_already_has_photos_and_changes_nothing(site, media_root, tmp_path):
    archive = tmp_path / "site.tar.gz"
    call_command("backup", str(archive), verbosity=0)
    PhotoFactory(owner=User.objects.get(username="member"))
    before_rows, before_files = snapshot(), media_files(media_root)

    with pytest.raises(CommandError, match=r"already holds 5 photos.*--force"):
        call_command("restore", str(archive), verbosity=0)

    assert snapshot() == before_rows
    assert media_files(media_root) == before_files


def test_restore_with_force_replaces_what_the_database_holds(site, media_root, tmp_path):
    archive = tmp_path / "site.tar.gz"
    call_command("backup", str(archive), verbosity=0)
    before_rows = snapshot()
    newcomer = UserFactory(username="newcomer")
    PhotoFactory(owner=newcomer)
    Label.objects.create(name="cactus")

    call_command("restore", str(archive), force=True, verbosity=0)

    assert snapshot() == before_rows
    assert not User.objects.filter(username="newcomer").exists()


def test_a_forced_restore_that_fails_halfway_leaves_the_sites_files_as_they_were(site, media_root, tmp_path,
                                                                                  settings):
    archive = tmp_path / "site.tar.gz"
    call_command("backup", str(archive), verbosity=0)
    # The site moves on: its model file (same name as the archive's) now holds other bytes, and
    # a new photo's file is not in the archive.
    (settings.MODEL_ROOT / "small.pkl").write_bytes(b"the site's model since the backup")
    PhotoFactory(owner=User.objects.get(username="member"))
    before_rows, before_files = snapshot(), media_files(media_root)
    copy = shutil.copyfile
    calls = []

    def disk_full_at_the_fourth_file(src, dst):
        calls.append(dst)
        if len(calls) == 4:
            Path(dst).write_bytes(b"half a fi")
            raise OSError(28, "No space left on device")
        return copy(src, dst)

    with mock.patch("labeling.backup.shutil.copyfile", side_effect=disk_full_at_the_fourth_file):
        with pytest.raises(CommandError, match="The files could not be put back, and no row was restored"):
            call_command("restore", str(archive), force=True, verbosity=0)

    assert len(calls) == 4
    assert snapshot() == before_rows
    assert media_files(media_root) == before_files


def test_a_forced_restore_puts_the_archives_files_over_the_sites_and_leaves_nothing_aside(site, media_root,
                                                                                         tmp_path, settings):
    archive = tmp_path / "site.tar.gz"
    call_command("backup", str(archive), verbosity=0)
    archived = media_files(media_root)
    (settings.MODEL_ROOT / "small.pkl").write_bytes(b"the site's model since the backup")

    call_command("restore", str(archive), force=True, verbosity=0)

    assert media_files(media_root) == archived
    assert ModelVersion.objects.get().sha256 == file_sha256(settings.MODEL_ROOT / "small.pkl")


def _archive_with(tmp_path, good_archive, extra_members):
    """A copy of a real backup with extra members appended: (TarInfo, bytes or None)."""
    bad = tmp_path / "bad.tar.gz"
    with tarfile.open(good_archive) as src, tarfile.open(bad, "w:gz") as dst:
        for member in src.getmembers():
            dst.addfile(member, src.extractfile(member))
        for info, data in extra_members:
            dst.addfile(info, io.BytesIO(data) if data is not None else None)
    return bad


def _file(name, data=b"owned"):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _link(name, target, kind=tarfile.SYMTYPE):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


@pytest.mark.parametrize("member, why", [
    (_file("../escaped.txt"), "leads out of its folder"),
    (_file("media/../../escaped.txt"), "leads out of its folder"),
    (_file("/tmp/plantsite-escaped.txt"), "is an absolute path"),
    (_link("media/photos/passwd", "/etc/passwd"), "not a regular file or folder"),
    (_link("media/photos/hard", "/etc/passwd", tarfile.LNKTYPE), "not a regular file or folder"),
    (_file("settings.py"), "not part of a Plantsite backup"),
])
def test_restore_refuses_an_archive_with_a_member_outside_its_folders_before_changing_anything(
        site, media_root, tmp_path, member, why):
    good = tmp_path / "site.tar.gz"
    call_command("backup", str(good), verbosity=0)
    bad = _archive_with(tmp_path, good, [member])
    wipe(media_root)

    with pytest.raises(CommandError, match=why):
        call_command("restore", str(bad), verbosity=0)

    assert Photo.objects.count() == 0 and User.objects.count() == 0
    assert media_files(media_root) == {}
    assert not (tmp_path / "escaped.txt").exists() and not Path("/tmp/plantsite-escaped.txt").exists()


def test_restore_refuses_an_archive_whose_file_does_not_match_its_manifest(site, media_root, tmp_path):
    good = tmp_path / "site.tar.gz"
    call_command("backup", str(good), verbosity=0)
    tampered = tmp_path / "tampered.tar.gz"
    with tarfile.open(good) as src, tarfile.open(tampered, "w:gz") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read()
            if member.name.startswith("models/") and member.name.endswith(".pkl"):
                data = data[:-1] + bytes([data[-1] ^ 1])
            member.size = len(data)
            dst.addfile(member, io.BytesIO(data))
    wipe(media_root)

    with pytest.raises(CommandError, match=r"models/small\.pkl in the archive does not match its recorded sha256"):
        call_command("restore", str(tampered), verbosity=0)

    assert ModelVersion.objects.count() == 0 and media_files(media_root) == {}


def test_restore_refuses_a_file_that_is_not_a_backup(db, tmp_path):
    not_a_backup = tmp_path / "notes.tar.gz"
    not_a_backup.write_bytes(b"just text")

    with pytest.raises(CommandError, match="is not a readable .tar.gz archive"):
        call_command("restore", str(not_a_backup), verbosity=0)


def test_restore_refuses_a_backup_cut_short_with_a_clear_error_and_changes_nothing(site, media_root, tmp_path):
    archive = tmp_path / "site.tar.gz"
    backup.backup_create(archive)
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    photos_before = Photo.objects.count()

    with pytest.raises(CommandError, match="is damaged or incomplete"):
        call_command("restore", str(cut), "--force", verbosity=0)

    assert Photo.objects.count() == photos_before


def test_a_backup_is_readable_by_its_owner_only_whatever_the_umask(site, tmp_path):
    """It holds every password hash and API token."""
    archive = tmp_path / "site.tar.gz"
    old = os.umask(0o022)
    try:
        backup.backup_create(archive)
    finally:
        os.umask(old)

    assert stat.S_IMODE(archive.stat().st_mode) == 0o600


def test_photos_behind_a_folder_link_are_backed_up(site, media_root, tmp_path):
    """MEDIA_ROOT/photos may be a link to a larger disk."""
    before = {f"media/{name}" for name in media_files(media_root) if name.startswith("photos/")}
    elsewhere = tmp_path / "big-disk" / "photos"
    shutil.move(media_root / "photos", elsewhere)
    (media_root / "photos").symlink_to(elsewhere, target_is_directory=True)

    report = backup.backup_create(tmp_path / "site.tar.gz")

    with tarfile.open(tmp_path / "site.tar.gz") as tar:
        names = set(tar.getnames())
    assert before and before <= names
    assert report.missing == []


def test_a_backup_names_the_files_its_rows_need_but_it_could_not_hold(site, media_root, tmp_path):
    photo = Photo.objects.exclude(image="").first()
    (media_root / photo.image.name).unlink()  # lost from the disk

    err = io.StringIO()
    call_command("backup", str(tmp_path / "site.tar.gz"), stdout=io.StringIO(), stderr=err)

    assert f"media/{photo.image.name}" in err.getvalue()
    assert "1 file(s) that the database names are not in the backup" in err.getvalue()


def test_backup_refuses_a_path_in_a_folder_that_does_not_exist(db, tmp_path):
    with pytest.raises(CommandError, match="does not exist"):
        call_command("backup", str(tmp_path / "nowhere" / "site.tar.gz"), verbosity=0)


def test_backup_refuses_to_write_inside_the_folders_it_copies_or_onto_a_folder(site, media_root, tmp_path, settings):
    for inside in (media_root / "site.tar.gz", settings.MODEL_ROOT / "site.tar.gz"):
        with pytest.raises(CommandError, match="which the backup copies; write it somewhere else"):
            call_command("backup", str(inside), verbosity=0)
        assert not inside.exists()
    with pytest.raises(CommandError, match="is a folder; name the archive to write"):
        call_command("backup", str(tmp_path), verbosity=0)


def test_a_backup_that_cannot_be_written_says_why_in_one_line(site, tmp_path, monkeypatch):
    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("labeling.backup._add_file", disk_full)

    with pytest.raises(CommandError, match=r"The backup could not be written: \[Errno 28\] No space left on device"):
        call_command("backup", str(tmp_path / "site.tar.gz"), verbosity=0)
    assert list(tmp_path.glob("*site.tar.gz*")) == []


def _rewritten(tmp_path, good, name, change):
    """A copy of the archive `good` with the member `name`'s bytes passed through `change`."""
    out = tmp_path / f"changed-{name.replace('/', '_')}.tar.gz"
    with tarfile.open(good) as src, tarfile.open(out, "w:gz") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read()
            if member.name == name:
                data = change(data)
            member.size = len(data)
            dst.addfile(member, io.BytesIO(data))
    return out


@pytest.mark.parametrize("manifest", [b"{not json", b'{"format": "plantsite-backup", "version": 1}', b"[]"])
def test_restore_says_in_one_line_that_a_manifest_is_damaged(site, media_root, tmp_path, manifest):
    good = tmp_path / "site.tar.gz"
    call_command("backup", str(good), verbosity=0)
    bad = _rewritten(tmp_path, good, backup.MANIFEST, lambda data: manifest)
    wipe(media_root)

    with pytest.raises(CommandError, match="is damaged|is not a version"):
        call_command("restore", str(bad), verbosity=0)

    assert Photo.objects.count() == 0


def test_restore_of_rows_this_code_cannot_load_restores_none_and_says_why(site, media_root, tmp_path):
    good = tmp_path / "site.tar.gz"
    call_command("backup", str(good), verbosity=0)
    wipe(media_root)

    with mock.patch("labeling.backup.call_command", side_effect=DeserializationError("no field 'colour'")):
        with pytest.raises(CommandError, match="The rows could not be restored, and none was: no field 'colour'"):
            call_command("restore", str(good), verbosity=0)
    with mock.patch("labeling.backup.shutil.copyfile", side_effect=OSError(28, "No space left on device")):
        with pytest.raises(CommandError, match="The files could not be put back, and no row was restored"):
            call_command("restore", str(good), verbosity=0)

    assert Photo.objects.count() == 0 and User.objects.count() == 0


def test_restore_into_a_database_that_is_not_migrated_says_to_migrate_first(db, tmp_path):
    archive = tmp_path / "site.tar.gz"
    archive.write_bytes(b"")

    with mock.patch("labeling.backup._unapplied_migrations", return_value=["labeling.0001_initial"]):
        with pytest.raises(CommandError, match="The database is not migrated: run `manage.py migrate` first"):
            call_command("restore", str(archive), verbosity=0)
