"""The data set export: the zip's layout and manifest, its download, the command, and the round
trip (export, import into an empty site, the same labelled set) that fastai reads."""

import csv
import hashlib
import importlib
import io
import zipfile
from collections import Counter
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from PIL import Image

from labeling import export, labelling, services
from labeling.models import (
    Label,
    LabellingAssignment,
    LabelVote,
    Photo,
    PhotoEvent,
    Prediction,
    ReviewDecision,
)
from labeling.review import review_decide
from tests.factories import LabelFactory, UserFactory
from tests.paths import FLOWERS as FLOWERS_DIR

FLOWERS = sorted((FLOWERS_DIR / "daisy").glob("*.jpg"))[:2]


@pytest.fixture(autouse=True)
def no_broker():
    with mock.patch("labeling.tasks.photo_predict_task.delay"):
        yield


def png_bytes(seed, size=(40, 30)):
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def waiting(owner, data):
    photo = services.photo_upload(owner=owner, fileobj=io.BytesIO(data))
    photo.route_to_review("No model is active yet: an expert will decide.")
    photo.save()
    return photo


@pytest.fixture
def site(db, staff, expert, member):
    """Photos labelled every way, and some that are not part of the data set."""
    monstera, spider, aloe = (LabelFactory(name=n) for n in ("monstera", "spider_plant", "aloe-vera"))
    ann, bob = UserFactory(username="ann"), UserFactory(username="bob")
    photos = {}
    for i, path in enumerate(FLOWERS):
        photos[f"imported_jpeg_{i}"] = services.photo_upload(owner=staff, fileobj=open(path, "rb"), label=monstera)
    photos["imported_png"] = services.photo_upload(owner=staff, fileobj=io.BytesIO(png_bytes(1)), label=spider)
    photos["hyphenated"] = services.photo_upload(owner=staff, fileobj=io.BytesIO(png_bytes(2)), label=aloe)
    consensus = waiting(member, png_bytes(3))
    for user in (ann, bob):
        assert labelling.labelling_next(user) == consensus
        labelling.label_vote(photo_id=consensus.id, user=user, label_name="spider_plant")
    photos["consensus"] = consensus
    decided = waiting(member, png_bytes(4))
    review_decide(photo_id=decided.id, expert=expert, label_name="monstera")
    photos["expert"] = decided
    model = waiting(member, png_bytes(5))
    Photo.objects.filter(id=model.id).update(status=Photo.Status.FINAL, final_label=monstera,
                                             label_source=Photo.LabelSource.MODEL, decided_by=Photo.DecidedBy.MODEL)
    photos["model"] = model
    excluded = services.photo_upload(owner=staff, fileobj=io.BytesIO(png_bytes(6)), label=monstera)
    Photo.objects.filter(id=excluded.id).update(excluded_from_training=True)
    rejected = waiting(member, png_bytes(7))
    review_decide(photo_id=rejected.id, expert=expert, reject=True, reason="A cat.")
    waiting(member, png_bytes(8))  # still undecided
    for photo in photos.values():
        photo.refresh_from_db()
    return photos


def human_verified(site):
    return {k: p for k, p in site.items() if k != "model"}


def stored_bytes(photo):
    with photo.image.open("rb") as fh:
        return fh.read()


def pixels(photo):
    with photo.image.open("rb") as fh:
        return np.asarray(Image.open(fh).convert("RGB"), dtype=np.int16)


def test_the_zip_has_a_folder_per_label_and_a_manifest(site, tmp_path):
    path = tmp_path / "dataset.zip"
    summary = export.export_dataset_to_path(path)

    expected = human_verified(site)
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        manifest = list(csv.DictReader(io.StringIO(archive.read("manifest.csv").decode())))
        for photo in expected.values():
            name = f"{photo.final_label.name}/photo-{photo.id}{Path(photo.image.name).suffix}"
            assert archive.read(name) == stored_bytes(photo)  # byte for byte

    assert names == {"manifest.csv"} | {f"{p.final_label.name}/photo-{p.id}{Path(p.image.name).suffix}"
                                        for p in expected.values()}
    assert summary.total == len(expected) and summary.counts == Counter(
        {"monstera": 3, "spider_plant": 2, "aloe-vera": 1})
    assert list(manifest[0]) == ["file", "label", "source", "who", "when", "agreement", "synthetic"]
    rows = {row["file"].split("photo-")[1].split(".")[0]: row for row in manifest}
    consensus = rows[str(site["consensus"].id)]
    assert (consensus["label"], consensus["source"], consensus["who"], consensus["agreement"]) == (
        "spider_plant", "consensus", "ann;bob", "2/2")
    assert consensus["when"] == site["consensus"].decided_at.isoformat()
    decided = rows[str(site["expert"].id)]
    assert (decided["source"], decided["who"], decided["agreement"]) == ("expert", "expert", "")
    imported = rows[str(site["imported_png"].id)]
    assert (imported["source"], imported["who"]) == ("import", "staff")


def test_model_labels_are_left_out_unless_asked_for(site, tmp_path):
    summary = export.export_dataset_to_path(tmp_path / "with-model.zip", include_model=True)

    with zipfile.ZipFile(tmp_path / "with-model.zip") as archive:
        manifest = list(csv.DictReader(io.StringIO(archive.read("manifest.csv").decode())))
    model_row = next(r for r in manifest if r["file"].endswith(f"photo-{site['model'].id}.png"))
    assert model_row["source"] == "model" and model_row["label"] == "monstera"
    assert summary.total == len(site)


def test_export_then_import_into_an_empty_site_gives_back_the_same_labelled_set(site, tmp_path, settings, staff,
                                                                               expert):
    expected = human_verified(site)
    before = {hashlib.sha256(stored_bytes(p)).hexdigest(): p for p in expected.values()}
    labelled_before = {(sha, p.final_label.name) for sha, p in before.items()}
    pixels_before = {sha: pixels(p) for sha, p in before.items()}
    provenance_before = {sha: (p.label_source, p.decided_by, p.decided_at) for sha, p in before.items()}
    call_command("export_dataset", str(tmp_path / "dataset.zip"), stdout=io.StringIO())
    unzipped = tmp_path / "unzipped"
    assert export.safe_extract(tmp_path / "dataset.zip", unzipped, max_member_bytes=20 * 1024 * 1024) == []

    # An empty site: no photos, no labels, new storage.
    for model in (LabelVote, LabellingAssignment, ReviewDecision, PhotoEvent, Prediction):
        model.objects.all().delete()
    Label.examples.through.objects.all().delete()
    Photo.objects.all().delete()
    Label.objects.all().delete()
    settings.MEDIA_ROOT = tmp_path / "empty-site-media"
    settings.MEDIA_ROOT.mkdir()

    out = io.StringIO()
    call_command("import_photos", str(unzipped), owner="staff", stdout=out)

    after = list(Photo.objects.select_related("final_label"))
    assert "Imported 6, skipped 0 duplicates, refused 0" in out.getvalue()
    assert {(p.sha256, p.final_label.name) for p in after} == labelled_before
    assert Counter(p.final_label.name for p in after) == Counter(label for _, label in labelled_before)
    assert sorted(Label.objects.values_list("name", flat=True)) == ["aloe-vera", "monstera", "spider_plant"]
    for photo in after:
        assert str(photo.image.path).startswith(str(settings.MEDIA_ROOT))
        old, new = pixels_before[photo.sha256], pixels(photo)
        assert old.shape == new.shape
        if photo.image.name.endswith(".png"):
            assert np.array_equal(old, new)  # lossless: the very same pixels
        else:
            assert np.abs(old - new).mean() < 2.0  # a JPEG is re-encoded once more: the same image
        source, decided_by, decided_at = provenance_before[photo.sha256]
        assert (photo.status, photo.label_source, photo.decided_by, photo.decided_at) == (
            "final", source, decided_by, decided_at)
        if source == "expert":
            assert photo.reviewed_by == expert

    # Importing the same export again adds nothing.
    again = io.StringIO()
    call_command("import_photos", str(unzipped), owner="staff", stdout=again)
    assert "Imported 0, skipped 6 duplicates" in again.getvalue()


def test_fastai_reads_the_unzipped_export(site, tmp_path):
    from fastai.vision.all import (
        CategoryBlock,
        DataBlock,
        ImageBlock,
        RandomSplitter,
        get_image_files,
        parent_label,
    )

    export.export_dataset_to_path(tmp_path / "dataset.zip")
    path = tmp_path / "unzipped"
    assert export.safe_extract(tmp_path / "dataset.zip", path, max_member_bytes=20 * 1024 * 1024) == []

    dblock = DataBlock(blocks=(ImageBlock, CategoryBlock), get_items=get_image_files, get_y=parent_label,
                       splitter=RandomSplitter(seed=0))
    dsets = dblock.datasets(path)

    assert list(dsets.vocab) == ["aloe-vera", "monstera", "spider_plant"]
    assert len(dsets.train) + len(dsets.valid) == len(human_verified(site))
    image, category = dsets.train[0]
    assert image.size[0] > 0 and dsets.vocab[int(category)] in dsets.vocab
    assert sorted(dsets.vocab[int(y)] for _, y in list(dsets.train) + list(dsets.valid)) == sorted(
        p.final_label.name for p in human_verified(site).values())


def test_the_command_imports_the_zip_itself(site, tmp_path, settings):
    call_command("export_dataset", str(tmp_path / "dataset.zip"), stdout=io.StringIO())
    Photo.objects.filter(id__in=[p.id for p in site.values()]).update(sha256="0" * 64, stored_sha256="")  # not duplicates

    out = io.StringIO()
    call_command("import_photos", str(tmp_path / "dataset.zip"), owner="staff", stdout=out)

    assert "Imported 6," in out.getvalue()


def test_importing_the_sites_own_export_again_finds_every_photo_a_duplicate(site, tmp_path):
    call_command("export_dataset", str(tmp_path / "dataset.zip"), stdout=io.StringIO())
    before = Photo.objects.count()

    out = io.StringIO()
    call_command("import_photos", str(tmp_path / "dataset.zip"), owner="staff", stdout=out)

    assert "Imported 0, skipped 6 duplicates" in out.getvalue()
    assert Photo.objects.count() == before


def test_a_zip_that_would_write_outside_the_folder_is_refused(db, staff, tmp_path):
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as archive:
        archive.writestr("../escaped.jpg", b"x")

    with pytest.raises(CommandError, match="outside the folder"):
        call_command("import_photos", str(evil), owner="staff", stdout=io.StringIO())
    assert not (tmp_path / "escaped.jpg").exists()


def test_a_zip_bomb_member_is_left_out_without_being_inflated(db, staff, tmp_path, settings):
    settings.UPLOAD_MAX_BYTES = 1024 * 1024
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("rose/a.jpg", b"\0" * (50 * 1024 * 1024))  # 50 MB of zeros: about 50 KB zipped
        archive.writestr("rose/b.png", png_bytes(11))
    assert bomb.stat().st_size < 200 * 1024
    unzipped = tmp_path / "unzipped"

    left_out = export.safe_extract(bomb, unzipped, max_member_bytes=settings.UPLOAD_MAX_BYTES)

    assert left_out == [("rose/a.jpg", "larger than the 1 MB upload limit")]
    assert not (unzipped / "rose" / "a.jpg").exists() and (unzipped / "rose" / "b.png").exists()
    err = io.StringIO()
    call_command("import_photos", str(bomb), owner="staff", stdout=io.StringIO(), stderr=err)
    assert "rose/a.jpg: larger than the 1 MB upload limit" in err.getvalue()
    assert Photo.objects.count() == 1


def test_an_encrypted_member_is_left_out_with_its_reason(db, staff, tmp_path, settings):
    archive_path = tmp_path / "locked.zip"
    with zipfile.ZipFile(archive_path, "w") as archive:
        archive.writestr("rose/a.png", png_bytes(11))
    data = bytearray(archive_path.read_bytes())
    for signature, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # mark the entry encrypted
        at = data.index(signature)
        data[at + flag_at] |= 0x01
    archive_path.write_bytes(bytes(data))

    left_out = export.safe_extract(archive_path, tmp_path / "out", max_member_bytes=settings.UPLOAD_MAX_BYTES)

    assert left_out == [("rose/a.png", "encrypted")]


def test_a_manifest_label_that_could_not_be_a_folder_is_not_taken(db, staff, tmp_path):
    folder = tmp_path / "export" / "etcx"
    folder.mkdir(parents=True)
    (folder / "a.png").write_bytes(png_bytes(11))
    (tmp_path / "export" / "manifest.csv").write_text("file,label,source,who,when,agreement\n"
                                                      "etcx/a.png,../../etc/x,import,,,\n")

    call_command("import_photos", str(tmp_path / "export"), owner="staff", stdout=io.StringIO())

    assert list(Label.objects.values_list("name", flat=True)) == ["etcx"]
    call_command("export_dataset", str(tmp_path / "again.zip"), stdout=io.StringIO())
    with zipfile.ZipFile(tmp_path / "again.zip") as archive:
        assert [n for n in archive.namelist() if n != "manifest.csv"] == [f"etcx/photo-{Photo.objects.get().id}.png"]


def test_a_label_that_is_not_a_folder_name_is_exported_under_its_slug(db, staff, tmp_path):
    photo = services.photo_upload(owner=staff, fileobj=io.BytesIO(png_bytes(11)), label=LabelFactory(name="../a/b"))

    call_command("export_dataset", str(tmp_path / "out.zip"), stdout=io.StringIO())

    with zipfile.ZipFile(tmp_path / "out.zip") as archive:
        assert f"ab/photo-{photo.id}.png" in archive.namelist()


def test_a_refused_import_creates_no_label(db, staff, tmp_path):
    folder = tmp_path / "plain" / "rose"
    folder.mkdir(parents=True)
    (folder / "a.png").write_bytes(b"not an image at all")

    err = io.StringIO()
    call_command("import_photos", str(tmp_path / "plain"), owner="staff", stdout=io.StringIO(), stderr=err)

    assert "refused" in err.getvalue()
    assert not Label.objects.filter(name="rose").exists()


def test_export_dataset_wants_a_zip_path(db):
    with pytest.raises(CommandError, match="must end with .zip"):
        call_command("export_dataset", "/tmp/dataset.tar")


def test_a_folder_without_a_manifest_still_imports_its_labels(db, staff, tmp_path):
    folder = tmp_path / "plain" / "monstera"
    folder.mkdir(parents=True)
    (folder / "a.png").write_bytes(png_bytes(11))
    (tmp_path / "plain" / "manifest.csv").write_bytes(b"\xff\xfe garbage")

    call_command("import_photos", str(tmp_path / "plain"), owner="staff", stdout=io.StringIO())

    photo = Photo.objects.get()
    assert (photo.final_label.name, photo.label_source, photo.decided_by) == ("monstera", "import", "import")


def test_the_download_for_staff(site, staff, api_for):
    response = api_for(staff).get("/api/v1/exports/dataset.zip?include_model=true")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"].startswith('attachment; filename="plantsite-dataset-')
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert len([n for n in archive.namelist() if n != "manifest.csv"]) == len(site)
    assert int(response["Content-Length"]) == len(archive.fp.getvalue())


def test_the_export_page_counts_what_the_zip_holds(site, staff, client):
    client.force_login(staff)

    page = client.get("/export/").content.decode()

    assert '<tr data-label="monstera"><td>monstera</td><td>3</td><td>4</td></tr>' in page
    assert 'action="/api/v1/exports/dataset.zip"' in page


def test_photos_stored_before_stored_sha256_get_it_from_their_files(site, tmp_path):
    from django.apps import apps

    fill = importlib.import_module("labeling.migrations.0009_fill_stored_sha256").fill_stored_sha256
    old = list(site.values())
    Photo.objects.filter(id__in=[p.id for p in old]).update(stored_sha256="")  # as 0008 left them
    gone = old[0]
    gone.image.storage.delete(gone.image.name)

    fill(apps, None)

    for photo in old[1:]:
        with photo.image.open("rb") as f:
            assert Photo.objects.get(id=photo.id).stored_sha256 == hashlib.sha256(f.read()).hexdigest()
    assert Photo.objects.get(id=gone.id).stored_sha256 == ""  # no file: nothing to compare


def test_after_the_fill_importing_the_export_again_finds_the_old_photos_duplicates(site, tmp_path):
    from django.apps import apps

    call_command("export_dataset", str(tmp_path / "dataset.zip"), stdout=io.StringIO())
    Photo.objects.filter(id__in=[p.id for p in site.values()]).update(sha256="0" * 64, stored_sha256="")
    importlib.import_module("labeling.migrations.0009_fill_stored_sha256").fill_stored_sha256(apps, None)

    out = io.StringIO()
    call_command("import_photos", str(tmp_path / "dataset.zip"), owner="staff", stdout=out)

    assert "Imported 0, skipped 6 duplicates" in out.getvalue()


def test_a_generated_image_stays_marked_as_generated_through_export_and_import(db, staff, tmp_path):
    monstera = LabelFactory(name="monstera")
    real = services.photo_upload(owner=staff, fileobj=io.BytesIO(png_bytes(1)), label=monstera)
    generated = services.photo_upload(owner=staff, fileobj=io.BytesIO(png_bytes(2)), label=monstera, synthetic=True)
    export.export_dataset_to_path(tmp_path / "dataset.zip")
    assert export.safe_extract(tmp_path / "dataset.zip", tmp_path / "unzipped", max_member_bytes=10 ** 7) == []
    rows = {row["file"]: row["synthetic"] for row in export.read_manifest(tmp_path / "unzipped").values()}
    assert rows == {f"monstera/photo-{real.id}.png": "", f"monstera/photo-{generated.id}.png": "1"}
    Photo.objects.all().delete()

    call_command("import_photos", str(tmp_path / "unzipped"), owner="staff", stdout=io.StringIO())

    synthetic_by_pixels = {pixels(photo).tobytes(): photo.synthetic for photo in Photo.objects.all()}
    assert synthetic_by_pixels == {pixels(real).tobytes(): False, pixels(generated).tobytes(): True}
