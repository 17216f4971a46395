"""The registry's history: every activation records who made it (a person, or a run started
with "activate"), when, and which version it replaced; a refused one records nothing."""

import pytest
from django.test import Client

from classifier import services
from classifier.models import ModelActivation
from tests.factories import ModelVersionFactory


def _as(user):
    client = Client()
    client.force_login(user)
    return client


def test_an_activation_on_the_page_records_the_admin_and_the_version_it_replaced(staff):
    old, new = ModelVersionFactory(is_active=True), ModelVersionFactory()

    _as(staff).post(f"/models/{new.id}/activate/", {"replacing": str(old.id)})

    activation = ModelActivation.objects.get()
    assert (activation.version_id, activation.replaced_id, activation.user, activation.run) == (new.id, old.id, staff,
                                                                                               None)
    new.refresh_from_db()
    assert activation.created_at == new.activated_at and not activation.is_rollback


def test_going_back_to_an_earlier_version_is_shown_as_a_rollback(staff, api_for):
    old, new = ModelVersionFactory(), ModelVersionFactory(is_active=True)

    assert api_for(staff).post(f"/api/v1/models/{old.id}/activate/").status_code == 200

    activation = ModelActivation.objects.get()
    assert activation.user == staff and activation.replaced_id == new.id and activation.is_rollback
    page = _as(staff).get("/models/").content.decode()
    assert '<table id="activations">' in page
    assert f'v{old.id}</a> <span class="badge">rollback</span>' in page
    assert f'<td><a href="/models/{new.id}/">v{new.id}</a></td>' in page


def test_a_refused_activation_records_nothing(staff):
    seen, meanwhile, mine = ModelVersionFactory(is_active=True), ModelVersionFactory(), ModelVersionFactory()
    services.model_version_activate(version_id=meanwhile.id, user=staff)

    with pytest.raises(services.ModelVersionChanged):
        services.model_version_activate(version_id=mine.id, replacing=seen.id, user=staff)
    with pytest.raises(services.ModelVersionAlreadyActive):
        services.model_version_activate(version_id=meanwhile.id, user=staff)

    assert list(ModelActivation.objects.values_list("version_id", flat=True)) == [meanwhile.id]


def test_the_api_lists_the_history_newest_first(staff, member, api_for):
    a, b = ModelVersionFactory(), ModelVersionFactory()
    services.model_version_activate(version_id=a.id, user=staff)
    services.model_version_activate(version_id=b.id, user=staff)

    body = api_for(member).get("/api/v1/models/activations/").json()

    assert [(row["version"], row["replaced"], row["user"]) for row in body["results"]] == [(b.id, a.id, "staff"),
                                                                                         (a.id, None, "staff")]


def test_the_history_is_in_backups():
    from labeling import backup

    assert ModelActivation in backup._dumped_models()
