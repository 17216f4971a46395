"""Every prediction as CSV, for an admin who checks the model's record with other tools: what it
said, how sure, how familiar the photo looked, and who decided what. A pending audit stays blind."""
import csv
import io

import pytest
from django.test import Client

from labeling import services
from labeling.models import Photo
from tests.factories import LabelFactory, PhotoFactory, PredictionFactory, UserFactory


def _rows(response):
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="predictions.csv"'
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


@pytest.fixture
def predictions(db, expert):
    monstera, fern = LabelFactory(name="monstera"), LabelFactory(name="fern")
    saved = PredictionFactory(label=monstera, confidence=0.95, margin=0.9, familiarity=0.91, familiarity_cutoff=0.8,
                              photo=PhotoFactory(status=Photo.Status.FINAL, final_label=monstera,
                                                 decided_by=Photo.DecidedBy.MODEL)).photo
    changed = PredictionFactory(label=monstera, confidence=0.97, familiarity=0.5, familiarity_cutoff=0.8,
                                photo=PhotoFactory(status=Photo.Status.NEEDS_REVIEW,
                                                   review_kind=Photo.ReviewKind.UNCERTAIN)).photo
    services.review_decide(photo_id=changed.id, expert=expert, label_name="fern")
    audit = PredictionFactory(label=monstera, confidence=0.99, photo=PhotoFactory(
        status=Photo.Status.NEEDS_REVIEW, review_kind=Photo.ReviewKind.AUDIT)).photo
    PhotoFactory(status=Photo.Status.QUEUED)  # no prediction yet: not listed
    return saved, changed, audit, fern


def test_each_prediction_is_a_row_with_what_became_of_its_photo(predictions, staff):
    saved, changed, audit, _ = predictions
    client = Client()
    client.force_login(staff)

    rows = _rows(client.get("/api/v1/exports/predictions.csv"))

    assert [int(r["photo"]) for r in rows] == [saved.id, changed.id, audit.id]
    first, second, third = rows
    assert (first["answer"], first["confidence"], first["familiarity"], first["unfamiliar"]) == (
        "monstera", "0.95", "0.91", "0")
    assert (first["status"], first["decided_by"], first["people_changed"], first["reviewed_by"]) == (
        "final", "model", "0", "")
    assert (second["answer"], second["unfamiliar"], second["final_label"], second["decided_by"]) == (
        "monstera", "1", "fern", "expert")
    assert (second["people_changed"], second["reviewed_by"]) == ("1", "expert")
    # A pending audit: blind, as everywhere until an expert has decided it.
    assert (third["status"], third["review_kind"], third["answer"], third["confidence"]) == (
        "needs_review", "audit", "", "")


def test_a_username_a_spreadsheet_would_read_as_a_formula_is_kept_as_text(predictions, staff, api_for):
    _, changed, _, _ = predictions
    Photo.objects.filter(id=changed.id).update(reviewed_by=UserFactory(username="+1-1", expert=True))

    rows = _rows(api_for(staff).get("/api/v1/exports/predictions.csv"))

    assert next(r for r in rows if int(r["photo"]) == changed.id)["reviewed_by"] == "'+1-1"


def test_the_export_page_links_it(db, staff):
    client = Client()
    client.force_login(staff)

    assert 'href="/api/v1/exports/predictions.csv" id="export-predictions"' in client.get("/export/").content.decode()
