import io
from unittest import mock

import pytest
from django.core.management import CommandError, call_command

from classifier.inference import file_sha256
from classifier.models import ModelVersion, TrainingRun
from classifier.demo_images import generate_dataset
from labeling.services import photos_import_folder


def test_predict_prints_the_label_and_every_probability_per_file(active_model, tmp_path, capsys):
    items = generate_dataset(tmp_path, per_label=1, size=64, seed=7)

    call_command("predict", *[str(p) for p, _ in items], "--batch-size", "2")

    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    for line, (path, _) in zip(lines, items):
        name, top, listing = line.split("\t")
        assert name == str(path)
        assert top in active_model.labels
        assert sorted(part.split("=")[0] for part in listing.split()) == sorted(active_model.labels)


def test_predict_without_an_active_model_says_so(db, tmp_path):
    with pytest.raises(CommandError, match="No model version is active"):
        call_command("predict", str(tmp_path / "x.jpg"))


def test_export_model_copies_the_verified_file(active_model, tmp_path):
    call_command("export_model", str(active_model.id), str(tmp_path))

    exported = next(tmp_path.glob("plantsite-v*.pkl"))
    assert file_sha256(exported) == active_model.sha256


def test_export_model_refuses_a_tampered_file(active_model, tmp_path):
    with open(active_model.path, "ab") as fh:
        fh.write(b"x")

    with pytest.raises(CommandError, match="does not match"):
        call_command("export_model", str(active_model.id), str(tmp_path / "out.pkl"))
    assert not (tmp_path / "out.pkl").exists()


def test_export_model_says_in_one_line_why_it_cannot_write_and_leaves_nothing_behind(active_model, tmp_path,
                                                                                     monkeypatch):
    with pytest.raises(CommandError, match="Could not write .*No such file or directory"):
        call_command("export_model", str(active_model.id), str(tmp_path / "missing" / "out.pkl"))
    with pytest.raises(CommandError, match="is the registry's own file of version"):
        call_command("export_model", str(active_model.id), str(active_model.path))

    def disk_full(self, data):
        self.write_text("half")  # what a full disk leaves
        raise OSError(28, "No space left on device")

    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setattr("pathlib.Path.write_bytes", disk_full)
    with pytest.raises(CommandError, match="No space left on device"):
        call_command("export_model", str(active_model.id), str(out / "model.pkl"))
    assert list(out.iterdir()) == []
    assert file_sha256(active_model.path) == active_model.sha256


def test_train_runs_the_training_task_and_can_activate_the_result(db, staff, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("classifier.services.is_validation", lambda key: int(key) % 4 == 0)
    generate_dataset(tmp_path / "data", per_label=5, size=64, seed=2)
    photos_import_folder(directory=tmp_path / "data", owner=staff)

    call_command("train", "--image-size", "32", "--epochs", "1", "--batch-size", "8", "--no-pretrained",
                 "--activate", "--user", "staff")

    run = TrainingRun.objects.get()
    assert run.status == "succeeded" and run.started_by == staff
    assert ModelVersion.objects.get(is_active=True) == run.model_version
    out = capsys.readouterr().out
    assert "created model version" in out
    assert "%" not in out and "█" not in out  # no fastai progress bar among the command's lines


def test_train_refuses_bad_options(db):
    with pytest.raises(CommandError, match="image_size"):
        call_command("train", "--image-size", "4")


@pytest.mark.parametrize("size", ["0", "-1"])
def test_predict_refuses_a_batch_size_below_one(active_model, tmp_path, size):
    with pytest.raises(CommandError, match="--batch-size must be at least 1"):
        call_command("predict", str(tmp_path / "x.jpg"), "--batch-size", size)


def test_predict_says_which_batch_holds_an_image_too_large_to_decode(active_model, tmp_path, settings):
    from PIL import Image

    big = tmp_path / "big.png"
    Image.new("RGB", (400, 400)).save(big)
    Image.MAX_IMAGE_PIXELS, before = 10_000, Image.MAX_IMAGE_PIXELS  # 400 x 400 is a "bomb" past 2x this
    try:
        with pytest.raises(CommandError, match="Could not read one of"):
            call_command("predict", str(big))
    finally:
        Image.MAX_IMAGE_PIXELS = before


def test_train_refuses_a_user_that_is_no_staff_account(db, member):
    for name in ("ghost", member.username):
        with pytest.raises(CommandError, match=f"--user '{name}' names no staff account"):
            call_command("train", "--user", name, "--epochs", "1")
    assert not TrainingRun.objects.exists()


def test_train_takes_a_seed_and_records_it_with_the_run(db, staff):
    with mock.patch("classifier.services._enqueue_training"):
        call_command("train", "--enqueue", "--epochs", "1", "--seed", "7", stdout=io.StringIO())
    assert TrainingRun.objects.get().options["seed"] == 7

    with pytest.raises(CommandError, match="seed must be between 0 and 4294967295"):
        call_command("train", "--enqueue", "--seed", "-1", stdout=io.StringIO())
