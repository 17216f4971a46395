"""Photos a version learned from that look most like a reviewed one: training keeps each photo's
features (the vector its head classifies) beside the learner, and the expert's page lists the
nearest ones with the labels they were trained with."""
import io
from unittest import mock

import numpy as np
import pytest
from django.core.management import call_command
from django.test import Client

from classifier import services, similar
from classifier.demo_images import generate_dataset
from classifier.inference import model_cache
from classifier.models import ModelVersion
from classifier.selectors import model_files_unreferenced
from classifier.services import training_run_execute, training_run_start
from labeling.backup import _files_named_by
from labeling.models import Label, Photo
from labeling.services import photos_import_folder
from tests.factories import PredictionFactory

TINY = {"architecture": "resnet18", "image_size": 32, "epochs": 1, "batch_size": 4, "pretrained": False}


def every_fourth_id_is_validation(key, percent=20):
    return int(key) % 4 == 0


@pytest.fixture
def trained(staff, tmp_path):
    generate_dataset(tmp_path / "plants", per_label=4, size=64, seed=2)
    with mock.patch.object(services, "is_validation", every_fourth_id_is_validation):
        photos_import_folder(directory=tmp_path / "plants", owner=staff)
        run = training_run_start(user=staff, options=TINY, enqueue=False)
        training_run_execute(run.id)
    model_cache.clear()
    yield ModelVersion.objects.get(training_run=run)
    model_cache.clear()


def _stored(version):
    with np.load(version.path.parent / version.metrics["neighbours_npz"], allow_pickle=False) as data:
        return data["ids"], data["labels"], data["vectors"]


def test_training_keeps_every_photos_features_with_its_id_and_label(trained):
    ids, labels, vectors = _stored(trained)

    assert [[int(i), str(label)] for i, label in zip(ids, labels)] == [row[:2] for row in trained.training_run.data]
    assert vectors.dtype == np.float16 and vectors.shape[0] == 12
    assert np.allclose(np.linalg.norm(vectors.astype(np.float32), axis=1), 1.0, atol=1e-2)


def test_a_training_photo_seen_again_has_the_features_training_kept(trained):
    ids, _, vectors = _stored(trained)
    photo = Photo.objects.get(id=int(ids[5]))
    loaded = model_cache.get(trained.id, trained.path, trained.sha256)
    x, _ = similar.model_input(loaded, photo.model_input_path)

    again = similar.features(loaded.learner.model, x)[0].detach().numpy()

    assert float(again @ vectors[5].astype(np.float32)) > 0.99  # the same photo, as the version sees it


def test_the_nearest_photos_leave_the_photo_itself_out_and_come_nearest_first(trained):
    ids, labels, _ = _stored(trained)
    photo = Photo.objects.get(id=int(ids[0]))

    found = similar.nearest(trained, photo, k=5)

    assert len(found) == 5 and photo.id not in [n.photo_id for n in found]
    assert [n.similarity for n in found] == sorted((n.similarity for n in found), reverse=True)
    assert all(n.label == dict(zip(map(int, ids), map(str, labels)))[n.photo_id] for n in found)


@pytest.fixture
def reviewed(trained, member):
    """A photo of the run's data, predicted by the version and awaiting review."""
    photo_id = trained.training_run.data[0][0]
    Photo.objects.filter(id=photo_id).update(status=Photo.Status.NEEDS_REVIEW, review_kind="uncertain")
    PredictionFactory(photo_id=photo_id, model_version=trained, label=Label.objects.get(name="monstera"))
    return Photo.objects.get(id=photo_id)


def _client(user):
    client = Client()
    client.force_login(user)
    return client


def test_an_expert_sees_the_nearest_photos_with_their_training_labels(reviewed, trained, expert):
    deleted = similar.nearest(trained, reviewed)[0].photo_id
    Photo.objects.filter(id=deleted).delete()  # deleted since training: left out
    page = _client(expert).get(f"/photos/{reviewed.id}/similar/").content.decode()
    review_page = _client(expert).get(f"/review/{reviewed.id}/").content.decode()

    listed = page.split('id="neighbours"')[1].split("</ul>")[0]
    assert listed.count("<li data-photo-id=") == 7  # eight nearest, one deleted since
    assert f'data-photo-id="{deleted}"' not in listed and f'data-photo-id="{reviewed.id}"' not in listed
    assert "similarity" in listed
    assert f'<a href="/photos/{reviewed.id}/similar/">Photos it learned from that look most like this one</a>' in review_page


def test_members_and_pending_audits_get_no_neighbours(reviewed, member, expert):
    assert _client(member).get(f"/photos/{reviewed.id}/similar/").status_code == 403
    assert "Photos it learned from" not in _client(member).get(f"/photos/{reviewed.id}/").content.decode()
    Photo.objects.filter(id=reviewed.id).update(review_kind=Photo.ReviewKind.AUDIT)
    assert _client(expert).get(f"/photos/{reviewed.id}/similar/").status_code == 404


def test_a_version_that_kept_no_features_says_so(reviewed, trained, expert):
    trained.metrics.pop("neighbours_npz")
    trained.save()

    page = _client(expert).get(f"/photos/{reviewed.id}/similar/").content.decode()

    assert f"Model version {trained.id} kept no features of its photos" in page
    assert f"manage.py complete_model_versions {trained.id} adds them" in page


def test_the_features_file_is_backed_up_and_not_an_orphan(trained):
    name = trained.metrics["neighbours_npz"]
    row = {"model": "classifier.modelversion", "fields": {"file": trained.file, "metrics": trained.metrics}}

    assert f"models/{name}" in _files_named_by(row)
    assert name not in [p.name for p in model_files_unreferenced(min_age_seconds=0)]


@pytest.mark.parametrize("broken, error, said", [
    ("embed_learner_rows", RuntimeError("out of memory"), "RuntimeError: out of memory"),
    ("save", OSError(28, "No space left on device"), "[Errno 28] No space left on device"),
])
def test_a_failure_to_keep_the_features_keeps_the_model_and_says_so(staff, tmp_path, settings, broken, error, said):
    generate_dataset(tmp_path / "plants", per_label=4, size=64, seed=2)
    with mock.patch.object(services, "is_validation", every_fourth_id_is_validation), \
            mock.patch.object(similar, broken, side_effect=error):
        photos_import_folder(directory=tmp_path / "plants", owner=staff)
        run = training_run_start(user=staff, options=TINY, enqueue=False)
        run = training_run_execute(run.id)

    assert run.status == "succeeded"
    assert f"features were not kept, so reviews show no similar photos and unfamiliar photos are not recognised: " \
           f"{said}" in run.log
    assert "neighbours_npz" not in run.model_version.metrics
    assert not list(settings.MODEL_ROOT.glob("*features*"))  # nothing half-written left behind


def test_a_save_that_fails_midway_leaves_no_file(tmp_path):
    (tmp_path / "models").mkdir()
    with mock.patch("numpy.savez", side_effect=OSError(28, "No space left on device")), \
            pytest.raises(OSError, match="No space"):
        similar.save(tmp_path / "models" / "f.npz", [1], ["fern"], np.zeros((1, 4)), [False])

    assert list((tmp_path / "models").iterdir()) == []


def test_completing_an_older_version_keeps_the_features_training_would_have(trained, reviewed, expert):
    _, _, kept_by_training = _stored(trained)
    (trained.path.parent / trained.metrics.pop("neighbours_npz")).unlink()
    del trained.metrics["familiarity"]
    trained.save()
    Photo.objects.filter(id=trained.training_run.data[-1][0]).delete()
    out = io.StringIO()

    call_command("complete_model_versions", "--missing", stdout=out)

    trained.refresh_from_db()
    ids, _, vectors = _stored(trained)
    assert len(ids) == 11  # one deleted since
    assert f"Version {trained.id}: features of 11 photos kept for the similar photos and the familiarity check; " \
           "1 deleted or unreadable, left out." in out.getvalue()
    assert trained.familiarity().photos == sum(valid for _, _, valid in trained.training_run.data[:11])
    cosines = (vectors.astype(np.float32) * kept_by_training[:11].astype(np.float32)).sum(axis=1)
    assert cosines.min() > 0.99  # as training computed them
    page = _client(expert).get(f"/photos/{reviewed.id}/similar/").content.decode()
    assert page.split('id="neighbours"')[1].count("<li data-photo-id=") == 8



def test_the_api_gives_the_nearest_photos_for_experts_only(reviewed, trained, expert, member, api_for):
    body = api_for(expert).get(f"/api/v1/photos/{reviewed.id}/similar/").json()

    assert body["model_version"] == trained.id and body["unavailable"] is None
    assert [p["photo"] for p in body["photos"]] == [n.photo_id for n in similar.nearest(trained, reviewed)]
    first = body["photos"][0]
    assert first["image_url"].startswith("http://testserver/media/photos/") and first["label"] == first["final_label"]
    assert api_for(member).get(f"/api/v1/photos/{reviewed.id}/similar/").status_code == 403
    trained.metrics.pop("neighbours_npz")
    trained.save()
    none = api_for(expert).get(f"/api/v1/photos/{reviewed.id}/similar/").json()
    assert none["photos"] == [] and "kept no features" in none["unavailable"]


def test_training_can_keep_the_features_without_djangos_settings():
    """classifier.training is used on its own (the benchmarks, a GPU machine's check): its
    features pass imports classifier.similar, which must not need Django's settings to load."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    done = subprocess.run([sys.executable, "-c", "import classifier.similar, classifier.familiarity"],
                          cwd=Path(__file__).resolve().parents[2], env=env, capture_output=True, text=True,
                          timeout=120)

    assert done.returncode == 0, done.stderr
