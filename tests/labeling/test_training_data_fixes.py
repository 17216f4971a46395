"""What the labelled data says matches what training reads: exports and model comparisons leave
retired labels out, an expert never adjudicates a dispute they took part in, a relabel that
changes nothing is refused, and a label's examples are photos that carry the label."""

import io
import zipfile
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from classifier import evaluation
from classifier.services import training_rows
from labeling import export, labelling, review, selectors, services
from labeling.models import LabellingAssignment, Photo, PhotoEvent
from tests.factories import LabelFactory, PhotoFactory, UserFactory


@pytest.fixture
def labels(db):
    return {name: LabelFactory(name=name) for name in ("monstera", "spider_plant", "old_fern")}


def labelled(label, source=Photo.LabelSource.IMPORT, **kwargs):
    return PhotoFactory(status=Photo.Status.FINAL, final_label=label, label_source=source,
                        decided_by=Photo.DecidedBy.IMPORT, decided_at=timezone.now() - timedelta(minutes=5), **kwargs)


def retire(label):
    label.retired = True
    label.save()


# --- 1. the export holds what training reads ---------------------------------------------------


def test_an_export_leaves_out_the_photos_of_a_retired_label_as_training_does(labels):
    kept = labelled(labels["monstera"])
    fern = labelled(labels["old_fern"])
    retire(labels["old_fern"])
    archive = io.BytesIO()

    summary = export.export_dataset(archive)

    assert [p.id for p in selectors.dataset_photos()] == [kept.id]
    assert {p.id for p in selectors.dataset_photos()} == {row[0] for row in training_rows()}
    assert selectors.dataset_counts() == {"monstera": 1}
    assert dict(summary.counts) == {"monstera": 1}
    names = zipfile.ZipFile(archive).namelist()
    assert not any(name.startswith("old_fern/") or f"photo-{fern.id}." in name for name in names)


def test_an_export_with_the_models_labels_leaves_out_a_retired_labels_photos_too(labels):
    model_fern = labelled(labels["old_fern"], source=Photo.LabelSource.MODEL)
    assert model_fern in selectors.dataset_photos(include_model=True)

    retire(labels["old_fern"])

    assert model_fern not in selectors.dataset_photos(include_model=True)


# --- 2. model comparisons use the photos training would ----------------------------------------


def test_a_retired_labels_photos_are_left_out_of_the_model_comparison(labels, monkeypatch):
    monkeypatch.setattr(evaluation, "is_validation", lambda photo_id: True)
    kept = labelled(labels["monstera"])
    fern = labelled(labels["old_fern"])
    assert set(evaluation.validation_photos()) == {kept, fern}

    retire(labels["old_fern"])

    assert evaluation.validation_photos() == [kept]


# --- 3. an expert does not adjudicate their own dispute ----------------------------------------


@pytest.fixture
def second_expert(db):
    return UserFactory(username="second", expert=True)


def vote(photo, user, label_name):
    LabellingAssignment.objects.create(photo=photo, user=user, expires_at=timezone.now() + timedelta(minutes=5))
    labelling.label_vote(photo_id=photo.id, user=user, label_name=label_name)


@pytest.fixture
def dispute(labels, expert, member):
    """The expert, labelling like anyone, and ann disagreed: the photo awaits adjudication."""
    photo = PhotoFactory(owner=member, status=Photo.Status.NEEDS_REVIEW, review_kind=Photo.ReviewKind.UNCERTAIN)
    vote(photo, expert, "monstera")
    vote(photo, UserFactory(username="ann"), "spider_plant")
    photo.refresh_from_db()
    assert photo.review_kind == Photo.ReviewKind.ADJUDICATION
    return photo


def test_an_expert_is_not_served_a_dispute_they_labelled(dispute, expert, second_expert, api_for):
    assert dispute not in selectors.review_queue(viewer=expert)
    assert dispute in selectors.review_queue(viewer=second_expert)
    assert dispute.id not in [row["id"] for row in api_for(expert).get("/api/v1/review-queue/").json()["results"]]
    assert review.review_claim_next(expert) is None
    assert api_for(expert).post("/api/v1/review-queue/claim-next/").status_code == 204
    assert review.review_claim_next(second_expert) == dispute


def test_an_expert_cannot_claim_a_dispute_they_labelled(dispute, expert, api_for):
    with pytest.raises(review.VotedOnDispute, match="You labelled photo .* yourself"):
        review.review_claim(dispute.id, expert)

    response = api_for(expert).post(f"/api/v1/photos/{dispute.id}/claim/")

    assert response.status_code == 409
    assert "another expert adjudicates" in response.json()["detail"]
    assert Photo.objects.get(id=dispute.id).claimed_by is None


def test_a_decision_on_a_dispute_the_expert_labelled_is_refused(dispute, expert, second_expert, api_for):
    with pytest.raises(review.VotedOnDispute):
        services.review_decide(photo_id=dispute.id, expert=expert, label_name="monstera")
    response = api_for(expert).post(f"/api/v1/photos/{dispute.id}/review/", {"label": "monstera"}, format="json")

    assert response.status_code == 409
    assert "another expert adjudicates" in response.json()["detail"]
    photo = Photo.objects.get(id=dispute.id)
    assert (photo.status, photo.final_label, photo.decisions.count()) == (Photo.Status.NEEDS_REVIEW, None, 0)
    decided = services.review_decide(photo_id=dispute.id, expert=second_expert, label_name="monstera")
    assert (decided.status, decided.reviewed_by) == (Photo.Status.FINAL, second_expert)


def test_the_review_page_tells_the_expert_another_one_adjudicates_their_dispute(dispute, expert):
    client = Client()
    client.force_login(expert)

    page = client.get(f"/review/{dispute.id}/").content.decode()
    posted = client.post(f"/review/{dispute.id}/", {"label": "monstera"}, follow=True).content.decode()

    assert 'data-role="claimed-by-other"' in page and "another expert adjudicates" in page
    assert 'id="review-form"' not in page
    assert "Not saved" in posted and "another expert adjudicates" in posted
    assert Photo.objects.get(id=dispute.id).status == Photo.Status.NEEDS_REVIEW


def test_an_expert_still_decides_an_uncertain_photo_they_labelled_before_its_votes_were_in(labels, expert):
    photo = PhotoFactory(status=Photo.Status.NEEDS_REVIEW, review_kind=Photo.ReviewKind.UNCERTAIN)
    vote(photo, expert, "monstera")  # one of LABELLING_OVERLAP: no dispute yet

    assert photo in selectors.review_queue(viewer=expert)
    assert services.review_decide(photo_id=photo.id, expert=expert, label_name="monstera").status == "final"


# --- 4. a relabel to the label the photo has is refused ----------------------------------------


def test_relabelling_a_photo_to_its_own_label_is_refused_and_changes_nothing(labels, staff):
    photo = labelled(labels["monstera"], source=Photo.LabelSource.MODEL)
    before = Photo.objects.values("label_source", "decided_by", "reviewed_by", "decided_at").get(id=photo.id)

    with pytest.raises(services.CleaningError, match="Nothing to correct: .* already labelled monstera"):
        services.photo_clean(photo_id=photo.id, user=staff, action="relabel", label_name="monstera")

    assert Photo.objects.values("label_source", "decided_by", "reviewed_by", "decided_at").get(id=photo.id) == before
    assert not PhotoEvent.objects.exists()


# --- 6. a label's examples carry the label ------------------------------------------------------


def test_a_photo_of_another_label_is_refused_as_an_example(labels, staff, api_for):
    other = labelled(labels["spider_plant"])

    with pytest.raises(labelling.LabelError, match=f"Photo {other.id} is not labelled monstera"):
        labelling.label_update(label_id=labels["monstera"].id, example_ids=[other.id])
    response = api_for(staff).patch(f"/api/v1/labels/{labels['monstera'].id}/", {"examples": [other.id]},
                                    format="json")

    assert response.status_code == 400 and "not labelled monstera" in response.json()["detail"]
    assert not labels["monstera"].examples.exists()


def test_a_new_label_takes_no_examples_since_no_photo_has_it_yet(labels, staff, api_for):
    monstera = labelled(labels["monstera"])

    response = api_for(staff).post("/api/v1/labels/", {"name": "aloe_vera", "examples": [monstera.id]}, format="json")

    assert response.status_code == 400 and "not labelled aloe_vera" in response.json()["detail"]
    assert not selectors.labels_including_retired().filter(name="aloe_vera").exists()


@pytest.mark.parametrize("change", ["corrected", "rejected"])
def test_an_example_whose_photo_no_longer_has_the_label_is_not_shown(labels, expert, member, change):
    example, still = labelled(labels["monstera"]), labelled(labels["monstera"])
    labelling.label_update(label_id=labels["monstera"].id, example_ids=[example.id, still.id])

    corrected = change == "corrected"
    review.review_correct(photo_id=example.id, expert=expert, label_name="spider_plant" if corrected else None,
                          reject=not corrected)

    assert selectors.label_examples([labels["monstera"], labels["spider_plant"]]) == {labels["monstera"].id: [still]}
    assert not selectors.photo_visible_to_labeller(member, example.id)
    assert selectors.photo_visible_to_labeller(member, still.id)


def test_the_pages_and_the_api_show_only_the_examples_that_still_have_the_label(labels, expert, staff, api_for):
    example, still = labelled(labels["monstera"]), labelled(labels["monstera"])
    labelling.label_update(label_id=labels["monstera"].id, example_ids=[example.id, still.id])
    review.review_correct(photo_id=example.id, expert=expert, label_name="spider_plant")
    waiting = PhotoFactory(status=Photo.Status.NEEDS_REVIEW)
    staff_client, expert_client = Client(), Client()
    staff_client.force_login(staff)
    expert_client.force_login(expert)

    [monstera] = [row for row in api_for(staff).get("/api/v1/labels/").json()
                  if row["name"] == "monstera"]
    assert monstera["examples"] == [still.id]
    for page in (staff_client.get("/labels/"), expert_client.get(f"/review/{waiting.id}/")):
        assert page.status_code == 200
        html = page.content.decode()
        shown = [reverse("labelling-photo-file", args=[p.id]) in html or f"Example {p.id}" in html
                 for p in (still, example)]
        assert shown == [True, False]
    edit = staff_client.get(f"/labels/{labels['monstera'].id}/")
    assert [p.id for p in edit.context["examples"]] == [still.id]
    assert edit.context["example_ids"] == {still.id}
