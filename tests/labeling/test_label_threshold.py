"""A label's own threshold: for a label whose mistakes cost more than most, the model saves its
answer on its own only at or above a higher confidence than the site's. It can only ask for more.
What each threshold would save, on the uploads and on the validation photos, and the weekly
share count it; the label's page shows what to set it from."""
from datetime import datetime, timezone as dt_timezone

import pytest
from django.test import Client

from classifier.calibration import Calibration, summarise
from labeling import labelling
from labeling.models import Label, LabelChange, Photo, Prediction
from labeling.review import route_prediction, threshold_evidence, weeks_of_predictions
from tests.factories import LabelFactory, ModelVersionFactory, PhotoFactory, PredictionFactory

WEEK = datetime(2026, 11, 18, tzinfo=dt_timezone.utc)


@pytest.fixture
def foxglove(db):
    return LabelFactory(name="foxglove", threshold=0.95)


def _routed(label, confidence, site=0.8):
    photo = Photo()
    route_prediction(photo, Prediction(label=label, confidence=confidence, margin=confidence), site)
    return photo


def test_an_answer_below_its_labels_own_threshold_waits_for_an_expert_and_one_above_is_saved(foxglove):
    below, above = _routed(foxglove, 0.94), _routed(foxglove, 0.95)

    assert below.status == Photo.Status.NEEDS_REVIEW
    assert below.reason == "The model is 94% sure, below the 95% threshold for foxglove: an expert will decide."
    assert above.status == Photo.Status.FINAL


def test_a_labels_threshold_below_the_sites_asks_for_nothing_less(db):
    lenient = LabelFactory(name="fern", threshold=0.5)

    photo = _routed(lenient, 0.7)

    assert photo.status == Photo.Status.NEEDS_REVIEW
    assert photo.reason == "The model is 70% sure, below the 80% threshold: an expert will decide."
    assert lenient.threshold_in_force(0.8) == 0.8 and lenient.threshold_in_force(0.4) == 0.5


def test_an_answer_below_its_labels_threshold_is_never_drawn_for_an_audit(foxglove, settings):
    settings.AUDIT_FRACTION = 1.0

    photo = _routed(foxglove, 0.9)

    assert photo.review_kind == Photo.ReviewKind.UNCERTAIN


def test_staff_set_and_clear_it_on_the_labels_page_and_in_the_api_and_each_change_is_recorded(db, staff, api_for):
    fern = LabelFactory(name="fern")
    client = Client()
    client.force_login(staff)

    client.post(f"/labels/{fern.id}/", {"action": "save", "description": "", "threshold": "0.97"})
    fern.refresh_from_db()
    page = client.get(f"/labels/{fern.id}/").content.decode()
    listed = client.get("/labels/").content.decode()
    untouched = api_for(staff).patch(f"/api/v1/labels/{fern.id}/", {"description": "Fronds"}, format="json")
    cleared = api_for(staff).patch(f"/api/v1/labels/{fern.id}/", {"threshold": None}, format="json")
    created = api_for(staff).post("/api/v1/labels/", {"name": "hemlock", "threshold": 0.99}, format="json")
    refused = api_for(staff).patch(f"/api/v1/labels/{fern.id}/", {"threshold": 1.5}, format="json")

    assert fern.threshold == 0.97
    assert 'name="threshold" value="0.97"' in page and '<span class="badge">threshold 0.97</span>' in listed
    assert untouched.json()["threshold"] == 0.97  # a PATCH without it leaves it
    assert cleared.json()["threshold"] is None
    assert created.status_code == 201 and Label.objects.get(name="hemlock").threshold == 0.99
    assert refused.status_code == 400 and "threshold" in refused.json()
    assert [c.what for c in LabelChange.objects.filter(label=fern).order_by("id")] == [
        "threshold 0.97", "description changed", "the site's threshold"]
    assert "threshold 0.99" in [c.what for c in LabelChange.objects.filter(label__name="hemlock")]


def test_the_page_refuses_a_threshold_outside_zero_to_one(db, staff):
    fern = LabelFactory(name="fern")
    client = Client()
    client.force_login(staff)

    response = client.post(f"/labels/{fern.id}/", {"action": "save", "description": "", "threshold": "1.5"})

    assert response.status_code == 400
    fern.refresh_from_db()
    assert fern.threshold is None


def test_saving_the_form_with_the_field_empty_gives_the_label_the_sites_threshold_again(foxglove, staff):
    labelling.label_update(label_id=foxglove.id, threshold=labelling.UNCHANGED, description="Spikes")
    foxglove.refresh_from_db()
    assert foxglove.threshold == 0.95
    client = Client()
    client.force_login(staff)

    client.post(f"/labels/{foxglove.id}/", {"action": "save", "description": "Spikes", "threshold": ""})

    foxglove.refresh_from_db()
    assert foxglove.threshold is None


def test_the_validation_photos_below_their_labels_threshold_are_not_counted_as_saved():
    calibration = Calibration.from_dict(summarise([0.9, 0.96, 0.85, 0.6], [True, False, True, True],
                                                  ["foxglove", "foxglove", "fern", "fern"]))

    assert calibration.accepted(0.8) == (3, 2)
    assert calibration.accepted(0.8, floors={"foxglove": 0.95}) == (2, 1)   # its 0.9 is below 0.95
    assert calibration.accepted(0.97, floors={"foxglove": 0.95}) == (0, 0)  # the site's asks more
    assert calibration.accepted(0.8, leave_out={"foxglove"}, floors={"foxglove": 0.95}) == (1, 1)


@pytest.fixture
def version(foxglove, member, settings):
    """At 0.9: two foxglove answers (its own threshold 0.95), two fern; validation the same."""
    settings.CONFIDENCE_THRESHOLD = 0.8
    fern = LabelFactory(name="fern")
    version = ModelVersionFactory(is_active=True, metrics={"calibration": summarise(
        [0.9, 0.9, 0.9, 0.96], [True, True, True, False], ["foxglove", "foxglove", "fern", "foxglove"])})
    for label in (foxglove, foxglove, fern, fern):
        PredictionFactory(model_version=version, label=label, confidence=0.9, margin=0.5, created_at=WEEK,
                          photo=PhotoFactory(owner=member))
    return version


def test_the_threshold_tables_count_an_answer_below_its_labels_threshold_as_not_saved(version):
    rows = threshold_evidence(version.id)

    now = next(row for row in rows if row.current)
    assert now.accepted_share == 0.5                                 # the two fern answers
    assert (now.validation.accepted, now.validation.photos) == (2, 4)  # fern's 0.9 and foxglove's 0.96
    at_099 = next(row for row in rows if row.threshold == 0.99)
    assert at_099.accepted_share == 0.0


def test_the_weekly_share_counts_it_so(version):
    (week,) = weeks_of_predictions(version.id)

    assert (week.predictions, week.confident) == (4, 2)
    assert not week.shifted  # 2 of 4, as on the validation photos


def test_the_labels_page_shows_what_to_set_it_from(version, foxglove, staff):
    client = Client()
    client.force_login(staff)

    page = client.get(f"/labels/{foxglove.id}/").content.decode()

    table = page.split('id="threshold-evidence"')[1].split("</table>")[0]
    assert f"Version {version.id}'s validation photos that it called foxglove" in table
    at_site = table.split('data-threshold="0.8"')[1].split("</tr>")[0]
    assert "<td>3 of 3</td>" in at_site and "<td>0.667</td>" in at_site
    in_force = table.split('data-threshold="0.95"')[1].split("</tr>")[0]
    assert 'class="current"' in in_force and "(in force)" in in_force and "<td>1 of 3</td>" in in_force
    assert "no audit of its\n    foxglove answers yet" in page
