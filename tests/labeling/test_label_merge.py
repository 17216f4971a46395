"""Merging one label into another (labeling.labelling.label_merge): the same plant under two
names becomes one label, on the label's page and through POST /api/v1/labels/{id}/merge/."""

import pytest

from labeling import labelling
from labeling.models import Label, LabelVote, Photo, PhotoEvent, ReviewDecision, Webhook, WebhookDelivery
from tests.factories import LabelFactory, PhotoFactory, PredictionFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def roses(db):
    return LabelFactory(name="roses")


@pytest.fixture
def rose(db):
    return LabelFactory(name="rose")


def decided(label, **fields):
    return PhotoFactory(status=Photo.Status.FINAL, final_label=label, label_source="expert", decided_by="expert",
                        **fields)


def test_every_photo_vote_and_example_of_the_merged_label_moves_and_it_is_retired(rose, roses, staff, expert):
    mine = [decided(rose), decided(rose)]
    theirs = decided(roses)
    other = decided(LabelFactory(name="tulips"))
    labeller = UserFactory()
    open_photo = PhotoFactory(status=Photo.Status.NEEDS_REVIEW)
    vote = LabelVote.objects.create(photo=open_photo, user=labeller, label=rose)
    rose.examples.set([mine[0]])
    roses.examples.set([theirs])
    decision = ReviewDecision.objects.create(photo=mine[1], expert=expert, label=rose, status_before="needs_review",
                                             status_after="final")
    prediction = PredictionFactory(photo=PhotoFactory(status=Photo.Status.NEEDS_REVIEW), label=rose)

    merged = labelling.label_merge(label_id=rose.id, into_id=roses.id, user=staff)

    assert (merged.photos, merged.votes) == (2, 1)
    for photo in mine:
        photo.refresh_from_db()
        assert (photo.final_label, photo.label_source, photo.decided_by) == (roses, "expert", "expert")
        event = PhotoEvent.objects.get(photo=photo)
        assert (event.action, event.label_before, event.label_after, event.user) == ("relabel", rose, roses, staff)
        assert event.note == "labels merged: rose into roses"
    other.refresh_from_db()
    assert other.final_label.name == "tulips"
    vote.refresh_from_db()
    assert vote.label == roses
    assert set(roses.examples.all()) == {theirs, mine[0]} and not rose.examples.exists()
    rose.refresh_from_db()
    assert rose.retired and not roses.retired
    # What happened keeps its name.
    decision.refresh_from_db()
    prediction.refresh_from_db()
    assert decision.label == rose and prediction.label == rose
    assert [c.what for c in rose.changes.all()] == ["merged into roses (2 photos, 1 votes moved); retired"]
    assert [c.what for c in roses.changes.all()] == ["took in rose (2 photos, 1 votes)"]


def test_the_merged_photos_are_told_to_webhooks_as_decided_with_their_old_label(rose, roses, staff):
    Webhook.objects.create(url="https://hooks.example.com/in", events=["photo.decided"])
    photo = decided(rose)

    labelling.label_merge(label_id=rose.id, into_id=roses.id, user=staff)

    (delivery,) = WebhookDelivery.objects.all()
    assert delivery.photo_id == photo.id and delivery.payload["photo"]["final_label"] == "roses"
    assert delivery.payload["previous"] == {"status": "final", "final_label": "rose"}


def test_examples_beyond_the_limit_are_dropped_not_added(rose, roses, staff):
    roses.examples.set([decided(roses) for _ in range(labelling.MAX_EXAMPLES - 1)])
    rose.examples.set([decided(rose), decided(rose)])

    labelling.label_merge(label_id=rose.id, into_id=roses.id, user=staff)

    assert roses.examples.count() == labelling.MAX_EXAMPLES


@pytest.mark.parametrize("case, message", [("itself", "cannot be merged into itself"),
                                           ("retired", "roses is retired: put it back in use first")])
def test_a_merge_into_itself_or_into_a_retired_label_is_refused_and_changes_nothing(rose, roses, staff, case,
                                                                                   message):
    photo = decided(rose)
    Label.objects.filter(id=roses.id).update(retired=case == "retired")
    into = rose if case == "itself" else roses

    with pytest.raises(labelling.LabelError, match=message):
        labelling.label_merge(label_id=rose.id, into_id=into.id, user=staff)

    photo.refresh_from_db()
    rose.refresh_from_db()
    assert photo.final_label == rose and not rose.retired and not PhotoEvent.objects.exists()


def test_a_label_that_is_not_there_is_not_found(rose, staff):
    with pytest.raises(Label.DoesNotExist):
        labelling.label_merge(label_id=rose.id, into_id=987654, user=staff)


def test_an_admin_merges_on_the_labels_page_after_confirming(client, rose, roses, staff):
    photo = decided(rose)
    client.force_login(staff)
    page = f"/labels/{rose.id}/"
    form = client.get(page).content.decode()
    assert 'id="label-merge"' in form and f'<option value="{roses.id}">roses</option>' in form
    assert f'<option value="{rose.id}">' not in form  # not into itself

    unconfirmed = client.post(page, {"action": "merge", "into": roses.id}, follow=True)
    assert "nothing was merged" in unconfirmed.content.decode()
    photo.refresh_from_db()
    assert photo.final_label == rose

    done = client.post(page, {"action": "merge", "into": roses.id, "confirm": "yes"}, follow=True)
    assert done.redirect_chain[-1][0] == f"/labels/{roses.id}/"
    assert "rose merged into roses: 1 photos and 0 votes moved; rose is retired." in done.content.decode()
    photo.refresh_from_db()
    assert photo.final_label == roses
    assert 'id="label-merge"' not in client.get(page).content.decode()  # retired now: nothing to merge


def test_the_api_merges_by_name_and_answers_400_for_an_unknown_or_retired_target(api_for, rose, roses, staff):
    api = api_for(staff)
    decided(rose)

    assert api.post(f"/api/v1/labels/{rose.id}/merge/", {"into": "rosa"}, format="json").json() == {
        "into": ["No label named 'rosa'."]}
    assert api.post("/api/v1/labels/987654/merge/", {"into": "roses"}, format="json").status_code == 404
    response = api.post(f"/api/v1/labels/{rose.id}/merge/", {"into": "roses"}, format="json")
    assert response.status_code == 200
    assert response.json() == {"label": "rose", "into": "roses", "photos": 1, "votes": 0}
    again = api.post(f"/api/v1/labels/{roses.id}/merge/", {"into": "rose"}, format="json")
    assert again.status_code == 400 and "rose is retired" in again.json()["detail"]
