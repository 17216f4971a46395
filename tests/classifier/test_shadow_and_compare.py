"""The book's step-by-step rollout: a new version first runs in shadow mode, is compared with
the active one, and only then activated (rollback is one click)."""

import io
import shutil
from unittest import mock

import pytest
from django.test import Client

from classifier import evaluation, services
from classifier.demo_images import generate_dataset
from classifier.inference import file_sha256
from classifier.models import ModelVersion, ShadowPrediction
from labeling import services as labeling_services
from labeling.models import Photo
from tests.factories import ModelVersionFactory, jpeg_bytes


@pytest.fixture
def shadow_version(active_model, settings):
    shutil.copy(active_model.path, settings.MODEL_ROOT / "shadow.pkl")
    version = ModelVersion.objects.create(
        file="shadow.pkl", sha256=active_model.sha256, size=active_model.size, labels=active_model.labels,
        architecture="resnet18", image_size=32, metrics={"error_rate": 0.4})
    return services.model_version_shadow(version_id=version.id)


@pytest.fixture
def no_broker(monkeypatch):
    monkeypatch.setattr("labeling.tasks.photo_predict_task.delay", lambda *a: None)


def _uploaded_and_predicted(owner):
    photo = labeling_services.photo_upload(owner=owner, fileobj=io.BytesIO(jpeg_bytes(colour=(20, 120, 40))))
    labeling_services.photo_predict(photo.id)
    return Photo.objects.select_related("prediction").get(id=photo.id)


def test_shadow_mode_stores_shadow_predictions_without_changing_any_photo(shadow_version, active_model, member,
                                                                         no_broker, settings):
    photo = _uploaded_and_predicted(member)

    shadow = ShadowPrediction.objects.get(photo=photo)
    assert shadow.model_version == shadow_version
    assert set(shadow.probabilities) == set(active_model.labels)
    assert photo.prediction.model_version == active_model
    expected = "final" if photo.prediction.confidence >= settings.CONFIDENCE_THRESHOLD else "needs_review"
    assert photo.status == expected
    body = Client()
    body.force_login(member)
    assert "shadow" not in body.get(f"/api/v1/photos/{photo.id}/").content.decode()


def test_a_photo_predicted_twice_keeps_one_shadow_prediction(shadow_version, member, no_broker):
    photo = _uploaded_and_predicted(member)

    labeling_services._predict_in_shadow([photo])

    assert ShadowPrediction.objects.filter(photo=photo).count() == 1


def test_a_broken_shadow_version_never_touches_the_real_prediction(shadow_version, member, no_broker, caplog):
    with open(shadow_version.path, "ab") as fh:
        fh.write(b"tampered")

    photo = _uploaded_and_predicted(member)

    assert photo.status in ("final", "needs_review")
    assert photo.prediction.model_version.is_active
    assert not ShadowPrediction.objects.exists()
    assert "Shadow version" in caplog.text


def test_the_active_version_cannot_run_in_shadow_mode(active_model):
    with pytest.raises(services.ShadowError):
        services.model_version_shadow(version_id=active_model.id)


def test_activating_a_shadow_version_ends_its_shadow_mode_and_rollback_is_one_call(shadow_version, active_model):
    services.model_version_activate(version_id=shadow_version.id)
    shadow_version.refresh_from_db()
    assert shadow_version.is_active and not shadow_version.is_shadow

    services.model_version_activate(version_id=active_model.id)

    assert list(ModelVersion.objects.filter(is_active=True)) == [active_model]


def test_only_one_version_runs_in_shadow_mode(shadow_version, active_model, settings):
    other = ModelVersionFactory()

    services.model_version_shadow(version_id=other.id)

    assert list(ModelVersion.objects.filter(is_shadow=True)) == [other]


def test_shadow_agreement_counts_matches_with_the_active_model_and_the_experts(shadow_version, member, expert,
                                                                               no_broker):
    photos = [_uploaded_and_predicted(member) for _ in range(3)]
    decided = photos[0]
    shadow_label = ShadowPrediction.objects.get(photo=decided).label
    Photo.objects.filter(id=decided.id).update(status="final", label_source="expert",
                                               final_label=decided.prediction.label)

    stats = evaluation.shadow_agreement(shadow_version)

    assert stats["predictions"] == 3
    # The shadow is the same learner as the active one: it agrees on every photo.
    assert stats["with_active"] == {"matched": 3, "total": 3, "rate": 1.0}
    assert stats["with_experts"]["total"] == 1
    assert stats["with_experts"]["matched"] == int(shadow_label == decided.prediction.label.name)


def test_the_models_page_shows_the_shadow_and_its_agreement(shadow_version, staff, member, no_broker):
    _uploaded_and_predicted(member)
    client = Client()
    client.force_login(staff)

    page = client.get("/models/").content.decode()

    assert "shadow" in page and "agrees with the active model on 1/1" in page


def test_staff_switch_shadow_mode_over_the_api_and_others_cannot(active_model, shadow_version, staff, member,
                                                                 api_for):
    assert api_for(member).post(f"/api/v1/models/{shadow_version.id}/shadow/", {"enabled": False}).status_code == 403
    response = api_for(staff).post(f"/api/v1/models/{shadow_version.id}/shadow/", {"enabled": False}, format="json")
    assert response.status_code == 200 and response.json()["is_shadow"] is False
    conflict = api_for(staff).post(f"/api/v1/models/{active_model.id}/shadow/", {"enabled": True}, format="json")
    assert conflict.status_code == 409


# --- comparing two versions on the same validation photos ------------------------------


@pytest.fixture
def validation_set(db, staff, tmp_path):
    generate_dataset(tmp_path / "data", per_label=8, size=64, seed=11)
    labeling_services.photos_import_folder(directory=tmp_path / "data", owner=staff)
    return evaluation.validation_photos()


@pytest.fixture
def second_version(active_model, settings, tmp_path):
    from classifier.training import TrainingOptions, train

    items = generate_dataset(tmp_path / "other", per_label=4, size=64, seed=5)
    rows = [(str(p), label, i % 3 == 0) for i, (p, label) in enumerate(items)]
    export = settings.MODEL_ROOT / "other.pkl"
    train(rows, TrainingOptions(image_size=32, epochs=1, batch_size=8, pretrained=False, seed=7), export)
    return ModelVersion.objects.create(file="other.pkl", sha256=file_sha256(export), size=export.stat().st_size,
                                       labels=active_model.labels, architecture="resnet18", image_size=32)


def test_two_versions_are_compared_on_the_same_validation_photos(validation_set, active_model, second_version):
    result = evaluation.model_versions_compare(active_model, second_version)

    assert result["count"] == len(validation_set) > 0
    for score in (result["a"], result["b"]):
        assert sum(total for _, total in score.per_label.values()) == result["count"]
        assert 0 <= score.accuracy <= 1
    assert result["agreement"] == (result["count"] - len(result["differences"])) / result["count"]


def test_a_version_compared_with_itself_agrees_everywhere(validation_set, active_model):
    result = evaluation.model_versions_compare(active_model, active_model)

    assert result["agreement"] == 1.0 and result["differences"] == []


def test_the_compare_page_and_api_show_both_versions(validation_set, active_model, second_version, member, api_for):
    client = Client()
    client.force_login(member)
    page = client.get(f"/models/compare/?a={active_model.id}&b={second_version.id}")
    assert page.status_code == 200 and b"compare-table" in page.content

    body = api_for(member).get(f"/api/v1/models/compare/?a={active_model.id}&b={second_version.id}").json()
    assert body["count"] == len(validation_set)
    assert set(body["versions"]) == {str(active_model.id), str(second_version.id)}
    assert api_for(member).get("/api/v1/models/compare/?a=x&b=1").status_code == 400


@pytest.mark.parametrize("raw", ["x", "²", "①", "-1", "99999999999999999999999"])
def test_the_compare_page_ignores_a_version_id_that_is_not_one(active_model, member, raw):
    client = Client()
    client.force_login(member)

    page = client.get(f"/models/compare/?a={raw}&b={active_model.id}")

    assert page.status_code == 200 and b"compare-table" not in page.content


def test_photos_left_out_of_training_are_left_out_of_the_comparison(validation_set, active_model):
    Photo.objects.filter(id=validation_set[0].id).update(excluded_from_training=True)

    assert validation_set[0] not in evaluation.validation_photos()


def test_anonymous_users_cannot_compare(db):
    assert Client().get("/models/compare/").status_code == 302


@pytest.mark.parametrize("damage", ["delete", "overwrite"])
def test_a_version_whose_file_is_gone_or_changed_cannot_be_activated_or_shadowed(db, staff, api_for, active_model,
                                                                                  damage):
    other = ModelVersionFactory()
    if damage == "delete":
        other.path.unlink()
    else:
        other.path.write_bytes(b"something else")

    activate = api_for(staff).post(f"/api/v1/models/{other.id}/activate/")
    shadow = api_for(staff).post(f"/api/v1/models/{other.id}/shadow/", {"enabled": True}, format="json")
    client = Client()
    client.force_login(staff)
    page = client.post(f"/models/{other.id}/activate/", follow=True).content.decode()

    assert activate.status_code == 409 and shadow.status_code == 409
    assert activate.json()["detail"] == (f"Model version {other.id}'s file is missing or is not the file that was "
                                         "registered: it cannot predict.")
    assert str(other.path.parent) not in activate.json()["detail"]
    assert "cannot predict" in page
    assert list(ModelVersion.objects.filter(is_active=True)) == [active_model]
    assert not ModelVersion.objects.filter(is_shadow=True).exists()


def test_a_photo_whose_file_cannot_be_read_is_left_out_of_the_comparison_and_counted(validation_set, active_model,
                                                                                      second_version, member, api_for):
    gone, broken = validation_set[0], validation_set[1]
    gone.image.storage.delete(gone.image.name)
    with open(broken.image.path, "wb") as f:
        f.write(b"not an image")
    client = Client()
    client.force_login(member)

    page = client.get(f"/models/compare/?a={active_model.id}&b={second_version.id}").content.decode()
    body = api_for(member).get(f"/api/v1/models/compare/?a={active_model.id}&b={second_version.id}").json()

    assert (body["count"], body["unreadable"]) == (len(validation_set) - 2, 2)
    assert "2 photos could not be read and were left out." in page


def test_a_version_whose_file_is_missing_is_named_without_the_servers_paths(validation_set, active_model,
                                                                             second_version, member, api_for, settings):
    from classifier.inference import model_cache

    model_cache.clear()
    second_version.path.unlink()
    client = Client()
    client.force_login(member)

    page = client.get(f"/models/compare/?a={active_model.id}&b={second_version.id}").content.decode()
    response = api_for(member).get(f"/api/v1/models/compare/?a={active_model.id}&b={second_version.id}")

    message = f"Model version {second_version.id} was refused: its file is missing or unreadable."
    assert response.status_code == 409 and response.json()["detail"] == message
    assert message in page and str(settings.MODEL_ROOT) not in page


def test_a_member_sees_other_members_photos_that_differ_as_numbers_and_their_own_as_pictures(
        validation_set, active_model, second_version, staff, member, monkeypatch):
    mine = validation_set[0]
    Photo.objects.filter(id=mine.id).update(owner=member)
    differences = [{"photo": p, "truth": "monstera", "a": "monstera", "b": "spider_plant"} for p in validation_set[:2]]
    real = evaluation.model_versions_compare
    monkeypatch.setattr(evaluation, "model_versions_compare",
                        lambda a, b: {**real(a, b), "differences": differences})
    client = Client()
    client.force_login(member)

    page = client.get(f"/models/compare/?a={active_model.id}&b={second_version.id}").content.decode()

    assert f'href="/photos/{mine.id}/history/"' in page
    assert f'href="/photos/{validation_set[1].id}/history/"' not in page and f"Photo {validation_set[1].id}" in page


def test_each_version_predicts_a_photo_once_however_often_the_comparison_is_viewed(validation_set, active_model,
                                                                                   second_version, staff, tmp_path):
    from classifier.inference import LoadedModel

    predicted = []  # how many photos each call predicts
    real = LoadedModel.predict_paths

    def counting(model, paths):
        predicted.append(len(paths))
        return real(model, paths)

    first = evaluation.model_versions_compare(active_model, second_version)
    with mock.patch.object(LoadedModel, "predict_paths", counting):
        again = evaluation.model_versions_compare(active_model, second_version)
        assert predicted == []
        generate_dataset(tmp_path / "more", per_label=4, size=64, seed=12)
        labeling_services.photos_import_folder(directory=tmp_path / "more", owner=staff)
        grown = evaluation.model_versions_compare(active_model, second_version)

    assert (again["count"], again["agreement"]) == (first["count"], first["agreement"])
    new = len(evaluation.validation_photos()) - len(validation_set)
    assert grown["count"] == first["count"] + new > first["count"]
    assert sum(predicted) == 2 * new  # only the new photos, once per version
