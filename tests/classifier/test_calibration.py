"""Whether a version's confidence can be trusted: training records, for its validation photos,
how often the model was right at each stated confidence. The models page shows the reliability
table and the expected calibration error; the audits page and API put what each threshold does
with the validation photos beside what it did with the photos uploaded here."""
import io
import json
import math
import random
from contextlib import nullcontext
from types import SimpleNamespace
from unittest import mock

import numpy as np
import pytest
import torch
from django.core.management import CommandError, call_command
from django.test import Client

from classifier import services
from classifier.calibration import RESOLUTION, Calibration, confidence_bin, summarise
from classifier.demo_images import generate_dataset
from classifier.models import ModelVersion
from classifier.services import training_run_execute, training_run_start
from classifier.training import evaluate
from labeling.models import Photo
from labeling.review import threshold_evidence, wilson_interval
from labeling.services import photos_import_folder
from tests.factories import ModelVersionFactory

# Four validation photos: two at 0.95 (one right), one at 0.85 (right), one at 0.55 (right).
CONFIDENCES = [0.95, 0.95, 0.85, 0.55]
CORRECT = [True, False, True, True]


def test_a_confidence_falls_in_the_bin_whose_lower_edge_the_worker_would_call_reached():
    for k in range(RESOLUTION + 1):
        edge = k / RESOLUTION
        assert confidence_bin(edge) == k
        if k:
            assert confidence_bin(math.nextafter(edge, 0.0)) == k - 1


def test_what_a_threshold_accepts_is_exactly_what_the_worker_would_accept():
    rng = random.Random(7)
    # float32 probabilities, as the model gives them, many of them right at a bin's edge
    confidences = [float(np.float32(rng.choice([rng.random(), rng.randrange(1001) / 1000]))) for _ in range(3000)]
    correct = [rng.random() < 0.7 for _ in confidences]
    calibration = Calibration.from_dict(summarise(confidences, correct))

    for threshold in (0.0, 0.29, 0.5, 0.57, 0.8, 0.873, 0.95, 0.99, 1.0):
        accepted = [right for p, right in zip(confidences, correct) if not p < threshold]  # the worker's test
        assert calibration.accepted(threshold) == (len(accepted), sum(accepted)), threshold


def test_the_reliability_table_gives_each_bins_photos_mean_confidence_and_accuracy():
    rows = {row.low: row for row in Calibration.from_dict(summarise(CONFIDENCES, CORRECT)).reliability()}

    assert len(rows) == 10
    assert (rows[0.9].photos, rows[0.9].confidence, rows[0.9].accuracy) == (2, pytest.approx(0.95), 0.5)
    assert rows[0.9].gap == pytest.approx(-0.45)  # claims more than it achieves
    assert (rows[0.8].photos, rows[0.8].accuracy, rows[0.8].gap) == (1, 1.0, pytest.approx(0.15))
    assert rows[0.5].photos == 1
    assert rows[0.0].photos == 0 and rows[0.0].accuracy is None and rows[0.0].gap is None


def test_a_confidence_of_one_is_in_the_last_bin():
    rows = Calibration.from_dict(summarise([1.0], [True])).reliability()

    assert rows[-1].photos == 1 and rows[-1].high == 1.0


def test_the_expected_calibration_error_is_the_photo_weighted_mean_gap():
    assert summarise(CONFIDENCES, CORRECT)["ece"] == pytest.approx((2 * 0.45 + 0.15 + 0.45) / 4)
    # Right nine times in ten at 0.9: calibrated.
    assert summarise([0.9] * 10, [True] * 9 + [False])["ece"] == pytest.approx(0.0)
    assert Calibration.from_dict({"photos": 0, "bins": []}).ece is None


def test_a_confidence_that_is_not_a_number_is_left_out():
    summary = summarise([float("nan"), 0.7], [False, True])

    assert summary["photos"] == 1
    json.dumps(summary, allow_nan=False)


def test_evaluate_records_the_calibration_of_the_top_confidence_on_the_validation_photos():
    learn = SimpleNamespace(no_bar=nullcontext, get_preds=lambda ds_idx: (
        torch.tensor([[0.95, 0.05], [0.05, 0.95], [0.15, 0.85], [0.45, 0.55]]), torch.tensor([0, 0, 1, 1])))

    metrics = evaluate(learn, ["fern", "monstera"])

    # As float32, 0.95 is a little below 0.95: a threshold of 0.95 would not accept it, nor does its bin.
    assert metrics["calibration"] == summarise([float(np.float32(p)) for p in CONFIDENCES], CORRECT,
                                               ["fern", "monstera", "monstera", "monstera"])  # its answers
    assert metrics["calibration"]["bins"][-1][0] == 949
    json.dumps(metrics, allow_nan=False)


@pytest.fixture
def calibrated(db, settings):
    settings.CONFIDENCE_THRESHOLD = 0.8
    return ModelVersionFactory(is_active=True, metrics={
        "error_rate": 0.25, "valid_count": 4, "per_label": {}, "confusion_matrix": [],
        "calibration": summarise(CONFIDENCES, CORRECT)})


def test_the_models_page_shows_the_reliability_table_and_what_the_threshold_would_save(calibrated, member, staff):
    old = ModelVersionFactory(metrics={"error_rate": 0.1, "per_label": {}, "confusion_matrix": []})
    client = Client()
    client.force_login(member)

    page = client.get("/models/").content.decode()

    section = page.split(f'data-version-id="{calibrated.id}"')[1].split("</section>")[0]
    assert "Calibration on 4 validation photos" in section
    assert '<strong data-role="ece">0.375</strong>' in section
    low, high = wilson_interval(2, 3)
    assert (f"At the threshold in force (0.80) it would save <span data-role=\"validation-accepted\">3\n"
            f"      of them (75%),\n      0.667 of those right (95% interval {low:.3f}–{high:.3f})") in section
    assert "<tr><th>0.9–1.0</th><td>2</td>\n          <td>0.950</td><td>0.500</td><td>-0.450</td></tr>" in section
    assert "0.0–0.1" not in section  # empty bins are not listed
    old_section = page.split(f'data-version-id="{old.id}"')[1].split("</section>")[0]
    assert "Calibration not recorded: this version was trained before training measured it." in old_section
    assert "complete_model_versions" not in old_section  # a command for staff
    client.force_login(staff)
    old_section = client.get("/models/").content.decode().split(f'data-version-id="{old.id}"')[1]
    assert f"<code>manage.py complete_model_versions {old.id}</code> measures it" in old_section


def test_the_threshold_table_puts_the_validation_photos_beside_the_photos_uploaded_here(calibrated):
    rows = {row.threshold: row for row in threshold_evidence(calibrated.id)}

    assert rows[0.8].validation.accepted == 3 and rows[0.8].validation.accuracy == pytest.approx(2 / 3)
    assert rows[0.9].validation.accepted_share == 0.5 and rows[0.9].validation.accuracy == 0.5
    assert rows[0.99].validation.accepted == 0 and rows[0.99].validation.accuracy is None
    assert rows[0.5].validation.photos == 4


def test_the_audits_page_and_api_show_the_validation_columns_or_say_they_were_not_recorded(calibrated, expert,
                                                                                         api_for):
    old = ModelVersionFactory(metrics={"error_rate": 0.1})
    client = Client()
    client.force_login(expert)

    page = client.get("/review/audits/").content.decode()
    api = api_for(expert).get("/api/v1/audits/stats/").json()
    asked_old = api_for(expert).get(f"/api/v1/audits/stats/?version={old.id}").json()

    current = page.split('<tr class="current" data-threshold="0.8">')[1].split("</tr>")[0]
    assert '<td data-role="validation-share">75% (3 of 4)</td>' in current
    assert '<td data-role="validation-accuracy">0.667</td>' in current
    now = next(row for row in api["thresholds"] if row["current"])
    low, high = wilson_interval(2, 3)
    assert now["validation"] == {"photos": 4, "accepted": 3, "accepted_share": 0.75, "accuracy": pytest.approx(2 / 3),
                                 "ci_low": pytest.approx(low), "ci_high": pytest.approx(high)}
    assert all(row["validation"] is None for row in asked_old["thresholds"])


# --- measuring a version trained before calibration was recorded --------------------

TINY = {"architecture": "resnet18", "image_size": 32, "epochs": 1, "batch_size": 4, "pretrained": False}


def every_fourth_id_is_validation(key, percent=20):
    return int(key) % 4 == 0  # never an empty validation split for a dozen photos


@pytest.fixture
def older_version(staff, tmp_path):
    """A version trained here for real, its calibration then removed, as before it was recorded.
    Returns (version, the calibration training had recorded)."""
    generate_dataset(tmp_path / "plants", per_label=4, size=64, seed=2)
    with mock.patch.object(services, "is_validation", every_fourth_id_is_validation):
        photos_import_folder(directory=tmp_path / "plants", owner=staff)
        run = training_run_start(user=staff, options=TINY, enqueue=False)
        training_run_execute(run.id)
    version = ModelVersion.objects.get(training_run=run)
    recorded = version.metrics.pop("calibration")
    version.save(update_fields=["metrics"])
    return version, recorded


def test_completing_versions_measures_an_older_version_as_training_would_have(older_version):
    version, recorded = older_version
    out = io.StringIO()

    call_command("complete_model_versions", "--missing", stdout=out)

    version.refresh_from_db()
    measured = version.metrics["calibration"]
    assert measured["photos"] == recorded["photos"] == 3
    assert version.calibration().accepted(0.0) == Calibration.from_dict(recorded).accepted(0.0)
    assert measured["ece"] == pytest.approx(recorded["ece"], abs=1e-3)  # the worker's path: within 1e-4 per photo
    assert version.metrics["calibration_measured"]["photos"] == 3
    assert version.metrics["error_rate"] is not None  # the other metrics are kept
    said = f"Version {version.id}: expected calibration error {measured['ece']:.3f} on 3 validation photos."
    assert said in out.getvalue()
    out = io.StringIO()
    call_command("complete_model_versions", "--missing", stdout=out)
    assert out.getvalue() == "Every model version has its calibration, features and near copies recorded.\n"


def test_completing_versions_leaves_out_a_validation_photo_deleted_since_and_says_so(older_version, staff):
    version, _ = older_version
    first_valid = next(pid for pid, _, valid in version.training_run.data if valid)
    Photo.objects.filter(id=first_valid).delete()
    out = io.StringIO()

    call_command("complete_model_versions", str(version.id), stdout=out)

    version.refresh_from_db()
    assert version.metrics["calibration"]["photos"] == 2
    assert version.metrics["calibration_measured"]["missing"] == 1
    assert "on 2 validation photos; 1 deleted or unreadable, left out." in out.getvalue()
    client = Client()
    client.force_login(staff)
    page = client.get("/models/").content.decode()
    assert ("Measured after training, by <code>complete_model_versions</code>,\n"
            "      on 2 of its run's validation photos (1 deleted") in page


def test_completing_versions_names_each_version_it_cannot_measure_and_fails(older_version):
    version, _ = older_version
    untrained = ModelVersionFactory()  # registered without a training run here
    with open(version.path, "ab") as fh:
        fh.write(b"x")
    err = io.StringIO()

    # Near copies need no model file: only the untrained version's cannot be looked for.
    with pytest.raises(CommandError, match="5 of 6 could not be added"):
        call_command("complete_model_versions", str(version.id), str(untrained.id), stderr=err)

    for part in ("calibration", "features"):
        assert f"Version {version.id}: no {part}. Model version {version.id}'s file is missing" in err.getvalue()
    assert f"Version {untrained.id}: no calibration. Model version {untrained.id} has no frozen validation" \
        in err.getvalue()
    assert f"Version {untrained.id}: no features. Model version {untrained.id} has no frozen data" in err.getvalue()
    assert f"Version {untrained.id}: no near copies. Model version {untrained.id} has no frozen data" in err.getvalue()
    version.refresh_from_db()
    assert "calibration" not in version.metrics


@pytest.mark.parametrize("args, message", [
    ([], "Name the versions to complete, or pass --missing"),
    (["1", "--missing"], "Name the versions to complete, or pass --missing"),
    (["987654"], "No model version 987654."),
])
def test_completing_versions_refuses_unclear_arguments(db, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("complete_model_versions", *args)
