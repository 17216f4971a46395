"""End-to-end fixtures: real Celery worker processes, HTTP helpers and a headless Chromium.

A worker is a separate process: it sees only committed rows (so tests using it need
`transactional_db` or `live_server`), and it reads its settings from the environment, so
everything the test changed that the worker must agree on (the test database, MEDIA_ROOT,
MODEL_ROOT, the confidence threshold, the broker) is passed to it explicitly.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
CELERY = REPO / ".venv" / "bin" / "celery"
PASSWORD = "pw-for-tests-1"
WORKER_START_TIMEOUT = 60  # seconds until the worker must answer a ping
WORKER_STOP_TIMEOUT = 15   # seconds of warm shutdown before SIGKILL
DB_RELEASE_TIMEOUT = 10    # seconds for the worker's database sessions to disappear

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")  # as scripts/test_services
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the item, so that fixtures can tell whether the test failed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def _test_failed(node) -> bool:
    return any(getattr(getattr(node, f"rep_{when}", None), "failed", False) for when in ("setup", "call"))


def _database_url(application_name: str) -> str:
    """The URL of the database the tests use right now (pytest-django's test database)."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    assert db["ENGINE"] == "django.db.backends.postgresql", "the e2e tests need PostgreSQL"
    auth = quote(db.get("USER") or "", safe="")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"], safe="")
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{auth}@{host}:{port}/{db['NAME']}?application_name={application_name}"


def _broker_url() -> str:
    from plantsite.celery import app

    return app.conf.broker_url


class CeleryWorker:
    """One `celery worker` process consuming one queue, started and stopped by the test."""

    def __init__(self, queue: str, unique: str, env: dict, log_path: Path, processes: int = 1):
        self.queue = queue
        self.processes = processes  # prefork pool processes (-c)
        self.unique = unique  # also the application_name of its database sessions
        self.name = f"{unique}@{socket.gethostname()}"
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def start(self, wait: bool = True):
        """Start the process; with `wait`, return once the worker answers a ping."""
        command = [str(CELERY), "-A", "plantsite", "worker", "-Q", self.queue, "-c", str(self.processes),
                   "--pool", "prefork", "-n", self.name, "--without-gossip", "--without-mingle", "--loglevel", "INFO"]
        with open(self.log_path, "wb") as log:
            # A session of its own: stopping it reaches the prefork child too.
            self.process = subprocess.Popen(command, cwd=REPO, env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        return self.wait_until_ready() if wait else self

    def wait_until_ready(self):
        from plantsite.celery import app

        deadline = time.monotonic() + WORKER_START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"Celery worker {self.name} exited with {self.process.returncode}:\n{self.log()}")
            if app.control.ping(destination=[self.name], timeout=0.5):
                return self
        pytest.fail(f"Celery worker {self.name} did not answer a ping in {WORKER_START_TIMEOUT} s:\n{self.log()}")

    def stop(self):
        if self.process is not None:
            # SIGTERM: a warm shutdown, the current task may finish.
            stop_group(self.process, signal.SIGTERM, timeout=WORKER_STOP_TIMEOUT)

    def log(self) -> str:
        return read_log(self.log_path)


def stop_group(popen: subprocess.Popen, first_signal, *, timeout: float):
    """Signal a process group led by `popen` (started with start_new_session), wait a bounded
    time for the leader, then SIGKILL whatever of the group is left (a prefork child, say)."""
    if popen.poll() is None:
        try:
            os.killpg(popen.pid, first_signal)
        except ProcessLookupError:
            pass
        try:
            popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(popen.pid, signal.SIGKILL)
            popen.wait(timeout=timeout)
    try:
        os.killpg(popen.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def read_log(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log)"


def _wait_for_database_sessions_to_end(application_names):
    """The worker's PostgreSQL sessions must be gone before the tables are flushed or dropped."""
    from django.db import connection

    query = "SELECT pid FROM pg_stat_activity WHERE application_name = ANY(%s)"
    deadline = time.monotonic() + DB_RELEASE_TIMEOUT
    with connection.cursor() as cursor:
        while True:
            cursor.execute(query, [list(application_names)])
            pids = [row[0] for row in cursor.fetchall()]
            if not pids:
                return
            if time.monotonic() > deadline:
                for pid in pids:  # a stuck backend would block TRUNCATE and DROP DATABASE
                    cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
                return
            time.sleep(0.1)


@pytest.fixture
def start_worker(request, transactional_db, media_root, settings, tmp_path):
    """Start real Celery workers: `start_worker("inference", CONFIDENCE_THRESHOLD="1.0")`.

    `wait=False` returns as soon as the process is started (`worker.wait_until_ready()` waits
    later), for a test that must watch the worker from its first moment.

    The broker's database is flushed first (no task left over from another test), every
    worker is stopped at teardown, and a failed test prints the workers' logs.
    """
    import redis

    broker_url = _broker_url()
    assert broker_url.startswith("redis://"), broker_url
    redis.Redis.from_url(broker_url).flushdb()
    workers: list[CeleryWorker] = []

    def start(queue: str, *, wait: bool = True, processes: int = 1, restarts: CeleryWorker | None = None,
              **env_overrides) -> CeleryWorker:
        worker_env = {k: v for k, v in os.environ.items() if k not in ("CELERY_BROKER_URL", "PYTEST_CURRENT_TEST")}
        # restarts: the same worker coming back, under the same node name (as `-n training@%h` does).
        unique = restarts.unique if restarts else f"e2e-{queue}-{uuid.uuid4().hex[:8]}"
        worker_env.update(
            DJANGO_SETTINGS_MODULE="plantsite.settings.test",
            DATABASE_URL=_database_url(unique),
            DATABASE_CONN_MAX_AGE="0",
            MEDIA_ROOT=str(settings.MEDIA_ROOT),
            MODEL_ROOT=str(settings.MODEL_ROOT),
            TEST_REDIS_URL=broker_url,  # what the test settings read (never REDIS_URL)
            CONFIDENCE_THRESHOLD=str(settings.CONFIDENCE_THRESHOLD),
            PYTHONUNBUFFERED="1",
        )
        if settings.INFERENCE_THREADS is not None:
            worker_env["INFERENCE_THREADS"] = str(settings.INFERENCE_THREADS)
        worker_env.update({k: str(v) for k, v in env_overrides.items()})
        worker = CeleryWorker(queue, unique, worker_env, tmp_path / f"celery-{unique}-{len(workers)}.log", processes)
        workers.append(worker)
        return worker.start(wait=wait)

    yield start

    for worker in reversed(workers):
        worker.stop()
    _wait_for_database_sessions_to_end([w.unique for w in workers])
    if _test_failed(request.node):
        for worker in workers:
            print(f"\n----- log of Celery worker {worker.name} (queue {worker.queue}) -----\n{worker.log()}")


@pytest.fixture
def inference_worker(start_worker):
    return start_worker("inference")


@pytest.fixture
def training_worker(start_worker):
    return start_worker("training")


class Api:
    """Real HTTP against the live server, authenticated with a DRF token."""

    def __init__(self, base_url: str, username: str, password: str = PASSWORD):
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        response = self.session.post(f"{self.base_url}/api/v1/auth/token/",
                                     data={"username": username, "password": password}, timeout=10)
        assert response.status_code == 200, response.text
        self.session.headers["Authorization"] = f"Token {response.json()['token']}"

    def get(self, path, **kwargs):
        return self.session.get(self.base_url + path, timeout=10, **kwargs)

    def post(self, path, **kwargs):
        return self.session.post(self.base_url + path, timeout=30, **kwargs)

    def upload(self, path: Path):
        with open(path, "rb") as fh:
            return self.post("/api/v1/photos/", files={"image": (path.name, fh, "image/jpeg")})

    def wait_for_photo(self, photo_id, *, until=lambda photo: photo["status"] != "queued", timeout=90):
        deadline = time.monotonic() + timeout
        while True:
            response = self.get(f"/api/v1/photos/{photo_id}/")
            assert response.status_code == 200, response.text
            photo = response.json()
            if until(photo):
                return photo
            assert time.monotonic() < deadline, f"photo {photo_id} is still {photo['status']} after {timeout} s"
            time.sleep(0.25)


@pytest.fixture
def api_as(live_server):
    """`api_as(user)`: an HTTP client for the live server, logged in with the user's token."""
    return lambda user: Api(live_server.url, user.username)


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()
