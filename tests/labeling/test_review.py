"""An expert's decision: services.review_decide and POST /api/v1/photos/{id}/review/."""

import threading
import time

import pytest
from django.db import connection
from django.utils import timezone

from labeling import services
from labeling.models import Photo, ReviewDecision
from tests.factories import LabelFactory, PhotoFactory, UserFactory


def review_url(photo):
    return f"/api/v1/photos/{photo.id}/review/"


# --- the service --------------------------------------------------------------


def test_deciding_with_a_label_makes_the_photo_final_by_the_expert(waiting_photo, expert, labels):
    before = timezone.now()

    photo = services.review_decide(photo_id=waiting_photo.id, expert=expert, label_name="spider_plant")

    photo.refresh_from_db()
    assert photo.status == Photo.Status.FINAL
    assert photo.final_label == labels["spider_plant"]
    assert photo.decided_by == Photo.DecidedBy.EXPERT
    assert photo.label_source == Photo.LabelSource.EXPERT
    assert photo.reviewed_by == expert
    assert photo.decided_at >= before
    decision = ReviewDecision.objects.get(photo=photo)
    assert decision.expert == expert
    assert decision.label == labels["spider_plant"]
    assert decision.rejected is False
    assert (decision.status_before, decision.status_after) == ("needs_review", "final")


def test_rejecting_with_a_reason_marks_the_photo_rejected(waiting_photo, expert):
    photo = services.review_decide(photo_id=waiting_photo.id, expert=expert, reject=True,
                                   reason="Not a plant: a cat.")

    photo.refresh_from_db()
    assert photo.status == Photo.Status.REJECTED
    assert photo.final_label is None
    assert photo.label_source == ""
    assert photo.decided_by == Photo.DecidedBy.EXPERT
    assert photo.reviewed_by == expert
    assert photo.reason == "Not a plant: a cat."
    decision = ReviewDecision.objects.get(photo=photo)
    assert decision.rejected is True
    assert decision.label is None
    assert decision.reason == "Not a plant: a cat."
    assert (decision.status_before, decision.status_after) == ("needs_review", "rejected")


def test_a_second_decision_on_the_same_photo_raises_review_conflict(waiting_photo, expert, labels):
    second_expert = UserFactory(expert=True)
    services.review_decide(photo_id=waiting_photo.id, expert=expert, label_name="monstera")

    with pytest.raises(services.ReviewConflict, match="no longer awaiting review"):
        services.review_decide(photo_id=waiting_photo.id, expert=second_expert, label_name="spider_plant")

    waiting_photo.refresh_from_db()
    assert waiting_photo.final_label == labels["monstera"]
    assert waiting_photo.reviewed_by == expert
    assert ReviewDecision.objects.filter(photo=waiting_photo).count() == 1


@pytest.mark.parametrize("status", [Photo.Status.QUEUED, Photo.Status.FINAL, Photo.Status.FAILED])
def test_a_photo_not_awaiting_review_cannot_be_decided(member, expert, labels, status):
    photo = PhotoFactory(owner=member, status=status)

    with pytest.raises(services.ReviewConflict):
        services.review_decide(photo_id=photo.id, expert=expert, label_name="monstera")

    photo.refresh_from_db()
    assert photo.status == status
    assert not ReviewDecision.objects.exists()


def test_an_unknown_label_raises_unknown_label_and_changes_nothing(waiting_photo, expert):
    with pytest.raises(services.UnknownLabel, match="no_such_plant"):
        services.review_decide(photo_id=waiting_photo.id, expert=expert, label_name="no_such_plant")

    waiting_photo.refresh_from_db()
    assert waiting_photo.status == Photo.Status.NEEDS_REVIEW
    assert waiting_photo.final_label is None
    assert waiting_photo.reviewed_by is None
    assert waiting_photo.decided_at is None
    assert not ReviewDecision.objects.exists()


# --- the API ------------------------------------------------------------------


def test_an_expert_posting_a_label_gets_200_with_the_decided_photo(api_for, waiting_photo, expert):
    response = api_for(expert).post(review_url(waiting_photo), {"label": "spider_plant"}, format="json")

    assert response.status_code == 200
    body = response.json()
    assert body["id"] == waiting_photo.id
    assert body["status"] == "final"
    assert body["final_label"] == "spider_plant"
    assert body["decided_by"] == "expert"
    assert body["reviewed_by"] == "expert"
    assert body["decided_at"] is not None
    assert body["prediction"]["label"] == "monstera"  # what the model said is kept


def test_an_expert_rejecting_through_the_api_gets_the_rejected_photo(api_for, waiting_photo, expert):
    response = api_for(expert).post(review_url(waiting_photo), {"reject": True, "reason": "Blurry."}, format="json")

    assert response.status_code == 200
    assert response.json()["status"] == "rejected"
    assert response.json()["reason"] == "Blurry."
    assert response.json()["final_label"] is None


def test_staff_may_decide_too(api_for, waiting_photo, staff):
    response = api_for(staff).post(review_url(waiting_photo), {"label": "monstera"}, format="json")

    assert response.status_code == 200
    assert response.json()["reviewed_by"] == "staff"


def test_a_second_decision_through_the_api_is_409_with_a_detail_message(api_for, waiting_photo, expert):
    client = api_for(expert)
    client.post(review_url(waiting_photo), {"label": "monstera"}, format="json")

    response = client.post(review_url(waiting_photo), {"label": "spider_plant"}, format="json")

    assert response.status_code == 409
    assert "no longer awaiting review" in response.json()["detail"]
    waiting_photo.refresh_from_db()
    assert waiting_photo.final_label.name == "monstera"


def test_an_unknown_label_through_the_api_is_400_and_changes_nothing(api_for, waiting_photo, expert):
    response = api_for(expert).post(review_url(waiting_photo), {"label": "no_such_plant"}, format="json")

    assert response.status_code == 400
    assert response.json() == {"label": ["Unknown label 'no_such_plant'."]}
    waiting_photo.refresh_from_db()
    assert waiting_photo.status == Photo.Status.NEEDS_REVIEW
    assert not ReviewDecision.objects.exists()


@pytest.mark.parametrize("body", [
    {},
    {"reason": "no label and no rejection"},
    {"label": "monstera", "reject": True},
    {"label": ""},
])
def test_a_body_with_neither_or_both_a_label_and_a_rejection_is_400(api_for, waiting_photo, expert, body):
    response = api_for(expert).post(review_url(waiting_photo), body, format="json")

    assert response.status_code == 400
    waiting_photo.refresh_from_db()
    assert waiting_photo.status == Photo.Status.NEEDS_REVIEW


def test_an_empty_body_says_what_is_missing(api_for, waiting_photo, expert):
    response = api_for(expert).post(review_url(waiting_photo), {}, format="json")

    assert response.json() == {"non_field_errors": ["Give a label, or reject: true with a reason."]}


def test_a_member_may_not_decide_even_on_their_own_photo(api_for, waiting_photo, member):
    response = api_for(member).post(review_url(waiting_photo), {"label": "monstera"}, format="json")

    assert response.status_code == 403
    assert response.json() == {"detail": "Only experts and staff can review photos."}
    waiting_photo.refresh_from_db()
    assert waiting_photo.status == Photo.Status.NEEDS_REVIEW


def test_an_anonymous_request_is_refused_with_401(api_for, waiting_photo):
    response = api_for(None).post(review_url(waiting_photo), {"label": "monstera"}, format="json")

    assert response.status_code == 401
    assert response.json() == {"detail": "Authentication credentials were not provided."}
    waiting_photo.refresh_from_db()
    assert waiting_photo.status == Photo.Status.NEEDS_REVIEW


def test_deciding_a_photo_that_does_not_exist_is_404(api_for, expert, labels):
    response = api_for(expert).post("/api/v1/photos/987654/review/", {"label": "monstera"}, format="json")

    assert response.status_code == 404


# --- two experts at once ------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_experts_deciding_the_same_photo_at_once_one_wins_and_one_gets_a_conflict(monkeypatch):
    # Hold each decision open a moment after the photo is read, so that without the row lock
    # both experts would see "needs_review" and both would write.
    decide_by_expert = Photo.decide_by_expert

    def slow_decide_by_expert(self, *args, **kwargs):
        time.sleep(0.2)
        return decide_by_expert(self, *args, **kwargs)

    monkeypatch.setattr(Photo, "decide_by_expert", slow_decide_by_expert)
    for name in ("monstera", "spider_plant"):
        LabelFactory(name=name)
    photo = PhotoFactory(status=Photo.Status.NEEDS_REVIEW)
    experts = [UserFactory(expert=True), UserFactory(expert=True)]
    barrier = threading.Barrier(2, timeout=10)
    outcomes = {}

    def decide(expert, label_name):
        try:
            barrier.wait()
            services.review_decide(photo_id=photo.id, expert=expert, label_name=label_name)
            outcomes[expert.id] = "decided"
        except services.ReviewConflict:
            outcomes[expert.id] = "conflict"
        except Exception as exc:  # anything else is a failure the assertions below report
            outcomes[expert.id] = repr(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=decide, args=(experts[0], "monstera")),
               threading.Thread(target=decide, args=(experts[1], "spider_plant"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(outcomes.values()) == ["conflict", "decided"]
    winner_id = next(expert_id for expert_id, outcome in outcomes.items() if outcome == "decided")
    photo.refresh_from_db()
    assert photo.status == Photo.Status.FINAL
    assert photo.reviewed_by_id == winner_id
    decisions = list(ReviewDecision.objects.filter(photo=photo))
    assert len(decisions) == 1
    assert decisions[0].expert_id == winner_id
    assert decisions[0].label == photo.final_label


# --- the page -----------------------------------------------------------------


def test_the_same_decision_posted_twice_from_the_page_says_it_is_saved_and_opens_the_next_photo(
        waiting_photo, member, expert, labels):
    from django.test import Client

    following = PhotoFactory(owner=member, status=Photo.Status.NEEDS_REVIEW)
    client = Client()
    client.force_login(expert)
    client.post(f"/review/{waiting_photo.id}/", {"label": "monstera"})

    again = client.post(f"/review/{waiting_photo.id}/", {"label": "monstera"}, follow=True)

    page = again.content.decode()
    assert f"Photo {waiting_photo.id} is decided already: you decided it a moment ago." in page
    assert "Another expert decided it first" not in page
    assert again.redirect_chain[-1][0] == f"/review/{following.id}/"
    assert ReviewDecision.objects.filter(photo=waiting_photo).count() == 1


def test_a_decided_photo_shows_no_decision_form_but_points_to_its_history(waiting_photo, expert, labels):
    from django.test import Client

    services.review_decide(photo_id=waiting_photo.id, expert=expert, label_name="monstera")
    client = Client()
    client.force_login(expert)

    page = client.get(f"/review/{waiting_photo.id}/").content.decode()

    assert 'id="review-form"' not in page
    assert "Decided: Final, monstera." in page and f'href="/photos/{waiting_photo.id}/history/"' in page


def test_the_review_form_starts_with_a_disabled_default_button_so_enter_submits_nothing(waiting_photo, expert):
    from django.test import Client

    client = Client()
    client.force_login(expert)

    page = client.get(f"/review/{waiting_photo.id}/").content.decode()

    form = page[page.index('id="review-form"'):]
    first_button = form[form.index("<button"):form.index(">", form.index("<button")) + 1]
    assert "disabled" in first_button and 'name="label"' not in first_button


def test_the_review_page_makes_as_many_queries_with_many_labels_and_votes_as_with_few(waiting_photo, expert, labels):
    from django.db import connection as db
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from labeling.models import LabelVote

    def queries_of_the_page():
        client = Client()
        client.force_login(expert)
        with CaptureQueriesContext(db) as captured:
            assert client.get(f"/review/{waiting_photo.id}/").status_code == 200
        return len(captured)

    LabelVote.objects.create(photo=waiting_photo, user=UserFactory(), label=labels["monstera"])
    few = queries_of_the_page()
    for i in range(12):
        label = LabelFactory(name=f"plant_{i}")
        label.examples.add(PhotoFactory())
        LabelVote.objects.create(photo=waiting_photo, user=UserFactory(), label=label)

    assert queries_of_the_page() == few
