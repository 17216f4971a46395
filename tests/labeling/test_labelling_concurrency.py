"""Labellers asking at the same moment, on PostgreSQL with real concurrent transactions."""

import threading
from collections import Counter
from unittest import mock

import pytest
from django.db import connection, transaction
from django.utils import timezone

from labeling import labelling, selectors
from labeling.models import Label, LabellingAssignment, LabelVote, Photo
from tests.factories import LabelFactory, PhotoFactory, PredictionFactory, UserFactory
from tests.threads import at_once, hold_locks_until_another_waits

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def postgresql_only():
    assert connection.vendor == "postgresql", "these tests need PostgreSQL (SKIP LOCKED); see pytest.ini"


def first_holds_the_photo(*, or_until: threading.Event):
    """A _before_assign hook: the first labelling_next to lock a photo keeps its locks until
    another transaction waits for them (or `or_until` is set); later ones go straight on."""
    original = labelling._before_assign
    arrived = []

    def hook(photo_id):
        arrived.append(photo_id)
        if len(arrived) == 1:
            hold_locks_until_another_waits(or_until=or_until)
        original(photo_id)

    return hook


def uncertain(margin):
    photo = PhotoFactory(status=Photo.Status.NEEDS_REVIEW, review_kind=Photo.ReviewKind.UNCERTAIN)
    PredictionFactory(photo=photo, margin=margin, label=LabelFactory(name="monstera"))
    return photo


def test_two_labellers_asking_at_once_get_different_photos():
    first, second = uncertain(0.1), uncertain(0.2)
    ann, bob = UserFactory(), UserFactory()
    holding, bob_answered = threading.Event(), threading.Event()
    waited = []
    original = labelling._before_assign

    def ann_holds(photo_id):
        if not holding.is_set():  # ann's call (bob asks only once she holds a photo's lock)
            holding.set()
            waited.append(hold_locks_until_another_waits(or_until=bob_answered))
        original(photo_id)

    def bob_asks():
        try:
            assert holding.wait(timeout=10)
            return labelling.labelling_next(bob)
        finally:
            bob_answered.set()

    with mock.patch("labeling.labelling._before_assign", side_effect=ann_holds):
        served = at_once([lambda: labelling.labelling_next(ann), bob_asks])

    assert {served[0].id, served[1].id} == {first.id, second.id}
    assert waited == [False], "the second labeller waited for the first one's lock instead of passing it over"
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

    created, second_answered = threading.Event(), threading.Event()
    outcomes = {}

    def first():
        with transaction.atomic():
            outcomes["first"] = labelling.label_create(name="rose")
            created.set()
            # Uncommitted until the second INSERT waits on this row.
            hold_locks_until_another_waits(or_until=second_answered)

    def second():
        try:
            assert created.wait(timeout=10)
            labelling.label_create(name="rose")
        except labelling.LabelError as exc:
            outcomes["second"] = str(exc)
        finally:
            second_answered.set()

    at_once([first, second])

    assert outcomes["second"] == "A label named 'rose' exists already."
    assert list(Label.objects.values_list("name", flat=True)) == ["rose"]


def test_the_only_photo_is_served_to_a_labeller_while_another_one_is_being_served_it():
    only = uncertain(0.1)
    ann, bob = UserFactory(), UserFactory()
    answered = threading.Event()

    def asks(user):
        try:
            return labelling.labelling_next(user)
        finally:
            answered.set()

    with mock.patch("labeling.labelling._before_assign", side_effect=first_holds_the_photo(or_until=answered)):
        served = at_once([lambda: asks(ann), lambda: asks(bob)])

    # Nothing else is free: the second one shares the photo rather than hear "nothing left".
    assert served == [only, only]
    assert sorted(LabellingAssignment.objects.values_list("user__username", flat=True)) == sorted(
        [ann.username, bob.username])


def test_a_photo_is_served_while_a_vote_on_it_is_being_saved():
    label = LabelFactory(name="monstera")
    only = uncertain(0.1)
    ann, bob = UserFactory(), UserFactory()
    assert labelling.labelling_next(ann) == only
    voted, bob_answered = threading.Event(), threading.Event()

    def ann_votes():
        with transaction.atomic():  # the vote's transaction stays open, its photo locked
            labelling.label_vote(photo_id=only.id, user=ann, label_name=label.name)
            voted.set()
            hold_locks_until_another_waits(or_until=bob_answered)

    def bob_asks():
        try:
            assert voted.wait(timeout=10)
            return labelling.labelling_next(bob)
        finally:
            bob_answered.set()

    _, served = at_once([ann_votes, bob_asks])

    assert served == only  # one vote of two: it still needs bob's


def test_a_label_deleted_while_a_vote_with_it_is_being_saved_is_an_unknown_label(api_for):
    LabelFactory(name="monstera")
    rose = LabelFactory(name="rose")  # unused: staff may delete it
    photo = uncertain(0.1)
    ann = UserFactory()
    assert labelling.labelling_next(ann) == photo
    label_locked, vote_answered = threading.Event(), threading.Event()
    original = selectors.label_usage

    def deleting_holds_the_label(label):  # label_delete has locked the label by now
        label_locked.set()
        hold_locks_until_another_waits(or_until=vote_answered)
        return original(label)

    def vote():
        try:
            assert label_locked.wait(timeout=10)
            return api_for(ann).post(f"/api/v1/photos/{photo.id}/labels/", {"label": "rose"}, format="json")
        finally:
            vote_answered.set()

    with mock.patch("labeling.selectors.label_usage", side_effect=deleting_holds_the_label):
        _, response = at_once([lambda: labelling.label_delete(label_id=rose.id), vote])

    assert response.status_code == 400
    assert response.json() == {"label": ["Unknown label 'rose'."]}
    assert not Label.objects.filter(name="rose").exists()
    assert not LabelVote.objects.exists()


def test_one_labeller_asking_twice_at_once_holds_one_photo():
    uncertain(0.1), uncertain(0.2)
    ann = UserFactory()
    answered = threading.Event()

    def ann_asks():
        try:
            return labelling.labelling_next(ann)
        finally:
            answered.set()

    with mock.patch("labeling.labelling._before_assign", side_effect=first_holds_the_photo(or_until=answered)):
        served = at_once([ann_asks, ann_asks])

    assert served[0] == served[1]
    assert LabellingAssignment.objects.filter(user=ann, expires_at__gt=timezone.now()).count() == 1
