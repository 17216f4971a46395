"""LABELLING_OVERLAP 1: one labeller's answer decides a photo, recorded as source "labeller" (one
person's word), never as a consensus nobody else took part in."""

import io

import pytest
from django.core.management import call_command
from django.template.loader import render_to_string

from classifier.services import training_rows, training_source_counts
from labeling import export, services
from labeling.labelling import label_vote, labelling_next
from labeling.models import LabellingOutcome, Photo
from labeling.selectors import photo_history
from tests.factories import LabelFactory, jpeg_bytes


# Uploads are sent to a prediction task: recorded instead of reaching a broker.
pytestmark = pytest.mark.usefixtures("sent_predictions")


@pytest.fixture
def monstera(db):
    return LabelFactory(name="monstera")


def waiting(owner, colour=(40, 140, 60)):
    """A stored photo waiting for labels (no model was active)."""
    photo = services.photo_upload(owner=owner, fileobj=io.BytesIO(jpeg_bytes(colour=colour)))
    photo.route_to_review("No model is active yet: an expert will decide.")
    photo.save()
    return photo


def vote(user, photo, answer):
    assert labelling_next(user) == photo
    label_vote(photo_id=photo.id, user=user, label_name=answer, unusable=answer is None)
    photo.refresh_from_db()


@pytest.fixture
def labelled(monstera, staff):
    """A new photo (uploaded by staff) that each labeller given answers `answer` (None: unusable)."""
    colours = iter(range(10, 250, 20))  # a photo of its own each time, never a duplicate

    def make(answer, *labellers):
        photo = waiting(staff, colour=(next(colours), 140, 60))
        for user in labellers:
            vote(user, photo, answer)
        return photo
    return make


def labelling_events(photo):
    return [(e["what"], e["who"], e["detail"]) for e in photo_history(photo) if e["who"].startswith("labeller")]


def test_with_an_overlap_of_one_a_single_vote_decides_the_photo_as_the_labellers_not_as_consensus(
        labelled, monstera, member, settings):
    settings.LABELLING_OVERLAP = 1

    photo = labelled("monstera", member)

    assert (photo.status, photo.final_label, photo.label_source, photo.decided_by, photo.reason) == (
        "final", monstera, "labeller", "labeller", "")
    assert photo.get_label_source_display() == "one labeller"
    assert LabellingOutcome.objects.get(photo=photo).tally == "monstera ×1"
    assert labelling_events(photo) == [("one labeller: monstera", "labeller", "needs_review → final; monstera ×1")]


def test_with_an_overlap_of_one_a_single_unusable_vote_rejects_the_photo_in_the_labellers_name(
        labelled, member, settings):
    settings.LABELLING_OVERLAP = 1

    photo = labelled(None, member)

    assert (photo.status, photo.label_source, photo.decided_by) == ("rejected", "", "labeller")
    assert photo.reason == "The labeller said: not a plant / unusable."
    assert labelling_events(photo) == [
        ("one labeller: rejected", "labeller", "needs_review → rejected; not a plant / unusable ×1")]


def test_with_an_overlap_of_two_agreement_is_still_a_consensus(labelled, member, other_member, settings):
    settings.LABELLING_OVERLAP = 2

    photo, rejected = labelled("monstera", member, other_member), labelled(None, member, other_member)

    assert (photo.label_source, photo.decided_by) == ("consensus", "consensus")
    assert labelling_events(photo) == [("consensus: monstera", "labellers", "needs_review → final; monstera ×2")]
    assert rejected.reason == "2 labellers agreed: not a plant / unusable."


def test_a_photo_left_with_one_vote_when_the_overlap_is_lowered_to_one_is_decided_by_that_labeller(
        labelled, member, other_member, settings):
    settings.LABELLING_OVERLAP = 2
    photo = labelled("monstera", member)
    settings.LABELLING_OVERLAP = 1

    assert labelling_next(other_member) is None

    photo.refresh_from_db()
    assert (photo.status, photo.label_source, photo.decided_by) == ("final", "labeller", "labeller")


def test_the_photo_status_says_one_labeller_decided_it(labelled, member, settings):
    settings.LABELLING_OVERLAP = 1

    def status(photo):
        return " ".join(render_to_string("labeling/_photo_status.html", {"photo": photo}).split())

    assert "monstera <small>(one labeller)</small>" in status(labelled("monstera", member))
    assert "Rejected by a labeller" in status(labelled(None, member))


def test_a_single_labellers_photos_are_trained_on_and_counted_apart_from_consensus(
        labelled, member, other_member, settings):
    settings.LABELLING_OVERLAP = 1
    single = labelled("monstera", member)
    settings.LABELLING_OVERLAP = 2
    agreed = labelled("monstera", member, other_member)

    assert Photo.LabelSource.LABELLER in Photo.HUMAN_VERIFIED_SOURCES
    assert [row[:2] for row in training_rows()] == [[single.id, "monstera"], [agreed.id, "monstera"]]
    assert training_source_counts([single.id, agreed.id]) == {"consensus": 1, "labeller": 1}


def test_export_and_import_keep_a_single_labellers_label_as_theirs(labelled, monstera, member, settings, tmp_path):
    settings.LABELLING_OVERLAP = 1
    photo = labelled("monstera", member)
    export.export_dataset_to_path(tmp_path / "dataset.zip")
    assert export.safe_extract(tmp_path / "dataset.zip", tmp_path / "unzipped", max_member_bytes=10 ** 7) == []
    row = next(iter(export.read_manifest(tmp_path / "unzipped").values()))
    assert (row["label"], row["source"], row["who"], row["agreement"]) == ("monstera", "labeller", "member", "1/1")
    Photo.objects.all().delete()  # an empty site, but for the label and the users

    call_command("import_photos", str(tmp_path / "unzipped"), owner="staff", stdout=io.StringIO())

    imported = Photo.objects.get()
    assert (imported.status, imported.final_label, imported.label_source, imported.decided_by,
            imported.decided_at) == ("final", monstera, "labeller", "labeller", photo.decided_at)
    assert imported.reason == "Imported from an export: labeller by member agreement 1/1."


def test_the_labelling_and_team_pages_say_one_person_labels_each_photo(labelled, member, settings, client):
    settings.LABELLING_OVERLAP = 1
    labelled("monstera")  # waiting for its one label
    client.force_login(member)

    assert "Each photo is labelled by one person: your answer decides it." in client.get("/label/").content.decode()
    assert "Each photo is labelled by up to 1 person." in client.get("/team/").content.decode()
