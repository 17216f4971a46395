"""How photo files are served, the security headers of pages, and GET /healthz."""

import io
import json
import re
from unittest import mock

import pytest
from PIL import Image

from labeling import services
from labeling.middleware import SecurityHeadersMiddleware
from tests.factories import PhotoFactory, PredictionFactory, jpeg_bytes


def png_bytes():
    out = io.BytesIO()
    Image.new("RGB", (10, 10), (5, 200, 5)).save(out, "PNG")
    return out.getvalue()


@pytest.fixture
def member_client(client, member):
    client.force_login(member)
    return client


def body_of(response):
    return b"".join(response.streaming_content)


# --- photo files --------------------------------------------------------------


def test_a_photo_file_is_served_inline_as_jpeg_with_nosniff_and_a_generated_filename(member_client, member):
    photo = services.photo_upload(owner=member, fileobj=io.BytesIO(jpeg_bytes()))

    response = member_client.get(f"/media/{photo.image.name}")

    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Disposition"] == f'inline; filename="photo-{photo.id}.jpg"'
    assert response["Cache-Control"] == "private, max-age=3600"
    assert body_of(response) == photo.image.open("rb").read()


def test_a_png_photo_is_served_as_png(member_client, member):
    photo = services.photo_upload(owner=member, fileobj=io.BytesIO(png_bytes()))

    response = member_client.get(f"/media/{photo.image.name}")

    assert response["Content-Type"] == "image/png"
    assert response["Content-Disposition"] == f'inline; filename="photo-{photo.id}.png"'
    assert body_of(response).startswith(b"\x89PNG\r\n\x1a\n")


def test_the_served_filename_reveals_neither_the_stored_name_nor_the_clients(member_client, member):
    upload = io.BytesIO(jpeg_bytes())
    upload.name = "Grandmas <script> garden.jpg"
    photo = services.photo_upload(owner=member, fileobj=upload)
    stored_stem = photo.image.name.rsplit("/", 1)[-1].split(".")[0]

    disposition = member_client.get(f"/media/{photo.image.name}")["Content-Disposition"]

    assert re.fullmatch(r'inline; filename="photo-\d+\.(jpg|png|webp)"', disposition)
    assert stored_stem not in disposition
    assert "Grandma" not in disposition


def test_a_photo_whose_file_is_missing_is_404(member_client, member):
    photo = PhotoFactory(owner=member)
    photo.image.storage.delete(photo.image.name)

    assert member_client.get(f"/media/{photo.image.name}").status_code == 404


def test_another_members_photo_file_is_404_for_a_member(member_client, other_member):
    photo = PhotoFactory(owner=other_member)

    assert member_client.get(f"/media/{photo.image.name}").status_code == 404


def test_a_path_outside_the_photos_folder_is_not_served(member_client, member, media_root):
    PhotoFactory(owner=member)
    (media_root / "secret.txt").write_text("not a photo")

    assert member_client.get("/media/photos/../secret.txt").status_code == 404
    assert member_client.get("/media/photos/%2e%2e%2fsecret.txt").status_code == 404
    assert member_client.get("/media/secret.txt").status_code == 404


# --- page headers -------------------------------------------------------------


@pytest.mark.parametrize("url", ["/", "/review/", "/training/", "/models/"])
def test_pages_carry_the_content_security_policy(client, staff, url):
    client.force_login(staff)

    response = client.get(url)

    assert response.status_code == 200
    assert response["Content-Security-Policy"] == SecurityHeadersMiddleware.POLICY
    assert "script-src 'self'" in response["Content-Security-Policy"]
    assert "object-src 'none'" in response["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"


def test_the_login_page_and_error_responses_carry_the_policy_too(client, member):
    assert client.get("/login/")["Content-Security-Policy"] == SecurityHeadersMiddleware.POLICY
    client.force_login(member)
    forbidden = client.get("/review/")
    assert forbidden.status_code == 403
    assert forbidden["Content-Security-Policy"] == SecurityHeadersMiddleware.POLICY


def test_the_pages_need_nothing_the_policy_blocks(client, expert, member):
    # script-src 'self' and style-src 'self': an inline script or style would not run.
    photo = PredictionFactory(photo__owner=member).photo
    client.force_login(expert)

    for url in ["/", f"/photos/{photo.id}/", "/review/", f"/review/{photo.id}/", "/models/"]:
        html = client.get(url).content.decode()
        scripts = re.findall(r"<script\b[^>]*>", html)
        assert scripts, url
        assert all(" src=" in tag for tag in scripts), (url, scripts)
        assert "<style" not in html, url
        assert not re.search(r"\sstyle=", html), url
        assert not re.search(r"\son[a-z]+=", html), url


# --- /healthz -----------------------------------------------------------------


@pytest.fixture
def staff_client(client, staff):
    client.force_login(staff)
    return client


def test_healthz_is_200_when_database_broker_and_workers_are_up(staff_client):
    with mock.patch("labeling.health._workers", return_value=["celery@inference", "celery@training"]):
        response = staff_client.get("/healthz")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "status": "ok",
        "down": [],
        "checks": {
            "database": {"ok": True},
            "broker": {"ok": True},
            "workers": {"ok": True, "names": ["celery@inference", "celery@training"]},
        },
    }


def test_healthz_is_503_naming_the_workers_when_no_worker_answers(staff_client):
    # The real checks: PostgreSQL and Redis are up, and no Celery worker runs in unit tests.
    response = staff_client.get("/healthz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "down"
    assert body["down"] == ["workers"]
    assert body["checks"]["database"] == {"ok": True}
    assert body["checks"]["broker"] == {"ok": True}
    assert body["checks"]["workers"] == {"ok": False, "error": "RuntimeError: no Celery worker answered"}


@pytest.fixture
def broker_on_a_closed_port():
    from plantsite.celery import app

    original = app.conf.broker_url
    app.conf.broker_url = "redis://127.0.0.1:1/0"
    try:
        yield
    finally:
        app.conf.broker_url = original


def test_healthz_is_503_naming_the_broker_when_it_cannot_be_reached(staff_client, broker_on_a_closed_port):
    response = staff_client.get("/healthz")

    assert response.status_code == 503
    body = response.json()
    assert body["down"] == ["broker", "workers"]
    assert body["checks"]["database"] == {"ok": True}
    assert body["checks"]["broker"]["ok"] is False
    assert "Connection refused" in body["checks"]["broker"]["error"]
    assert body["checks"]["workers"] == {"ok": False, "error": "unknown: the broker is down"}


def test_healthz_does_not_ask_the_workers_when_the_broker_is_down(staff_client):
    with mock.patch("labeling.health._broker", side_effect=ConnectionRefusedError("[Errno 111] refused")), \
            mock.patch("labeling.health._workers") as workers:
        response = staff_client.get("/healthz")

    assert response.status_code == 503
    assert response.json()["down"] == ["broker", "workers"]
    assert response.json()["checks"]["broker"] == {"ok": False, "error": "ConnectionRefusedError: [Errno 111] refused"}
    workers.assert_not_called()


def test_healthz_is_503_naming_the_database_when_it_fails(client, db):
    with mock.patch("labeling.health._database", side_effect=RuntimeError("connection lost")), \
            mock.patch("labeling.health._workers", return_value=["celery@inference"]):
        response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json()["down"] == ["database"]
    assert response.json()["checks"]["database"] == {"ok": False}  # who asks is unknown: no details


def test_healthz_shows_anyone_but_staff_what_is_down_and_logs_why(client, member, broker_on_a_closed_port, caplog):
    client.force_login(member)

    body = client.get("/healthz").json()

    assert body["down"] == ["broker", "workers"]
    assert body["checks"] == {"database": {"ok": True}, "broker": {"ok": False}, "workers": {"ok": False}}
    assert "127.0.0.1" not in json.dumps(body)
    assert "the broker is down" in caplog.text and "Connection refused" in caplog.text


def test_healthz_needs_no_login(client, db):
    with mock.patch("labeling.health._workers", return_value=["celery@inference"]):
        assert client.get("/healthz").status_code == 200


def test_healthz_answers_a_probe_by_ip_address_that_allowed_hosts_does_not_list(client, staff, settings):
    # A load balancer probes each server by its address; only the site's name is allowed.
    settings.ALLOWED_HOSTS = ["plants.example.org"]
    client.force_login(staff)
    with mock.patch("labeling.health._workers", return_value=["celery@inference"]):
        probe = client.get("/healthz", HTTP_HOST="10.0.3.7:8000")
        by_name = client.get("/healthz", HTTP_HOST="plants.example.org")

    assert probe.status_code == 200
    # No session is read for a host the site does not serve: no details, even for staff.
    assert probe.json()["checks"] == {"database": {"ok": True}, "broker": {"ok": True}, "workers": {"ok": True}}
    assert by_name.json()["checks"]["workers"] == {"ok": True, "names": ["celery@inference"]}


def test_a_host_that_allowed_hosts_does_not_list_is_still_refused_everywhere_but_healthz(client, db, settings):
    settings.ALLOWED_HOSTS = ["plants.example.org"]

    assert client.get("/", HTTP_HOST="10.0.3.7:8000").status_code == 400
    assert client.get("/healthz/", HTTP_HOST="10.0.3.7:8000").status_code == 400
    assert client.get("/api/v1/photos/", HTTP_HOST="10.0.3.7:8000").status_code == 400
    assert client.get("/", HTTP_HOST="plants.example.org").status_code in (200, 302)


# --- photo files for API clients ------------------------------------------------


def test_a_token_client_fetches_the_image_url_the_api_gives_it(api_for, member, other_member):
    from rest_framework.authtoken.models import Token
    from django.test import Client

    photo = services.photo_upload(owner=member, fileobj=io.BytesIO(jpeg_bytes()))
    image_url = api_for(member).get(f"/api/v1/photos/{photo.id}/").json()["image_url"]
    path = image_url.removeprefix("http://testserver")
    token = Token.objects.create(user=member).key
    other = Token.objects.create(user=other_member).key

    mine = Client(HTTP_AUTHORIZATION=f"Token {token}").get(path)
    theirs = Client(HTTP_AUTHORIZATION=f"Token {other}").get(path)
    wrong = Client(HTTP_AUTHORIZATION="Token not-a-token").get(path)
    labelling = Client(HTTP_AUTHORIZATION=f"Token {token}").get(f"/label/photos/{photo.id}/image")

    assert mine.status_code == 200 and body_of(mine) == photo.image.open("rb").read()
    assert theirs.status_code == 404
    assert wrong.status_code == 401 and wrong["WWW-Authenticate"] == "Token"
    assert labelling.status_code == 200
    assert Client().get(path).status_code == 302  # no credentials: the login page, as before
