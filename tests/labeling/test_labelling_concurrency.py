"""Labellers asking at the same moment, on PostgreSQL with real concurrent transactions."""

import threading
import time
from collections import Counter
from unittest import mock

import pytest
from django.db import connection

from labeling import labelling
from labeling.models import LabellingAssignment, LabelVote, Photo
from tests.factories import LabelFactory, PhotoFactory, PredictionFactory, UserFactory
from tests.threads import at_once

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def postgresql_only():
    assert connection.vendor == "postgresql", "these tests need PostgreSQL (SKIP LOCKED); see pytest.ini"


def uncertain(margin):
    photo = PhotoFactory(status=Photo.Status.NEEDS_REVIEW, review_kind=Photo.ReviewKind.UNCERTAIN)
    PredictionFactory(photo=photo, margin=margin, label=LabelFactory(name="monstera"))
    return photo


def test_two_labellers_asking_at_once_get_different_photos():
    first, second = uncertain(0.1), uncertain(0.2)
    ann, bob = UserFactory(), UserFactory()
    original = labelling._before_assign

    def slow(photo_id):
        # Hold the lock on the candidate a while: the other labeller asks meanwhile.
        time.sleep(0.6)
        original(photo_id)

    started = time.monotonic()
    with mock.patch("labeling.labelling._before_assign", side_effect=slow):
        served = at_once([lambda: labelling.labelling_next(ann), lambda: labelling.labelling_next(bob)])
    elapsed = time.monotonic() - started

    assert {served[0].id, served[1].id} == {first.id, second.id}
    assert elapsed < 1.1, "the second labeller waited for the first one's lock instead of passing it over"
    assert Counter(LabellingAssignment.objects.values_list("photo_id", flat=True)) == {first.id: 1, second.id: 1}


def test_many_labellers_at_once_are_spread_over_the_photos():
    photos = [uncertain(0.1 * i) for i in range(1, 7)]
    users = [UserFactory() for _ in range(6)]

    for _ in range(3):
        LabellingAssignment.objects.all().delete()
        served = at_once([lambda u=u: labelling.labelling_next(u) for u in users])
        assert sorted(p.id for p in served) == sorted(p.id for p in photos)


def test_the_last_two_votes_at_once_decide_the_photo_once():
    label = LabelFactory(name="monstera")
    photo = uncertain(0.1)
    users = [UserFactory() for _ in range(3)]
    for user in users:
        LabellingAssignment.objects.create(photo=photo, user=user, expires_at=photo.uploaded_at.replace(year=2100))

    def vote(user):
        def run():
            try:
                return labelling.label_vote(photo_id=photo.id, user=user, label_name=label.name)
            except labelling.LabellingConflict as exc:
                return exc
        return run

    results = at_once([vote(u) for u in users])

    assert sum(isinstance(r, labelling.LabellingConflict) for r in results) == 1
    assert LabelVote.objects.filter(photo=photo).count() == 2
    photo.refresh_from_db()
    assert (photo.status, photo.label_source) == ("final", "consensus")


def test_two_staff_creating_the_same_label_at_once_get_one_label_and_a_clear_refusal():
    from django.db import transaction

    from labeling.models import Label

    created = threading.Event()
    outcomes = {}

    def first():
        with transaction.atomic():
            outcomes["first"] = labelling.label_create(name="rose")
            created.set()
            time.sleep(0.5)  # the second INSERT waits on this uncommitted row meanwhile

    def second():
        assert created.wait(timeout=10)
        try:
            labelling.label_create(name="rose")
        except labelling.LabelError as exc:
            outcomes["second"] = str(exc)

    at_once([first, second])

    assert outcomes["second"] == "A label named 'rose' exists already."
    assert list(Label.objects.values_list("name", flat=True)) == ["rose"]
