"""A training run started over the API trains in a real worker, and its model then predicts."""

from __future__ import annotations

import time

import pytest

from classifier.models import ModelVersion
from tests.factories import import_photos_on_both_sides_of_the_split
from tests.paths import FLOWERS

pytestmark = pytest.mark.integration

OPTIONS = {"image_size": 32, "epochs": 1, "batch_size": 8, "pretrained": False, "activate": False}
TRAINING_TIMEOUT = 120


def wait_for_run(api, run_id, timeout=TRAINING_TIMEOUT):
    deadline = time.monotonic() + timeout
    while True:
        run = api.get(f"/api/v1/training-runs/{run_id}/").json()
        if run["status"] in ("succeeded", "failed", "cancelled"):
            return run
        assert time.monotonic() < deadline, f"training run {run_id} is still {run['status']} after {timeout} s: {run}"
        time.sleep(0.5)


def test_a_training_run_started_over_the_api_trains_in_the_worker_and_its_activated_model_predicts_uploads(
        start_worker, api_as, staff, member, tmp_path):
    imported = import_photos_on_both_sides_of_the_split(tmp_path, staff, per_label=6, seed=0)
    assert len(imported) >= 18
    # Data-loading worker processes, as a GPU machine uses by default: they must start from
    # inside the Celery worker's pool process, and the exported model must not carry them.
    start_worker("training", TRAINING_LOADER_WORKERS=2)
    as_staff = api_as(staff)

    started = as_staff.post("/api/v1/training-runs/", json=OPTIONS)
    assert started.status_code == 202, started.text
    run_id = started.json()["id"]
    assert started.json()["status"] == "queued"

    while_active = as_staff.post("/api/v1/training-runs/", json=OPTIONS)
    assert while_active.status_code == 409, while_active.text
    assert f"Training run {run_id} is still" in while_active.json()["detail"]

    run = wait_for_run(as_staff, run_id)
    assert run["status"] == "succeeded", run
    assert run["progress"] == 1.0
    assert run["error"] == ""
    assert run["data_hash"] and len(run["history"]) == 1
    assert "2 data-loading workers" in run["log"], run["log"]
    version_id = run["model_version"]
    assert version_id is not None

    models = {m["id"]: m for m in as_staff.get("/api/v1/models/").json()["results"]}
    version = models[version_id]
    assert version["is_active"] is False  # "activate": false
    assert version["training_run"] == run_id
    assert version["labels"] == ["dieffenbachia", "monstera", "spider_plant"]
    assert 0.0 <= version["metrics"]["error_rate"] <= 1.0
    assert set(version["metrics"]["per_label"]) == set(version["labels"])
    assert ModelVersion.objects.get(pk=version_id).path.is_file()

    activated = as_staff.post(f"/api/v1/models/{version_id}/activate/")
    assert activated.status_code == 200, activated.text
    assert activated.json()["is_active"] is True

    start_worker("inference")
    as_member = api_as(member)
    uploaded = as_member.upload(sorted((FLOWERS / "tulips").glob("*.jpg"))[0])
    assert uploaded.status_code == 201, uploaded.text
    photo = as_member.wait_for_photo(uploaded.json()["id"], timeout=60)
    assert photo["status"] in ("final", "needs_review"), photo
    assert photo["prediction"]["model_version"] == version_id
    assert set(photo["prediction"]["probabilities"]) == set(version["labels"])
