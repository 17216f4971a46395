"""Training data provenance: every label knows its source, retraining uses only human-verified
sources by default, and including the model's own labels is an explicit choice recorded with
the run (service, API, page form, `manage.py train`), whose page shows the sources used."""

import io
from unittest import mock

import pytest
from django.core.management import call_command
from django.test import Client

from classifier import services
from classifier.models import TrainingRun
from classifier.training import TrainingResult
from labeling.models import Photo
from tests.factories import LabelFactory, PhotoFactory, TrainingRunFactory

TINY = {"architecture": "resnet18", "image_size": 32, "epochs": 1, "batch_size": 4, "pretrained": False}


@pytest.fixture
def one_of_each_source(db, staff):
    """A final photo per label source, plus ones that never train (awaiting review, rejected, excluded)."""
    monstera = LabelFactory(name="monstera")
    photos = {source: PhotoFactory(owner=staff, status=Photo.Status.FINAL, final_label=monstera, label_source=source)
              for source in Photo.LabelSource.values}
    PhotoFactory(owner=staff, status=Photo.Status.NEEDS_REVIEW)
    PhotoFactory(owner=staff, status=Photo.Status.REJECTED)
    PhotoFactory(owner=staff, status=Photo.Status.FINAL, final_label=monstera, label_source="expert",
                 excluded_from_training=True)
    return photos


def row_ids(rows):
    return {row[0] for row in rows}


def test_every_label_source_is_known():
    assert set(Photo.LabelSource.values) == {"import", "consensus", "labeller", "expert", "audit", "model"}


def test_training_uses_only_human_verified_labels_by_default(one_of_each_source):
    human = {one_of_each_source[s].id for s in ("import", "consensus", "labeller", "expert", "audit")}

    assert row_ids(services.training_rows()) == human
    assert row_ids(services.training_rows(include_model_labels=False)) == human


def test_model_labels_are_included_only_when_asked(one_of_each_source):
    rows = services.training_rows(include_model_labels=True)

    assert row_ids(rows) == {p.id for p in one_of_each_source.values()}


def test_a_run_records_whether_model_labels_were_included(db, staff):
    default = services.training_run_start(user=staff, options=TINY, enqueue=False)
    assert default.options["include_model_labels"] is False
    services.training_run_cancel(run_id=default.id)

    asked = services.training_run_start(user=staff, options=TINY, enqueue=False, include_model_labels=True)

    assert asked.options["include_model_labels"] is True
    assert asked.options["architecture"] == "resnet18"  # the training options are unchanged


def test_include_model_labels_is_not_a_training_option(db, staff):
    with pytest.raises(ValueError, match="Unknown training options: include_model_labels"):
        services.training_run_start(user=staff, options={**TINY, "include_model_labels": True}, enqueue=False)


def _fake_train(fit_rows, options, export_path, **kwargs):
    export_path.write_bytes(b"not really a learner")
    return TrainingResult(labels=["monstera"], metrics={"error_rate": 0.5, "accuracy": 0.5, "valid_count": 1},
                          history=[], device="cpu", pretrained_used=False)


@pytest.mark.parametrize("include", [False, True])
def test_a_run_trains_on_the_sources_it_recorded_and_keeps_their_counts(one_of_each_source, staff, include):
    run = services.training_run_start(user=staff, options=TINY, enqueue=False, include_model_labels=include)

    # Every photo in the training split: with the real split, the one label's few photos could
    # all fall in validation (about one time in 600), and the run would leave the label out.
    with mock.patch.object(services, "train", side_effect=_fake_train) as train, \
            mock.patch.object(services, "is_validation", lambda photo_id: False):
        services.training_run_execute(run.id)

    run.refresh_from_db()
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    trained_on = {row[0] for row in run.data}
    assert (one_of_each_source["model"].id in trained_on) is include
    assert len(train.call_args.args[0]) == len(run.data)
    expected = {"audit": 1, "consensus": 1, "expert": 1, "import": 1, "labeller": 1,
                **({"model": 1} if include else {})}
    assert run.metrics["data_sources"] == expected
    assert run.metrics["include_model_labels"] is include
    assert run.metrics["error_rate"] == 0.5


def test_the_api_takes_include_model_labels_and_records_it(db, staff, api_for):
    with mock.patch.object(services, "_enqueue_training"):
        response = api_for(staff).post("/api/v1/training-runs/", {**TINY, "include_model_labels": True},
                                       format="json")

    assert response.status_code == 202, response.content
    assert response.json()["options"]["include_model_labels"] is True
    assert TrainingRun.objects.get(id=response.json()["id"]).options["include_model_labels"] is True


def test_the_api_leaves_model_labels_out_by_default(db, staff, api_for):
    with mock.patch.object(services, "_enqueue_training"):
        response = api_for(staff).post("/api/v1/training-runs/", TINY, format="json")

    assert response.json()["options"]["include_model_labels"] is False


def test_the_training_form_has_the_choice_and_records_it(db, staff):
    client = Client()
    client.force_login(staff)
    assert 'name="include_model_labels"' in client.get("/training/").content.decode()
    form = {"architecture": "resnet18", "image_size": 32, "epochs": 1, "batch_size": 8, "learning_rate": "",
            "cleaning_folds": 0, "include_model_labels": "on"}

    with mock.patch.object(services, "_enqueue_training"):
        response = client.post("/training/", form)

    assert response.status_code == 302
    assert TrainingRun.objects.get().options["include_model_labels"] is True


def test_the_train_command_has_the_choice_and_records_it(db, staff):
    with mock.patch.object(services, "_enqueue_training"):
        call_command("train", "--enqueue", "--include-model-labels", "--epochs", "1", stdout=io.StringIO())

    assert TrainingRun.objects.get().options["include_model_labels"] is True


def test_the_train_command_leaves_model_labels_out_by_default(db, staff):
    with mock.patch.object(services, "_enqueue_training"):
        call_command("train", "--enqueue", "--epochs", "1", stdout=io.StringIO())

    assert TrainingRun.objects.get().options["include_model_labels"] is False


def test_the_run_page_shows_the_data_sources_used(db, staff):
    client = Client()
    client.force_login(staff)
    with_model = TrainingRunFactory(options={**TINY, "include_model_labels": True},
                                    metrics={"data_sources": {"expert": 3, "model": 2}})
    without = TrainingRunFactory(options={**TINY, "include_model_labels": False},
                                 metrics={"data_sources": {"audit": 1, "import": 4}})

    page = client.get(f"/training/{with_model.id}/").content.decode()
    assert "the model's own auto-accepted labels (explicitly included)" in page
    assert "expert 3, model 2" in page
    page = client.get(f"/training/{without.id}/").content.decode()
    assert "human-verified only (model labels excluded)" in page
    assert "audit 1, import 4" in page


@pytest.mark.parametrize("rate", ["1e-9", "10"])
def test_the_training_form_refuses_a_learning_rate_the_api_refuses_too(db, staff, api_for, rate):
    client = Client()
    client.force_login(staff)
    form = {"architecture": "resnet18", "image_size": 32, "epochs": 1, "batch_size": 8, "learning_rate": rate,
            "cleaning_folds": 0}

    with mock.patch.object(services, "_enqueue_training"):
        page = client.post("/training/", form)
        api = api_for(staff).post("/api/v1/training-runs/", {**TINY, "learning_rate": float(rate)}, format="json")

    assert page.status_code == 200 and page.context["form"].errors["learning_rate"]
    assert api.status_code == 400 and "learning_rate" in api.json()
    assert not TrainingRun.objects.exists()
