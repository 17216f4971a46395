"""(3) PostgreSQL stops for a while under a running web server, then comes back.

While it is away the API answers 503 with a clear JSON message and Retry-After, pages answer a
plain 503 page (the session lookup included), and /healthz names the database. An upload cut
off by the stop leaves neither a row nor a file. When the database is back, the same requests
succeed, with no restart of the web server.

The first test runs a private PostgreSQL cluster and a `runserver` process; the others show the
same answers at the depth where they are made (DatabaseUnavailableMiddleware, handler500).
"""

from __future__ import annotations

import json
import threading
import time
from unittest import mock

import pytest
import requests
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import InterfaceError, OperationalError
from django.test import Client

from labeling.models import Photo
from tests.factories import jpeg_bytes

from .conftest import PASSWORD, WAIT, Api, manage, process_env, wait_until

MESSAGE = "The database is unavailable; try again shortly."
PHOTOS = "/api/v1/photos/"


def files_under(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def jpeg(i: int) -> bytes:
    return jpeg_bytes(colour=(i * 37 % 256, (i * 11 + 90) % 256, 60))


def upload(api: Api, i: int):
    return api.post(PHOTOS, files={"image": (f"leaf-{i}.jpg", jpeg(i), "image/jpeg")})


def logged_in_session(base_url: str, username: str) -> requests.Session:
    """A browser's session: the login form, with its CSRF token."""
    session = requests.Session()
    session.get(f"{base_url}/login/", timeout=10).raise_for_status()
    response = session.post(f"{base_url}/login/", timeout=10, allow_redirects=False,
                            data={"username": username, "password": PASSWORD,
                                  "csrfmiddlewaretoken": session.cookies["csrftoken"]})
    assert response.status_code == 302, response.text
    return session


def assert_unavailable_json(response):
    assert response.status_code == 503, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json() == {"detail": MESSAGE}
    assert int(response.headers["Retry-After"]) > 0


def assert_unavailable_page(response):
    assert response.status_code == 503, response.text
    assert response.headers["Content-Type"].startswith("text/html")
    assert MESSAGE in response.text
    assert int(response.headers["Retry-After"]) > 0


@pytest.mark.integration
def test_the_site_answers_503_while_postgresql_is_stopped_and_recovers_when_it_is_back(
        private_postgres, private_redis, web_server, tmp_path):
    cluster = private_postgres.init().start()
    with cluster.connect() as conn:
        conn.execute("CREATE DATABASE plantsite")
    media = tmp_path / "site-media"
    env = process_env(DATABASE_URL=cluster.url("plantsite"), MEDIA_ROOT=media, MODEL_ROOT=media / "models",
                      TEST_REDIS_URL=private_redis.url)
    manage(env, "shell", "-c",
           "from django.core.management import call_command; call_command('migrate', verbosity=0); "
           f"from django.contrib.auth.models import User; User.objects.create_user('member', password='{PASSWORD}')")
    site = web_server(env)
    api = Api(site.url, "member")           # tokens are read before the database goes away
    streaming = Api(site.url, "member")     # a second client, for the stream of uploads
    browser = logged_in_session(site.url, "member")
    assert browser.get(f"{site.url}/", timeout=10).status_code == 200
    first = upload(api, 0)
    assert first.status_code == 201, first.text

    # A stream of uploads runs while the database stops: each is accepted or refused, whole.
    answers, stop_streaming = [], threading.Event()

    def stream():
        i = 0
        while not stop_streaming.is_set():
            i += 1
            try:
                response = upload(streaming, i)
                answers.append((response.status_code, response.text, time.monotonic()))
            except requests.RequestException as exc:  # the server must answer; recorded, fails below
                answers.append((None, repr(exc), time.monotonic()))

    streamer = threading.Thread(target=stream, name="upload-stream", daemon=True)
    streamer.start()
    try:
        wait_until(lambda: sum(a[0] == 201 for a in answers) >= 3, what="uploads being accepted")
        cluster.stop(mode="fast")  # open transactions are aborted, sessions ended
        stopped_at = time.monotonic()
        wait_until(lambda: sum(a[2] > stopped_at for a in answers) >= 3, what="uploads answered while down")
    finally:
        stop_streaming.set()
        streamer.join(timeout=WAIT)
    assert not streamer.is_alive()

    # While the database is away.
    assert_unavailable_json(api.get(PHOTOS))
    assert_unavailable_json(upload(api, 1000))
    assert_unavailable_json(api.get(f"{PHOTOS}{first.json()['id']}/"))
    health = requests.get(f"{site.url}/healthz", timeout=10)
    assert health.status_code == 503
    assert "database" in health.json()["down"]
    assert health.json()["checks"]["database"]["ok"] is False
    assert_unavailable_page(browser.get(f"{site.url}/", timeout=10))  # the session lookup needs the database

    cluster.start()
    wait_until(lambda: api.get(PHOTOS).status_code == 200, interval=0.2, what="the API answering again")

    statuses = [status for status, _, _ in answers]
    assert set(statuses) <= {201, 503}, [a[:2] for a in answers if a[0] not in (201, 503)]
    assert 503 in statuses
    assert all(json.loads(text) == {"detail": MESSAGE} for status, text, _ in answers if status == 503)
    accepted = {first.json()["id"]} | {json.loads(text)["id"] for status, text, _ in answers if status == 201}
    with cluster.connect("plantsite") as conn:
        rows = dict(conn.execute("SELECT id, image FROM labeling_photo").fetchall())
    # No half-written upload: every accepted upload has its row, nothing else has one, and the
    # files on disk are exactly those of the rows.
    assert set(rows) == accepted
    assert files_under(media / "photos") == sorted(name.removeprefix("photos/") for name in rows.values())

    # Service resumes with the same web server, token and session.
    again = upload(api, 2000)
    assert again.status_code == 201, again.text
    assert api.get(PHOTOS).json()["count"] == len(accepted) + 1
    assert browser.get(f"{site.url}/", timeout=10).status_code == 200
    assert requests.get(f"{site.url}/healthz", timeout=10).json()["checks"]["database"] == {"ok": True}


# --- the same answers, where they are made ---------------------------------------------------


def test_an_api_request_is_a_503_with_retry_after_when_the_database_is_away(api_for, member):
    with mock.patch("labeling.api.selectors.photos_visible_to",
                    side_effect=OperationalError("connection to server at \"127.0.0.1\" failed")):
        response = api_for(member).get(PHOTOS)

    assert_unavailable_json(response)


def test_an_upload_whose_row_cannot_be_written_is_a_503_and_leaves_no_file_and_no_row(
        api_for, member, media_root):
    image = SimpleUploadedFile("leaf.jpg", jpeg_bytes(), content_type="image/jpeg")
    with mock.patch.object(Photo, "save", side_effect=InterfaceError("connection already closed")):
        response = api_for(member).post(PHOTOS, {"image": image}, format="multipart")

    assert_unavailable_json(response)
    assert files_under(media_root) == []
    assert not Photo.objects.exists()


def test_a_page_is_a_plain_503_page_when_the_session_cannot_be_read(client, member):
    client.force_login(member)
    with mock.patch("django.contrib.sessions.backends.db.SessionStore.load",
                    side_effect=OperationalError("the database system is shutting down")):
        response = client.get("/")

    assert_unavailable_page(response)
    assert response["Content-Security-Policy"]  # the other middleware still ran on the way out


def test_a_database_error_in_a_middleware_after_the_view_is_a_503_too(member):
    """A login saves the session in SessionMiddleware, after the view: handler500 sees it."""
    from django.contrib.sessions.backends.db import SessionStore

    real_save = SessionStore.save

    def save(self, must_create=False):
        if not must_create:
            raise OperationalError("server closed the connection unexpectedly")
        return real_save(self, must_create=must_create)

    from labeling.middleware import DatabaseUnavailableMiddleware

    client = Client(raise_request_exception=False)
    with mock.patch.object(SessionStore, "save", save), \
            mock.patch.object(DatabaseUnavailableMiddleware, "process_exception", autospec=True,
                              side_effect=DatabaseUnavailableMiddleware.process_exception) as in_view:
        response = client.post("/login/", {"username": "member", "password": PASSWORD})

    assert_unavailable_page(response)
    in_view.assert_not_called()  # raised after the view, in SessionMiddleware: handler500 answered


def test_any_other_error_is_still_a_500(member):
    from rest_framework.test import APIClient

    client = APIClient(raise_request_exception=False)
    client.force_authenticate(member)
    with mock.patch("labeling.api.selectors.photos_visible_to", side_effect=RuntimeError("a bug")):
        response = client.get(PHOTOS)

    assert response.status_code == 500
    assert "Retry-After" not in response
