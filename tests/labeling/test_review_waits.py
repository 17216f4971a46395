"""How long photos wait for an expert (labeling.review.review_waits): the queue page, the photo
page of a photo that waits, and GET /api/v1/review-queue/waits/."""

from datetime import timedelta

import pytest
from django.utils import timezone

from labeling import review
from labeling.models import Photo, ReviewDecision
from tests.factories import LabelFactory, PhotoFactory

pytestmark = pytest.mark.django_db

NOW = timezone.now()


def decided(expert, *, waited, kind="uncertain", days_ago=1):
    """A photo an expert decided `days_ago` days ago, `waited` after its upload."""
    at = NOW - timedelta(days=days_ago)
    photo = PhotoFactory(status=Photo.Status.FINAL, uploaded_at=at - waited, decided_at=at)
    return ReviewDecision.objects.create(photo=photo, expert=expert, kind=kind, label=LabelFactory(),
                                         status_before="needs_review", status_after="final", created_at=at)


@pytest.mark.parametrize("seconds, text", [(0, "0 s"), (40, "40 s"), (89, "89 s"), (90, "2 min"), (720, "12 min"),
                                           (5399, "90 min"), (5400, "1.5 h"), (9000, "2.5 h"), (36000, "10 h"),
                                           (47 * 3600, "47 h"), (48 * 3600, "2 days"), (3.5 * 86400, "3.5 days"),
                                           (12 * 86400, "12 days")])
def test_a_wait_reads_as_people_say_it(seconds, text):
    assert review.wait_text(seconds) == text


def test_half_and_ninety_percent_are_nearest_ranks_of_the_decisions_in_the_window(expert):
    for minutes in (10, 20, 30, 40, 50, 60, 70, 80, 90, 100):
        decided(expert, waited=timedelta(minutes=minutes))
    decided(expert, waited=timedelta(minutes=1), days_ago=29)  # before the window
    correction = decided(expert, waited=timedelta(days=9), kind=review.CORRECTION)  # not a wait

    waits = review.review_waits(now=NOW)

    assert (waits.all.decided, waits.all.median, waits.all.p90) == (10, 50 * 60, 90 * 60)
    assert waits.by_kind["uncertain"] == waits.all
    assert waits.by_kind["audit"] == review.Waits(0, None, None)
    assert correction.kind == "correction"


def test_each_kind_of_review_is_counted_apart_and_the_oldest_waiting_photo_is_named(expert):
    decided(expert, waited=timedelta(hours=1), kind="uncertain")
    decided(expert, waited=timedelta(hours=3), kind="audit")
    decided(expert, waited=timedelta(hours=5), kind="adjudication")
    decided(expert, waited=timedelta(hours=7), kind="adjudication")
    PhotoFactory(status=Photo.Status.NEEDS_REVIEW, uploaded_at=NOW - timedelta(hours=6))
    PhotoFactory(status=Photo.Status.NEEDS_REVIEW, uploaded_at=NOW - timedelta(minutes=5))
    PhotoFactory(status=Photo.Status.QUEUED, uploaded_at=NOW - timedelta(days=3))  # not waiting for an expert

    waits = review.review_waits(now=NOW)

    assert (waits.waiting, waits.oldest_text) == (2, "6 h")
    assert {kind: (w.decided, w.median) for kind, w in waits.by_kind.items()} == {
        "uncertain": (1, 3600), "audit": (1, 3 * 3600), "adjudication": (2, 5 * 3600)}
    assert (waits.all.decided, waits.all.median_text, waits.all.p90_text) == (4, "3 h", "7 h")


def test_nothing_decided_and_nothing_waiting_says_so(client, expert):
    client.force_login(expert)

    page = client.get("/review/").content.decode()

    assert "Nothing waits." in page and "Experts decided no photo in the last 28 days." in page


def test_the_queue_page_states_the_waits(client, expert):
    for hours in (1, 2, 3):
        decided(expert, waited=timedelta(hours=hours), kind="audit")
    PhotoFactory(status=Photo.Status.NEEDS_REVIEW, uploaded_at=timezone.now() - timedelta(minutes=30))
    client.force_login(expert)

    page = client.get("/review/").content.decode()

    assert 'uploaded\n  <span data-role="oldest">30 min</span> ago' in page
    assert 'experts decided <span data-role="decided">3</span>\n  photos' in page
    assert '<span data-role="median">2 h</span>' in page and '<span data-role="p90">3 h</span>' in page
    assert "audits: 3, half within 2 h" in page


@pytest.mark.parametrize("status, shown, hidden", [("needs_review", True, False), ("queued", True, True),
                                                   ("final", False, False)])
def test_a_photo_that_waits_for_an_expert_tells_its_uploader_how_long_experts_take(
        client, member, expert, status, shown, hidden):
    decided(expert, waited=timedelta(hours=2))
    photo = PhotoFactory(owner=member, status=status)
    client.force_login(member)

    page = client.get(f"/photos/{photo.id}/").content.decode()

    assert ('data-role="review-wait"' in page) is shown
    if shown:
        assert "half of the photos they were sent within 2 h of the" in page
        assert ('data-role="review-wait" class="hint" hidden>' in page) is hidden  # shown live when it comes to wait


def test_the_api_gives_the_waits_in_seconds(api_for, expert):
    decided(expert, waited=timedelta(minutes=30), kind="adjudication")

    body = api_for(expert).get("/api/v1/review-queue/waits/").json()

    assert (body["days"], body["waiting"], body["oldest"]) == (28, 0, None)
    assert body["all"] == {"decided": 1, "median": 1800.0, "p90": 1800.0}
    assert body["by_kind"]["adjudication"] == body["all"]
    assert body["by_kind"]["audit"] == {"decided": 0, "median": None, "p90": None}
