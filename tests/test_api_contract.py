"""What the API promises about requests it cannot carry out as sent: unknown keys and missing
conflict checks are refused, form-encoded bodies mean what JSON ones do, errors are JSON, and a
state it cannot change is a 409 with a sentence."""

from unittest import mock

import pytest
from django.test import RequestFactory

from classifier import services as classifier_services
from classifier.models import ModelVersion, TrainingRun
from labeling import middleware
from labeling.models import Label, Photo
from tests.factories import LabelFactory, ModelVersionFactory, PhotoFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def decided(member):
    monstera = LabelFactory(name="monstera")
    LabelFactory(name="spider_plant")
    return PhotoFactory(owner=member, status=Photo.Status.FINAL, final_label=monstera,
                        label_source=Photo.LabelSource.MODEL, decided_by=Photo.DecidedBy.MODEL)


# --- unknown and missing keys ------------------------------------------------------------------


def test_a_correction_without_the_decided_at_it_saw_is_refused_and_changes_nothing(api_for, expert, decided):
    response = api_for(expert).post(f"/api/v1/photos/{decided.id}/correct/", {"label": "spider_plant"},
                                    format="json")

    assert response.status_code == 400 and "decided_at" in response.json()
    decided.refresh_from_db()
    assert decided.final_label.name == "monstera"


def test_a_misspelt_key_is_a_400_naming_it_not_a_request_without_it(api_for, expert, decided):
    response = api_for(expert).post(f"/api/v1/photos/{decided.id}/correct/",
                                    {"label": "spider_plant", "decided-at": "2026-01-01T00:00:00Z"}, format="json")

    assert response.status_code == 400
    assert "Unknown field" in response.json()["decided-at"][0]
    decided.refresh_from_db()
    assert decided.final_label.name == "monstera"


def test_an_unknown_training_option_is_a_400_naming_it_and_starts_no_run(api_for, staff):
    response = api_for(staff).post("/api/v1/training-runs/", {"epochs": 1, "lr": 0.5}, format="json")

    assert response.status_code == 400 and list(response.json()) == ["lr"]
    assert not TrainingRun.objects.exists()


def test_the_training_seed_can_be_chosen(api_for, staff):
    response = api_for(staff).post("/api/v1/training-runs/", {"epochs": 1, "seed": 7}, format="json")

    assert response.status_code == 202, response.content
    assert TrainingRun.objects.get().options["seed"] == 7


# --- form-encoded bodies -------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["multipart", None])  # None: urlencoded, as curl -d sends it
def test_a_form_encoded_label_edit_leaves_retired_as_it_was(api_for, staff, fmt):
    label = LabelFactory(name="fern", retired=True)
    client = api_for(staff)

    if fmt:
        response = client.patch(f"/api/v1/labels/{label.id}/", {"description": "A fern."}, format=fmt)
    else:
        response = client.patch(f"/api/v1/labels/{label.id}/", "description=A+fern.",
                                content_type="application/x-www-form-urlencoded")

    assert response.status_code == 200, response.content
    label.refresh_from_db()
    assert (label.description, label.retired) == ("A fern.", True)


def test_a_form_encoded_training_run_keeps_pretrained_weights_on(api_for, staff):
    response = api_for(staff).post("/api/v1/training-runs/", "epochs=1&image_size=32",
                                   content_type="application/x-www-form-urlencoded")

    assert response.status_code == 202, response.content
    assert TrainingRun.objects.get().options["pretrained"] is True


# --- errors in JSON -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/nope/", "/api/v1/photos/abc/", "/api/v1/photos/-1/"])
def test_an_api_path_that_matches_nothing_is_a_json_404(api_for, member, path):
    response = api_for(member).get(path)

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json" and response.json() == {"detail": "Not found."}


def test_an_api_post_without_its_final_slash_is_a_404_naming_the_path_not_a_redirect_that_loses_it(
        api_for, member):
    photo = PhotoFactory(owner=member, status=Photo.Status.FAILED)

    response = api_for(member).post(f"/api/v1/photos/{photo.id}/retry")

    assert response.status_code == 404
    assert response.json()["detail"] == f"Not found: API paths end with a slash (/api/v1/photos/{photo.id}/retry/)."
    photo.refresh_from_db()
    assert photo.status == Photo.Status.FAILED


def test_pages_are_still_redirected_to_their_path_with_a_slash(client):
    response = client.get("/review")

    assert response.status_code == 301 and response["Location"] == "/review/"


def test_a_server_error_under_the_api_is_json_and_a_page_error_is_not():
    factory = RequestFactory()

    try:
        raise RuntimeError("a bug")
    except RuntimeError:
        api = middleware.server_error(factory.get("/api/v1/photos/"))
        page = middleware.server_error(factory.get("/photos/"))

    assert api.status_code == 500 and api["Content-Type"] == "application/json"
    assert page.status_code == 500 and page["Content-Type"].startswith("text/html")


# --- 409s with a sentence -------------------------------------------------------------------------


def test_activating_the_active_version_again_is_a_409_that_leaves_activated_at_alone(api_for, staff):
    version = ModelVersionFactory()
    client = api_for(staff)

    first = client.post(f"/api/v1/models/{version.id}/activate/")
    activated_at = ModelVersion.objects.get(id=version.id).activated_at
    second = client.post(f"/api/v1/models/{version.id}/activate/")

    assert first.status_code == 200 and second.status_code == 409
    assert second.json()["detail"] == f"Model version {version.id} is already the active version."
    assert ModelVersion.objects.get(id=version.id).activated_at == activated_at


def test_a_cancel_that_comes_after_the_run_ended_names_the_status_it_ended_with(api_for, staff):
    run = TrainingRun.objects.create(status=TrainingRun.Status.RUNNING)

    def run_ends_first(*, run_id):
        TrainingRun.objects.filter(id=run_id).update(status=TrainingRun.Status.SUCCEEDED)
        return False

    with mock.patch.object(classifier_services, "training_run_cancel", run_ends_first):
        response = api_for(staff).post(f"/api/v1/training-runs/{run.id}/cancel/")

    assert response.status_code == 409
    assert response.json() == {"detail": f"Run {run.id} has already ended (succeeded)."}


def test_audit_stats_of_a_version_that_does_not_exist_is_a_404_not_zeros(api_for, expert):
    response = api_for(expert).get("/api/v1/audits/stats/?version=999999")

    assert response.status_code == 404


# --- the schema says so -----------------------------------------------------------------------------


def test_the_schema_documents_409_bodies_and_the_compare_answer(api_for, member):
    schema = api_for(member).get("/api/schema/?format=json").json()
    paths = schema["paths"]

    conflict = paths["/api/v1/photos/{id}/review/"]["post"]["responses"]["409"]
    compare = paths["/api/v1/models/compare/"]["get"]["responses"]["200"]
    assert conflict["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Detail"}
    assert compare["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Compare"}
    assert set(schema["components"]["schemas"]["Compare"]["properties"]) == {
        "count", "agreement", "unreadable", "versions", "differences"}


def test_activating_the_active_version_from_the_models_page_says_it_is_active_already(client, staff):
    version = ModelVersionFactory()
    classifier_services.model_version_activate(version_id=version.id)
    client.force_login(staff)

    response = client.post(f"/models/{version.id}/activate/", follow=True)

    assert response.status_code == 200
    assert f"Model version {version.id} is already the active version." in response.content.decode()
