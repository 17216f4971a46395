"""`manage.py orphan_files`: the stored files no row refers to (a process killed between writing
a file and committing its row) are listed, and removed with --delete; nothing a row refers to,
nothing recent and nothing of a run in progress is touched."""

import io
import os
import time

import pytest
from django.core.management import CommandError, call_command

from classifier.models import TrainingRun
from labeling import services
from tests.factories import ModelVersionFactory, TrainingRunFactory

DAY = 86400


def aged(path, seconds=2 * DAY):
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_bytes(b"x" * 10)
    past = time.time() - seconds
    os.utime(path, (past, past))
    return path


def run(*args):
    out = io.StringIO()
    call_command("orphan_files", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def stored(db, member, settings, sent_predictions):
    """A real upload (original and working copy), a model version's files, and the orphans."""
    from PIL import Image

    big = io.BytesIO()
    Image.new("RGB", (2000, 1500), "green").save(big, "JPEG")
    big.seek(0)
    settings.WORKING_COPY_MAX_SIDE = 1024
    photo = services.photo_upload(owner=member, fileobj=big)
    assert photo.working_image
    for name in (photo.image.name, photo.working_image.name):
        aged(settings.MEDIA_ROOT / name)
    ModelVersionFactory(file="model-1-aaaa.pkl", metrics={"confusion_png": "model-1-aaaa-confusion.png",
                                                          "top_losses_png": "model-1-aaaa-top-losses.png"})
    kept_model = [aged(settings.MODEL_ROOT / n) for n in
                  ("model-1-aaaa.pkl", "model-1-aaaa-confusion.png", "model-1-aaaa-top-losses.png")]
    running = TrainingRunFactory(status=TrainingRun.Status.RUNNING, holds_slot=True)
    in_progress = aged(settings.MODEL_ROOT / f"model-{running.id}-bbbb.pkl")
    orphans = [aged(settings.MEDIA_ROOT / "photos" / "0123abcd.jpg"),
               aged(settings.MEDIA_ROOT / "photos" / "0123abcd-work.jpg"),
               aged(settings.MODEL_ROOT / "model-99-cccc.pkl")]
    recent = aged(settings.MEDIA_ROOT / "photos" / "4567ef.png", seconds=60)
    return {"photo": photo, "kept": kept_model + [in_progress, recent], "orphans": orphans}


def test_the_files_no_row_refers_to_are_listed_and_left_in_place(stored):
    out = run()

    for path in stored["orphans"]:
        assert f"unreferenced {path} (10 bytes)" in out and path.exists()
    for path in stored["kept"] + [stored["photo"].image.path, stored["photo"].working_image.path]:
        assert str(path) not in out
    assert "Found 3 unreferenced file(s), 30 bytes. Run again with --delete to remove them." in out


def test_delete_removes_only_the_unreferenced_files(stored):
    out = run("--delete")

    assert "Removed 3 unreferenced file(s), 30 bytes." in out
    assert not any(path.exists() for path in stored["orphans"])
    assert all(path.exists() for path in stored["kept"])
    assert os.path.exists(stored["photo"].image.path) and os.path.exists(stored["photo"].working_image.path)


def test_a_younger_age_takes_the_recent_file_too_but_never_one_younger_than_a_minute(stored):
    assert "Found 3 " in run("--min-age", "3600")
    assert "Found 4 " in run("--min-age", "60")
    with pytest.raises(CommandError, match="--min-age must be at least 60 seconds"):
        run("--min-age", "5")
