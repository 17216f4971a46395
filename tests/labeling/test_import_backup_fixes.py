"""Imports, exports, backups and uploads that must not lose or mislabel data quietly: a restore
into a database never migrated, import_photos on long folder names, duplicates and retired
labels, the site's export of photos whose file is gone, the backup's list of files it lacks,
and files above the upload limit."""

import csv
import io
import logging
import os
import subprocess
import sys
import threading
import uuid
import zipfile
from pathlib import Path
from unittest import mock

import psycopg
import pytest
from django.conf import settings as django_settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.handlers.wsgi import WSGIRequest
from django.core.management import call_command
from django.db import connection
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart

from labeling import backup, labelling, services
from labeling.models import Label, Photo
from tests.factories import LabelFactory, UserFactory, jpeg_bytes
from tests.threads import at_once, hold_locks_until_another_waits

REPOSITORY = Path(__file__).resolve().parents[2]


def run_command(*args, **options):
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


# --- restore into a database never migrated -------------------------------------------------


@pytest.fixture
def unmigrated_database_url():
    """A new, empty PostgreSQL database on the test server, dropped afterwards."""
    server = django_settings.DATABASES["default"]
    params = {"host": server["HOST"] or "127.0.0.1", "port": server["PORT"] or 5432, "user": server["USER"],
              "password": server["PASSWORD"] or None}
    name = f"plantsite_unmigrated_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dbname="postgres", autocommit=True, **params) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        password = f":{params['password']}" if params["password"] else ""
        yield f"postgres://{params['user']}{password}@{params['host']}:{params['port']}/{name}"
    finally:
        with psycopg.connect(dbname="postgres", autocommit=True, **params) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_restore_into_a_database_never_migrated_says_in_one_line_to_migrate_first(unmigrated_database_url,
                                                                                  tmp_path):
    archive = tmp_path / "site.tar.gz"
    archive.write_bytes(b"not read: the database is checked first")
    env = {**os.environ, "DATABASE_URL": unmigrated_database_url, "DJANGO_SETTINGS_MODULE": "plantsite.settings.test",
           "MEDIA_ROOT": str(tmp_path / "media")}

    result = subprocess.run([sys.executable, "manage.py", "restore", str(archive)], cwd=REPOSITORY, env=env,
                            capture_output=True, text=True, timeout=120)

    assert result.returncode == 1, result.stderr
    assert result.stderr.strip() == "CommandError: The database is not migrated: run `manage.py migrate` first."


# --- import_photos ----------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "tree"
    root.mkdir()
    return root


def photo_file(folder: Path, name: str, colour) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_bytes(jpeg_bytes(colour=colour))
    return path


def test_import_refuses_the_photos_of_a_folder_whose_label_name_would_be_too_long_and_goes_on(db, staff, tree,
                                                                                            sent_predictions):
    too_long = photo_file(tree / ("a" * 70), "x.jpg", (1, 2, 3))
    photo_file(tree / "rose", "y.jpg", (9, 9, 9))

    out, err = run_command("import_photos", str(tree))

    assert "Imported 1, skipped 0 duplicates, refused 1; new labels: rose." in out
    assert (f"refused {too_long}: the folder's name makes a label name of 70 characters. "
            f"{labelling.LABEL_NAME_RULE}") in err
    assert list(Label.objects.values_list("name", flat=True)) == ["rose"]
    assert Photo.objects.get().final_label.name == "rose"


def test_import_names_a_skipped_duplicate_at_the_default_verbosity(db, staff, tree, sent_predictions):
    photo_file(tree / "rose", "a.jpg", (1, 2, 3))
    again = photo_file(tree / "rose", "b.jpg", (1, 2, 3))

    out, _ = run_command("import_photos", str(tree))

    assert f"skipped {again}: duplicate of a photo already stored" in out
    assert Photo.objects.count() == 1


def test_import_refuses_the_photos_of_a_retired_labels_folder(db, staff, tree, sent_predictions):
    LabelFactory(name="rose", retired=True)
    refused = photo_file(tree / "rose", "a.jpg", (7, 2, 3))
    photo_file(tree / "tulip", "b.jpg", (2, 7, 3))

    out, err = run_command("import_photos", str(tree))

    assert f"refused {refused}: label rose is retired" in err
    assert "Imported 1, skipped 0 duplicates, refused 1; new labels: tulip." in out
    assert list(Photo.objects.values_list("final_label__name", flat=True)) == ["tulip"]


@pytest.mark.django_db(transaction=True)
def test_a_label_retired_while_an_import_gives_it_is_refused_not_given(tree, sent_predictions):
    assert connection.vendor == "postgresql", "row locks: see pytest.ini"
    UserFactory(username="staff", is_staff=True)
    rose = LabelFactory(name="rose")
    refused = photo_file(tree / "rose", "a.jpg", (7, 2, 3))
    label_locked, import_done = threading.Event(), threading.Event()

    def retiring_holds_the_label(label, photo_ids):  # label_update has locked and saved it by now
        label_locked.set()
        hold_locks_until_another_waits(or_until=import_done)
        return []

    def import_photos():
        try:
            assert label_locked.wait(timeout=10)
            return run_command("import_photos", str(tree))
        finally:
            import_done.set()

    with mock.patch("labeling.labelling._example_photos", side_effect=retiring_holds_the_label):
        _, (out, err) = at_once([lambda: labelling.label_update(label_id=rose.id, retired=True, example_ids=[]),
                                 import_photos])

    assert f"refused {refused}: label rose is retired" in err
    assert not Photo.objects.exists()


# --- the site's export ----------------------------------------------------------------------


def test_the_site_export_lists_the_photos_it_left_out_in_missing_csv_a_header_and_the_log(db, staff, api_for,
                                                                                        sent_predictions, caplog):
    rose = LabelFactory(name="rose")
    kept = services.photo_upload(owner=staff, fileobj=io.BytesIO(jpeg_bytes(colour=(1, 2, 3))), label=rose)
    lost = services.photo_upload(owner=staff, fileobj=io.BytesIO(jpeg_bytes(colour=(5, 2, 3))), label=rose)
    lost.image.storage.delete(lost.image.name)

    with caplog.at_level(logging.WARNING, logger="labeling.export"):
        response = api_for(staff).get("/api/v1/exports/dataset.zip")

    assert response.status_code == 200
    assert response["X-Export-Missing"] == "1"
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert sorted(archive.namelist()) == ["manifest.csv", "missing.csv", f"rose/photo-{kept.id}.jpg"]
    rows = list(csv.DictReader(io.StringIO(archive.read("missing.csv").decode())))
    assert rows == [{"photo": str(lost.id), "file": lost.image.name,
                     "why": "its file is missing from the media storage"}]
    assert f"left out 1 photos whose file is missing: [{lost.id}]" in caplog.text


def test_the_site_export_of_a_whole_set_says_none_is_missing(db, staff, api_for, sent_predictions):
    services.photo_upload(owner=staff, fileobj=io.BytesIO(jpeg_bytes()), label=LabelFactory(name="rose"))

    response = api_for(staff).get("/api/v1/exports/dataset.zip")

    assert response["X-Export-Missing"] == "0"
    assert "missing.csv" not in zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content))).namelist()


# --- backup: the files its rows need --------------------------------------------------------


def upload(owner, colour):
    return services.photo_upload(owner=owner, fileobj=io.BytesIO(jpeg_bytes(colour=colour)))


def test_a_photo_uploaded_after_the_backup_read_its_rows_is_not_reported_missing(db, member, tmp_path,
                                                                                 sent_predictions):
    upload(member, (1, 2, 3))
    listed = backup._files_to_back_up

    def listed_then_uploaded():
        found = listed()
        upload(member, (9, 9, 9))  # its row is not in the dump, nor its file in the archive
        return found

    with mock.patch.object(backup, "_files_to_back_up", listed_then_uploaded):
        report = backup.backup_create(tmp_path / "site.tar.gz")

    assert report.rows["labeling.photo"] == 1
    assert report.missing == []


def test_a_photo_deleted_after_the_backup_read_its_rows_is_reported_missing(db, member, media_root, tmp_path,
                                                                            sent_predictions):
    gone = upload(member, (1, 2, 3))
    upload(member, (9, 9, 9))
    listed = backup._files_to_back_up

    def deleted_then_listed():
        Photo.objects.filter(id=gone.id).delete()  # its row is in the dump already
        (media_root / gone.image.name).unlink(missing_ok=True)
        return listed()

    with mock.patch.object(backup, "_files_to_back_up", deleted_then_listed):
        report = backup.backup_create(tmp_path / "site.tar.gz")

    assert report.rows["labeling.photo"] == 2
    assert report.missing == [f"media/{gone.image.name}"]


# --- uploads above the limit ----------------------------------------------------------------


def multipart_request(files: dict) -> WSGIRequest:
    body = encode_multipart(BOUNDARY, files)
    return WSGIRequest({
        "REQUEST_METHOD": "POST", "PATH_INFO": "/api/v1/photos/", "SCRIPT_NAME": "", "SERVER_NAME": "testserver",
        "SERVER_PORT": "80", "wsgi.url_scheme": "http", "CONTENT_TYPE": MULTIPART_CONTENT,
        "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body),
    })


def test_no_more_of_an_uploaded_file_than_one_byte_over_the_limit_is_kept(settings):
    settings.UPLOAD_MAX_BYTES = 100_000
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 1_000  # past this Django keeps the files in temporary files
    request = multipart_request({"image": SimpleUploadedFile("big.jpg", b"x" * 3_000_000),
                                 "other": SimpleUploadedFile("small.jpg", b"y" * 100_000)})

    files = request.FILES

    assert files["image"].size == 100_001 and len(files["image"].read()) == 100_001
    assert files["other"].read() == b"y" * 100_000  # at the limit: whole


@pytest.mark.parametrize("path, fields", [("/api/v1/photos/", {}), ("/api/v1/imports/", {"label": "rose"})])
def test_an_upload_above_the_limit_is_refused_as_too_large_and_stores_nothing(db, staff, api_for, settings,
                                                                             media_root, path, fields):
    settings.UPLOAD_MAX_BYTES = 100_000
    LabelFactory(name="rose")
    big = SimpleUploadedFile("big.jpg", jpeg_bytes() + b"\0" * 3_000_000)

    response = api_for(staff).post(path, {"image": big, **fields}, format="multipart")

    assert response.status_code == 400
    assert "File too large (max 0.1 MB)." in str(response.json())
    assert not Photo.objects.exists()
    assert not list(media_root.rglob("*.jpg"))
