"""What the site shows of unfamiliar photos (classifier.familiarity): their answers never count as
saved by a threshold, the weeks count them against the validation photos' share, the queue warns
when more arrive, and each photo's page, the review page, the API and a version's card say how
like the training photos a photo or the validation photos were."""
from datetime import datetime, timezone
from unittest import mock

import pytest
from django.test import Client

from labeling import services
from labeling.models import Photo
from labeling.review import threshold_evidence, weeks_of_predictions
from tests.factories import LabelFactory, ModelVersionFactory, PhotoFactory, PredictionFactory

QUIET_WEEK = datetime(2026, 11, 18, 12, tzinfo=timezone.utc)  # its week starts 2026-11-16
NEW_KINDS = datetime(2026, 11, 25, 12, tzinfo=timezone.utc)   # its week starts 2026-11-23
# 100 validation photos, one of them below 0.8: at UNFAMILIAR_SHARE 0.01 the cut-off is 0.8 and
# it flags that one.
FAMILIARITY = {"photos": 100, "bins": [[500, 1], [800, 99]]}
FINAL_BY_MODEL = {"status": Photo.Status.FINAL, "decided_by": Photo.DecidedBy.MODEL}


@pytest.fixture
def version(db, settings):
    settings.CONFIDENCE_THRESHOLD = 0.8
    settings.UNFAMILIAR_SHARE = 0.01
    return ModelVersionFactory(is_active=True, metrics={"error_rate": 0.1, "familiarity": FAMILIARITY})


def _predicted(version, at, *, unfamiliar, confidence=0.95, **photo):
    monstera = LabelFactory(name="monstera")
    if not photo:
        photo = ({"status": Photo.Status.NEEDS_REVIEW, "review_kind": Photo.ReviewKind.UNCERTAIN} if unfamiliar
                 else {**FINAL_BY_MODEL, "final_label": monstera})
    return PredictionFactory(model_version=version, label=monstera, confidence=confidence, margin=0.5, created_at=at,
                             familiarity=0.5 if unfamiliar else 0.9, familiarity_cutoff=0.8,
                             photo=PhotoFactory(**photo)).photo


@pytest.fixture
def weeks(version):
    """A week like validation (1 of 20 unfamiliar), then one with new kinds of photo (8 of 20)."""
    for i in range(20):
        _predicted(version, QUIET_WEEK, unfamiliar=i == 0)
        _predicted(version, NEW_KINDS, unfamiliar=i < 8)
    return version


def test_an_unfamiliar_photos_answer_is_saved_by_no_threshold_and_is_no_evidence_for_one(version, expert):
    _predicted(version, QUIET_WEEK, unfamiliar=False)
    wrong = _predicted(version, QUIET_WEEK, unfamiliar=True)
    LabelFactory(name="fern")
    services.review_decide(photo_id=wrong.id, expert=expert, label_name="fern")  # a mistake it was kept from

    rows = threshold_evidence(version.id)

    lowest = rows[0]
    assert lowest.threshold == 0.5 and lowest.accepted_share == 0.5  # the familiar one only
    assert lowest.checked == 0 and lowest.accuracy is None           # the unfamiliar one says nothing of it


def test_each_week_counts_its_unfamiliar_photos_and_leaves_them_out_of_the_share_saved(weeks):
    new_kinds, quiet = weeks_of_predictions(weeks.id)

    assert (quiet.unfamiliar, quiet.confident, quiet.unfamiliar_share) == (1, 19, 0.05)
    assert (new_kinds.unfamiliar, new_kinds.confident) == (8, 12)


def test_a_week_with_more_unfamiliar_photos_than_validation_beyond_chance_is_marked(weeks):
    new_kinds, quiet = weeks_of_predictions(weeks.id)

    assert new_kinds.more_unfamiliar      # 8 of 20 against 1 of 100
    assert not quiet.more_unfamiliar      # 1 of 20 against 1 of 100: chance explains it


def test_fewer_unfamiliar_photos_than_validation_is_no_alarm(version):
    version.metrics["familiarity"] = {"photos": 100, "bins": [[500, 40], [800, 60]]}
    version.save()
    for _ in range(30):
        _predicted(version, QUIET_WEEK, unfamiliar=False)

    (week,) = weeks_of_predictions(version.id, weeks=1)
    assert week.unfamiliar == 0 and not week.more_unfamiliar


def test_a_version_without_familiarity_marks_no_week(weeks):
    del weeks.metrics["familiarity"]
    weeks.save()

    assert not any(w.more_unfamiliar for w in weeks_of_predictions(weeks.id))


def test_the_audits_page_and_the_api_show_each_weeks_unfamiliar_photos(weeks, expert, api_for):
    client = Client()
    client.force_login(expert)

    page = client.get("/review/audits/").content.decode()
    body = api_for(expert).get("/api/v1/audits/stats/").json()

    table = page.split('id="weeks"')[1].split("</div>")[0]
    new_kinds = table.split('data-week="2026-11-23"')[1].split("</tr>")[0]
    assert 'class="shifted"' in new_kinds and "40% (8)" in new_kinds and "more than validation" in new_kinds
    quiet = table.split('data-week="2026-11-16"')[1].split("</tr>")[0]
    assert "5% (1)" in quiet and "more than validation" not in quiet
    assert "all but\n    1% of its validation photos" in table
    assert [(w["unfamiliar"], w["more_unfamiliar"]) for w in body["weeks"]] == [(8, True), (1, False)]


@pytest.mark.parametrize("today, warned", [
    (datetime(2026, 11, 26, tzinfo=timezone.utc), True),
    (datetime(2026, 12, 8, tzinfo=timezone.utc), False),  # two weeks on
])
def test_the_queue_warns_while_a_recent_week_brings_more_unfamiliar_photos(weeks, expert, today, warned):
    client = Client()
    client.force_login(expert)

    with mock.patch("labeling.review_views.timezone.now", return_value=today):
        page = client.get("/review/").content.decode()

    assert ('data-role="more-unfamiliar">40% of\n  the photos predicted in the week of 2026-11-23 (8)' in page) == warned


# --- one photo ------------------------------------------------------------------------------


@pytest.mark.parametrize("familiarity, cutoff, said", [
    (0.5, 0.8, "<strong>Unlike the photos version {v}\n  learned from</strong>: similarity 0.500 with the nearest, "
               "below the cut-off of\n  0.800."),
    (0.9, 0.8, "Similarity 0.900 with the nearest photo\n  version {v} learned from, above the cut-off of 0.800 for\n  "
               "unfamiliar photos."),
    (0.9, None, "Similarity\n  0.900 with the nearest photo version {v} learned from (the familiarity\n  check was off)."),
])
def test_the_photo_page_and_the_review_page_say_how_like_the_training_photos_the_photo_is(
        version, expert, familiarity, cutoff, said):
    prediction = PredictionFactory(model_version=version, familiarity=familiarity, familiarity_cutoff=cutoff)
    client = Client()
    client.force_login(expert)

    for url in (f"/photos/{prediction.photo_id}/", f"/review/{prediction.photo_id}/"):
        page = client.get(url).content.decode()
        assert said.format(v=version.id) in page, url


def test_a_photo_measured_by_no_familiarity_says_nothing_of_it(version, expert):
    prediction = PredictionFactory(model_version=version)
    client = Client()
    client.force_login(expert)

    assert 'data-role="familiarity"' not in client.get(f"/photos/{prediction.photo_id}/").content.decode()


def test_the_photo_api_gives_the_familiarity_and_whether_the_photo_was_unfamiliar(version, member, api_for):
    prediction = PredictionFactory(model_version=version, familiarity=0.5, familiarity_cutoff=0.8,
                                   photo=PhotoFactory(owner=member, status=Photo.Status.NEEDS_REVIEW))

    body = api_for(member).get(f"/api/v1/photos/{prediction.photo_id}/").json()["prediction"]

    assert (body["familiarity"], body["familiarity_cutoff"], body["unfamiliar"]) == (0.5, 0.8, True)


# --- a version's card --------------------------------------------------------------------


def test_a_versions_card_gives_its_validation_photos_familiarity_and_what_the_cutoff_flags(version, staff, settings):
    settings.UNFAMILIAR_SHARE = 0.0
    client = Client()
    client.force_login(staff)

    page = client.get(f"/models/{version.id}/").content.decode()

    said = page.split('<p data-role="familiarity">')[1].split("</p>")[0]
    assert 'Its 100 validation photos had a similarity' in said
    assert '<span data-role="familiarity-least">0.500</span>' in said and "(median 0.800)" in said
    # Share 0: only a photo below every validation photo is unfamiliar.
    assert '<span data-role="familiarity-cutoff">0.500</span>' in said and "0 of the validation photos" in said


def test_a_version_trained_before_familiarity_was_kept_says_how_to_add_it(db, staff):
    version = ModelVersionFactory()
    client = Client()
    client.force_login(staff)

    page = client.get(f"/models/{version.id}/").content.decode()

    assert "Familiarity not recorded" in page and f"manage.py complete_model_versions {version.id}</code>" in page
