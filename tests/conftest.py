import shutil
import socket
import subprocess
import time

import pytest
from rest_framework.test import APIClient

from .factories import UserFactory


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Rate-limit counters start from zero in every test."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    """Every test writes photos and models into its own temporary folder."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.MODEL_ROOT = tmp_path / "media" / "models"
    settings.MEDIA_ROOT.mkdir()
    return settings.MEDIA_ROOT


@pytest.fixture
def sent_predictions():
    """The prediction task's delay, recording the photos sent instead of reaching a broker."""
    from unittest import mock

    with mock.patch("labeling.tasks.photo_predict_task.delay") as delay:
        yield delay


@pytest.fixture
def member(db):
    return UserFactory(username="member")


@pytest.fixture
def other_member(db):
    return UserFactory(username="other")


@pytest.fixture
def expert(db):
    return UserFactory(username="expert", expert=True)


@pytest.fixture
def staff(db):
    return UserFactory(username="staff", is_staff=True)


def _client_for(user):
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


@pytest.fixture
def api_for():
    return _client_for


@pytest.fixture(scope="session")
def tiny_model_file(tmp_path_factory):
    """A real exported learner, trained once per test session on a few generated images.

    Small (32 px, one epoch, no pretrained weights) so that it takes seconds on a CPU; what it
    predicts is not the point, that it goes through the real training and export is.
    """
    return _train_tiny(tmp_path_factory, "tiny", image_size=32)


@pytest.fixture(scope="session")
def explainable_model_file(tmp_path_factory):
    """As tiny_model_file, at 96 px: a 3 x 3 feature grid, so that Grad-CAM has a "where"."""
    return _train_tiny(tmp_path_factory, "explainable", image_size=96)


def _train_tiny(tmp_path_factory, name, image_size):
    from classifier.demo_images import generate_dataset
    from classifier.training import TrainingOptions, train

    root = tmp_path_factory.mktemp(f"{name}-model")
    items = generate_dataset(root / "data", per_label=6, size=max(64, image_size), seed=1)
    rows = [(str(path), label, i % 3 == 0) for i, (path, label) in enumerate(items)]
    export = root / f"{name}.pkl"
    train(rows, TrainingOptions(image_size=image_size, epochs=1, batch_size=8, pretrained=False), export)
    return export


@pytest.fixture
def active_model(db, settings, tiny_model_file):
    """The tiny learner registered and activated as it would be after a training run."""
    from classifier.inference import model_cache

    yield _register_active(settings, tiny_model_file, image_size=32)
    model_cache.clear()


@pytest.fixture
def explainable_model(db, settings, explainable_model_file):
    """The 96 px learner registered and activated, as active_model."""
    from classifier.inference import model_cache

    yield _register_active(settings, explainable_model_file, image_size=96)
    model_cache.clear()


@pytest.fixture
def trained_here_model(staff, tmp_path, settings):
    """A version trained by the site's own training service on generated plants (so with its
    kept features and familiarity, which the registered learners above lack), active, with the
    familiarity check on and every answer confident enough to be saved."""
    from unittest import mock

    from classifier import services as classifier_services
    from classifier.demo_images import generate_dataset
    from classifier.inference import model_cache
    from classifier.models import ModelVersion
    from labeling import services

    generate_dataset(tmp_path / "plants", per_label=6, size=64, seed=2)
    with mock.patch.object(classifier_services, "is_validation", lambda key, percent=20: int(key) % 4 == 0):
        services.photos_import_folder(directory=tmp_path / "plants", owner=staff)
        run = classifier_services.training_run_start(user=staff, enqueue=False, options={
            "architecture": "resnet18", "image_size": 32, "epochs": 1, "batch_size": 4, "pretrained": False})
        classifier_services.training_run_execute(run.id)
    version = ModelVersion.objects.get(training_run=run)
    classifier_services.model_version_activate(version_id=version.id)
    settings.CONFIDENCE_THRESHOLD = 0.0
    settings.UNFAMILIAR_CHECK = True
    model_cache.clear()
    yield ModelVersion.objects.get(id=version.id)
    model_cache.clear()


def _register_active(settings, model_file, image_size):
    import shutil

    from classifier.inference import file_sha256, model_cache
    from classifier.models import ModelVersion
    from labeling.models import Label

    settings.MODEL_ROOT.mkdir(parents=True, exist_ok=True)
    shutil.copy(model_file, settings.MODEL_ROOT / model_file.name)
    labels = ["dieffenbachia", "monstera", "spider_plant"]
    for name in labels:
        Label.objects.get_or_create(name=name)
    model_cache.clear()
    return ModelVersion.objects.create(
        file=model_file.name, sha256=file_sha256(model_file), size=model_file.stat().st_size,
        labels=labels, architecture="resnet18", image_size=image_size, is_active=True,
        metrics={"error_rate": 0.5, "per_label": {}, "confusion_matrix": []},
    )


REDIS_START_TIMEOUT = 10  # seconds until a private redis-server must answer a ping


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def private_redis(tmp_path):
    """`private_redis(appendonly="no", maxmemory_policy="allkeys-lru", extra=[...])` starts a
    redis-server of the test's own on a free 127.0.0.1 port and returns its URL; every one
    started is stopped at teardown. The shared Redis is never reconfigured."""
    import redis

    started = []

    def start(*, appendonly="yes", maxmemory_policy="noeviction", extra=()):
        port = _free_port()
        directory = tmp_path / f"redis-{port}"
        directory.mkdir()
        config = directory / "redis.conf"
        config.write_text("\n".join([
            "bind 127.0.0.1", f"port {port}", f'dir "{directory}"', 'save ""', "daemonize no",
            f'logfile "{directory / "redis.log"}"', f"appendonly {appendonly}",
            f"maxmemory-policy {maxmemory_policy}", *extra, "",
        ]))
        process = subprocess.Popen([shutil.which("redis-server") or "redis-server", str(config)],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started.append(process)
        url = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + REDIS_START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"redis-server exited with {process.returncode}: "
                            f"{(directory / 'redis.log').read_text(errors='replace')}")
            try:
                redis.Redis.from_url(url, socket_connect_timeout=0.5).ping()
                return url
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    pytest.fail(f"redis-server on port {port} did not answer in {REDIS_START_TIMEOUT} s")
                time.sleep(0.05)

    yield start
    for process in started:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture
def closed_port():
    """A 127.0.0.1 port with nothing listening on it."""
    return _free_port()


class WebhookReceiver:
    """An HTTP server on 127.0.0.1 that keeps every POST (headers, body) and answers each with
    the next of `answers` (status, body, seconds to wait first); the last one repeats."""

    def __init__(self):
        import http.server
        import threading

        self.requests: list[tuple[dict, bytes]] = []
        self.answers = [(200, b"thanks", 0.0)]
        self.arrived = threading.Condition()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.arrived:
                    receiver.requests.append((dict(self.headers), body))
                    index = min(len(receiver.requests), len(receiver.answers)) - 1
                    receiver.arrived.notify_all()
                status, answer, pause = receiver.answers[index]
                time.sleep(pause)
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "http://127.0.0.1:1/elsewhere")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, count: int, timeout: float = 30.0) -> list[tuple[dict, bytes]]:
        with self.arrived:
            if not self.arrived.wait_for(lambda: len(self.requests) >= count, timeout=timeout):
                pytest.fail(f"the receiver got {len(self.requests)} POSTs in {timeout} s, not {count}")
            return list(self.requests)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook_receiver():
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()
