"""Reading photos, the review queue and labels through the API, and getting a token."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from labeling.models import Photo
from tests.factories import LabelFactory, PhotoFactory, PredictionFactory

PHOTO_FIELDS = {"id", "image_url", "status", "uploaded_at", "prediction", "final_label", "decided_by",
                "reviewed_by", "decided_at", "reason", "synthetic"}
PREDICTION_FIELDS = {"label", "confidence", "probabilities", "model_version", "explain_url", "familiarity",
                     "familiarity_cutoff", "unfamiliar"}


@pytest.fixture
def photos(member, other_member):
    """Two photos of the member, one of another member."""
    return {
        "mine_1": PhotoFactory(owner=member),
        "mine_2": PhotoFactory(owner=member),
        "theirs": PhotoFactory(owner=other_member),
    }


def ids(response):
    return {item["id"] for item in response.json()["results"]}


# --- the list -----------------------------------------------------------------


def test_a_member_lists_only_their_own_photos_in_a_paginated_list(api_for, member, photos):
    response = api_for(member).get("/api/v1/photos/")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert body["count"] == 2
    assert ids(response) == {photos["mine_1"].id, photos["mine_2"].id}


@pytest.mark.parametrize("role", ["expert", "staff"])
def test_experts_and_staff_list_everyones_photos(api_for, photos, role, request):
    response = api_for(request.getfixturevalue(role)).get("/api/v1/photos/")

    assert response.status_code == 200
    assert ids(response) == {p.id for p in photos.values()}


def test_the_list_is_newest_first(api_for, member):
    now = timezone.now()
    old = PhotoFactory(owner=member, uploaded_at=now - timedelta(days=2))
    new = PhotoFactory(owner=member, uploaded_at=now)
    middle = PhotoFactory(owner=member, uploaded_at=now - timedelta(days=1))

    response = api_for(member).get("/api/v1/photos/")

    assert [item["id"] for item in response.json()["results"]] == [new.id, middle.id, old.id]


def test_the_list_is_paginated_fifty_at_a_time(api_for, member):
    PhotoFactory.create_batch(51, owner=member)

    first = api_for(member).get("/api/v1/photos/").json()
    second = api_for(member).get("/api/v1/photos/?page=2").json()

    assert first["count"] == 51
    assert len(first["results"]) == 50
    assert first["next"].endswith("/api/v1/photos/?page=2")
    assert len(second["results"]) == 1
    assert second["next"] is None


# --- the detail ---------------------------------------------------------------


def test_a_member_gets_404_for_another_members_photo(api_for, member, photos):
    response = api_for(member).get(f"/api/v1/photos/{photos['theirs'].id}/")

    assert response.status_code == 404


def test_an_expert_reads_any_members_photo(api_for, expert, photos):
    response = api_for(expert).get(f"/api/v1/photos/{photos['theirs'].id}/")

    assert response.status_code == 200
    assert response.json()["id"] == photos["theirs"].id


def test_the_detail_of_a_queued_photo_has_exactly_the_documented_fields(api_for, member, photos):
    photo = photos["mine_1"]

    body = api_for(member).get(f"/api/v1/photos/{photo.id}/").json()

    assert set(body) == PHOTO_FIELDS
    assert body == {
        "id": photo.id,
        "image_url": f"http://testserver/media/{photo.image.name}",
        "status": "queued",
        "uploaded_at": body["uploaded_at"],
        "prediction": None,
        "final_label": None,
        "decided_by": None,
        "reviewed_by": None,
        "decided_at": None,
        "reason": "",
        "synthetic": False,
    }


def test_the_detail_of_a_reviewed_photo_shows_the_prediction_and_the_decision(api_for, member, expert):
    prediction = PredictionFactory(photo__owner=member, confidence=0.6, margin=0.2,
                                   probabilities={"monstera": 0.6, "spider_plant": 0.4})
    photo = prediction.photo
    photo.decide_by_expert(expert, label=LabelFactory(name="spider_plant"))
    photo.save()

    body = api_for(member).get(f"/api/v1/photos/{photo.id}/").json()

    assert set(body) == PHOTO_FIELDS
    assert set(body["prediction"]) == PREDICTION_FIELDS
    assert body["prediction"] == {
        "label": "monstera",
        "confidence": 0.6,
        "probabilities": {"monstera": 0.6, "spider_plant": 0.4},
        "model_version": prediction.model_version_id,
        "explain_url": f"/photos/{photo.id}/explain.png",  # the factory's version is 64 px: a 2 x 2 grid
        "familiarity": None, "familiarity_cutoff": None, "unfamiliar": False,  # not measured
    }
    assert body["status"] == "final"
    assert body["final_label"] == "spider_plant"
    assert body["decided_by"] == "expert"
    assert body["reviewed_by"] == "expert"
    assert body["decided_at"] is not None


# --- the review queue ---------------------------------------------------------


def test_the_review_queue_shows_photos_without_a_prediction_first_then_the_smallest_margin(api_for, expert):
    wide = PredictionFactory(margin=0.5).photo
    narrowest = PredictionFactory(margin=0.01).photo
    narrow = PredictionFactory(margin=0.2).photo
    no_model = PhotoFactory(status=Photo.Status.NEEDS_REVIEW, reason="No model is active yet: an expert will decide.")
    PredictionFactory(margin=0.0, photo__status=Photo.Status.FINAL)  # decided: not in the queue
    PhotoFactory(status=Photo.Status.QUEUED)  # not predicted yet: not in the queue

    response = api_for(expert).get("/api/v1/review-queue/")

    assert response.status_code == 200
    assert [item["id"] for item in response.json()["results"]] == [no_model.id, narrowest.id, narrow.id, wide.id]


def test_photos_with_the_same_margin_wait_in_upload_order(api_for, expert):
    now = timezone.now()
    later = PredictionFactory(margin=0.3, photo__uploaded_at=now).photo
    earlier = PredictionFactory(margin=0.3, photo__uploaded_at=now - timedelta(hours=1)).photo

    response = api_for(expert).get("/api/v1/review-queue/")

    assert [item["id"] for item in response.json()["results"]] == [earlier.id, later.id]


def test_staff_may_read_the_review_queue(api_for, staff):
    PredictionFactory()

    response = api_for(staff).get("/api/v1/review-queue/")

    assert response.status_code == 200
    assert response.json()["count"] == 1


def test_the_review_queue_is_forbidden_for_members(api_for, member):
    PredictionFactory(photo__owner=member)

    response = api_for(member).get("/api/v1/review-queue/")

    assert response.status_code == 403
    assert response.json() == {"detail": "Only experts and staff can review photos."}


# --- labels -------------------------------------------------------------------


def test_labels_are_listed_by_name_without_pagination(api_for, member):
    spider = LabelFactory(name="spider_plant", description="Chlorophytum comosum")
    monstera = LabelFactory(name="monstera")

    response = api_for(member).get("/api/v1/labels/")

    assert response.status_code == 200
    # Since labels can be retired and have example photos, each also says whether it is retired
    # and which photos are its examples.
    assert [{k: row[k] for k in ("id", "name", "description", "retired", "examples")} for row in response.json()] == [
        {"id": monstera.id, "name": "monstera", "description": "", "retired": False, "examples": []},
        {"id": spider.id, "name": "spider_plant", "description": "Chlorophytum comosum", "retired": False,
         "examples": []},
    ]


# --- tokens -------------------------------------------------------------------


def test_a_username_and_password_get_a_token_that_authenticates_requests(member, photos):
    response = APIClient().post("/api/v1/auth/token/", {"username": "member", "password": "pw-for-tests-1"},
                                format="json")

    assert response.status_code == 200
    assert set(response.json()) == {"token"}
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {response.json()['token']}")
    listed = client.get("/api/v1/photos/")
    assert listed.status_code == 200
    assert ids(listed) == {photos["mine_1"].id, photos["mine_2"].id}


def test_asking_twice_returns_the_same_token(member):
    credentials = {"username": "member", "password": "pw-for-tests-1"}

    first = APIClient().post("/api/v1/auth/token/", credentials, format="json").json()
    second = APIClient().post("/api/v1/auth/token/", credentials, format="json").json()

    assert first == second


def test_a_wrong_password_gets_400_and_no_token(member):
    response = APIClient().post("/api/v1/auth/token/", {"username": "member", "password": "wrong"}, format="json")

    assert response.status_code == 400
    assert "token" not in response.json()
    assert response.json()["non_field_errors"] == ["Unable to log in with provided credentials."]


@pytest.mark.parametrize("body", [{"username": ["member"], "password": "x"}, {"username": {"a": 1}, "password": "x"},
                                  {"username": 7, "password": "x"}, ["member", "x"], "member"])
def test_a_token_request_whose_username_is_not_a_string_gets_400_not_a_server_error(db, body):
    response = APIClient().post("/api/v1/auth/token/", body, format="json")

    assert response.status_code == 400


def test_an_unknown_token_is_refused_with_401_invalid_token(db):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)

    response = client.get("/api/v1/photos/")

    # Credentials were sent and were wrong: TokenAuthentication raises, and DRF answers
    # 401 with the token challenge.
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert response.json() == {"detail": "Invalid token."}
