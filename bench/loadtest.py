"""Load test: many concurrent uploads through the real web server, broker and inference workers.

Everything it needs it starts itself, on 127.0.0.1 only, and stops again on exit or Ctrl-C
(each child in a process group of its own):

* a fresh PostgreSQL database (`plantsite_loadtest` on the local server, dropped first and,
  unless --keep, at the end), migrated;
* a redis-server of its own on a free port, with AOF and noeviction as production's must run,
  as broker and cache (or, with --redis URL, that Redis database, flushed first);
* a tiny model trained with classifier.training.train on generated images, registered as
  the active ModelVersion with its sha256, and a member with an API token;
* gunicorn (gthread workers) serving plantsite.wsgi with the production settings (plain
  HTTP, UPLOAD_THROTTLE_RATE raised so that the throttle refuses none of the test's uploads);
* a Celery worker on the inference queue (`-c 2` by default). No beat: the sweeper would
  resend lost tasks and hide exactly what this test counts.

After --warmup uncounted uploads (so that every worker process has loaded the model before
the clock starts; --warmup 0 measures a cold start), --clients threads send --uploads small JPEGs (photos from ../shared/data/flowers
resized, or generated ones when that folder is absent) to POST /api/v1/photos/, bounded
by --upload-time-limit, and the test polls GET /api/v1/photos/?status=queued until no accepted
photo is still queued, bounded by --drain-timeout. It prints the throughput, the client's
upload latency and the server's upload-to-routed latency (Photo.uploaded_at to decided_at, or
to the prediction's created_at for a photo routed to review) at p50/p95/p99, and the number of
lost photos: accepted, but never out of `queued`. The exit status is 1 when any was lost.

Usage (from the repository root; `make loadtest` runs it with LOADTEST_ARGS):
  .venv/bin/python bench/loadtest.py [--uploads 1000] [--clients 16] [--concurrency 2]
      [--web-workers 2] [--web-threads 8] [--warmup 8] [--upload-time-limit 600] [--drain-timeout 600]
      [--postgres postgres://postgres@127.0.0.1:5432] [--database plantsite_loadtest]
      [--redis redis://127.0.0.1:6379/12] [--worker-loglevel INFO] [--keep]

It is a benchmark, not a test: on a 2-core machine shared with other work the figures move
from run to run; compare runs made on the same machine at the same time.
"""

from __future__ import annotations

import argparse
import io
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
VENV_BIN = REPO / ".venv" / "bin"
FLOWERS = REPO.parent / "shared" / "data" / "flowers"
READY_TIMEOUT = 180  # seconds for the web server and the worker to answer /healthz
STOP_TIMEOUT = 20    # seconds of graceful shutdown before SIGKILL
REQUEST_TIMEOUT = 60
warnings.filterwarnings("ignore", category=FutureWarning)  # torch's own deprecation notices


def log(message):
    print(f"[loadtest {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- processes ------------------------------------------------------------------------


class Children:
    """The processes this run started, each the leader of its own process group."""

    def __init__(self):
        self.processes: list[tuple[str, subprocess.Popen]] = []

    def start(self, name, command, env, log_path):
        with open(log_path, "wb") as out:
            process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        self.processes.append((name, process))
        return process

    def check_alive(self):
        for name, process in self.processes:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with status {process.returncode}")

    def stop_all(self):
        for name, process in reversed(self.processes):
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        deadline = time.monotonic() + STOP_TIMEOUT
        for name, process in reversed(self.processes):
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log(f"{name} did not stop in {STOP_TIMEOUT} s: killing it.")
            try:  # the group too: a prefork child or gunicorn worker that outlived its parent
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            if process.poll() is None:
                process.wait(timeout=5)
        self.processes.clear()


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- setup ----------------------------------------------------------------------------


def environment(args, run_dir: Path, port: int) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CELERY_", "PYTEST"))}
    env.update(
        DJANGO_SETTINGS_MODULE="plantsite.settings.production",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="127.0.0.1,localhost",
        SECURE_SSL_REDIRECT="0",  # plain HTTP on the loopback
        DATABASE_URL=f"{args.postgres.rstrip('/')}/{args.database}",
        DATABASE_CONN_MAX_AGE=str(args.conn_max_age),
        REDIS_URL=args.redis,
        CACHE_URL=args.redis,
        MEDIA_ROOT=str(run_dir / "media"),
        MODEL_ROOT=str(run_dir / "media" / "models"),
        UPLOAD_THROTTLE_RATE="1000000/min",  # the test measures the pipeline, not the throttle
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
        PORT=str(port),
    )
    return env


def recreate_database(args, *, drop_only=False):
    import psycopg

    with psycopg.connect(f"{args.postgres.rstrip('/')}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
        if not drop_only:
            conn.execute(f'CREATE DATABASE "{args.database}"')


def flush_redis(url):
    import redis

    redis.Redis.from_url(url).flushdb()


def start_private_redis(children: Children, run_dir: Path) -> str:
    """A redis-server of this run's own, configured as production's must be (AOF, noeviction):
    no other process on the machine can consume, flush or delay this run's tasks."""
    import redis

    port = free_port()
    directory = run_dir / "redis"
    directory.mkdir()
    children.start("redis-server", [shutil.which("redis-server") or "redis-server", "--bind", "127.0.0.1",
                                    "--port", str(port), "--dir", str(directory), "--save", "",
                                    "--appendonly", "yes", "--maxmemory-policy", "noeviction"],
                   os.environ.copy(), run_dir / "redis.log")
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while True:
        children.check_alive()
        try:
            redis.Redis.from_url(url, socket_connect_timeout=0.5).ping()
            return url
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {port} did not answer in 10 s") from None
            time.sleep(0.05)


def bootstrap(args, run_dir: Path):
    """Migrate, train and register a tiny model, create the uploading member and its token."""
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from rest_framework.authtoken.models import Token

    from classifier.demo_images import generate_dataset
    from classifier.inference import file_sha256
    from classifier.models import ModelVersion
    from classifier.training import TrainingOptions, train
    from labeling.models import Label

    log("Migrating the load-test database...")
    call_command("migrate", interactive=False, verbosity=0)
    log(f"Training a tiny model ({args.model_image_size} px, 1 epoch, from scratch) on generated images...")
    from django.conf import settings

    items = generate_dataset(run_dir / "train", per_label=8, size=96, seed=3)
    rows = [(str(path), label, i % 4 == 0) for i, (path, label) in enumerate(items)]
    settings.MODEL_ROOT.mkdir(parents=True, exist_ok=True)
    export = settings.MODEL_ROOT / "loadtest.pkl"
    options = TrainingOptions(image_size=args.model_image_size, epochs=1, batch_size=8, pretrained=False)
    result = train(rows, options, export)
    for name in result.labels:
        Label.objects.get_or_create(name=name)
    version = ModelVersion.objects.create(
        file=export.name, sha256=file_sha256(export), size=export.stat().st_size, labels=result.labels,
        architecture=options.architecture, image_size=options.image_size, metrics=result.metrics,
        is_active=True,
    )
    user = User.objects.create_user("loadtest", password=secrets.token_urlsafe(16))
    token = Token.objects.create(user=user)
    log(f"Model version {version.id} active ({export.stat().st_size / 1e6:.1f} MB); user 'loadtest' has a token.")
    return token.key


def upload_images(count_wanted: int, max_side: int, run_dir: Path) -> list[tuple[str, bytes]]:
    """(name, JPEG bytes) to upload: the flower photos resized, or generated ones."""
    from PIL import Image

    paths = sorted(FLOWERS.glob("*/*.jpg")) if FLOWERS.is_dir() else []
    if not paths:
        from classifier.demo_images import generate_dataset

        log(f"{FLOWERS} is absent: uploading generated images instead.")
        paths = [p for p, _ in generate_dataset(run_dir / "uploads", per_label=20, size=max_side, seed=7)]
    images = []
    for path in paths[: max(count_wanted, 1)]:
        with Image.open(path) as img:
            img = img.convert("RGB")
            img.thumbnail((max_side, max_side))
            out = io.BytesIO()
            img.save(out, "JPEG", quality=85)
        images.append((path.name, out.getvalue()))
    return images


# --- the load -------------------------------------------------------------------------


@dataclass
class Upload:
    started: float
    latency: float
    status: int          # HTTP status, or 0 for a transport error
    photo_id: int | None = None
    error: str = ""


@dataclass
class UploadPhase:
    results: list[Upload] = field(default_factory=list)
    wall: float = 0.0
    stopped_early: bool = False


def post_photo(session, base_url, image) -> tuple[int | None, int, str]:
    """POST one (name, JPEG bytes) to the upload API: (the photo's id or None, the HTTP status
    or 0 for a transport error, what went wrong or "")."""
    import requests

    name, data = image
    try:
        response = session.post(f"{base_url}/api/v1/photos/", files={"image": (name, data, "image/jpeg")},
                                timeout=REQUEST_TIMEOUT)
    except requests.RequestException as exc:
        return None, 0, f"{type(exc).__name__}: {exc}"[:200]
    if response.status_code == 201:
        return response.json()["id"], 201, ""
    return None, response.status_code, f"HTTP {response.status_code}: {response.text[:150]}"


def run_uploads(base_url, token, images, *, uploads, clients, time_limit, stop: threading.Event) -> UploadPhase:
    import requests

    lock = threading.Lock()
    counter = iter(range(uploads))
    phase = UploadPhase()
    deadline = time.monotonic() + time_limit

    def next_index():
        with lock:
            return next(counter, None)

    def client():
        session = requests.Session()
        session.headers["Authorization"] = f"Token {token}"
        while not stop.is_set() and time.monotonic() < deadline:
            i = next_index()
            if i is None:
                return
            started = time.monotonic()
            photo_id, status, error = post_photo(session, base_url, images[i % len(images)])
            result = Upload(started, time.monotonic() - started, status, photo_id, error)
            with lock:
                phase.results.append(result)

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=clients, thread_name_prefix="client") as pool:
        pending = {pool.submit(client) for _ in range(clients)}
        try:
            while pending:
                done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for future in done:
                    future.result()
        except BaseException:
            stop.set()  # Ctrl-C: the clients finish their current request and stop
            raise
    phase.wall = time.monotonic() - started
    phase.stopped_early = len(phase.results) < uploads
    return phase


def drain(base_url, token, accepted: int, *, timeout, children: Children) -> float:
    """Poll until none of the member's photos is still queued; returns the seconds it took."""
    import requests

    session = requests.Session()
    session.headers["Authorization"] = f"Token {token}"
    started = time.monotonic()
    last_report = 0.0
    while True:
        children.check_alive()
        response = session.get(f"{base_url}/api/v1/photos/", params={"status": "queued"}, timeout=REQUEST_TIMEOUT)
        response.raise_for_status()
        queued = response.json()["count"]
        waited = time.monotonic() - started
        if queued == 0:
            return waited
        if waited > timeout:
            log(f"{queued} photos are still queued after {timeout} s: giving up waiting.")
            return waited
        if waited - last_report >= 10:
            log(f"{queued} of {accepted} accepted photos still queued...")
            last_report = waited
        time.sleep(1.0)


def percentile(values, q):
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def quantiles_line(label, values):
    if not values:
        return f"{label:34} (no data)"
    return (f"{label:34} p50 {percentile(values, 50):7.3f} s   p95 {percentile(values, 95):7.3f} s   "
            f"p99 {percentile(values, 99):7.3f} s   max {max(values):7.3f} s   (n={len(values)})")


def report(args, phase: UploadPhase, drained_in: float) -> int:
    from collections import Counter

    from labeling.models import Photo

    accepted_ids = [r.photo_id for r in phase.results if r.photo_id is not None]
    by_status = Counter(r.status for r in phase.results)
    refused = {code: n for code, n in by_status.items() if code not in (201, 0)}
    photos = {p.id: p for p in Photo.objects.filter(id__in=accepted_ids).select_related("prediction")}
    routed_latency, routed_at, states = [], [], Counter()
    lost = []
    for photo_id in accepted_ids:
        photo = photos.get(photo_id)
        if photo is None or photo.status == Photo.Status.QUEUED:
            lost.append(photo_id)
            continue
        states[photo.status] += 1
        prediction = getattr(photo, "prediction", None)
        done = photo.decided_at or (prediction.created_at if prediction else None)
        if done is not None:
            routed_latency.append((done - photo.uploaded_at).total_seconds())
            routed_at.append(done)
    upload_latency = [r.latency for r in phase.results if r.status == 201]
    first_upload = min((p.uploaded_at for p in photos.values()), default=None)

    print()
    print(f"Plantsite load test: {args.uploads} uploads from {args.clients} clients (after {args.warmup} warm-up "
          f"uploads); gunicorn {args.web_workers} workers x {args.web_threads} threads; inference worker "
          f"-c {args.concurrency}; {os.cpu_count()} CPUs")
    print(f"uploads sent        {len(phase.results)} in {phase.wall:.1f} s"
          + ("  (stopped early: time limit or Ctrl-C)" if phase.stopped_early else ""))
    print(f"  accepted (201)    {len(accepted_ids)}   refused {refused or 0}   transport errors {by_status.get(0, 0)}")
    if phase.wall:
        print(f"  upload throughput {len(accepted_ids) / phase.wall:.1f} uploads/s")
    if routed_at and first_upload:
        span = (max(routed_at) - first_upload).total_seconds()
        print(f"  pipeline          {len(routed_at)} photos routed in {span:.1f} s from the first upload "
              f"= {len(routed_at) / span if span else float('nan'):.1f} photos/s (queue drained {drained_in:.1f} s "
              "after the last upload)")
    print(quantiles_line("upload latency (client)", upload_latency))
    print(quantiles_line("upload -> routed (server clocks)", routed_latency))
    print("states              " + ", ".join(f"{k} {v}" for k, v in sorted(states.items())))
    print(f"lost photos         {len(lost)}" + (f"  (ids {lost[:20]})" if lost else ""))
    errors = [r.error for r in phase.results if r.status != 201][:3]
    for error in errors:
        print(f"  e.g. {error}")
    return 1 if lost else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--uploads", type=int, default=1000, help="photos to upload (default 1000)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent client threads (default 16)")
    parser.add_argument("--concurrency", type=int, default=2, help="inference worker processes, celery -c (default 2)")
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn worker processes (default 2)")
    parser.add_argument("--web-threads", type=int, default=8, help="threads per gunicorn worker (default 8)")
    parser.add_argument("--upload-time-limit", type=float, default=600, help="seconds for the upload phase (600)")
    parser.add_argument("--drain-timeout", type=float, default=600,
                        help="seconds to wait for the queue to drain after the uploads (600)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="uncounted uploads first, so that no worker loads the model during the measurement "
                             "(default 4 x --concurrency; 0 measures a cold start)")
    parser.add_argument("--image-size", type=int, default=320, help="longest side of the uploaded JPEGs (320)")
    parser.add_argument("--model-image-size", type=int, default=64, help="the tiny model's input size (64)")
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432",
                        help="the local PostgreSQL server, without a database name")
    parser.add_argument("--database", default="plantsite_loadtest", help="database to (re)create (plantsite_loadtest)")
    parser.add_argument("--redis", default=None,
                        help="a Redis database to flush and use, e.g. redis://127.0.0.1:6379/12 (default: a private "
                             "redis-server of the run's own, with AOF and noeviction, on a free port)")
    parser.add_argument("--worker-loglevel", default="WARNING", help="the Celery worker's log level (WARNING)")
    parser.add_argument("--conn-max-age", type=int, default=60, help="DATABASE_CONN_MAX_AGE of the server (60)")
    parser.add_argument("--keep", action="store_true", help="keep the database, media and logs afterwards")
    args = parser.parse_args()
    require_local(parser, args.postgres, args.redis or "redis://127.0.0.1")
    if args.uploads < 1 or args.clients < 1 or args.concurrency < 1:
        parser.error("--uploads, --clients and --concurrency must be at least 1.")
    if args.warmup is None:
        args.warmup = 4 * args.concurrency

    return run_stack(args, prefix="plantsite-loadtest-", worker_name=lambda port: f"loadtest-inference-{port}@%h",
                     measure=lambda stack: _load(stack, args))


def _load(stack, args) -> int:
    images = upload_images(min(args.uploads, 500), args.image_size, stack.run_dir)
    if args.warmup:
        log(f"Warming up: {args.warmup} uploads, not counted, so that every worker process has loaded the model...")
        warm = run_uploads(stack.base_url, stack.token, images, uploads=args.warmup,
                           clients=min(args.clients, args.warmup), time_limit=args.upload_time_limit, stop=stack.stop)
        drain(stack.base_url, stack.token, len(warm.results), timeout=args.drain_timeout, children=stack.children)
    log(f"Ready: uploading {args.uploads} photos ({len(images)} distinct, at most {args.image_size} px) "
        f"from {args.clients} clients...")
    phase = run_uploads(stack.base_url, stack.token, images, uploads=args.uploads, clients=args.clients,
                        time_limit=args.upload_time_limit, stop=stack.stop)
    accepted = sum(1 for r in phase.results if r.photo_id is not None)
    log(f"{accepted} accepted in {phase.wall:.1f} s; waiting for the queue to drain...")
    drained_in = drain(stack.base_url, stack.token, accepted, timeout=args.drain_timeout, children=stack.children)
    return report(args, phase, drained_in)


def require_local(parser, *urls):
    """Benchmarks talk only to services on this machine."""
    for url in urls:
        host = url.split("@")[-1].split("//")[-1].split(":")[0].split("/")[0]
        if host not in ("127.0.0.1", "localhost", "::1", "[::1]"):
            parser.error(f"{url}: benchmarks only talk to services on this machine (127.0.0.1).")


@dataclass
class Stack:
    """The running services of one benchmark run, handed to its measurement."""

    run_dir: Path
    port: int
    base_url: str
    env: dict
    token: str
    children: Children
    stop: threading.Event
    worker_name: str
    worker_log: Path


def run_stack(args, *, prefix, worker_name, measure, extra_env=None) -> int:
    """Start the whole site on 127.0.0.1 (a private Redis unless args.redis names one, a fresh
    database, a tiny registered model, gunicorn with the production settings and an inference
    worker), return `measure(stack)`'s exit status, and stop and clean up everything it started,
    also on Ctrl-C or SIGTERM (130) and on a failed setup (2, with the logs' last lines)."""

    def terminate(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, terminate)
    run_dir = Path(tempfile.mkdtemp(prefix=prefix))
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    children = Children()
    stop = threading.Event()
    status = 2
    private_redis = getattr(args, "redis", None) is None
    try:
        if private_redis:
            args.redis = start_private_redis(children, run_dir)
        env = {**environment(args, run_dir, port), **(extra_env or {})}
        os.environ.clear()
        os.environ.update(env)
        log(f"Run folder {run_dir}; database {args.database}; Redis {args.redis}"
            f"{' (private)' if private_redis else ''}; server {base_url}")
        recreate_database(args)
        flush_redis(args.redis)
        token = bootstrap(args, run_dir)
        children.start("gunicorn", [str(VENV_BIN / "gunicorn"), "plantsite.wsgi:application",
                                    "--bind", f"127.0.0.1:{port}", "--workers", str(args.web_workers),
                                    "--threads", str(args.web_threads), "--worker-class", "gthread",
                                    "--timeout", "120", "--graceful-timeout", "10"],
                       env, run_dir / "gunicorn.log")
        name = worker_name(port)
        # taskset execs the worker, so its pid (and process group) stay the worker's own.
        pinned = getattr(args, "worker_cpus", None)
        pin = ["taskset", "-c", ",".join(map(str, pinned))] if pinned else []
        children.start("celery worker", [*pin, str(VENV_BIN / "celery"), "-A", "plantsite", "worker", "-Q", "inference",
                                         "-c", str(args.concurrency), "-n", name,
                                         "--without-gossip", "--without-mingle", "--loglevel", args.worker_loglevel],
                       env, run_dir / "celery.log")
        wait_until_healthy(base_url, children)
        status = measure(Stack(run_dir, port, base_url, env, token, children, stop,
                               name.replace("%h", socket.gethostname()), run_dir / "celery.log"))
    except KeyboardInterrupt:
        stop.set()
        log("Interrupted: stopping everything this run started.")
        status = 130
    except Exception as exc:
        log(f"Failed: {type(exc).__name__}: {exc}")
        for log_name in ("gunicorn.log", "celery.log", "redis.log"):
            path = run_dir / log_name
            if path.exists():
                print(f"----- last lines of {log_name} -----\n"
                      + "\n".join(path.read_text(errors="replace").splitlines()[-30:]))
        status = 2
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup short
        children.stop_all()
        try:
            from django.db import connections

            connections.close_all()
        except Exception:
            pass
        if args.keep:
            log(f"Kept the database {args.database} and the run folder {run_dir}.")
        else:
            try:
                recreate_database(args, drop_only=True)
                if not private_redis and args.redis:
                    flush_redis(args.redis)
            except Exception as exc:
                log(f"Could not drop the database or flush Redis: {exc}")
            shutil.rmtree(run_dir, ignore_errors=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    return status


def wait_until_healthy(base_url, children: Children):
    """/healthz answers 200 once the database, the broker and a worker all answer."""
    import requests

    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        children.check_alive()
        try:
            response = requests.get(f"{base_url}/healthz", timeout=5)
            if response.status_code == 200:
                return
            detail = response.text[:200]
        except requests.RequestException as exc:
            detail = str(exc)[:200]
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server was not healthy after {READY_TIMEOUT} s: {detail}")
        time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(main())
