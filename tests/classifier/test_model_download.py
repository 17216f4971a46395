"""Staff download a version's exported learner, the file fastai's load_learner reads, checked
against the registry's sha256 before a byte is sent."""

from django.test import Client
from rest_framework.authtoken.models import Token

from classifier.inference import file_sha256


def _as(user):
    client = Client()
    client.force_login(user)
    return client


def test_staff_download_the_learner_and_fastai_loads_it(active_model, staff, tmp_path):
    from fastai.learner import load_learner

    response = _as(staff).get(f"/models/{active_model.id}/download/")

    assert response.status_code == 200
    assert response["Content-Disposition"] == (
        f'attachment; filename="plantsite-model-{active_model.id}-resnet18-32px.pkl"')
    assert response["X-Checksum-SHA256"] == active_model.sha256
    saved = tmp_path / "downloaded.pkl"
    saved.write_bytes(b"".join(response.streaming_content))
    assert file_sha256(saved) == active_model.sha256
    assert list(load_learner(saved).dls.vocab) == active_model.labels


def test_an_api_token_of_staff_downloads_it_too(active_model, staff):
    token = Token.objects.create(user=staff)

    response = Client().get(f"/models/{active_model.id}/download/", HTTP_AUTHORIZATION=f"Token {token.key}")

    assert response.status_code == 200 and response["X-Checksum-SHA256"] == active_model.sha256


def test_only_staff_may_download_a_model(active_model, member, expert):
    assert _as(member).get(f"/models/{active_model.id}/download/").status_code == 403
    assert _as(expert).get(f"/models/{active_model.id}/download/").status_code == 403
    assert Client().get(f"/models/{active_model.id}/download/")["Location"].startswith("/login/")
    assert 'data-role="download"' not in _as(expert).get("/models/").content.decode()
    assert 'data-role="download"' not in _as(member).get("/models/").content.decode()


def test_the_models_page_links_staff_to_the_download(active_model, staff):
    assert f'href="/models/{active_model.id}/download/" data-role="download"' in _as(staff).get("/models/").content.decode()


def test_a_changed_file_is_refused_and_a_missing_one_is_a_404(active_model, staff):
    active_model.path.write_bytes(b"not the registered learner")

    changed = _as(staff).get(f"/models/{active_model.id}/download/")
    active_model.path.unlink()
    missing = _as(staff).get(f"/models/{active_model.id}/download/")

    assert changed.status_code == 409 and "is not the file that was registered" in changed.content.decode()
    assert missing.status_code == 404
