"""Two changes of the active (or shadow) version at the same moment, on PostgreSQL with real
concurrent transactions: they run one after the other. The later one wins cleanly, unless it
says which version it saw active (the page and the API do), and then it is refused."""

import threading

import pytest
from django.db import connection, transaction

from classifier import services
from classifier.models import ModelVersion
from tests.factories import ModelVersionFactory
from tests.threads import at_once, hold_locks_until_another_waits

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def postgresql_only():
    assert connection.vendor == "postgresql", "these tests need PostgreSQL's row locks; see pytest.ini"


def _first_holds_its_change_while_the_second_starts(first_change, second_change):
    """The first change commits only once the second one, started after it was made, waits
    for its locks (or has finished without waiting)."""
    made, second_done = threading.Event(), threading.Event()

    def first():
        with transaction.atomic():
            first_change()
            made.set()
            hold_locks_until_another_waits(or_until=second_done)

    def second():
        try:
            assert made.wait(timeout=10)
            second_change()
        finally:
            second_done.set()

    at_once([first, second])


@pytest.mark.parametrize("change, flag", [(services.model_version_activate, "is_active"),
                                          (services.model_version_shadow, "is_shadow")])
def test_two_changes_at_once_end_with_the_later_one_in_place_and_no_error(change, flag):
    ModelVersionFactory(is_active=True)
    a, b = ModelVersionFactory(), ModelVersionFactory()

    _first_holds_its_change_while_the_second_starts(lambda: change(version_id=a.id),
                                                    lambda: change(version_id=b.id))

    assert list(ModelVersion.objects.filter(**{flag: True}).values_list("id", flat=True)) == [b.id]


def test_an_activation_during_a_new_versions_registration_comes_after_it():
    """A training run registers its version and activates it in one transaction; an admin's
    activation meanwhile now waits for it (it used to break the one-active-version constraint,
    and the run could lose the version it had just registered)."""
    ModelVersionFactory(is_active=True)
    chosen = ModelVersionFactory()
    registered = {}

    def register_and_activate():
        registered["id"] = ModelVersionFactory().id
        services.model_version_activate(version_id=registered["id"])

    _first_holds_its_change_while_the_second_starts(
        register_and_activate, lambda: services.model_version_activate(version_id=chosen.id))

    assert ModelVersion.objects.filter(id=registered["id"]).exists()
    assert list(ModelVersion.objects.filter(is_active=True).values_list("id", flat=True)) == [chosen.id]


def test_two_admins_who_saw_the_same_active_version_activate_at_once_and_the_later_one_is_refused():
    seen = ModelVersionFactory(is_active=True)
    a, b = ModelVersionFactory(), ModelVersionFactory()
    refused = []

    def second():
        try:
            services.model_version_activate(version_id=b.id, replacing=seen.id)
        except services.ModelVersionChanged as exc:
            refused.append(str(exc))

    _first_holds_its_change_while_the_second_starts(
        lambda: services.model_version_activate(version_id=a.id, replacing=seen.id), second)

    assert list(ModelVersion.objects.filter(is_active=True).values_list("id", flat=True)) == [a.id]
    assert refused and f"it is version {a.id} now" in refused[0]
