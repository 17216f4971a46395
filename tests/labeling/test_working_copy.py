"""The working copy: a bounded-size JPEG stored next to a large upload, which inference and
training read instead of the 12-megapixel original. The original stays what is served."""

import io
from pathlib import Path
from unittest import mock

import pytest
from PIL import Image, ImageDraw

from classifier.inference import LoadedModel, model_cache
from labeling import services
from labeling.models import Photo
from tests.factories import jpeg_bytes
from tests.paths import FLOWERS

TWELVE_MP = (4000, 3000)


def files_under(root):
    return sorted(p for p in root.rglob("*") if p.is_file())


def twelve_megapixel_jpeg():
    """Solid colours and a few shapes: quick to make and to encode."""
    im = Image.new("RGB", TWELVE_MP, (60, 130, 70))
    draw = ImageDraw.Draw(im)
    draw.rectangle((400, 300, 2200, 1900), fill=(200, 40, 60))
    draw.ellipse((2400, 800, 3700, 2700), fill=(240, 220, 40))
    draw.polygon([(100, 2900), (1500, 2000), (2000, 2950)], fill=(30, 60, 200))
    out = io.BytesIO()
    im.save(out, "JPEG", quality=90)
    return out.getvalue()


@pytest.fixture
def predict_calls(monkeypatch):
    """The paths of every prediction, predicting as usual."""
    calls = []
    original = LoadedModel.predict_paths_with_features

    def spy(self, paths):
        calls.append([str(p) for p in paths])
        return original(self, paths)

    monkeypatch.setattr(LoadedModel, "predict_paths_with_features", spy)
    return calls


def test_a_12_megapixel_upload_stores_a_bounded_working_copy_next_to_the_original(member, media_root, sent_predictions):
    photo = services.photo_upload(owner=member, fileobj=io.BytesIO(twelve_megapixel_jpeg()))

    photo.refresh_from_db()
    stem = photo.image.name.rsplit(".", 1)[0]
    assert photo.working_image.name == f"{stem}-work.jpg"
    assert (photo.width, photo.height) == TWELVE_MP
    with Image.open(photo.image.path) as original:
        assert original.size == TWELVE_MP
    with Image.open(photo.working_image.path) as work:
        assert work.format == "JPEG"
        assert max(work.size) <= 1024
        assert work.size == (1024, 768)  # the aspect ratio is kept
    assert photo.model_input_path == photo.working_image.path
    assert len(files_under(media_root)) == 2


def test_the_longer_side_follows_the_setting(member, settings, sent_predictions):
    settings.WORKING_COPY_MAX_SIDE = 500
    photo = services.photo_upload(owner=member, fileobj=io.BytesIO(jpeg_bytes(size=(800, 1200))))

    with Image.open(photo.working_image.path) as work:
        assert work.size == (333, 500)


def test_a_small_upload_stores_no_working_copy(member, media_root, sent_predictions):
    photo = services.photo_upload(owner=member, fileobj=io.BytesIO(jpeg_bytes(size=(1024, 700))))

    photo.refresh_from_db()
    assert not photo.working_image
    assert photo.model_input_path == photo.image.path
    assert files_under(media_root) == [Path(photo.image.path)]


def test_a_png_with_alpha_gets_a_jpeg_working_copy(member, sent_predictions):
    im = Image.new("RGBA", (2000, 1000), (0, 200, 0, 128))
    out = io.BytesIO()
    im.save(out, "PNG")
    photo = services.photo_upload(owner=member, fileobj=io.BytesIO(out.getvalue()))

    assert photo.image.name.endswith(".png")
    with Image.open(photo.working_image.path) as work:
        assert (work.format, work.mode, work.size) == ("JPEG", "RGB", (1024, 512))


def test_a_failed_row_leaves_neither_the_original_nor_the_working_copy(member, media_root, sent_predictions):
    with mock.patch.object(Photo, "save", side_effect=RuntimeError("database went away")):
        with pytest.raises(RuntimeError):
            services.photo_upload(owner=member, fileobj=io.BytesIO(twelve_megapixel_jpeg()))

    assert files_under(media_root) == []
    assert not Photo.objects.exists()


def test_a_working_copy_that_cannot_be_made_leaves_no_original(member, media_root, sent_predictions):
    with mock.patch.object(services, "working_copy", side_effect=OSError("disk full")):
        with pytest.raises(OSError):
            services.photo_upload(owner=member, fileobj=io.BytesIO(twelve_megapixel_jpeg()))

    assert files_under(media_root) == []


def test_the_prediction_reads_the_working_copy(active_model, member, predict_calls, sent_predictions):
    photo = services.photo_upload(owner=member, fileobj=io.BytesIO(twelve_megapixel_jpeg()))

    services.photo_predict(photo.id)

    photo.refresh_from_db()
    assert predict_calls == [[photo.working_image.path]]
    assert photo.status != Photo.Status.QUEUED
    assert photo.prediction.model_version == active_model


def test_the_shadow_version_reads_the_working_copy_too(active_model, member, predict_calls, sent_predictions, settings):
    import shutil

    from classifier import services as classifier_services
    from classifier.models import ModelVersion

    shutil.copy(active_model.path, settings.MODEL_ROOT / "shadow.pkl")
    shadow = classifier_services.model_version_shadow(version_id=ModelVersion.objects.create(
        file="shadow.pkl", sha256=active_model.sha256, size=active_model.size, labels=active_model.labels,
        architecture="resnet18", image_size=32, metrics=active_model.metrics).id)
    photo = services.photo_upload(owner=member, fileobj=io.BytesIO(twelve_megapixel_jpeg()))

    services.photo_predict(photo.id)

    assert predict_calls == [[photo.working_image.path], [photo.working_image.path]]
    assert shadow.shadow_predictions.filter(photo=photo).exists()


def test_the_photo_file_view_still_serves_the_original(client, member, sent_predictions):
    original = twelve_megapixel_jpeg()
    photo = services.photo_upload(owner=member, fileobj=io.BytesIO(original))
    client.force_login(member)

    response = client.get(f"/media/{photo.image.name}")
    served = b"".join(response.streaming_content)

    assert response.status_code == 200
    assert served == Path(photo.image.path).read_bytes()
    with Image.open(io.BytesIO(served)) as im:
        assert im.size == TWELVE_MP
    assert client.get(f"/media/{photo.working_image.name}").status_code == 404


def _flower_photos(per_label=1):
    chosen = []
    for label_dir in sorted(p for p in FLOWERS.iterdir() if p.is_dir()):
        chosen += sorted(label_dir.glob("*.jpg"))[:per_label]
    return chosen


def test_top1_on_the_working_copy_equals_top1_on_the_12_megapixel_original(active_model, member, sent_predictions):
    """Real photos (read from the shared data set, never copied into the repository), upscaled to
    12 MP as a phone would deliver them: the model's answer does not change."""
    model = model_cache.get(active_model.id, active_model.path, active_model.sha256)
    photos = []
    for path in _flower_photos():
        with Image.open(path) as im:
            big = im.convert("RGB").resize(TWELVE_MP, Image.Resampling.BICUBIC)
        out = io.BytesIO()
        big.save(out, "JPEG", quality=90)
        photos.append(services.photo_upload(owner=member, fileobj=io.BytesIO(out.getvalue())))
    assert len(photos) >= 4

    on_original = model.predict_paths([p.image.path for p in photos])
    # fastai's own get_preds on the full-size original: the validation answers the model was built for.
    on_fastai = model._predict_paths_with_fastai([p.image.path for p in photos])
    on_working = model.predict_paths([p.working_image.path for p in photos])

    for original, reference, working in zip(on_original, on_fastai, on_working):
        assert max(original, key=original.get) == max(working, key=working.get)
        assert max(reference, key=reference.get) == max(working, key=working.get)
        # The tiny model is unsure of flowers, so top-1 alone proves little: the probabilities
        # themselves barely move.
        assert all(abs(working[k] - reference[k]) < 0.02 for k in reference)
        assert all(abs(working[k] - original[k]) < 0.02 for k in original)


def test_training_reads_the_working_copy_when_there_is_one(staff, member, sent_predictions):
    from classifier import services as classifier_services
    from classifier.models import TrainingRun
    from labeling.models import Label

    label = Label.objects.create(name="monstera")
    big = services.photo_upload(owner=member, fileobj=io.BytesIO(twelve_megapixel_jpeg()), label=label)
    small = services.photo_upload(owner=member, fileobj=io.BytesIO(jpeg_bytes(size=(300, 200))), label=label)
    run = classifier_services.training_run_start(user=staff, enqueue=False)
    seen = {}

    def fake_train(rows, *args, **kwargs):
        seen["paths"] = sorted(path for path, _, _ in rows)
        raise RuntimeError("stop here")

    with mock.patch.object(classifier_services, "train", side_effect=fake_train):
        run = classifier_services.training_run_execute(run.id)

    assert run.status == TrainingRun.Status.FAILED
    assert seen["paths"] == sorted([big.working_image.path, small.image.path])


def test_backups_keep_the_original_and_the_working_copy(member, media_root, tmp_path, sent_predictions):
    import tarfile

    from labeling import backup

    photo = services.photo_upload(owner=member, fileobj=io.BytesIO(twelve_megapixel_jpeg()))
    archive = tmp_path / "site.tar.gz"

    backup.backup_create(archive)

    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert {f"media/{photo.image.name}", f"media/{photo.working_image.name}"} <= names
    assert backup._verify_restored() == []
    Path(photo.working_image.path).unlink()
    assert backup._verify_restored() == [f"photo {photo.id}: its working copy {photo.working_image.name} is missing"]


def test_a_deleted_photo_takes_its_files_with_it_once_the_delete_commits(db, member,
                                                                        django_capture_on_commit_callbacks):
    from django.contrib.auth.models import User

    with mock.patch("labeling.tasks.photo_predict_task.delay"):
        photo = services.photo_upload(owner=member, fileobj=io.BytesIO(jpeg_bytes(size=(3000, 2000))))
    files = [photo.image.path, photo.working_image.path]
    assert all(Path(f).exists() for f in files)

    with django_capture_on_commit_callbacks(execute=True):
        User.objects.filter(id=member.id).delete()  # the account, and with it its photos

    assert not any(Path(f).exists() for f in files)
