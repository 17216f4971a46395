"""Review claims (labeling.review): a lease on a photo, so that two experts working the queue at
once are never shown the same photo, and a lapsed claim returns the photo to the queue."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from labeling import review, services
from labeling.models import Photo, ReviewDecision
from tests.factories import LabelFactory, PhotoFactory, PredictionFactory, UserFactory
from tests.threads import at_once

QUEUE = "/api/v1/review-queue/"
CLAIM_NEXT = "/api/v1/review-queue/claim-next/"


def claim_url(photo):
    return f"/api/v1/photos/{photo.id}/claim/"


@pytest.fixture
def labels(db):
    return {name: LabelFactory(name=name) for name in ("monstera", "spider_plant")}


@pytest.fixture
def second_expert(db):
    return UserFactory(username="second", expert=True)


@pytest.fixture
def waiting(member, labels):
    """Three photos awaiting review, most uncertain first: a, b, c."""
    now = timezone.now()
    return [PredictionFactory(photo__owner=member, label=labels["monstera"], margin=margin,
                              photo__uploaded_at=now - timedelta(minutes=minutes)).photo
            for margin, minutes in ((0.1, 1), (0.2, 3), (0.3, 2))]


def lapse(photo):
    Photo.objects.filter(id=photo.id).update(claim_expires_at=timezone.now() - timedelta(seconds=1))


def queue_ids(client, **params):
    response = client.get(QUEUE, params)
    assert response.status_code == 200, response.content
    return [item["id"] for item in response.json()["results"]]


# --- the service --------------------------------------------------------------


def test_claiming_a_photo_holds_it_for_the_claim_setting(settings, waiting, expert):
    settings.REVIEW_CLAIM_SECONDS = 120
    before = timezone.now()

    photo = review.review_claim(waiting[0].id, expert)

    assert photo.claimed_by == expert
    assert before + timedelta(seconds=120) <= photo.claim_expires_at <= timezone.now() + timedelta(seconds=120)


def test_the_claim_lasts_ten_minutes_by_default():
    from plantsite.settings import base

    assert base.REVIEW_CLAIM_SECONDS == 600


def test_a_photo_another_expert_holds_cannot_be_claimed(waiting, expert, second_expert):
    review.review_claim(waiting[0].id, expert)

    with pytest.raises(review.ClaimConflict, match="being reviewed by expert") as caught:
        review.review_claim(waiting[0].id, second_expert)

    assert caught.value.holder == "expert"
    waiting[0].refresh_from_db()
    assert waiting[0].claimed_by == expert


def test_claiming_again_renews_the_experts_own_claim(waiting, expert):
    first = review.review_claim(waiting[0].id, expert).claim_expires_at
    time.sleep(0.01)

    assert review.review_claim(waiting[0].id, expert).claim_expires_at > first


def test_a_lapsed_claim_lets_another_expert_claim_the_photo(waiting, expert, second_expert):
    review.review_claim(waiting[0].id, expert)
    lapse(waiting[0])

    assert review.review_claim(waiting[0].id, second_expert).claimed_by == second_expert


def test_a_photo_not_awaiting_review_cannot_be_claimed(member, expert):
    photo = PhotoFactory(owner=member, status=Photo.Status.FINAL)

    with pytest.raises(services.ReviewConflict, match="no longer awaiting review") as caught:
        review.review_claim(photo.id, expert)

    assert not isinstance(caught.value, review.ClaimConflict)
    photo.refresh_from_db()
    assert photo.claimed_by is None


def test_an_expert_holds_one_claim_at_a_time(waiting, expert):
    review.review_claim(waiting[0].id, expert)

    review.review_claim(waiting[1].id, expert)

    assert list(Photo.objects.filter(claimed_by=expert).values_list("id", flat=True)) == [waiting[1].id]


def test_claim_next_takes_the_most_uncertain_photo_nobody_else_holds(waiting, expert, second_expert):
    review.review_claim(waiting[0].id, second_expert)

    photo = review.review_claim_next(expert)

    assert photo.id == waiting[1].id and photo.claimed_by == expert


def test_claim_next_follows_the_ordering_and_the_label_filter(waiting, expert, labels):
    PredictionFactory(label=labels["spider_plant"], margin=0.9)
    spider = Photo.objects.get(prediction__label__name="spider_plant")

    assert review.review_claim_next(expert, ordering="age").id == waiting[1].id  # the oldest
    assert review.review_claim_next(expert, label="spider_plant").id == spider.id


def test_claim_next_returns_none_when_every_photo_is_held_by_someone_else(waiting, expert, second_expert):
    third = UserFactory(expert=True)
    for photo, holder in zip(waiting, (second_expert, third, UserFactory(expert=True))):
        review.review_claim(photo.id, holder)

    assert review.review_claim_next(expert) is None


def test_a_lapsed_claim_returns_the_photo_to_the_queue(waiting, expert, second_expert, api_for):
    review.review_claim(waiting[0].id, expert)
    assert waiting[0].id not in queue_ids(api_for(second_expert))

    lapse(waiting[0])

    assert queue_ids(api_for(second_expert))[0] == waiting[0].id
    assert review.review_claim_next(second_expert).id == waiting[0].id


def test_deciding_releases_the_claim(waiting, expert):
    review.review_claim(waiting[0].id, expert)

    photo = services.review_decide(photo_id=waiting[0].id, expert=expert, label_name="monstera")

    photo.refresh_from_db()
    assert (photo.status, photo.claimed_by, photo.claim_expires_at) == ("final", None, None)


def test_a_decision_on_a_photo_another_expert_holds_is_refused(waiting, expert, second_expert):
    review.review_claim(waiting[0].id, expert)

    with pytest.raises(review.ClaimConflict):
        services.review_decide(photo_id=waiting[0].id, expert=second_expert, label_name="monstera")

    waiting[0].refresh_from_db()
    assert waiting[0].status == Photo.Status.NEEDS_REVIEW and waiting[0].claimed_by == expert
    assert not ReviewDecision.objects.exists()


def test_a_decision_after_the_claim_lapsed_is_accepted(waiting, expert, second_expert):
    review.review_claim(waiting[0].id, expert)
    lapse(waiting[0])

    photo = services.review_decide(photo_id=waiting[0].id, expert=second_expert, label_name="monstera")

    assert photo.reviewed_by == second_expert


def test_only_the_holder_releases_a_live_claim(waiting, expert, second_expert):
    review.review_claim(waiting[0].id, expert)

    with pytest.raises(review.ClaimConflict):
        review.review_release(waiting[0].id, second_expert)
    assert review.review_release(waiting[0].id, expert) is True
    assert review.review_release(waiting[0].id, expert) is False  # nothing left to give back
    waiting[0].refresh_from_db()
    assert waiting[0].claimed_by is None


# --- two experts at once (real PostgreSQL transactions) -------------------------


def _slow_take(monkeypatch):
    """Hold each claim's transaction open a moment after its row is taken, so that the other
    expert's claim runs while the first one is still uncommitted."""
    take = review._take

    def slow(*args, **kwargs):
        taken = take(*args, **kwargs)
        time.sleep(0.3)
        return taken

    monkeypatch.setattr(review, "_take", slow)


@pytest.mark.django_db(transaction=True)
def test_two_experts_claiming_the_next_photo_at_once_get_different_photos(monkeypatch):
    _slow_take(monkeypatch)
    photos = [PredictionFactory(margin=margin).photo for margin in (0.1, 0.2, 0.3)]
    experts = [UserFactory(expert=True), UserFactory(expert=True)]

    results = at_once([lambda e=e: review.review_claim_next(e) for e in experts], return_exceptions=True)

    assert all(isinstance(r, Photo) for r in results), results
    assert results[0].id != results[1].id
    assert {r.id for r in results} == {photos[0].id, photos[1].id}
    for expert, photo in zip(experts, results):
        assert Photo.objects.get(id=photo.id).claimed_by_id == expert.id


@pytest.mark.django_db(transaction=True)
def test_two_experts_claiming_the_same_photo_at_once_exactly_one_gets_it(monkeypatch):
    _slow_take(monkeypatch)
    photo = PredictionFactory().photo
    experts = [UserFactory(expert=True), UserFactory(expert=True)]

    results = at_once([lambda e=e: review.review_claim(photo.id, e) for e in experts], return_exceptions=True)

    won = [r for r in results if isinstance(r, Photo)]
    lost = [r for r in results if isinstance(r, review.ClaimConflict)]
    assert (len(won), len(lost)) == (1, 1), results
    assert Photo.objects.get(id=photo.id).claimed_by_id == won[0].claimed_by_id


@pytest.mark.django_db(transaction=True)
def test_two_experts_racing_for_the_last_photo_one_gets_it_and_the_other_nothing(monkeypatch):
    _slow_take(monkeypatch)
    photo = PredictionFactory().photo
    experts = [UserFactory(expert=True), UserFactory(expert=True)]

    results = at_once([lambda e=e: review.review_claim_next(e) for e in experts], return_exceptions=True)

    assert sorted(type(r).__name__ for r in results) == ["NoneType", "Photo"], results
    assert next(r for r in results if r is not None).id == photo.id


@pytest.mark.django_db(transaction=True)
def test_a_lapsed_claim_is_claimed_by_the_next_expert_asking():
    photo = PredictionFactory().photo
    first, second = UserFactory(expert=True), UserFactory(expert=True)
    review.review_claim_next(first)
    assert review.review_claim_next(second) is None
    lapse(photo)

    assert review.review_claim_next(second).id == photo.id


# --- the API ------------------------------------------------------------------


def test_the_claim_api_answers_the_claimed_photo(api_for, waiting, expert):
    response = api_for(expert).post(claim_url(waiting[0]))

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["id"], body["claimed_by"], body["review_kind"]) == (waiting[0].id, "expert", "")
    assert body["claim_expires_at"] is not None


def test_claiming_a_photo_another_expert_holds_is_409_naming_them(api_for, waiting, expert, second_expert):
    api_for(expert).post(claim_url(waiting[0]))

    response = api_for(second_expert).post(claim_url(waiting[0]))

    assert response.status_code == 409
    assert "being reviewed by expert" in response.json()["detail"]


def test_releasing_a_claim_gives_the_photo_to_the_next_expert(api_for, waiting, expert, second_expert):
    api_for(expert).post(claim_url(waiting[0]))
    assert api_for(second_expert).delete(claim_url(waiting[0])).status_code == 409

    assert api_for(expert).delete(claim_url(waiting[0])).status_code == 204

    assert api_for(second_expert).post(claim_url(waiting[0])).status_code == 200


def test_claim_next_answers_200_with_a_photo_then_204_when_the_queue_is_empty(api_for, waiting, expert):
    client = api_for(expert)
    claimed = []
    for _ in waiting:
        response = client.post(CLAIM_NEXT)
        assert response.status_code == 200
        claimed.append(response.json()["id"])
        services.review_decide(photo_id=claimed[-1], expert=expert, label_name="monstera")

    assert claimed == [p.id for p in waiting]
    response = client.post(CLAIM_NEXT)
    assert response.status_code == 204 and response.content == b""


def test_claim_next_takes_the_queue_parameters(api_for, waiting, expert):
    client = api_for(expert)

    assert client.post(f"{CLAIM_NEXT}?ordering=age").json()["id"] == waiting[1].id
    assert client.post(f"{CLAIM_NEXT}?ordering=owner__password").status_code == 400
    assert client.post(f"{CLAIM_NEXT}?label=no_such_plant").status_code == 400
    assert client.post(f"{CLAIM_NEXT}?label=spider_plant").status_code == 204


def test_the_queue_hides_photos_other_experts_hold_but_not_ones_own(api_for, waiting, expert, second_expert):
    review.review_claim(waiting[0].id, expert)

    assert queue_ids(api_for(second_expert)) == [waiting[1].id, waiting[2].id]
    assert queue_ids(api_for(expert)) == [p.id for p in waiting]


def test_a_decision_through_the_api_on_a_photo_another_expert_holds_is_409(api_for, waiting, expert, second_expert):
    api_for(expert).post(claim_url(waiting[0]))

    response = api_for(second_expert).post(f"/api/v1/photos/{waiting[0].id}/review/", {"label": "monstera"},
                                           format="json")

    assert response.status_code == 409
    assert "being reviewed by expert" in response.json()["detail"]
    waiting[0].refresh_from_db()
    assert waiting[0].status == Photo.Status.NEEDS_REVIEW


def test_members_cannot_claim(api_for, waiting, member):
    assert api_for(member).post(claim_url(waiting[0])).status_code == 403
    assert api_for(member).post(CLAIM_NEXT).status_code == 403
    waiting[0].refresh_from_db()
    assert waiting[0].claimed_by is None


# --- the pages ----------------------------------------------------------------


def page_client(user):
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client


def test_opening_a_review_page_claims_the_photo(waiting, expert):
    response = page_client(expert).get(f"/review/{waiting[0].id}/")

    assert response.status_code == 200
    waiting[0].refresh_from_db()
    assert waiting[0].claimed_by == expert
    assert 'id="review-form"' in response.content.decode()


def test_a_photo_another_expert_holds_shows_who_instead_of_the_form(waiting, expert, second_expert):
    page_client(expert).get(f"/review/{waiting[0].id}/")

    page = page_client(second_expert).get(f"/review/{waiting[0].id}/").content.decode()

    assert "being reviewed by expert" in page
    assert 'id="review-form"' not in page
    waiting[0].refresh_from_db()
    assert waiting[0].claimed_by == expert


def test_the_queue_page_hides_photos_other_experts_hold(waiting, expert, second_expert):
    page_client(expert).get(f"/review/{waiting[0].id}/")

    page = page_client(second_expert).get("/review/").content.decode()

    assert f"/review/{waiting[0].id}/" not in page
    assert f"/review/{waiting[1].id}/" in page
    assert "2 waiting" in page


def test_start_reviewing_claims_the_next_photo_and_opens_it(waiting, expert, second_expert):
    page_client(second_expert).get(f"/review/{waiting[0].id}/")

    response = page_client(expert).post("/review/claim-next/", {"ordering": "uncertainty", "label": ""})

    assert response.status_code == 302 and response["Location"] == f"/review/{waiting[1].id}/"
    waiting[1].refresh_from_db()
    assert waiting[1].claimed_by == expert


def test_start_reviewing_with_nothing_to_review_says_so(expert, labels):
    response = page_client(expert).post("/review/claim-next/", {"ordering": "age"}, follow=True)

    assert "Nothing to review right now." in response.content.decode()


def test_a_page_decision_on_a_photo_another_expert_holds_is_not_saved(waiting, expert, second_expert):
    page_client(expert).get(f"/review/{waiting[0].id}/")

    response = page_client(second_expert).post(f"/review/{waiting[0].id}/", {"label": "monstera"}, follow=True)

    assert "Not saved: Photo" in response.content.decode()
    assert "being reviewed by expert" in response.content.decode()
    waiting[0].refresh_from_db()
    assert waiting[0].status == Photo.Status.NEEDS_REVIEW


def test_after_a_decision_the_next_photo_of_the_same_queue_view_opens_claimed(waiting, expert):
    client = page_client(expert)
    client.get("/review/", {"ordering": "age"})  # the oldest first: b, c, a

    first = client.post("/review/claim-next/", {"ordering": "age"})
    assert first["Location"] == f"/review/{waiting[1].id}/"
    response = client.post(first["Location"], {"label": "monstera"})

    assert response["Location"] == f"/review/{waiting[2].id}/"
    waiting[2].refresh_from_db()
    assert waiting[2].claimed_by == expert
