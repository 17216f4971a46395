"""Activating a version while another admin changed the active one since you looked: refused
(a 409 in the API, an error on the page) rather than replacing a choice you never saw."""

import pytest

from classifier import services
from classifier.models import ModelVersion
from tests.factories import ModelVersionFactory


def _active_ids():
    return list(ModelVersion.objects.filter(is_active=True).values_list("id", flat=True))


def test_activating_with_the_version_that_is_active_as_replacing_succeeds(db):
    old, new = ModelVersionFactory(is_active=True), ModelVersionFactory()

    services.model_version_activate(version_id=new.id, replacing=old.id)

    assert _active_ids() == [new.id]


def test_activating_over_a_version_activated_since_you_looked_is_refused(db):
    seen, meanwhile, mine = ModelVersionFactory(is_active=True), ModelVersionFactory(), ModelVersionFactory()
    services.model_version_activate(version_id=meanwhile.id)  # another admin, a moment ago

    with pytest.raises(services.ModelVersionChanged, match=f"it is version {meanwhile.id} now, not version {seen.id}"):
        services.model_version_activate(version_id=mine.id, replacing=seen.id)

    assert _active_ids() == [meanwhile.id]


def test_activating_when_you_saw_none_active_is_refused_once_one_is(db):
    first, mine = ModelVersionFactory(), ModelVersionFactory()
    services.model_version_activate(version_id=first.id)

    with pytest.raises(services.ModelVersionChanged, match=f"it is version {first.id} now, not no version"):
        services.model_version_activate(version_id=mine.id, replacing=None)

    services.model_version_activate(version_id=mine.id, replacing=first.id)
    assert _active_ids() == [mine.id]


def test_the_api_answers_409_when_replacing_is_not_the_active_version(db, staff, api_for):
    seen, meanwhile, mine = ModelVersionFactory(is_active=True), ModelVersionFactory(), ModelVersionFactory()
    services.model_version_activate(version_id=meanwhile.id)

    refused = api_for(staff).post(f"/api/v1/models/{mine.id}/activate/", {"replacing": seen.id}, format="json")
    accepted = api_for(staff).post(f"/api/v1/models/{mine.id}/activate/", {"replacing": meanwhile.id},
                                   format="json")

    assert refused.status_code == 409
    assert refused.json()["detail"].startswith("The active version changed since you looked")
    assert accepted.status_code == 200 and accepted.json()["is_active"] is True
    assert _active_ids() == [mine.id]


def test_the_api_refuses_a_replacing_that_is_not_a_number(db, staff, api_for):
    ModelVersionFactory(is_active=True)
    mine = ModelVersionFactory()

    response = api_for(staff).post(f"/api/v1/models/{mine.id}/activate/", {"replacing": "latest"}, format="json")

    assert response.status_code == 400 and "replacing" in response.json()
    assert ModelVersion.objects.get(id=mine.id).is_active is False


def test_the_models_page_refuses_an_activation_when_another_admin_activated_a_version_since_it_loaded(
        db, staff, client):
    seen, meanwhile, mine = ModelVersionFactory(is_active=True), ModelVersionFactory(), ModelVersionFactory()
    client.force_login(staff)
    page = client.get("/models/").content.decode()
    assert f'name="replacing" value="{seen.id}"' in page
    services.model_version_activate(version_id=meanwhile.id)  # another admin, in another tab

    after = client.post(f"/models/{mine.id}/activate/", {"replacing": str(seen.id)}, follow=True).content.decode()

    assert f"it is version {meanwhile.id} now, not version {seen.id}" in after
    assert _active_ids() == [meanwhile.id]


def test_the_models_page_says_none_was_active_when_it_showed_none(db, staff, client):
    mine = ModelVersionFactory()
    client.force_login(staff)

    assert 'name="replacing" value=""' in client.get("/models/").content.decode()
    client.post(f"/models/{mine.id}/activate/", {"replacing": ""})

    assert _active_ids() == [mine.id]
