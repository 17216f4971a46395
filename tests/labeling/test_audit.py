"""The audit sample: a random AUDIT_FRACTION of would-be auto-accepted predictions goes to an
expert, unseen as decided by its uploader; the audits measure the auto-accept accuracy."""

import math
import os
import random

import pytest
from django.test import Client

from labeling import review, services
from labeling.models import Label, Photo, Prediction, ReviewDecision
from tests.factories import LabelFactory, ModelVersionFactory, PhotoFactory

THRESHOLD = 0.8
SURE = {"monstera": 0.95, "spider_plant": 0.05}


@pytest.fixture
def labels(db):
    return {name: LabelFactory(name=name) for name in ("monstera", "spider_plant")}


def routed(confidence, rng, label=None):
    """An unsaved photo routed with an unsaved label: the draw needs no database."""
    photo = Photo()
    review.route_prediction(photo, Prediction(label=label or Label(name="monstera"), confidence=confidence,
                                              margin=confidence), THRESHOLD, rng=rng)
    return photo


# --- the draw -----------------------------------------------------------------


def test_the_audited_share_of_would_be_auto_accepts_is_within_three_sigma_of_the_setting(settings):
    settings.AUDIT_FRACTION = 0.05
    n = 2000
    rng = random.Random(20261126)

    audited = sum(routed(0.95, rng).review_kind == Photo.ReviewKind.AUDIT for _ in range(n))

    expected, sigma = n * 0.05, math.sqrt(n * 0.05 * 0.95)
    assert abs(audited - expected) <= 3 * sigma, (audited, expected, sigma)
    assert audited > 0


def test_the_draw_is_reproducible_with_a_seeded_generator(settings):
    settings.AUDIT_FRACTION = 0.05

    picks = [[routed(0.9, rng).status for _ in range(300)] for rng in (random.Random(7), random.Random(7))]

    assert picks[0] == picks[1]
    assert Photo.Status.NEEDS_REVIEW in picks[0] and Photo.Status.FINAL in picks[0]


def test_the_module_generator_can_be_seeded(settings, monkeypatch):
    settings.AUDIT_FRACTION = 0.5
    runs = []
    for _ in range(2):
        monkeypatch.setattr(review, "_audit_rng", random.Random(3))
        runs.append([routed(0.99, None).status for _ in range(50)])

    assert runs[0] == runs[1]
    assert set(runs[0]) == {Photo.Status.FINAL, Photo.Status.NEEDS_REVIEW}


def test_uncertain_predictions_take_no_part_in_the_draw(settings):
    settings.AUDIT_FRACTION = 1.0
    rng = random.Random(1)
    state = rng.getstate()

    photo = routed(0.5, rng)

    assert (photo.status, photo.review_kind) == (Photo.Status.NEEDS_REVIEW, Photo.ReviewKind.UNCERTAIN)
    assert rng.getstate() == state


@pytest.mark.parametrize(("fraction", "expected"), [(0.0, Photo.Status.FINAL), (1.0, Photo.Status.NEEDS_REVIEW)])
def test_a_fraction_of_zero_audits_nothing_and_one_audits_everything(settings, fraction, expected):
    settings.AUDIT_FRACTION = fraction
    rng = random.Random(5)

    assert {routed(0.99, rng).status for _ in range(200)} == {expected}


def test_the_setting_defaults_to_five_percent():
    from plantsite.settings import base

    assert base.AUDIT_FRACTION == 0.05


# --- routing a stored prediction ------------------------------------------------


@pytest.fixture
def audit_everything(settings):
    settings.AUDIT_FRACTION = 1.0
    settings.CONFIDENCE_THRESHOLD = THRESHOLD


@pytest.fixture
def audited_photo(audit_everything, member, labels):
    photo = PhotoFactory(owner=member)
    return services._store_prediction(photo.id, ModelVersionFactory(is_active=True), SURE)


def test_an_audited_prediction_waits_for_an_expert_with_a_reason_that_names_no_label(audited_photo):
    photo = Photo.objects.get(id=audited_photo.id)

    assert (photo.status, photo.review_kind) == (Photo.Status.NEEDS_REVIEW, Photo.ReviewKind.AUDIT)
    assert (photo.final_label, photo.decided_by, photo.label_source, photo.decided_at) == (None, "", "", None)
    assert photo.reason == review.AUDIT_REASON
    assert "monstera" not in photo.reason and "%" not in photo.reason
    assert photo.prediction.label.name == "monstera"


def test_without_the_draw_a_confident_prediction_is_final_as_before(settings, member, labels):
    settings.AUDIT_FRACTION = 0.0
    photo = services._store_prediction(PhotoFactory(owner=member).id, ModelVersionFactory(is_active=True), SURE)

    assert (photo.status, photo.label_source, photo.review_kind) == ("final", "model", "")


def test_the_uploader_sees_a_pending_audit_as_awaiting_expert_and_not_the_models_guess(audited_photo, member,
                                                                                      api_for):
    body = api_for(member).get(f"/api/v1/photos/{audited_photo.id}/").json()

    assert body["status"] == "needs_review"
    assert body["prediction"] is None and body["final_label"] is None and body["decided_by"] is None
    assert "monstera" not in str(body)
    listed = api_for(member).get("/api/v1/photos/").json()["results"]
    assert "monstera" not in str(listed)
    history = api_for(member).get(f"/api/v1/photos/{audited_photo.id}/history/").json()
    assert "monstera" not in str(history)

    client = Client()
    client.force_login(member)
    for url in (f"/photos/{audited_photo.id}/", f"/photos/{audited_photo.id}/history/", "/"):
        page = client.get(url).content.decode()
        assert "Awaiting expert" in page and "monstera" not in page, url


def test_an_audit_is_blind_for_the_experts_too_until_one_decides_it(audited_photo, expert, api_for):
    # The expert's call measures the model: shown its answer, they would lean on it.
    as_expert = api_for(expert)
    assert as_expert.get(f"/api/v1/photos/{audited_photo.id}/").json()["prediction"] is None
    [queued] = as_expert.get("/api/v1/review-queue/").json()["results"]
    assert (queued["review_kind"], queued["prediction"]) == ("audit", None)
    assert as_expert.get("/api/v1/review-queue/?label=monstera").json()["results"] == []  # the filter would tell
    assert "monstera" not in str(as_expert.get(f"/api/v1/photos/{audited_photo.id}/history/").json())
    client = Client()
    client.force_login(expert)
    review_page = client.get(f"/review/{audited_photo.id}/").content.decode()
    assert 'data-role="blind-audit"' in review_page and 'class="probs"' not in review_page
    queue_page = client.get("/review/").content.decode()
    assert "hidden until decided" in queue_page and "0.95" not in queue_page and "0.90" not in queue_page

    services.review_decide(photo_id=audited_photo.id, expert=expert, label_name="monstera")

    assert as_expert.get(f"/api/v1/photos/{audited_photo.id}/").json()["prediction"]["label"] == "monstera"
    assert 'class="probs"' in client.get(f"/review/{audited_photo.id}/").content.decode()


def test_an_expert_confirming_an_audit_records_an_audit_label(audited_photo, expert, member, api_for):
    photo = services.review_decide(photo_id=audited_photo.id, expert=expert, label_name="monstera")

    photo.refresh_from_db()
    assert (photo.status, photo.label_source, photo.decided_by) == ("final", "audit", "expert")
    decision = ReviewDecision.objects.get(photo=photo)
    assert (decision.kind, decision.label.name) == ("audit", "monstera")
    body = api_for(member).get(f"/api/v1/photos/{photo.id}/").json()
    assert (body["status"], body["final_label"], body["prediction"]["label"]) == ("final", "monstera", "monstera")


def test_an_audit_is_in_the_human_verified_sources():
    assert Photo.LabelSource.AUDIT in Photo.HUMAN_VERIFIED_SOURCES
    assert Photo.LabelSource.MODEL not in Photo.HUMAN_VERIFIED_SOURCES


def test_an_audit_rejected_by_the_expert_has_no_label_source(audited_photo, expert):
    photo = services.review_decide(photo_id=audited_photo.id, expert=expert, reject=True, reason="A cat.")

    assert (photo.status, photo.label_source) == ("rejected", "")
    assert ReviewDecision.objects.get(photo=photo).kind == "audit"


# --- the Wilson interval ----------------------------------------------------------


@pytest.mark.parametrize(("successes", "n", "low", "high"), [
    # Newcombe (1998), Statistics in Medicine 17:857-872, table I, method 3 (score, no correction).
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0, 0.1611),
    (1, 29, 0.0061, 0.1718),
    (29, 29, 0.8830, 1.0),
    # scipy.stats.binomtest(k, n).proportion_ci(method="wilson")
    (8, 10, 0.490162, 0.943318),
    (95, 100, 0.88825, 0.978456),
])
def test_the_wilson_interval_matches_published_values(successes, n, low, high):
    got_low, got_high = review.wilson_interval(successes, n)

    assert got_low == pytest.approx(low, abs=5e-5)
    assert got_high == pytest.approx(high, abs=5e-5)


def test_the_wilson_interval_is_symmetric_and_contains_the_estimate():
    for n in (1, 7, 50):
        for k in range(n + 1):
            low, high = review.wilson_interval(k, n)
            mirror_low, mirror_high = review.wilson_interval(n - k, n)
            assert low <= k / n <= high
            assert low == pytest.approx(1 - mirror_high) and high == pytest.approx(1 - mirror_low)


def test_the_wilson_interval_of_no_observations_is_none():
    assert review.wilson_interval(0, 0) is None
    with pytest.raises(ValueError):
        review.wilson_interval(3, 2)


# --- audit statistics ---------------------------------------------------------------


@pytest.fixture
def five_audits(audit_everything, member, expert, labels):
    """Five audits decided: three agree with the model, one picks another label, one rejects."""
    version = ModelVersionFactory(is_active=True)
    photos = [services._store_prediction(PhotoFactory(owner=member).id, version, SURE) for _ in range(5)]
    for photo, label in zip(photos, ["monstera", "monstera", "monstera", "spider_plant", None]):
        services.review_decide(photo_id=photo.id, expert=expert, label_name=label, reject=label is None)
    return photos


def test_the_audit_stats_count_agreement_with_the_model(five_audits):
    stats = review.audit_stats()

    assert (stats.audited, stats.correct, stats.accuracy) == (5, 3, 0.6)
    assert (stats.ci_low, stats.ci_high) == pytest.approx(review.wilson_interval(3, 5))
    assert stats.fraction_setting == 1.0


def test_photos_that_were_not_audits_do_not_count(five_audits, expert, labels):
    other = PhotoFactory(status=Photo.Status.NEEDS_REVIEW)
    services.review_decide(photo_id=other.id, expert=expert, label_name="monstera")

    assert review.audit_stats().audited == 5


def test_a_later_correction_of_an_audited_photo_counts(five_audits, expert):
    review.review_correct(photo_id=five_audits[3].id, expert=expert, label_name="monstera", reason="Misclicked.")

    assert (review.audit_stats().audited, review.audit_stats().correct) == (5, 4)


def test_no_audits_give_no_accuracy(db, settings):
    settings.AUDIT_FRACTION = 0.05

    stats = review.audit_stats()

    assert (stats.audited, stats.correct, stats.accuracy, stats.ci_low, stats.ci_high) == (0, 0, None, None, None)


def test_the_audit_stats_api(five_audits, expert, api_for):
    response = api_for(expert).get("/api/v1/audits/stats/")

    assert response.status_code == 200
    body = response.json()
    low, high = review.wilson_interval(3, 5)
    thresholds, weeks = body.pop("thresholds"), body.pop("weeks")
    assert body == {"audited": 5, "correct": 3, "accuracy": 0.6, "ci_low": pytest.approx(low),
                    "ci_high": pytest.approx(high), "fraction_setting": 1.0,
                    "threshold_version": five_audits[0].prediction.model_version_id}
    # Every prediction audited (AUDIT_FRACTION 1): the threshold table in force reads the same.
    now = next(row for row in thresholds if row["current"])
    assert (now["checked"], now["accuracy"], now["ci_low"]) == (5, 0.6, pytest.approx(low))
    # All predicted this week: the week's audits are all of them.
    assert [(w["audited"], w["audit_accuracy"]) for w in weeks] == [(5, 0.6)]


def test_members_may_not_read_the_audit_stats(five_audits, member, api_for):
    assert api_for(member).get("/api/v1/audits/stats/").status_code == 403


def test_the_audits_page_shows_the_accuracy_with_its_interval(five_audits, staff):
    client = Client()
    client.force_login(staff)

    page = client.get("/review/audits/").content.decode()

    low, high = review.wilson_interval(3, 5)
    assert "0.600" in page and "3 correct of 5 audited" in page
    assert f"{low:.3f}–{high:.3f}" in page
    assert "A random 100% of the predictions" in page
    assert page.count('href="/photos/') >= 5


def test_the_audits_page_before_any_audit(expert, db):
    client = Client()
    client.force_login(expert)

    assert "No audit has been decided yet." in client.get("/review/audits/").content.decode()


def test_each_forked_worker_process_draws_its_own_audits():
    def first_draws():
        return [review._audit_rng.random() for _ in range(5)]

    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # a worker process of the pool
        os.write(write, repr(first_draws()).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    in_child = os.read(read, 4096).decode()
    os.close(read)

    assert in_child != repr(first_draws())


def test_after_a_rollback_each_versions_audits_are_counted_on_their_own(five_audits, member, expert, api_for, client):
    from classifier.services import model_version_activate

    earlier = ModelVersionFactory()
    model_version_activate(version_id=earlier.id)  # the admin rolls back
    photo = services._store_prediction(PhotoFactory(owner=member).id, earlier, SURE)
    services.review_decide(photo_id=photo.id, expert=expert, label_name="monstera")
    later = five_audits[0].prediction.model_version

    by_version = dict(review.audit_stats_by_version())
    response = api_for(expert).get("/api/v1/audits/stats/", {"version": earlier.id})
    client.force_login(expert)
    page = client.get("/review/audits/").content.decode()

    assert {v: (s.audited, s.correct) for v, s in by_version.items()} == {later.id: (5, 3), earlier.id: (1, 1)}
    assert (review.audit_stats().audited, review.audit_stats().correct) == (6, 4)
    assert (response.json()["audited"], response.json()["correct"]) == (1, 1)
    assert 'id="audits-by-version"' in page and f"<td>v{earlier.id}</td>" in page
    assert api_for(expert).get("/api/v1/audits/stats/", {"version": "x"}).status_code == 400


def test_the_audit_stats_by_the_models_label_put_the_least_accurate_first(audit_everything, member, expert, labels,
                                                                         staff):
    version = ModelVersionFactory(is_active=True)
    sure_of = {"monstera": SURE, "spider_plant": {"spider_plant": 0.95, "monstera": 0.05}}
    decided = [("monstera", "monstera"), ("monstera", "monstera"), ("spider_plant", "spider_plant"),
               ("spider_plant", "monstera"), ("spider_plant", None)]
    for said, expert_label in decided:
        photo = services._store_prediction(PhotoFactory(owner=member).id, version, sure_of[said])
        services.review_decide(photo_id=photo.id, expert=expert, label_name=expert_label,
                               reject=expert_label is None)

    by_label = review.audit_stats_by_label()

    assert [(label, s.audited, s.correct) for label, s in by_label] == [("spider_plant", 3, 1), ("monstera", 2, 2)]
    assert (by_label[0][1].ci_low, by_label[0][1].ci_high) == pytest.approx(review.wilson_interval(1, 3))
    client = Client()
    client.force_login(staff)
    page = client.get("/review/audits/").content.decode()
    assert "By the model's label, least accurate first" in page
    assert page.index("<tr><td>spider_plant</td><td>3</td><td>1</td>") < page.index("<tr><td>monstera</td><td>2</td>")
