"""Labels the model cannot learn or be measured on: the split is fixed per photo id, so a new
label's first photo or two may all fall in the validation split (left out of the run, and
named), and a label with no validation photo has scores that were not measured (null, "—").

The trainings here are tiny (32 px, one epoch, no pretrained weights, ten generated photos)."""

import json
import shutil
from contextlib import nullcontext
from types import SimpleNamespace
from unittest import mock

import pytest
import torch
from django.test import Client

from classifier import services
from classifier.demo_images import generate_dataset
from classifier.models import ModelVersion, TrainingRun
from classifier.training import TrainingOptions, TrainingResult, evaluate, train
from labeling.models import Photo
from labeling.services import photos_import_folder
from tests.factories import ModelVersionFactory

TINY = {"architecture": "resnet18", "image_size": 32, "epochs": 1, "batch_size": 4, "pretrained": False}
NOT_MEASURED = {"precision": None, "recall": None, "f1": None, "support": 0}


@pytest.fixture(scope="module")
def plant_folder(tmp_path_factory):
    """DIR/<label>/<file>: four generated photos of each of the three demo plants."""
    directory = tmp_path_factory.mktemp("plants")
    generate_dataset(directory, per_label=4, size=64, seed=2)
    return directory


def import_photos(plant_folder, tmp_path, owner, counts):
    """Import counts[label] of the generated photos of each label; returns {label: [photo ids]}."""
    for label, count in counts.items():
        (tmp_path / "site" / label).mkdir(parents=True)
        for path in sorted((plant_folder / label).glob("*.jpg"))[:count]:
            shutil.copy(path, tmp_path / "site" / label / path.name)
    assert len(photos_import_folder(directory=tmp_path / "site", owner=owner).imported) == sum(counts.values())
    return {label: list(Photo.objects.filter(final_label__name=label).order_by("id").values_list("id", flat=True))
            for label in counts}


@pytest.fixture
def split(monkeypatch):
    """split(ids): exactly these photo ids are validation photos in the runs that follow."""
    def choose(validation_ids):
        monkeypatch.setattr(services, "is_validation", lambda key, percent=20: int(key) in set(validation_ids))
    return choose


def run_training(staff):
    run = services.training_run_start(user=staff, options=TINY, enqueue=False)
    return services.training_run_execute(run.id)


LEFT_OUT_SPIDER_PLANT = ("Left out label spider_plant: its 2 photo(s) all fall in the validation split; "
                         "add more photos of it.")


# --- the service leaves such a label out --------------------------------------------


def test_a_label_whose_photos_all_fall_in_the_validation_split_is_left_out_and_named_and_the_run_succeeds(
        db, staff, plant_folder, tmp_path, split):
    ids = import_photos(plant_folder, tmp_path, staff, {"dieffenbachia": 4, "monstera": 4, "spider_plant": 2})
    split([ids["dieffenbachia"][0], ids["monstera"][0], *ids["spider_plant"]])

    run = run_training(staff)

    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    version = ModelVersion.objects.get(training_run=run)
    assert version.labels == ["dieffenbachia", "monstera"]
    assert set(version.metrics["per_label"]) == {"dieffenbachia", "monstera"}
    assert {label for _, label, _ in run.data} == {"dieffenbachia", "monstera"} and len(run.data) == 8
    assert run.metrics["labels_without_training_photos"] == {"spider_plant": 2}
    assert run.log.splitlines()[0] == LEFT_OUT_SPIDER_PLANT
    assert version.metrics["valid_count"] == 2  # spider_plant's photos are not counted as errors


def test_a_label_with_no_validation_photo_trains_and_its_scores_are_null_not_zero(
        db, staff, plant_folder, tmp_path, split):
    ids = import_photos(plant_folder, tmp_path, staff, {"dieffenbachia": 3, "monstera": 3, "spider_plant": 3})
    split([ids["dieffenbachia"][0], ids["monstera"][0]])  # spider_plant: training photos only

    run = run_training(staff)

    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    metrics = ModelVersion.objects.get(training_run=run).metrics
    assert metrics["per_label"]["spider_plant"] == NOT_MEASURED
    for label in ("dieffenbachia", "monstera"):
        assert metrics["per_label"][label]["support"] == 1
        assert all(0.0 <= metrics["per_label"][label][name] <= 1.0 for name in ("precision", "recall", "f1"))
    assert run.metrics["labels_without_training_photos"] == {}


def _fake_train(fit_rows, options, export_path, **kwargs):
    export_path.write_bytes(b"not really a learner")
    return TrainingResult(labels=sorted({label for _, label, _ in fit_rows}), metrics={"per_label": {}},
                          history=[], device="cpu", pretrained_used=False)


def test_a_label_whose_only_training_photo_has_lost_its_file_is_left_out_too(db, staff, plant_folder, tmp_path,
                                                                            split):
    ids = import_photos(plant_folder, tmp_path, staff, {"dieffenbachia": 3, "monstera": 3, "spider_plant": 3})
    split([ids["dieffenbachia"][0], ids["monstera"][0], *ids["spider_plant"][1:]])
    lost = Photo.objects.get(id=ids["spider_plant"][0])  # spider_plant's one training photo
    lost.image.storage.delete(lost.image.name)

    with mock.patch.object(services, "train", side_effect=_fake_train) as fake:
        run = run_training(staff)

    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    assert {label for _, label, _ in fake.call_args.args[0]} == {"dieffenbachia", "monstera"}
    assert run.metrics["missing_files"] == [lost.id]
    assert run.metrics["labels_without_training_photos"] == {"spider_plant": 2}
    assert run.log.splitlines()[:2] == [f"Left out 1 photo(s) whose file is missing: [{lost.id}].",
                                        LEFT_OUT_SPIDER_PLANT]


def test_a_run_left_with_one_label_fails_with_the_clear_error_and_names_the_label_it_left_out(
        db, staff, plant_folder, tmp_path, split):
    ids = import_photos(plant_folder, tmp_path, staff, {"monstera": 4, "spider_plant": 2})
    split([ids["monstera"][0], *ids["spider_plant"]])

    run = run_training(staff)

    assert run.status == TrainingRun.Status.FAILED
    assert run.error == "ValueError: Training needs human-verified photos of at least two labels."
    assert run.log.splitlines()[0] == LEFT_OUT_SPIDER_PLANT
    assert not ModelVersion.objects.exists()


# --- train() itself refuses such rows ----------------------------------------------


def test_train_refuses_rows_in_which_a_label_has_no_training_row(tmp_path):
    rows = [("a.jpg", "monstera", False), ("b.jpg", "monstera", True), ("c.jpg", "fern", False),
            ("d.jpg", "new_label", True)]

    with pytest.raises(ValueError, match="No training photo of new_label: all its photos are in the validation"):
        train(rows, TrainingOptions(**TINY), tmp_path / "model.pkl")
    assert not (tmp_path / "model.pkl").exists()


@pytest.mark.parametrize("rows, message", [
    ([("a.jpg", "monstera", True), ("b.jpg", "fern", True)], "The training split is empty"),
    ([("a.jpg", "monstera", False), ("b.jpg", "monstera", True)], "at least two labels"),
])
def test_train_keeps_its_earlier_errors_for_rows_that_would_also_lack_training_rows(tmp_path, rows, message):
    with pytest.raises(ValueError, match=message):
        train(rows, TrainingOptions(**TINY), tmp_path / "model.pkl")


# --- scores that were not measured ------------------------------------------------


def _learner_predicting(probabilities, targets):
    return SimpleNamespace(no_bar=nullcontext,
                           get_preds=lambda ds_idx: (torch.tensor(probabilities), torch.tensor(targets)))


def test_evaluate_stores_null_scores_for_a_label_without_validation_photos_but_a_precision_it_earned():
    # Validation photos: two monsteras (one predicted fern) and no fern; "palm" is never predicted.
    learn = _learner_predicting([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1]], [1, 1])

    per_label = evaluate(learn, ["fern", "monstera", "palm"])["per_label"]

    assert per_label["fern"] == {**NOT_MEASURED, "precision": 0.0}  # predicted once, wrongly: that is measured
    assert per_label["palm"] == NOT_MEASURED
    assert per_label["monstera"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    json.dumps(per_label, allow_nan=False)


def test_evaluate_keeps_a_measured_zero_for_a_label_with_photos_it_never_predicts():
    learn = _learner_predicting([[0.9, 0.1], [0.8, 0.2]], [0, 1])

    per_label = evaluate(learn, ["fern", "monstera"])["per_label"]

    assert per_label["monstera"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}


def test_the_models_page_shows_a_dash_for_scores_that_were_not_measured(db, staff):
    ModelVersionFactory(labels=["fern", "monstera"], metrics={
        "error_rate": 0.5, "valid_count": 2, "confusion_matrix": [[0, 0], [1, 1]],
        "per_label": {"fern": NOT_MEASURED,
                      "monstera": {"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2}},
    })
    client = Client()
    client.force_login(staff)

    page = client.get("/models/").content.decode()

    table = page.split('<table class="metrics">')[1].split("</table>")[0]
    rows = {row.split("</th>")[0].removeprefix("<th>"): row for row in table.split("<tr>")[2:]}
    assert rows["fern"].count("<td>—</td>") == 3 and "<td>0</td>" in rows["fern"]
    assert "<td>1.00</td>" in rows["monstera"] and "<td>0.50</td>" in rows["monstera"]
    assert "<td>0.67</td>" in rows["monstera"] and "—" not in rows["monstera"]
