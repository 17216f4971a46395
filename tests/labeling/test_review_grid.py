"""Confirm many at once: an expert sees the photos awaiting review that the model gave one
answer, unticks the wrong ones and confirms the rest; each confirmed photo is that expert's
decision, as one by one. Audits (blind) and disputes (votes in view) are never in the grid, and
a photo decided, claimed or deleted meanwhile is left as it was, with why."""
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from labeling.models import LabelVote, Photo, ReviewDecision
from labeling.review import review_confirm_many
from labeling.selectors import review_grid, review_grid_labels
from labeling.services import UnknownLabel, review_decide
from tests.factories import LabelFactory, PhotoFactory, PredictionFactory, UserFactory


@pytest.fixture
def labels(db):
    return {name: LabelFactory(name=name) for name in ("monstera", "fern")}


@pytest.fixture
def waiting(labels, member):
    """Photos awaiting review, by kind and the model's answer."""
    def photo(said="monstera", confidence=0.6, kind=Photo.ReviewKind.UNCERTAIN, **fields):
        p = PhotoFactory(owner=member, status=Photo.Status.NEEDS_REVIEW, review_kind=kind, **fields)
        PredictionFactory(photo=p, label=labels[said], confidence=confidence)
        return p
    return photo


@pytest.fixture
def other_expert(db):
    return UserFactory(username="ann", expert=True)


def _client(user):
    client = Client()
    client.force_login(user)
    return client


def test_the_grid_lists_the_uncertain_photos_of_one_answer_most_confident_first(waiting, expert):
    low, high = waiting(confidence=0.5), waiting(confidence=0.7)
    waiting(kind=Photo.ReviewKind.AUDIT)          # blind: never shown with the model's answer
    waiting(kind=Photo.ReviewKind.ADJUDICATION)   # decided with the labellers' votes in view
    waiting(said="fern")
    held = waiting(confidence=0.9, claimed_by=UserFactory(username="ann"),
                   claim_expires_at=timezone.now() + timedelta(minutes=5))

    assert list(review_grid(label="monstera", viewer=expert)) == [high, low]
    assert review_grid_labels(viewer=expert) == [("monstera", 2), ("fern", 1)]
    assert held not in review_grid(label="monstera", viewer=UserFactory(username="bob"))


def test_confirming_decides_each_ticked_photo_as_the_expert_and_leaves_the_rest(waiting, expert):
    right, also_right, wrong = waiting(), waiting(), waiting()

    report = review_confirm_many(photo_ids=[right.id, also_right.id, right.id], expert=expert, label_name="monstera")

    assert report.confirmed == [right.id, also_right.id] and report.refused == []
    for photo in (right, also_right):
        photo.refresh_from_db()
        assert (photo.status, photo.final_label.name, photo.reviewed_by, photo.decided_by) == (
            "final", "monstera", expert, Photo.DecidedBy.EXPERT)
        assert ReviewDecision.objects.get(photo=photo).expert == expert
    wrong.refresh_from_db()
    assert wrong.status == Photo.Status.NEEDS_REVIEW and not ReviewDecision.objects.filter(photo=wrong).exists()


def test_what_cannot_be_confirmed_is_left_as_it_was_with_why(waiting, expert, other_expert, member):
    decided, held, audit, other_answer, disputed, fine = (
        waiting(), waiting(), waiting(kind=Photo.ReviewKind.AUDIT), waiting(said="fern"),
        waiting(kind=Photo.ReviewKind.UNCERTAIN), waiting())
    review_decide(photo_id=decided.id, expert=other_expert, label_name="fern")
    Photo.objects.filter(id=held.id).update(claimed_by=other_expert,
                                            claim_expires_at=timezone.now() + timedelta(minutes=5))
    LabelVote.objects.create(photo=disputed, user=expert, label=other_answer.prediction.label)
    Photo.objects.filter(id=disputed.id).update(review_kind=Photo.ReviewKind.ADJUDICATION)
    gone = waiting()
    gone_id = gone.id
    gone.delete()

    report = review_confirm_many(photo_ids=[decided.id, held.id, audit.id, other_answer.id, disputed.id, gone_id,
                                            fine.id], expert=expert, label_name="monstera")

    assert report.confirmed == [fine.id]
    why = dict(report.refused)
    assert "no longer awaiting review" in why[decided.id]
    assert f"being reviewed by {other_expert.username}" in why[held.id]
    assert why[audit.id] == f"Photo {audit.id} is an audit: decide it on its own page."
    assert why[disputed.id] == f"Photo {disputed.id} is a dispute: decide it on its own page."
    assert why[other_answer.id] == f"The model did not answer monstera for photo {other_answer.id}."
    assert why[gone_id] == f"Photo {gone_id} no longer exists."
    for photo in (held, audit, other_answer, disputed):
        photo.refresh_from_db()
        assert photo.status == Photo.Status.NEEDS_REVIEW
    decided.refresh_from_db()
    assert decided.final_label.name == "fern"  # the other expert's decision stands


def test_a_retired_or_unknown_label_decides_nothing(waiting, expert, labels):
    photo = waiting()
    labels["monstera"].retired = True
    labels["monstera"].save()

    with pytest.raises(UnknownLabel, match="retired"):
        review_confirm_many(photo_ids=[photo.id], expert=expert, label_name="monstera")
    with pytest.raises(UnknownLabel):
        review_confirm_many(photo_ids=[photo.id], expert=expert, label_name="palm")
    photo.refresh_from_db()
    assert photo.status == Photo.Status.NEEDS_REVIEW


def test_the_page_shows_the_tiles_ticked_and_the_post_says_what_happened(waiting, expert, other_expert):
    right, wrong, decided = waiting(confidence=0.7), waiting(confidence=0.6), waiting(confidence=0.5)
    client = _client(expert)

    page = client.get("/review/grid/").content.decode()  # the answer with the most photos is chosen
    review_decide(photo_id=decided.id, expert=other_expert, label_name="fern")
    response = client.post("/review/grid/", {"label": "monstera", "photos": [right.id, decided.id]}, follow=True)

    assert page.count('<input type="checkbox" name="photos"') == 3
    assert '<div class="label-example" data-label="monstera">' in page  # what a monstera looks like
    assert f'value="{right.id}" checked' in page and 'Confirm the <span data-role="ticked">3</span> ticked as monstera' in page
    assert response.redirect_chain == [("/review/grid/?label=monstera", 302)]
    said = [str(m) for m in response.context["messages"]]
    assert said[0] == "Confirmed 1 photo as monstera."
    assert said[1].startswith(f"Not confirmed: This photo is no longer awaiting review")
    after = response.content.decode()
    assert f'value="{wrong.id}"' in after and f'value="{right.id}"' not in after  # the unticked one stays


def test_the_page_says_when_nothing_or_nothing_of_that_answer_waits(db, expert, waiting):
    client = _client(expert)
    assert "Nothing to confirm: no uncertain photo awaits review." in client.get("/review/grid/").content.decode()
    waiting(said="fern")
    assert "No photo the model called monstera awaits review" in client.get(
        "/review/grid/?label=monstera").content.decode()


@pytest.mark.parametrize("photos, message", [(["12x"], "'12x' is not a photo id."),
                                             ([str(i) for i in range(1, 202)], "At most 200 photos at once.")])
def test_the_page_refuses_what_is_not_a_list_of_photo_ids(db, expert, labels, photos, message):
    response = _client(expert).post("/review/grid/", {"label": "monstera", "photos": photos}, follow=True)

    assert [str(m) for m in response.context["messages"]] == [f"Not saved: {message}"]


def test_the_api_confirms_and_lists_what_it_refused(waiting, expert, member, api_for):
    right, fern = waiting(), waiting(said="fern")

    body = api_for(expert).post("/api/v1/review-queue/confirm/", {"label": "monstera", "photos": [right.id, fern.id]},
                                format="json")
    unknown = api_for(expert).post("/api/v1/review-queue/confirm/", {"label": "palm", "photos": [right.id]},
                                   format="json")

    assert body.status_code == 200
    assert body.json() == {"label": "monstera", "confirmed": [right.id], "refused": [
        {"photo": fern.id, "detail": f"The model did not answer monstera for photo {fern.id}."}]}
    assert unknown.status_code == 400 and "label" in unknown.json()
    assert api_for(member).post("/api/v1/review-queue/confirm/", {"label": "monstera", "photos": []},
                                format="json").status_code == 403


def test_confirming_nothing_ticked_says_so_and_other_methods_are_refused(waiting, expert):
    client = _client(expert)

    response = client.post("/review/grid/", {"label": "monstera"}, follow=True)

    assert [str(m) for m in response.context["messages"]] == ["No photo was ticked: nothing confirmed."]
    assert client.put("/review/grid/").status_code == 405


def test_an_unfamiliar_photo_is_never_in_the_grid_and_is_refused_if_sent(waiting, expert):
    from labeling.models import Prediction

    familiar, unfamiliar = waiting(), waiting(confidence=0.7)
    Prediction.objects.filter(photo=unfamiliar).update(familiarity=0.4, familiarity_cutoff=0.6)
    Prediction.objects.filter(photo=familiar).update(familiarity=0.9, familiarity_cutoff=0.6)

    assert list(review_grid(label="monstera", viewer=expert)) == [familiar]
    assert review_grid_labels(viewer=expert) == [("monstera", 1)]
    report = review_confirm_many(photo_ids=[unfamiliar.id, familiar.id], expert=expert, label_name="monstera")
    assert report.confirmed == [familiar.id]
    assert dict(report.refused) == {
        unfamiliar.id: f"Photo {unfamiliar.id} is unlike the photos the model learned from: decide it on its own page."}
    unfamiliar.refresh_from_db()
    assert unfamiliar.status == Photo.Status.NEEDS_REVIEW
    queue = _client(expert).get("/review/").content.decode()
    row = queue.split(f"#{unfamiliar.id}</a></td>")[1].split("</tr>")[0]
    assert "<td>unfamiliar</td>" in row
