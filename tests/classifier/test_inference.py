"""Loading exported learners only when their sha256 matches, predicting with them, and the
registry's one active version (services and API)."""

import logging
import shutil

import pytest

from classifier.demo_images import generate_dataset
from classifier.inference import ModelCache, ModelIntegrityError, file_sha256
from classifier.models import ModelVersion
from classifier.services import model_version_activate
from labeling.models import Photo, Prediction
from labeling.services import photo_predict
from labeling.tasks import photo_predict_task
from tests.factories import ModelVersionFactory, PhotoFactory

LABELS = ["dieffenbachia", "monstera", "spider_plant"]


@pytest.fixture
def model_copy(tmp_path, tiny_model_file):
    path = tmp_path / "copy.pkl"
    shutil.copy(tiny_model_file, path)
    return path


@pytest.fixture
def tampered_copy(model_copy):
    """The same file with one byte appended: what the registry recorded no longer matches."""
    with open(model_copy, "ab") as fh:
        fh.write(b"\0")
    return model_copy


@pytest.fixture(scope="module")
def three_images(tmp_path_factory):
    return [path for path, _ in generate_dataset(tmp_path_factory.mktemp("three"), per_label=1, size=64, seed=5)]


# --- the cache and its integrity check -------------------------------------------------


def test_a_file_whose_sha256_matches_is_loaded_with_its_labels(model_copy, tiny_model_file):
    loaded = ModelCache().get(1, model_copy, file_sha256(tiny_model_file))

    assert loaded.version_id == 1
    assert loaded.labels == LABELS


def test_the_bytes_unpickled_are_the_bytes_whose_sha256_was_checked(model_copy, monkeypatch):
    """Loading the file again by name after hashing it would unpickle whatever replaced it meanwhile."""
    import hashlib

    import fastai.learner

    given = []
    real = fastai.learner.load_learner

    def spy(source, *args, **kwargs):
        given.append(source)
        return real(source, *args, **kwargs)

    monkeypatch.setattr(fastai.learner, "load_learner", spy)
    sha256 = file_sha256(model_copy)

    ModelCache().get(1, model_copy, sha256)

    assert len(given) == 1
    assert hashlib.sha256(given[0].getvalue()).hexdigest() == sha256


def test_predict_paths_gives_every_label_a_probability_summing_to_one_per_image(model_copy, three_images):
    loaded = ModelCache().get(1, model_copy, file_sha256(model_copy))

    predictions = loaded.predict_paths(three_images)

    assert len(predictions) == 3
    for probabilities in predictions:
        assert set(probabilities) == set(LABELS)
        assert all(0.0 <= p <= 1.0 for p in probabilities.values())
        assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-4)


def test_a_tampered_file_is_refused_and_the_refusal_is_logged_as_an_error(tampered_copy, tiny_model_file, caplog):
    cache = ModelCache()

    with caplog.at_level(logging.ERROR, logger="classifier.inference"), \
            pytest.raises(ModelIntegrityError, match="Model version 7 was refused"):
        cache.get(7, tampered_copy, file_sha256(tiny_model_file))

    refusals = [r for r in caplog.records if r.levelno == logging.ERROR and r.name == "classifier.inference"]
    assert len(refusals) == 1
    assert "Refusing model version 7" in refusals[0].getMessage()
    assert str(tampered_copy) in refusals[0].getMessage()
    assert cache._loaded == {}


def test_the_same_version_is_served_from_the_cache_without_loading_again(model_copy):
    cache = ModelCache()
    sha256 = file_sha256(model_copy)
    first = cache.get(1, model_copy, sha256)
    model_copy.unlink()  # a second load would fail: the cached learner must be returned

    assert cache.get(1, model_copy, sha256) is first


def test_the_cache_swaps_models_when_another_version_is_requested(model_copy):
    cache = ModelCache()
    sha256 = file_sha256(model_copy)
    first = cache.get(1, model_copy, sha256)

    second = cache.get(2, model_copy, sha256)

    assert second is not first
    assert second.version_id == 2
    assert cache.get(2, model_copy, sha256) is second


def test_the_cache_holds_the_active_and_the_shadow_model_and_drops_the_least_recently_used(model_copy):
    cache = ModelCache(capacity=2)
    sha256 = file_sha256(model_copy)
    first = cache.get(1, model_copy, sha256)
    second = cache.get(2, model_copy, sha256)
    assert cache.get(1, model_copy, sha256) is first  # both held: no reload

    cache.get(3, model_copy, sha256)  # version 2 was used least recently

    assert set(cache._loaded) == {1, 3}
    assert cache.get(2, model_copy, sha256) is not second


def test_the_cache_checks_the_file_again_when_the_recorded_sha256_changes(model_copy):
    cache = ModelCache()
    cache.get(1, model_copy, file_sha256(model_copy))

    with pytest.raises(ModelIntegrityError):
        cache.get(1, model_copy, "0" * 64)


# --- predicting photos with a tampered active model ------------------------------------


@pytest.fixture
def tampered_active_model(active_model):
    with open(active_model.path, "ab") as fh:
        fh.write(b"\0")
    return active_model


def test_predicting_with_the_active_model_stores_a_prediction(active_model, member):
    photo = PhotoFactory(owner=member)

    photo = photo_predict(photo.id)

    prediction = Prediction.objects.get(photo=photo)
    assert prediction.model_version == active_model
    assert set(prediction.probabilities) == set(LABELS)
    assert photo.status in (Photo.Status.FINAL, Photo.Status.NEEDS_REVIEW)


def test_predicting_with_a_tampered_active_model_raises_and_stores_nothing(tampered_active_model, member):
    photo = PhotoFactory(owner=member)

    with pytest.raises(ModelIntegrityError):
        photo_predict(photo.id)

    photo.refresh_from_db()
    assert photo.status == Photo.Status.QUEUED
    assert not Prediction.objects.exists()


def test_the_prediction_task_marks_the_photo_failed_saying_the_model_was_refused(tampered_active_model, member):
    photo = PhotoFactory(owner=member)

    result = photo_predict_task.apply(args=[photo.id])

    assert result.failed()
    assert isinstance(result.result, ModelIntegrityError)
    photo.refresh_from_db()
    assert photo.status == Photo.Status.FAILED
    assert photo.reason.startswith("Prediction failed: ")
    assert f"Model version {tampered_active_model.id} was refused" in photo.reason
    assert not Prediction.objects.exists()


# --- one active version ----------------------------------------------------------------


def test_activating_then_rolling_back_always_leaves_exactly_one_active_version(db):
    a, b = ModelVersionFactory(), ModelVersionFactory()

    for version in (a, b, a):
        model_version_activate(version_id=version.id)
        active = list(ModelVersion.objects.filter(is_active=True).values_list("id", flat=True))
        assert active == [version.id]
        assert ModelVersion.objects.get(id=version.id).activated_at is not None


def test_staff_activate_a_version_through_the_api(db, staff, api_for):
    old, new = ModelVersionFactory(is_active=True), ModelVersionFactory()

    response = api_for(staff).post(f"/api/v1/models/{new.id}/activate/")

    assert response.status_code == 200
    assert response.data["id"] == new.id and response.data["is_active"] is True
    assert list(ModelVersion.objects.filter(is_active=True)) == [new]
    old.refresh_from_db()
    assert old.is_active is False


def test_members_may_not_activate_a_version(db, member, api_for):
    old, new = ModelVersionFactory(is_active=True), ModelVersionFactory()

    response = api_for(member).post(f"/api/v1/models/{new.id}/activate/")

    assert response.status_code == 403
    assert list(ModelVersion.objects.filter(is_active=True)) == [old]


def test_activating_an_unknown_version_through_the_api_is_404(db, staff, api_for):
    assert api_for(staff).post("/api/v1/models/999999/activate/").status_code == 404


def test_the_api_lists_model_versions_with_their_metrics(db, member, api_for):
    a = ModelVersionFactory(metrics={"error_rate": 0.25, "per_label": {}, "confusion_matrix": []})
    b = ModelVersionFactory(is_active=True, metrics={"error_rate": 0.1, "per_label": {}, "confusion_matrix": []})

    response = api_for(member).get("/api/v1/models/")

    assert response.status_code == 200
    listed = {item["id"]: item for item in response.data["results"]}
    assert set(listed) == {a.id, b.id}
    assert listed[a.id]["metrics"]["error_rate"] == 0.25
    assert listed[b.id]["is_active"] is True
    assert listed[b.id]["sha256"] == b.sha256
    assert listed[b.id]["labels"] == b.labels


def test_anonymous_visitors_may_not_list_model_versions(db, api_for):
    assert api_for(None).get("/api/v1/models/").status_code in (401, 403)
