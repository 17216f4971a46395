"""The models page lists ten versions a page, newest first, and links the active and shadow
versions when an older page holds them; each version has a page of its own (/models/<id>/)
with the same card, linked from its run, from the activation history and from the list."""
import pytest
from django.test import Client

from classifier.models import ModelActivation
from tests.factories import ModelVersionFactory, TrainingRunFactory


@pytest.fixture
def client_for(db):
    def login(user):
        client = Client()
        client.force_login(user)
        return client
    return login


def _cards(page):
    return [int(part.split('"')[0]) for part in page.split('<section class="card model-version" data-version-id="')[1:]]


def test_the_models_page_shows_ten_versions_a_page_newest_first_and_pages_back(client_for, member):
    versions = [ModelVersionFactory() for _ in range(12)]
    client = client_for(member)

    first = client.get("/models/").content.decode()
    second = client.get("/models/?page=2").content.decode()

    assert _cards(first) == [v.id for v in reversed(versions[2:])]
    assert _cards(second) == [versions[1].id, versions[0].id]
    assert 'href="?page=2" rel="next">Older versions</a>' in first
    assert 'href="?page=1" rel="prev">Newer versions</a>' in second
    assert 'aria-label="Pages of versions"' in first
    assert "{#" not in first and "{% comment" not in first and "holds the filters" not in first


def test_an_active_or_shadow_version_on_an_older_page_is_linked_at_the_top(client_for, member):
    active = ModelVersionFactory(is_active=True)
    shadow = ModelVersionFactory(is_shadow=True)
    for _ in range(10):
        ModelVersionFactory()
    client = client_for(member)

    first = client.get("/models/").content.decode()
    second = client.get("/models/?page=2").content.decode()

    pinned = first.split('data-role="pinned">')[1].split("</p>")[0]
    assert f'Active:\n  <a href="/models/{active.id}/">version {active.id}</a>' in pinned
    assert f'In shadow mode:\n  <a href="/models/{shadow.id}/">version {shadow.id}</a>' in pinned
    assert 'data-role="pinned"' not in second  # both are listed there


def test_an_activation_form_on_an_older_page_names_the_version_active_now(client_for, staff):
    active = ModelVersionFactory(is_active=True)
    older = ModelVersionFactory()
    for _ in range(10):
        ModelVersionFactory()

    page = client_for(staff).get(f"/models/{older.id}/").content.decode()

    assert f'<input type="hidden" name="replacing" value="{active.id}">' in page


def test_a_versions_page_shows_its_card_alone(client_for, member):
    version, other = ModelVersionFactory(), ModelVersionFactory()

    response = client_for(member).get(f"/models/{version.id}/")

    assert response.status_code == 200
    assert _cards(response.content.decode()) == [version.id]
    assert client_for(member).get("/models/987654/").status_code == 404


def test_the_run_and_the_activation_history_link_to_the_versions_page(client_for, staff):
    run = TrainingRunFactory()
    version = ModelVersionFactory(training_run=run)
    run.model_version_id = version.id
    run.save()
    older = ModelVersionFactory()
    ModelActivation.objects.create(version=version, replaced=older, user=staff)
    client = client_for(staff)

    assert (f'Created <a href="/models/{version.id}/">model version {version.id}</a>'
            in client.get(f"/training/{run.id}/").content.decode())
    history = client.get("/models/").content.decode().split('id="activations"')[1]
    assert f'<a href="/models/{version.id}/">v{version.id}</a>' in history
    assert f'<a href="/models/{older.id}/">v{older.id}</a>' in history


@pytest.mark.parametrize("action, data", [("activate", {"replacing": ""}), ("shadow", {"enabled": "1"})])
def test_activating_or_shadowing_returns_to_the_page_the_form_was_on(client_for, staff, action, data):
    version = ModelVersionFactory()
    client = client_for(staff)

    back = client.post(f"/models/{version.id}/{action}/", {**data, "next": "/models/?page=2"})
    elsewhere = client.post(f"/models/{version.id}/{action}/", {**data, "next": "https://evil.example/"})

    assert back.status_code == 302 and back["Location"] == "/models/?page=2"
    assert elsewhere["Location"] == "/models/"  # not another site


def test_the_cards_forms_say_which_page_to_return_to(client_for, staff):
    version = ModelVersionFactory()

    page = client_for(staff).get(f"/models/{version.id}/").content.decode()

    assert page.count(f'<input type="hidden" name="next" value="/models/{version.id}/">') == 2


def test_a_versions_page_lists_the_activations_it_took_part_in(client_for, staff):
    older, version, other = ModelVersionFactory(), ModelVersionFactory(), ModelVersionFactory()
    ModelActivation.objects.create(version=version, replaced=older, user=staff)
    ModelActivation.objects.create(version=older, replaced=version, user=staff)
    ModelActivation.objects.create(version=other, replaced=older, user=staff)

    page = client_for(staff).get(f"/models/{version.id}/").content.decode()

    rows = page.split('<table id="activations">')[1].split("</table>")[0].count("<tr><td>")
    assert rows == 2  # its activation, and the rollback that replaced it; not the third
