"""Every decision is kept: a correction adds a record (kind "correction", with the label before),
nothing is overwritten or deleted, and the photo's history shows it all."""

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from labeling import review, services
from labeling.models import Photo, ReviewDecision
from tests.factories import LabelFactory, PhotoFactory, PredictionFactory, UserFactory


@pytest.fixture
def labels(db):
    return {name: LabelFactory(name=name) for name in ("monstera", "spider_plant", "dieffenbachia")}


@pytest.fixture
def auto_accepted(member, labels):
    """A photo the model labelled monstera on its own."""
    return PhotoFactory(owner=member, status=Photo.Status.FINAL, final_label=labels["monstera"],
                        label_source=Photo.LabelSource.MODEL, decided_by=Photo.DecidedBy.MODEL,
                        decided_at=timezone.now() - timedelta(minutes=5))


@pytest.fixture
def expert_decided(member, expert, labels):
    """A photo an expert decided as monstera after the model was unsure."""
    photo = PredictionFactory(photo__owner=member, label=labels["monstera"]).photo
    return services.review_decide(photo_id=photo.id, expert=expert, label_name="monstera")


def correct_url(photo):
    return f"/api/v1/photos/{photo.id}/correct/"


def as_seen(photo, **body):
    """A correction's body with the photo's decided_at as the expert saw it (the API requires it)."""
    photo.refresh_from_db()
    return {**body, "decided_at": (photo.decided_at or timezone.now()).isoformat()}


def page_client(user):
    client = Client()
    client.force_login(user)
    return client


# --- the service --------------------------------------------------------------


def test_correcting_a_models_label_adds_a_correction_with_the_label_before(auto_accepted, expert, labels):
    photo = review.review_correct(photo_id=auto_accepted.id, expert=expert, label_name="spider_plant",
                                  reason="The leaves are striped.")

    photo.refresh_from_db()
    assert (photo.status, photo.final_label, photo.label_source, photo.decided_by, photo.reviewed_by) == (
        "final", labels["spider_plant"], "expert", "expert", expert)
    decision = ReviewDecision.objects.get(photo=photo)
    assert (decision.kind, decision.label_before, decision.label, decision.rejected) == (
        "correction", labels["monstera"], labels["spider_plant"], False)
    assert (decision.status_before, decision.status_after, decision.reason) == (
        "final", "final", "The leaves are striped.")


def test_a_correction_keeps_every_earlier_decision_as_it_was(expert_decided, expert, labels):
    second = UserFactory(expert=True)
    original = ReviewDecision.objects.get(photo=expert_decided)
    snapshot = (original.kind, original.label_id, original.expert_id, original.status_before, original.created_at)

    review.review_correct(photo_id=expert_decided.id, expert=second, label_name="spider_plant")
    review.review_correct(photo_id=expert_decided.id, expert=expert, reject=True, reason="Plastic plant.")

    decisions = list(ReviewDecision.objects.filter(photo=expert_decided))
    assert [d.kind for d in decisions] == ["uncertain", "correction", "correction"]
    first = decisions[0]
    assert (first.kind, first.label_id, first.expert_id, first.status_before, first.created_at) == snapshot
    assert [(d.label_before and d.label_before.name, d.label and d.label.name, d.status_after)
            for d in decisions[1:]] == [("monstera", "spider_plant", "final"), ("spider_plant", None, "rejected")]
    expert_decided.refresh_from_db()
    assert (expert_decided.status, expert_decided.final_label, expert_decided.reason) == (
        "rejected", None, "Plastic plant.")


def test_a_rejected_photo_can_be_corrected_to_a_label(member, expert, labels):
    photo = PhotoFactory(owner=member, status=Photo.Status.NEEDS_REVIEW)
    services.review_decide(photo_id=photo.id, expert=expert, reject=True, reason="Blurry.")

    photo = review.review_correct(photo_id=photo.id, expert=expert, label_name="dieffenbachia")

    assert (photo.status, photo.final_label.name, photo.label_source) == ("final", "dieffenbachia", "expert")
    correction = ReviewDecision.objects.filter(photo=photo).last()
    assert (correction.label_before, correction.status_before, correction.status_after) == (None, "rejected", "final")


@pytest.mark.parametrize("status", [Photo.Status.NEEDS_REVIEW, Photo.Status.QUEUED, Photo.Status.FAILED])
def test_only_a_decided_photo_can_be_corrected(member, expert, labels, status):
    photo = PhotoFactory(owner=member, status=status)

    with pytest.raises(services.ReviewConflict, match="Only a decided photo can be corrected"):
        review.review_correct(photo_id=photo.id, expert=expert, label_name="monstera")

    assert not ReviewDecision.objects.exists()


def test_a_correction_that_changes_nothing_is_refused(auto_accepted, expert, member, labels):
    with pytest.raises(review.CorrectionError, match="already labelled monstera"):
        review.review_correct(photo_id=auto_accepted.id, expert=expert, label_name="monstera")
    rejected = PhotoFactory(owner=member, status=Photo.Status.REJECTED)
    with pytest.raises(review.CorrectionError, match="already rejected"):
        review.review_correct(photo_id=rejected.id, expert=expert, reject=True)

    assert not ReviewDecision.objects.exists()


def test_a_correction_to_an_unknown_label_is_refused(auto_accepted, expert):
    with pytest.raises(services.UnknownLabel):
        review.review_correct(photo_id=auto_accepted.id, expert=expert, label_name="no_such_plant")

    auto_accepted.refresh_from_db()
    assert auto_accepted.final_label.name == "monstera"


def test_a_correction_made_on_a_stale_view_is_refused_and_the_newer_decision_stands(auto_accepted, expert, labels):
    seen = auto_accepted.decided_at
    other_expert = UserFactory(expert=True)
    review.review_correct(photo_id=auto_accepted.id, expert=other_expert, label_name="spider_plant",
                          seen_decided_at=seen)

    with pytest.raises(services.ReviewConflict, match="decided again after you opened it: it is now spider_plant"):
        review.review_correct(photo_id=auto_accepted.id, expert=expert, label_name="dieffenbachia",
                              seen_decided_at=seen)

    auto_accepted.refresh_from_db()
    assert auto_accepted.final_label == labels["spider_plant"]
    assert list(ReviewDecision.objects.values_list("expert", flat=True)) == [other_expert.id]


# --- the API ------------------------------------------------------------------


def test_the_correction_api_refuses_a_correction_of_a_photo_decided_since_with_409(api_for, auto_accepted, expert):
    seen = api_for(expert).get(f"/api/v1/photos/{auto_accepted.id}/").json()["decided_at"]
    review.review_correct(photo_id=auto_accepted.id, expert=UserFactory(expert=True), label_name="spider_plant")

    stale = api_for(expert).post(correct_url(auto_accepted), {"label": "dieffenbachia", "decided_at": seen},
                                 format="json")
    fresh_seen = api_for(expert).get(f"/api/v1/photos/{auto_accepted.id}/").json()["decided_at"]
    fresh = api_for(expert).post(correct_url(auto_accepted), {"label": "dieffenbachia", "decided_at": fresh_seen},
                                 format="json")

    assert stale.status_code == 409
    assert "decided again after you opened it" in stale.json()["detail"]
    assert fresh.status_code == 200 and fresh.json()["final_label"] == "dieffenbachia"


def test_the_correction_api_answers_the_corrected_photo(api_for, auto_accepted, expert):
    response = api_for(expert).post(correct_url(auto_accepted), as_seen(auto_accepted, label="spider_plant", reason="Striped."),
                                    format="json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["status"], body["final_label"], body["decided_by"], body["reviewed_by"]) == (
        "final", "spider_plant", "expert", "expert")


def test_the_correction_api_can_reject(api_for, auto_accepted, staff):
    response = api_for(staff).post(correct_url(auto_accepted), as_seen(auto_accepted, reject=True, reason="A cat."),
                                    format="json")

    assert response.status_code == 200
    assert (response.json()["status"], response.json()["final_label"]) == ("rejected", None)


@pytest.mark.parametrize(("body", "status"), [
    ({"label": "monstera"}, 400),               # nothing to correct
    ({"label": "no_such_plant"}, 400),
    ({}, 400),
    ({"label": "spider_plant", "reject": True}, 400),
])
def test_a_bad_correction_is_400_and_changes_nothing(api_for, auto_accepted, expert, body, status):
    response = api_for(expert).post(correct_url(auto_accepted), as_seen(auto_accepted, **body), format="json")

    assert response.status_code == status, response.content
    auto_accepted.refresh_from_db()
    assert auto_accepted.final_label.name == "monstera" and not ReviewDecision.objects.exists()


def test_correcting_a_photo_awaiting_review_is_409(api_for, member, expert, labels):
    photo = PhotoFactory(owner=member, status=Photo.Status.NEEDS_REVIEW)

    response = api_for(expert).post(correct_url(photo), as_seen(photo, label="monstera"), format="json")

    assert response.status_code == 409
    assert "review it instead" in response.json()["detail"]


def test_members_may_not_correct(api_for, auto_accepted, member):
    response = api_for(member).post(correct_url(auto_accepted), {"label": "spider_plant"}, format="json")

    assert response.status_code == 403
    auto_accepted.refresh_from_db()
    assert auto_accepted.final_label.name == "monstera"


def test_the_history_api_lists_every_decision_and_correction(api_for, expert_decided, expert, member):
    review.review_correct(photo_id=expert_decided.id, expert=expert, label_name="spider_plant", reason="Striped.")

    response = api_for(member).get(f"/api/v1/photos/{expert_decided.id}/history/")

    assert response.status_code == 200
    events = response.json()
    assert [e["what"] for e in events] == ["uploaded", "predicted", "decided monstera",
                                           "corrected monstera → spider_plant"]
    assert events[-1]["who"] == "expert"
    assert events[-1]["detail"] == "final → final; Striped."
    assert set(events[0]) == {"at", "what", "who", "detail"}


def test_the_history_api_shows_another_members_photo_to_nobody_but_experts(api_for, auto_accepted, other_member,
                                                                           expert):
    assert api_for(other_member).get(f"/api/v1/photos/{auto_accepted.id}/history/").status_code == 404
    assert api_for(expert).get(f"/api/v1/photos/{auto_accepted.id}/history/").status_code == 200


# --- the history page ---------------------------------------------------------


def test_the_history_page_corrects_with_a_small_form_and_shows_before_and_after(auto_accepted, expert):
    client = page_client(expert)
    page = client.get(f"/photos/{auto_accepted.id}/history/").content.decode()
    assert 'id="correct-form"' in page
    assert f'action="/photos/{auto_accepted.id}/correct/"' in page

    response = client.post(f"/photos/{auto_accepted.id}/correct/", {"label": "spider_plant", "reason": "Striped."},
                           follow=True)

    page = response.content.decode()
    assert f"Correction saved for photo {auto_accepted.id}." in page
    assert "corrected monstera → spider_plant" in page
    assert "final → final; Striped." in page


def test_the_history_page_form_refuses_a_correction_of_a_photo_another_expert_corrected_since(auto_accepted,
                                                                                              expert, labels):
    client = page_client(expert)
    page = client.get(f"/photos/{auto_accepted.id}/history/").content.decode()
    seen = re.search(r'name="decided_at" value="([^"]+)"', page).group(1)
    review.review_correct(photo_id=auto_accepted.id, expert=UserFactory(expert=True), label_name="spider_plant")

    response = client.post(f"/photos/{auto_accepted.id}/correct/", {"label": "dieffenbachia", "decided_at": seen},
                           follow=True)

    assert "Not corrected: This photo was decided again after you opened it: it is now spider_plant." \
        in response.content.decode()
    auto_accepted.refresh_from_db()
    assert auto_accepted.final_label == labels["spider_plant"]


def test_the_history_page_form_reports_a_refused_correction(auto_accepted, expert):
    response = page_client(expert).post(f"/photos/{auto_accepted.id}/correct/", {"label": "monstera"}, follow=True)

    assert "Not corrected: Nothing to correct" in response.content.decode()
    assert not ReviewDecision.objects.exists()


def test_the_history_page_form_needs_a_label_or_a_rejection(auto_accepted, expert):
    response = page_client(expert).post(f"/photos/{auto_accepted.id}/correct/", {"reason": "?"}, follow=True)

    assert "Choose a new label, or reject the photo." in response.content.decode()


def test_members_see_the_history_without_the_correction_form(auto_accepted, member):
    page = page_client(member).get(f"/photos/{auto_accepted.id}/history/").content.decode()

    assert 'id="correct-form"' not in page


def test_a_photo_awaiting_review_has_no_correction_form(member, expert, labels):
    photo = PhotoFactory(owner=member, status=Photo.Status.NEEDS_REVIEW)

    assert 'id="correct-form"' not in page_client(expert).get(f"/photos/{photo.id}/history/").content.decode()


def test_a_retired_label_is_refused_by_decisions_corrections_and_relabels(auto_accepted, member, expert, labels,
                                                                            api_for):
    labels["dieffenbachia"].retired = True
    labels["dieffenbachia"].save()
    queued = PredictionFactory(photo__owner=member, label=labels["monstera"]).photo

    decided = api_for(expert).post(f"/api/v1/photos/{queued.id}/review/", {"label": "dieffenbachia"}, format="json")
    corrected = api_for(expert).post(correct_url(auto_accepted), as_seen(auto_accepted, label="dieffenbachia"),
                                     format="json")
    with pytest.raises(services.UnknownLabel, match="retired"):
        services.photo_clean(photo_id=auto_accepted.id, user=expert, action="relabel", label_name="dieffenbachia")

    assert decided.status_code == 400 and "retired" in str(decided.json())
    assert corrected.status_code == 400 and "retired" in str(corrected.json())
    assert Photo.objects.get(id=queued.id).status == Photo.Status.NEEDS_REVIEW
    assert Photo.objects.get(id=auto_accepted.id).final_label == labels["monstera"]
