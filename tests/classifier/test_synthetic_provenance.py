"""A model trained on generated demo images (bootstrap_demo, import_photos --synthetic) says so
on its run's page and on the models page: its scores say little about real photos."""

from unittest import mock

import pytest
from django.test import Client

from classifier import services
from classifier.models import ModelVersion, TrainingRun
from classifier.training import TrainingResult
from labeling.models import Photo
from tests.factories import LabelFactory, PhotoFactory

TINY = {"architecture": "resnet18", "image_size": 32, "epochs": 1, "batch_size": 4, "pretrained": False}


def _fake_train(fit_rows, options, export_path, **kwargs):
    export_path.write_bytes(b"not really a learner")
    return TrainingResult(labels=["monstera", "rose"], metrics={"error_rate": 0.5, "valid_count": 1},
                          history=[], device="cpu", pretrained_used=False)


def trained_run(staff, synthetic):
    monstera, rose = LabelFactory(name="monstera"), LabelFactory(name="rose")
    for i in range(6):
        PhotoFactory(owner=staff, status=Photo.Status.FINAL, final_label=monstera if i % 2 else rose,
                     label_source=Photo.LabelSource.IMPORT, synthetic=i < synthetic)
    run = services.training_run_start(user=staff, options=TINY, enqueue=False)
    with mock.patch.object(services, "train", side_effect=_fake_train), \
            mock.patch.object(services, "is_validation", lambda photo_id: photo_id % 3 == 0):
        services.training_run_execute(run.id)
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    return run


def pages_of(run, staff):
    """The run's page and the models page, as an admin sees them."""
    client = Client()
    client.force_login(staff)
    return client.get(f"/training/{run.id}/").content.decode(), client.get("/models/").content.decode()


@pytest.mark.django_db
def test_a_model_trained_on_generated_images_says_so_on_its_run_and_on_the_models_page(staff):
    run = trained_run(staff, synthetic=4)

    assert run.metrics["synthetic_photos"] == 4
    version = ModelVersion.objects.get(training_run=run)
    assert (version.metrics["synthetic_photos"], version.metrics["data_count"]) == (4, 6)
    run_page, models_page = pages_of(run, staff)
    assert "4 of the 6 photos are generated demo images, not real photos" in run_page
    assert "Trained on generated demo images (4 of its 6 photos)" in models_page


@pytest.mark.django_db
def test_a_model_trained_on_real_photos_only_carries_no_such_note(staff):
    run = trained_run(staff, synthetic=0)

    assert run.metrics["synthetic_photos"] == 0
    for page in pages_of(run, staff):
        assert 'data-role="synthetic"' not in page
