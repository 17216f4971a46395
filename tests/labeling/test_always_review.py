"""A label whose mistakes cost too much (a poisonous look-alike) can be always checked by an
expert: the model's answer with it is never saved on its own, however sure, nor drawn for an
audit. What each threshold would save, on the uploads and on the validation photos, and the
weekly share, leave such answers out, as they leave out retired labels."""
import io
from datetime import datetime, timezone as dt_timezone

import pytest
from django.test import Client

from classifier.calibration import Calibration, summarise
from labeling import services
from labeling.models import Label, Photo
from labeling.review import route_prediction, threshold_evidence, weeks_of_predictions
from tests.factories import LabelFactory, ModelVersionFactory, PhotoFactory, PredictionFactory, UserFactory, jpeg_bytes


@pytest.fixture
def hemlock(db):
    return LabelFactory(name="hemlock", always_review=True)


def test_a_sure_answer_with_an_always_checked_label_waits_for_an_expert_and_is_never_an_audit(hemlock, settings):
    settings.AUDIT_FRACTION = 1.0  # every answer it would save is audited
    photo = PhotoFactory()
    prediction = PredictionFactory(photo=photo, label=hemlock, confidence=0.999, margin=0.99)

    route_prediction(photo, prediction, 0.8)

    assert (photo.status, photo.review_kind) == (Photo.Status.NEEDS_REVIEW, Photo.ReviewKind.UNCERTAIN)
    assert photo.reason == "The model's answer, hemlock, is always checked by an expert: an expert will decide."


def test_the_worker_path_routes_it_so(active_model, settings):
    settings.CONFIDENCE_THRESHOLD = 0.0
    Label.objects.filter(name__in=active_model.labels).update(always_review=True)
    photo = services.photo_upload(owner=UserFactory(), fileobj=io.BytesIO(jpeg_bytes()))

    photo = services.photo_predict(photo.id)

    assert photo.status == Photo.Status.NEEDS_REVIEW and "is always checked by an expert" in photo.reason


def test_staff_set_it_on_the_labels_page_and_in_the_api(db, staff, api_for):
    fern = LabelFactory(name="fern")
    client = Client()
    client.force_login(staff)

    client.post(f"/labels/{fern.id}/", {"action": "save", "description": "", "always_review": "on"})
    fern.refresh_from_db()
    listed = client.get("/labels/").content.decode()
    patched = api_for(staff).patch(f"/api/v1/labels/{fern.id}/", {"always_review": False}, format="json")
    created = api_for(staff).post("/api/v1/labels/", {"name": "hemlock", "always_review": True}, format="json")

    assert fern.always_review is True
    assert '<a href="/labels/%d/">fern</a> <span class="badge">always checked</span>' % fern.id in listed
    assert patched.json()["always_review"] is False
    assert created.status_code == 201 and Label.objects.get(name="hemlock").always_review


def test_saving_the_description_without_the_box_turns_it_off(hemlock, staff):
    client = Client()
    client.force_login(staff)

    page = client.get(f"/labels/{hemlock.id}/").content.decode()
    client.post(f"/labels/{hemlock.id}/", {"action": "save", "description": "Umbels, purple blotches"})

    assert 'id="id_always_review" checked>' in page
    hemlock.refresh_from_db()
    assert not hemlock.always_review and hemlock.description == "Umbels, purple blotches"


def test_the_validation_photos_an_always_checked_label_would_have_are_left_out():
    calibration = Calibration.from_dict(summarise([0.9, 0.95, 0.85, 0.6], [True, False, True, True],
                                                  ["hemlock", "hemlock", "fern", "fern"]))

    assert calibration.accepted(0.8) == (3, 2)
    assert calibration.accepted(0.8, leave_out={"hemlock"}) == (1, 1)
    assert calibration.accepted(0.5, leave_out={"hemlock", "fern"}) == (0, 0)
    assert calibration.photos == 4  # the reliability table keeps every photo


def test_a_calibration_without_the_answers_cannot_leave_any_out():
    calibration = Calibration.from_dict(summarise([0.9, 0.85], [True, False]))

    assert calibration.accepted(0.8, leave_out={"hemlock"}) == (2, 1)


@pytest.fixture
def version(hemlock, member, settings):
    """Predictions of two labels at 0.9: two of hemlock (always checked), two of fern."""
    settings.CONFIDENCE_THRESHOLD = 0.8
    fern = LabelFactory(name="fern")
    version = ModelVersionFactory(is_active=True, metrics={"calibration": summarise(
        [0.9, 0.9, 0.9, 0.9], [True, True, True, True], ["hemlock", "hemlock", "fern", "fern"])})
    at = datetime(2026, 11, 18, tzinfo=dt_timezone.utc)
    for label in (hemlock, hemlock, fern, fern):
        PredictionFactory(model_version=version, label=label, confidence=0.9, margin=0.5, created_at=at,
                          photo=PhotoFactory(owner=member))
    return version


def test_no_threshold_saves_an_always_checked_answer_on_the_uploads_or_the_validation_photos(version):
    now = next(row for row in threshold_evidence(version.id) if row.current)

    assert now.accepted_share == 0.5
    assert (now.validation.accepted, now.validation.accepted_share) == (2, 0.5)


def test_the_weekly_share_leaves_them_out_too_and_so_is_not_marked_unlike_validation(version):
    (week,) = weeks_of_predictions(version.id)

    assert (week.predictions, week.confident, week.confident_share) == (4, 2, 0.5)
    assert not week.shifted


def test_each_change_of_a_label_is_recorded_with_who_made_it(db, staff, api_for):
    client = Client()
    client.force_login(staff)
    client.post("/labels/", {"name": "hemlock", "description": ""})
    hemlock = Label.objects.get(name="hemlock")

    client.post(f"/labels/{hemlock.id}/", {"action": "save", "description": "Umbels", "always_review": "on"})
    client.post(f"/labels/{hemlock.id}/", {"action": "save", "description": "Umbels", "always_review": "on"})  # same
    api_for(staff).patch(f"/api/v1/labels/{hemlock.id}/", {"always_review": False}, format="json")
    client.post(f"/labels/{hemlock.id}/", {"action": "retire"})

    changes = [(c.user.username, c.what) for c in hemlock.changes.order_by("id")]
    assert changes == [("staff", "created"), ("staff", "description changed"),
                       ("staff", "always checked by an expert"), ("staff", "no longer always checked"),
                       ("staff", "retired")]
    page = client.get(f"/labels/{hemlock.id}/").content.decode()
    assert "<td>staff</td><td>no longer always checked</td>" in page.split('id="label-changes"')[1]
    listed = api_for(staff).get(f"/api/v1/labels/{hemlock.id}/").json()["changes"]
    assert [(c["who"], c["what"]) for c in listed] == list(reversed(changes))


def test_a_label_an_import_creates_has_that_in_its_history(db, staff, tmp_path):
    from classifier.demo_images import generate_dataset
    from labeling.services import photos_import_folder

    generate_dataset(tmp_path / "plants", per_label=1, size=64, seed=3)

    photos_import_folder(directory=tmp_path / "plants", owner=staff)

    (change,) = Label.objects.get(name="monstera").changes.all()
    assert (change.user, change.what) == (staff, "created by an import")
