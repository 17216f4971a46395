"""What each confidence threshold would do, from the active version's predictions: the share it
would accept on its own, and the accuracy of that share, estimated from what people decided.
Everything below the threshold in force is checked by people, above it only the audit sample,
which therefore counts 1 / AUDIT_FRACTION times."""

import pytest
from django.test import Client

from labeling.models import Photo
from labeling.review import threshold_evidence, threshold_table, wilson_bounds, wilson_interval
from tests.factories import LabelFactory, ModelVersionFactory, PhotoFactory, PredictionFactory


def _row(rows, threshold):
    return next(row for row in rows if row.threshold == threshold)


def test_the_audits_above_the_threshold_count_for_the_predictions_they_stand_for():
    checked = [(0.55, False, 1.0), (0.65, True, 1.0), (0.75, True, 1.0),  # below 0.8: all checked
               (0.9, True, 10.0), (0.95, False, 10.0)]                    # above: one audit in ten
    confidences = [0.55, 0.65, 0.75] + [0.9] * 10 + [0.95] * 10

    rows = threshold_table(confidences, checked, (0.6, 0.9), current=0.8)

    assert [row.threshold for row in rows] == [0.6, 0.8, 0.9]
    assert [row.current for row in rows] == [False, True, False]
    at_06 = _row(rows, 0.6)
    # Unweighted it would read 3 of 4 correct; the two audits stand for twenty predictions.
    assert at_06.checked == 4
    assert at_06.accuracy == pytest.approx(12 / 22)
    assert at_06.accepted_share == pytest.approx(22 / 23)
    assert (at_06.ci_low, at_06.ci_high) == pytest.approx(wilson_bounds(12 / 22, 22 * 22 / 202))
    at_09 = _row(rows, 0.9)
    assert (at_09.checked, at_09.accuracy, at_09.accepted_share) == (2, 0.5, pytest.approx(20 / 23))


def test_with_equal_weights_the_interval_is_the_plain_wilson_interval():
    checked = [(0.9, True, 20.0)] * 7 + [(0.9, False, 20.0)] * 3

    row = _row(threshold_table([0.9] * 10, checked, (0.9,), current=0.8), 0.9)

    assert row.accuracy == pytest.approx(0.7)
    assert (row.ci_low, row.ci_high) == pytest.approx(wilson_interval(7, 10))


def test_a_threshold_with_nothing_checked_or_no_predictions_says_so():
    rows = threshold_table([], [], (0.5,), current=0.8)

    assert all(row.accuracy is None and row.ci_low is None and row.accepted_share is None and row.checked == 0
               for row in rows)


@pytest.fixture
def version_with_history(db, settings, member, expert):
    """Version v's predictions: two the model accepted, two uncertain ones people decided (one
    right, one wrong), one audit an expert confirmed, one tie, and one still waiting."""
    settings.CONFIDENCE_THRESHOLD = 0.8
    settings.AUDIT_FRACTION = 0.25
    monstera, fern = LabelFactory(name="monstera"), LabelFactory(name="fern")
    version = ModelVersionFactory(is_active=True)

    def predicted(confidence, *, margin=0.2, **photo):
        return PredictionFactory(model_version=version, label=monstera, confidence=confidence, margin=margin,
                                 photo=PhotoFactory(owner=member, **photo))

    final = Photo.Status.FINAL
    predicted(0.95, status=final, final_label=monstera, decided_by=Photo.DecidedBy.MODEL)
    predicted(0.9, status=final, final_label=monstera, decided_by=Photo.DecidedBy.MODEL)
    predicted(0.6, status=final, final_label=monstera, decided_by=Photo.DecidedBy.EXPERT,
              review_kind=Photo.ReviewKind.UNCERTAIN)
    predicted(0.7, status=final, final_label=fern, decided_by=Photo.DecidedBy.CONSENSUS,
              review_kind=Photo.ReviewKind.UNCERTAIN)
    predicted(0.85, status=final, final_label=monstera, decided_by=Photo.DecidedBy.EXPERT,
              review_kind=Photo.ReviewKind.AUDIT)
    predicted(0.9, margin=0.0, status=final, final_label=fern, decided_by=Photo.DecidedBy.EXPERT,
              review_kind=Photo.ReviewKind.UNCERTAIN)  # a tie: never auto-accepted
    predicted(0.5, status=Photo.Status.NEEDS_REVIEW, review_kind=Photo.ReviewKind.UNCERTAIN)
    PredictionFactory(label=monstera, confidence=0.99, photo=PhotoFactory(owner=member, status=final,
                      final_label=fern, decided_by=Photo.DecidedBy.EXPERT, review_kind=Photo.ReviewKind.AUDIT))
    return version


def test_the_evidence_reads_one_versions_decided_predictions_and_weights_its_audits(version_with_history):
    rows = threshold_evidence(version_with_history.id)

    at_06, now = _row(rows, 0.6), _row(rows, 0.8)
    # 0.6 (right, 1), 0.7 (wrong, 1), 0.85 (an audit, right, 4); the tie, the waiting photo, the
    # model's own and the other version's audit are not evidence.
    assert at_06.checked == 3 and at_06.accuracy == pytest.approx(5 / 6)
    assert now.current and now.checked == 1 and now.accuracy == 1.0
    assert _row(rows, 0.5).accepted_share == 1.0
    assert now.accepted_share == pytest.approx(3 / 6)  # 0.95, 0.9, 0.85 of the six without a tie


def test_the_audits_page_shows_the_table_for_the_active_version(version_with_history, expert):
    client = Client()
    client.force_login(expert)

    page = client.get("/review/audits/").content.decode()

    assert f"For version {version_with_history.id}, the active one" in page
    assert '<tr class="current" data-threshold="0.8">' in page
    assert "each audit counts for the 4 predictions it stands for" in page


def test_the_audits_page_says_when_no_model_is_active(db, expert):
    client = Client()
    client.force_login(expert)

    assert "No model is active: there is nothing to choose a threshold for." in client.get("/review/audits/").content.decode()


def test_the_audit_stats_api_gives_the_table_for_the_active_version_or_the_one_asked_for(version_with_history,
                                                                                        expert, api_for):
    other = ModelVersionFactory()

    active = api_for(expert).get("/api/v1/audits/stats/").json()
    asked = api_for(expert).get(f"/api/v1/audits/stats/?version={other.id}").json()

    assert active["threshold_version"] == version_with_history.id
    now = next(row for row in active["thresholds"] if row["current"])
    assert now == {"threshold": 0.8, "current": True, "accepted_share": 0.5, "checked": 1, "accuracy": 1.0,
                   "ci_low": pytest.approx(wilson_interval(1, 1)[0]), "ci_high": 1.0,
                   "validation": None}  # the factory's version has no calibration recorded
    assert asked["threshold_version"] == other.id
    assert all(row["checked"] == 0 and row["accepted_share"] is None for row in asked["thresholds"])
