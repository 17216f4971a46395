"""Week by week on the audits page: one version's predictions, how sure it was, the share the
threshold in force would save beside its validation photos' share, and that week's audits. A
week whose share differs from the validation share by more than chance explains is marked: its
photos are unlike the ones the version was measured on."""
from datetime import date, datetime, timezone
from unittest import mock

import pytest
from django.test import Client

from classifier.calibration import summarise
from labeling import services
from labeling.models import Photo
from labeling.review import proportions_differ, weeks_of_predictions, wilson_interval
from tests.factories import LabelFactory, ModelVersionFactory, PhotoFactory, PredictionFactory

QUIET_WEEK = datetime(2026, 11, 18, 12, tzinfo=timezone.utc)    # a Wednesday; its week starts 2026-11-16
SHIFTED_WEEK = datetime(2026, 11, 29, 23, tzinfo=timezone.utc)  # a Sunday; its week starts 2026-11-23


@pytest.fixture
def version(db, settings, member, expert):
    """Validation: 3 of 4 photos at or above 0.8. Its first week looks like that (8 of 10, two
    audits, one right); its second does not (2 of 20)."""
    settings.CONFIDENCE_THRESHOLD = 0.8
    monstera, fern = LabelFactory(name="monstera"), LabelFactory(name="fern")
    version = ModelVersionFactory(is_active=True, metrics={
        "error_rate": 0.25, "calibration": summarise([0.9, 0.9, 0.85, 0.5], [True, True, True, False])})

    def predicted(confidence, at, **photo):
        return PredictionFactory(model_version=version, label=monstera, confidence=confidence, margin=0.3,
                                 created_at=at, photo=PhotoFactory(owner=member, **photo)).photo

    final = {"status": Photo.Status.FINAL, "final_label": monstera, "decided_by": Photo.DecidedBy.MODEL}
    for confidence in (0.95,) * 6 + (0.6, 0.7):
        predicted(confidence, QUIET_WEEK, **final)
    for label in ("monstera", "fern"):  # two audits of that week's confident predictions
        photo = predicted(0.9, QUIET_WEEK, status=Photo.Status.NEEDS_REVIEW, review_kind=Photo.ReviewKind.AUDIT)
        services.review_decide(photo_id=photo.id, expert=expert, label_name=label)
    for confidence in (0.9, 0.85) + (0.4,) * 18:
        predicted(confidence, SHIFTED_WEEK, **final)
    PredictionFactory(label=monstera, confidence=0.99, created_at=SHIFTED_WEEK)  # another version's
    return version


def test_each_week_counts_the_versions_predictions_and_their_share_at_the_threshold(version):
    shifted, quiet = weeks_of_predictions(version.id)

    assert (quiet.week, quiet.predictions, quiet.confident, quiet.confident_share) == (date(2026, 11, 16), 10, 8, 0.8)
    assert quiet.mean_confidence == pytest.approx((6 * 0.95 + 0.6 + 0.7 + 2 * 0.9) / 10)
    assert (quiet.ci_low, quiet.ci_high) == pytest.approx(wilson_interval(8, 10))
    assert (quiet.audited, quiet.audit_accuracy) == (2, 0.5)
    assert (shifted.week, shifted.predictions, shifted.confident) == (date(2026, 11, 23), 20, 2)
    assert (shifted.audited, shifted.audit_accuracy) == (0, None)


def test_a_week_whose_share_differs_from_validation_more_than_chance_explains_is_marked_shifted(version):
    shifted, quiet = weeks_of_predictions(version.id)

    assert shifted.shifted      # 2 of 20 against 3 of 4
    assert not quiet.shifted    # 8 of 10 against 3 of 4


@pytest.mark.parametrize("week, validation, differ", [
    ((2, 20), (3, 4), True),
    ((8, 10), (3, 4), False),
    ((2, 20), (2, 3), False),       # as far apart, but three validation photos say little
    ((200, 1000), (60, 100), True),
    ((0, 10), (0, 4), False),       # no spread at all: no difference
    ((3, 0), (3, 4), False),
])
def test_two_shares_differ_only_beyond_what_chance_explains_in_both(week, validation, differ):
    assert proportions_differ(*week, *validation) is differ


def test_without_a_recorded_calibration_no_week_is_marked(version):
    version.metrics = {"error_rate": 0.25}
    version.save()

    assert not any(week.shifted for week in weeks_of_predictions(version.id))


def test_only_the_latest_weeks_are_listed(version):
    assert [w.week for w in weeks_of_predictions(version.id, weeks=1)] == [date(2026, 11, 23)]


def test_the_audits_page_shows_the_weeks_and_marks_the_shifted_one(version, expert):
    client = Client()
    client.force_login(expert)

    page = client.get("/review/audits/").content.decode()

    weeks = page.split('id="weeks"')[1].split("</div>")[0]
    assert '<span data-role="validation-expected">75%</span>' in weeks
    shifted = weeks.split('data-week="2026-11-23"')[1].split("</tr>")[0]
    assert 'class="shifted"' in shifted and "unlike validation" in shifted and "10% (2)" in shifted
    quiet = weeks.split('data-week="2026-11-16"')[1].split("</tr>")[0]
    assert "unlike validation" not in quiet and "80% (8)" in quiet and "<td>0.500</td>" in quiet


def test_the_audits_page_says_when_the_active_version_has_predicted_nothing(db, expert):
    version = ModelVersionFactory(is_active=True)
    client = Client()
    client.force_login(expert)

    assert f"Version {version.id} has made no prediction yet." in client.get("/review/audits/").content.decode()


def test_the_audit_stats_api_gives_the_weeks_of_the_version_it_describes(version, expert, api_for):
    other = ModelVersionFactory()

    weeks = api_for(expert).get("/api/v1/audits/stats/").json()["weeks"]
    none = api_for(expert).get(f"/api/v1/audits/stats/?version={other.id}").json()["weeks"]

    assert [(w["week"], w["predictions"], w["confident"], w["shifted"]) for w in weeks] == [
        ("2026-11-23", 20, 2, True), ("2026-11-16", 10, 8, False)]
    assert weeks[1]["audit_accuracy"] == 0.5
    assert none == []


@pytest.mark.parametrize("today, warned", [
    (datetime(2026, 11, 29, 23, 30, tzinfo=timezone.utc), True),  # in that week
    (datetime(2026, 12, 6, 12, tzinfo=timezone.utc), True),       # the week after
    (datetime(2026, 12, 7, 12, tzinfo=timezone.utc), False),      # two weeks on: not news any more
])
def test_the_queue_warns_while_the_latest_week_unlike_validation_is_recent(version, expert, today, warned):
    client = Client()
    client.force_login(expert)

    with mock.patch("labeling.review_views.timezone.now", return_value=today):
        page = client.get("/review/").content.decode()

    if warned:
        assert '<p class="message warning" data-role="shifted">The photos predicted in the week of\n  2026-11-23' in page
        assert "it would save\n  10% of them on its own" in page
    else:
        assert 'data-role="shifted"' not in page


def test_the_queue_says_nothing_when_the_latest_week_is_like_validation(version, expert):
    from labeling.models import Prediction

    Prediction.objects.filter(created_at=SHIFTED_WEEK).delete()
    client = Client()
    client.force_login(expert)

    with mock.patch("labeling.review_views.timezone.now", return_value=QUIET_WEEK):
        assert 'data-role="shifted"' not in client.get("/review/").content.decode()
