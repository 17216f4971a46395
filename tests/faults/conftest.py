"""Fault tests: real processes are started, broken and started again.

Celery workers come from the end-to-end fixtures (`start_worker`, `api_as`), reused as they
are. This file adds what those do not start: a private Redis and a private PostgreSQL (the
shared ones on 6379 and 5432 are never stopped), and a web server process. Every wait is
bounded, every port is a free one, and every process a test starts is killed, with its whole
process group, at teardown whether the test passed or not; a failed test prints their logs.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from tests.e2e.conftest import (  # noqa: F401  reused end-to-end fixtures and the report hook
    PASSWORD,
    Api,
    _test_failed,
    api_as,
    pytest_runtest_makereport,
    read_log,
    start_worker,
    stop_group,
)
from tests.paths import FLOWERS

REPO = Path(__file__).resolve().parents[2]
PYTHON = REPO / ".venv" / "bin" / "python"
WAIT = 60          # the longest any single wait in these tests may take, in seconds
STOP_TIMEOUT = 10  # seconds for a process to exit after its signal


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, *, timeout=WAIT, interval=0.1, what="the condition"):
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {timeout} s")
        time.sleep(interval)


def flower_photos(count: int) -> list[Path]:
    """Real photos (read where they are, never copied), taken round-robin across the classes."""
    classes = [sorted(folder.glob("*.jpg")) for folder in sorted(p for p in FLOWERS.iterdir() if p.is_dir())]
    photos = [files[i] for i in range(max(map(len, classes))) for files in classes if i < len(files)]
    assert len(photos) >= count, f"only {len(photos)} photos in {FLOWERS}"
    return photos[:count]


class Process:
    """A subprocess in a session (and process group) of its own, with its output in a log."""

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict | None = None, cwd=REPO):
        self.name, self.argv, self.log_path, self.env, self.cwd = name, argv, log_path, env, cwd
        self.popen: subprocess.Popen | None = None

    def start(self):
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(self.argv, cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True)
        return self

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self, sig=signal.SIGKILL):
        """Signal the whole group (children too) and wait, bounded, for the leader to exit."""
        if self.popen is not None:
            stop_group(self.popen, sig, timeout=STOP_TIMEOUT)

    def log(self) -> str:
        return read_log(self.log_path)


# --- a private Redis --------------------------------------------------------------------


class PrivateRedis:
    """A redis-server of this test's own, on a free port, persisting to an append-only file so
    that a restart keeps what was queued (as a production broker would)."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: Process | None = None
        self.starts = 0

    def client(self):
        import redis

        return redis.Redis.from_url(self.url, socket_timeout=2, socket_connect_timeout=2)

    def ping(self) -> bool:
        import redis

        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def start(self):
        self.starts += 1
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.directory)]
        self.process = Process(f"redis-{self.starts}", argv, self.directory / "redis.log").start()

        def answers():
            if not self.process.running:
                pytest.fail(f"redis-server exited:\n{self.process.log()}")
            return self.ping()

        wait_until(answers, interval=0.05, what=f"the private redis-server on port {self.port} answering")
        return self

    def kill(self, sig=signal.SIGKILL):
        if self.process is not None:
            self.process.kill(sig)


@pytest.fixture
def private_redis(request, tmp_path):
    directory = tmp_path / "redis"
    directory.mkdir()
    server = PrivateRedis(directory)
    try:
        yield server.start()
    finally:
        server.kill()
        if _test_failed(request.node) and server.process is not None:
            print(f"\n----- log of the private redis-server -----\n{server.process.log()}")


@contextmanager
def celery_broker(url: str):
    """Point this process's Celery app (what `.delay()` and `app.control` use) at `url`."""
    from plantsite.celery import app

    def drop_pools():
        for pool in (app._pool, getattr(app.amqp, "_producer_pool", None)):
            if pool is not None:
                try:
                    pool.force_close_all()
                except Exception:  # a connection to a broker that is gone may not close cleanly
                    pass
        app._pool = None
        app.amqp._producer_pool = None

    before = app.conf.broker_url
    drop_pools()
    app.conf.broker_url = url
    try:
        yield app
    finally:
        drop_pools()
        app.conf.broker_url = before


@pytest.fixture
def private_broker(private_redis):
    """The private Redis as the broker of this process; request it before `start_worker`."""
    with celery_broker(private_redis.url):
        yield private_redis


# --- a private PostgreSQL ------------------------------------------------------------------


def _postgres_bin() -> Path:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    assert candidates, "PostgreSQL's server binaries (initdb, pg_ctl) are not installed (Debian: postgresql)"
    return candidates[-1].parent


class PrivatePostgres:
    """A PostgreSQL cluster of this test's own, on a free port, started and stopped with pg_ctl.

    initdb refuses to run as root: as root, the cluster runs as the `postgres` system user in a
    directory that user owns (a short path under /tmp: the socket lives there too).
    """

    def __init__(self):
        self.bin = _postgres_bin()
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="pgfault-"))
        self.data = self.root / "data"
        self.log_path = self.root / "postgres.log"
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")

    def url(self, database="postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, program, *args, timeout=WAIT):
        argv = [str(self.bin / program), *map(str, args)]
        if os.geteuid() == 0:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        # Output to a file, not a pipe: the postmaster that pg_ctl leaves behind must not hold it.
        with open(self.root / "pg_ctl.out", "ab") as out:
            done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  timeout=timeout, cwd=self.root)
        if done.returncode != 0:
            pytest.fail(f"{program} {' '.join(map(str, args))} failed ({done.returncode}):\n{self.log()}")

    def init(self):
        self._run("initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8",
                  "--locale=C")
        return self

    def start(self):
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c full_page_writes=off -c synchronous_commit=off")
        self._run("pg_ctl", "-D", self.data, "-l", self.log_path, "-o", options, "-w", "-t", WAIT, "start",
                  timeout=WAIT + 5)
        return self

    def stop(self, mode="fast"):
        self._run("pg_ctl", "-D", self.data, "-m", mode, "-w", "-t", WAIT, "stop", timeout=WAIT + 5)

    def is_running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def connect(self, database="postgres"):
        import psycopg

        return psycopg.connect(self.url(database), autocommit=True, connect_timeout=5)

    def cleanup(self):
        if self.is_running():
            try:
                self.stop(mode="immediate")
            except BaseException:
                pass
        pid_file = self.data / "postmaster.pid"
        if pid_file.exists():  # pg_ctl could not stop it: the postmaster's pid is the first line
            try:
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
            except (ValueError, IndexError, ProcessLookupError):
                pass
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        parts = []
        for path in (self.root / "pg_ctl.out", self.log_path):
            if path.exists():
                parts.append(path.read_text(errors="replace"))
        return "\n".join(parts) or "(no log)"


@pytest.fixture
def private_postgres(request):
    cluster = PrivatePostgres()
    try:
        yield cluster
    finally:
        if _test_failed(request.node):
            print(f"\n----- log of the private PostgreSQL -----\n{cluster.log()}")
        cluster.cleanup()


# --- a web server process ----------------------------------------------------------------


class WebServer:
    """`manage.py runserver --noreload` in a process of its own, with the settings in `env`."""

    def __init__(self, env: dict, log_path: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = env
        argv = [str(PYTHON), "manage.py", "runserver", "--noreload", "--skip-checks", f"127.0.0.1:{self.port}"]
        self.process = Process("web", argv, log_path, env=env)

    def start(self):
        self.process.start()

        def answers():
            if not self.process.running:
                pytest.fail(f"the web server exited:\n{self.process.log()}")
            try:
                return requests.get(self.url + "/login/", timeout=2).status_code
            except requests.ConnectionError:
                return None

        wait_until(answers, interval=0.2, what="the web server answering")
        return self


def manage(env: dict, *args, timeout=WAIT) -> str:
    """Run `manage.py ARGS` in a process with `env`, bounded; its output."""
    done = subprocess.run([str(PYTHON), "manage.py", *map(str, args)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, f"manage.py {args[0]} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done.stdout


def process_env(**overrides) -> dict:
    """The environment of a child process: the test settings, with `overrides`."""
    env = {k: v for k, v in os.environ.items() if k not in ("CELERY_BROKER_URL", "PYTEST_CURRENT_TEST")}
    env.update(DJANGO_SETTINGS_MODULE="plantsite.settings.test", DATABASE_CONN_MAX_AGE="0", PYTHONUNBUFFERED="1")
    env.update({k: str(v) for k, v in overrides.items()})
    return env


@pytest.fixture
def web_server(request, tmp_path):
    """`web_server(env)`: start a web server process; it is killed at teardown."""
    servers: list[WebServer] = []

    def start(env: dict) -> WebServer:
        server = WebServer(env, tmp_path / f"web-{len(servers)}.log")
        servers.append(server)
        return server.start()

    yield start

    for server in servers:
        server.process.kill(signal.SIGKILL)
        if _test_failed(request.node):
            print(f"\n----- log of the web server on {server.url} -----\n{server.process.log()}")

