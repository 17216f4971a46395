"""Query parameters of the photo list and the review queue: an explicit allow-list.

`status` and `ordering` take only the listed values (400 with a message naming them
otherwise), `label` and `owner` a label name and a username, and no client text ever becomes
an ORM field name: parameters outside the list,
such as `owner__username` or `owner__password__startswith`, are ignored and change nothing.
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from labeling.models import Photo
from tests.factories import PhotoFactory, PredictionFactory

PHOTOS = "/api/v1/photos/"
QUEUE = "/api/v1/review-queue/"


def listed_ids(response):
    assert response.status_code == 200, response.content
    return [item["id"] for item in response.json()["results"]]


@pytest.fixture
def photos(member, other_member):
    now = timezone.now()
    return {
        "old_final": PhotoFactory(owner=member, status=Photo.Status.FINAL, uploaded_at=now - timedelta(days=3)),
        "queued": PhotoFactory(owner=member, status=Photo.Status.QUEUED, uploaded_at=now - timedelta(days=2)),
        "new_final": PhotoFactory(owner=member, status=Photo.Status.FINAL, uploaded_at=now - timedelta(days=1)),
        "theirs": PhotoFactory(owner=other_member, status=Photo.Status.FINAL, uploaded_at=now),
    }


# --- parameters outside the allow-list are ignored ---------------------------------


@pytest.mark.parametrize("query", [
    "owner__username=other",
    "owner_id=0",
    "owner__password__startswith=md5",
    "owner__is_staff=true",
    "status__in=queued",
    "id__gt=0",
    "final_label__name=monstera",
    "o=owner__password",
    "order_by=owner__password",
    "sort=-id",
    "search=other",
])
def test_a_parameter_outside_the_allow_list_leaves_a_members_photo_list_unchanged(api_for, member, photos, query):
    client = api_for(member)
    plain = listed_ids(client.get(PHOTOS))

    with_query = listed_ids(client.get(f"{PHOTOS}?{query}"))

    assert with_query == plain
    assert photos["theirs"].id not in with_query


@pytest.mark.parametrize("query", ["owner__username=member", "status=final", "prediction__margin__gt=0.4",
                                   "o=-prediction__margin"])
def test_a_parameter_outside_the_allow_list_leaves_the_review_queue_unchanged(api_for, expert, query):
    PredictionFactory(margin=0.5)
    PredictionFactory(margin=0.1)
    PhotoFactory(status=Photo.Status.NEEDS_REVIEW)
    client = api_for(expert)
    plain = listed_ids(client.get(QUEUE))

    assert listed_ids(client.get(f"{QUEUE}?{query}")) == plain


# --- ordering ----------------------------------------------------------------------


@pytest.mark.parametrize("ordering", ["owner__password", "-owner__password", "owner__username", "id", "?",
                                      "prediction__margin", "uploaded_at,id", "UPLOADED_AT"])
def test_an_ordering_outside_the_allow_list_is_refused_with_400_naming_the_allowed_ones(api_for, member, photos,
                                                                                      ordering):
    response = api_for(member).get(PHOTOS, {"ordering": ordering})

    assert response.status_code == 400
    message = response.json()["ordering"][0]
    assert "use one of -uploaded_at, uploaded_at" in message


def test_ordering_by_upload_time_lists_the_oldest_first(api_for, member, photos):
    response = api_for(member).get(PHOTOS, {"ordering": "uploaded_at"})

    assert listed_ids(response) == [photos["old_final"].id, photos["queued"].id, photos["new_final"].id]


def test_ordering_by_descending_upload_time_is_the_default(api_for, member, photos):
    client = api_for(member)

    assert listed_ids(client.get(PHOTOS, {"ordering": "-uploaded_at"})) == listed_ids(client.get(PHOTOS))
    assert listed_ids(client.get(PHOTOS)) == [photos["new_final"].id, photos["queued"].id, photos["old_final"].id]


def test_the_review_queue_can_be_read_oldest_or_newest_first(api_for, expert):
    now = timezone.now()
    oldest = PredictionFactory(margin=0.9, photo__uploaded_at=now - timedelta(hours=2)).photo
    newest = PredictionFactory(margin=0.1, photo__uploaded_at=now).photo
    middle = PhotoFactory(status=Photo.Status.NEEDS_REVIEW, uploaded_at=now - timedelta(hours=1))
    client = api_for(expert)

    assert listed_ids(client.get(QUEUE, {"ordering": "uploaded_at"})) == [oldest.id, middle.id, newest.id]
    assert listed_ids(client.get(QUEUE, {"ordering": "-uploaded_at"})) == [newest.id, middle.id, oldest.id]
    assert listed_ids(client.get(QUEUE, {"ordering": "margin"})) == [middle.id, newest.id, oldest.id]
    assert listed_ids(client.get(QUEUE)) == [middle.id, newest.id, oldest.id]


@pytest.mark.parametrize("ordering", ["prediction__margin", "-margin", "owner__password", "status"])
def test_a_review_queue_ordering_outside_the_allow_list_is_refused_with_400(api_for, expert, ordering):
    response = api_for(expert).get(QUEUE, {"ordering": ordering})

    assert response.status_code == 400
    assert response.json() == {
        "ordering": [f'"{ordering}" is not an allowed ordering: use one of uncertainty, age, margin, uploaded_at, -uploaded_at.']
    }


# --- status ------------------------------------------------------------------------


def test_the_status_filter_lists_only_photos_in_that_state(api_for, member, photos):
    client = api_for(member)

    assert listed_ids(client.get(PHOTOS, {"status": "final"})) == [photos["new_final"].id, photos["old_final"].id]
    assert listed_ids(client.get(PHOTOS, {"status": "queued"})) == [photos["queued"].id]
    assert listed_ids(client.get(PHOTOS, {"status": "rejected"})) == []


def test_the_status_filter_never_shows_a_member_another_members_photo(api_for, member, photos):
    assert photos["theirs"].id not in listed_ids(api_for(member).get(PHOTOS, {"status": "final"}))


def test_the_status_filter_combines_with_the_ordering(api_for, expert, photos):
    response = api_for(expert).get(PHOTOS, {"status": "final", "ordering": "uploaded_at"})

    assert listed_ids(response) == [photos["old_final"].id, photos["new_final"].id, photos["theirs"].id]


@pytest.mark.parametrize("status", ["FINAL", "done", "final,queued", "owner__password"])
def test_a_status_outside_the_allow_list_is_refused_with_400_naming_the_states(api_for, member, photos, status):
    response = api_for(member).get(PHOTOS, {"status": status})

    assert response.status_code == 400
    assert response.json()["status"] == [
        f'"{status}" is not an allowed status: use one of queued, final, needs_review, rejected, failed.'
    ]


def test_an_empty_status_or_ordering_counts_as_not_given(api_for, member, photos):
    client = api_for(member)

    assert listed_ids(client.get(f"{PHOTOS}?status=&ordering=")) == listed_ids(client.get(PHOTOS))


def test_the_photo_list_filters_by_final_label_and_uploader(member, other_member, expert, api_for):
    from tests.factories import LabelFactory

    fern = LabelFactory(name="fern")
    mine = PhotoFactory(owner=member, status=Photo.Status.FINAL, final_label=fern)
    theirs = PhotoFactory(owner=other_member, status=Photo.Status.FINAL, final_label=fern)
    PhotoFactory(owner=member, status=Photo.Status.QUEUED)

    assert listed_ids(api_for(expert).get(PHOTOS + "?label=fern")) == [theirs.id, mine.id]
    assert listed_ids(api_for(expert).get(PHOTOS + "?label=fern&owner=member")) == [mine.id]
    # A member's list is their own photos, whatever owner it names.
    assert listed_ids(api_for(member).get(PHOTOS + "?label=fern&owner=other")) == []
    assert listed_ids(api_for(member).get(PHOTOS + "?label=fern")) == [mine.id]
