"""End-to-end benchmark: upload -> queue -> inference worker -> final, over the real stack.

Starts, on 127.0.0.1 only and with bench/loadtest.py's own functions, a private redis-server,
a fresh PostgreSQL database (`plantsite_bench_e2e`), a resnet18 at 224 px (--model-image-size)
trained for one epoch on generated images and registered as the active version, gunicorn with
the production settings (2 workers x 16 threads, 12 of which may hold a waiting request:
--web-waiters) and one Celery inference worker (`-c 2`, log level INFO; each process takes its
share of the worker's cores, one thread each on two cores).
Everything is stopped again on exit or Ctrl-C.

For each level in --levels, that many client threads run a closed loop: upload a photo
(POST /api/v1/photos/), then waits for its result as the web page does: GET
/api/v1/photos/updates/?photos=ID:queued&wait=20, which the server answers as soon as the photo
leaves `queued`; when the server answers without waiting (its wait slots are all taken), it asks
again on the page's schedule (labeling.polling.RESULT_POLL_DELAYS_MS). --poll-interval S polls
GET /api/v1/photos/{id}/ every S seconds instead. Then it uploads the next one, until
--uploads-per-level photos have been sent at that level.

The worker runs with CONFIDENCE_THRESHOLD=0.0: the quickly trained model is rarely confident, and with
the production threshold nearly every photo would go to `needs_review`; at 0.0 they become
`final`, so upload-to-final is what is measured (`needs_review` would count as terminal too).

Per level it prints the throughput (photos reaching a terminal state per second of the
level), the client's upload latency and upload->final latency (from the start of the POST to
the poll that saw the terminal state) at p50/p95/p99, and the split of upload->final:

* queue wait   = start of the task that predicted the photo - Photo.uploaded_at
* task time    = Prediction.created_at - start of that task
* notification = the moment the polling client saw the terminal state - Photo.decided_at
                 (the prediction's created_at for a photo routed to review)

The task start is not stored: it is read from the worker's log, each "Task
labeling.tasks.photo_predict_task[...] succeeded in Xs" line giving end (the log time,
ms resolution) minus X. A photo predicted as another task's batch-mate is attributed to the
task whose run contains its Prediction.created_at (the latest started one). The remainder of
upload->final (the upload request itself, the routing after the prediction was stored) is in
none of the three columns.

Then "worker alone": the worker stops consuming (Celery remote control `cancel_consumer`),
--worker-alone-photos photos are uploaded and queued, the worker consumes again
(`add_consumer`) and the time from that call to the last Prediction.created_at gives the
worker's own throughput, warm model, same images, same batching rules, no polling clients.
The ratio of the highest level's throughput to it is printed; the target is >= 0.8 at 16.
Last, the CPU each part of the stack used per photo at each level and during the drain (from
/proc: the worker's process group, gunicorn's, PostgreSQL's processes, redis-server, and this
process, whose threads are the clients): on a small machine they all share the same cores.

Usage (from the repository root; `make bench-e2e` runs it with BENCH_E2E_ARGS):
  .venv/bin/python bench/bench_e2e.py [--levels 1,4,16] [--uploads-per-level 100]
      [--poll-interval SECONDS] [--concurrency 2] [--worker-alone-photos 200] [--time-limit 900]

Exit status: 0, or 1 when any photo did not reach a terminal state, 2 on a failed setup,
130 when interrupted.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.loadtest import (  # noqa: E402
    REQUEST_TIMEOUT, percentile, post_photo, require_local, run_stack, run_uploads, upload_images,
)
from labeling.polling import RESULT_POLL_DELAYS_MS, result_poll_delay_ms  # noqa: E402

TASK_DONE = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}): INFO/[^\]]*\] "
                       r"Task labeling\.tasks\.photo_predict_task\[[^\]]+\] succeeded in ([0-9.eE+-]+)s")


def log(message):
    print(f"[bench-e2e {time.strftime('%H:%M:%S')}] {message}", flush=True)


@dataclass
class Sample:
    started: float           # wall clock (time.time()) at the start of the POST
    upload: float            # seconds for the POST
    photo_id: int | None
    seen: float | None = None  # wall clock of the poll that saw a terminal state
    status: str = ""
    error: str = ""
    asks: int = 0              # GETs this client made for the photo (1 when the server waited)


WAIT_S = 20  # what the page asks the server to wait for a change (static/plantsite.js)


def run_level(base_url, token, images, *, clients, uploads, poll_interval, photo_timeout, deadline,
              stop: threading.Event) -> tuple[list[Sample], float]:
    import requests

    lock = threading.Lock()
    counter = iter(range(uploads))
    samples: list[Sample] = []

    def client():
        session = requests.Session()
        session.headers["Authorization"] = f"Token {token}"
        while not stop.is_set() and time.monotonic() < deadline:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            started = time.time()
            photo_id, _, error = post_photo(session, base_url, images[i % len(images)])
            sample = Sample(started, time.time() - started, photo_id, error=error)
            with lock:
                samples.append(sample)
            if sample.photo_id is None:
                continue
            give_up = time.monotonic() + photo_timeout
            attempt = 0
            while not stop.is_set() and time.monotonic() < min(give_up, deadline):
                asked = time.monotonic()
                sample.asks += 1
                try:
                    status = (ask_fixed(session, sample.photo_id) if poll_interval is not None
                              else ask_like_the_page(session, sample.photo_id))
                    if status is not None and status != "queued":
                        sample.seen, sample.status = time.time(), status
                        break
                except requests.RequestException:
                    pass
                # The page pauses only when the server answered without waiting (or failed).
                delay = poll_interval if poll_interval is not None else result_poll_delay_ms(attempt) / 1000
                attempt += 1
                time.sleep(max(0.0, delay - (time.monotonic() - asked)))

    def ask_fixed(session, photo_id):
        r = session.get(f"{base_url}/api/v1/photos/{photo_id}/", timeout=REQUEST_TIMEOUT)
        return r.json()["status"] if r.status_code == 200 else None

    def ask_like_the_page(session, photo_id):
        r = session.get(f"{base_url}/api/v1/photos/updates/", params={"photos": f"{photo_id}:queued", "wait": WAIT_S},
                        timeout=REQUEST_TIMEOUT)
        if r.status_code != 200:
            return None
        photos = r.json()["photos"]
        return photos[0]["status"] if photos else "queued"

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=clients, thread_name_prefix=f"c{clients}") as pool:
        futures = [pool.submit(client) for _ in range(clients)]
        try:
            for future in futures:
                while True:
                    try:
                        future.result(timeout=0.5)
                        break
                    except TimeoutError:
                        continue
        except BaseException:
            stop.set()
            raise
    return samples, time.monotonic() - started


def cpu_seconds(children) -> dict[str, float]:
    """CPU seconds (user + system) used so far by each part of the stack, read from /proc: the
    processes this run started (by process group), PostgreSQL's processes, and this process,
    whose threads are the clients. A process that exited still counts through its parent's
    cutime and cstime once the parent has reaped it: PostgreSQL's postmaster reaps the backend
    of every closed connection, and without that a reading could go down between two samples
    (-16.6 ms per photo for PostgreSQL in one run)."""
    tick = os.sysconf("SC_CLK_TCK")
    groups = {process.pid: name for name, process in children.processes}
    used: dict[str, float] = {}
    for pid, comm, fields in processes():
        pgrp, seconds = int(fields[2]), (int(fields[11]) + int(fields[12])) / tick
        reaped = (int(fields[13]) + int(fields[14])) / tick  # its exited children's
        if pid == os.getpid():
            name = "clients"  # its exited children are other parts (or setup), not clients
        elif pgrp in groups:
            name, seconds = groups[pgrp], seconds + reaped
        elif comm == "postgres":
            name, seconds = "postgresql", seconds + reaped
        else:
            continue
        used[name] = used.get(name, 0.0) + seconds
    return used



def cpu_per_photo(before, after, photos) -> dict[str, float]:
    """Milliseconds of CPU per photo for each part, between two cpu_seconds() readings."""
    return {name: 1000 * (after.get(name, 0.0) - before.get(name, 0.0)) / max(photos, 1)
            for name in sorted(set(before) | set(after))}


def task_runs(celery_log: Path) -> list[tuple[float, float]]:
    """(start, end) wall-clock seconds of every finished photo_predict_task in the worker's log."""
    runs = []
    for line in celery_log.read_text(errors="replace").splitlines():
        m = TASK_DONE.match(line)
        if m:
            # Celery logs local time; astimezone() on a naive datetime takes it as local.
            end = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").astimezone().timestamp()
            runs.append((end - float(m.group(2)), end))
    return sorted(runs)


def task_start_for(created: float, runs) -> float | None:
    slack = 0.002  # the log's millisecond resolution
    containing = [s for s, e in runs if s - slack <= created <= e + slack]
    if containing:
        return max(containing)
    before = [s for s, _ in runs if s <= created]
    return max(before) if before else None


def level_row(level, samples, wall, runs):
    from labeling.models import Photo

    ids = [s.photo_id for s in samples if s.photo_id is not None]
    photos = {p.id: p for p in Photo.objects.filter(id__in=ids).select_related("prediction")}
    upload = [s.upload * 1000 for s in samples if s.photo_id is not None]
    to_final, queue, task, note = [], [], [], []
    not_terminal = 0
    statuses = {}
    for s in samples:
        if s.photo_id is None:
            continue
        photo = photos.get(s.photo_id)
        if photo is None or photo.status == Photo.Status.QUEUED or s.seen is None:
            not_terminal += 1
            continue
        statuses[photo.status] = statuses.get(photo.status, 0) + 1
        to_final.append((s.seen - s.started) * 1000)
        prediction = getattr(photo, "prediction", None)
        done = photo.decided_at or (prediction.created_at if prediction else None)
        if done is not None:
            note.append((s.seen - done.timestamp()) * 1000)
        if prediction is not None:
            created = prediction.created_at.timestamp()
            start = task_start_for(created, runs)
            if start is not None:
                queue.append((start - photo.uploaded_at.timestamp()) * 1000)
                task.append((created - start) * 1000)
    finished = len(to_final)
    return dict(level=level, uploads=len(samples), accepted=len(ids), finished=finished,
                throughput=finished / wall if wall else float("nan"), wall=wall,
                upload=upload, to_final=to_final, queue=queue, task=task, note=note,
                not_terminal=not_terminal + (len(samples) - len(ids)), statuses=statuses,
                errors=[s.error for s in samples if s.error][:3],
                asks=sum(s.asks for s in samples if s.photo_id is not None) / max(1, len(ids)))


def p(values, q):
    return f"{percentile(values, q):.0f}" if values else "-"


def cores_note(args):
    if not args.worker_cpus:
        return ""
    return (f", alone on CPU {','.join(map(str, args.worker_cpus))} (gunicorn, Redis, PostgreSQL and the clients on "
            f"{','.join(map(str, args.other_cpus))})")


def worker_plan(worker_log: Path) -> str:
    """How the worker shares its cores, as it logged at start (classifier.cores.inference_plan)."""
    found = re.search(r"Inference: (.*)\.$", worker_log.read_text(errors="replace"), re.MULTILINE)
    return f" ({found.group(1)})" if found else ""


def print_table(rows, args, plan=""):
    print()
    polling = (f"poll every {args.poll_interval * 1000:.0f} ms" if args.poll_interval is not None else
               f"wait for the result as the page does (photos/updates, wait {WAIT_S} s; when not waited "
               f"on, ask again after {'/'.join(map(str, RESULT_POLL_DELAYS_MS))} ms)")
    print(f"Plantsite bench e2e: closed-loop clients, {polling}; gunicorn "
          f"{args.web_workers}x{args.web_threads} gthread, {args.web_waiters} wait slots each; inference worker -c {args.concurrency}"
          f"{plan}{cores_note(args)}; "
          f"CONFIDENCE_THRESHOLD=0.0 (photos end `final`); {os.cpu_count()} CPUs; load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("All times in ms. upload->final: client clock, start of the POST to the poll that saw the terminal state.")
    header = (f"{'level':>5} {'uploads':>7} {'photos/s':>8} | {'upload p50':>10} {'p95':>5} {'p99':>5} | "
              f"{'->final p50':>11} {'p95':>5} {'p99':>5} | {'queue p50':>9} {'task p50':>8} {'notify p50':>10} | "
              f"{'not terminal':>12}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['level']:>5} {r['uploads']:>7} {r['throughput']:>8.2f} | {p(r['upload'], 50):>10} "
              f"{p(r['upload'], 95):>5} {p(r['upload'], 99):>5} | {p(r['to_final'], 50):>11} "
              f"{p(r['to_final'], 95):>5} {p(r['to_final'], 99):>5} | {p(r['queue'], 50):>9} "
              f"{p(r['task'], 50):>8} {p(r['note'], 50):>10} | {r['not_terminal']:>12}")
    for r in rows:
        extra = f"; e.g. {r['errors'][0]}" if r["errors"] else ""
        print(f"  level {r['level']}: {r['finished']} terminal in {r['wall']:.1f} s, states {r['statuses']}; "
              f"queue wait p95 {p(r['queue'], 95)}, task time p95 {p(r['task'], 95)}, "
              f"notification p95 {p(r['note'], 95)}; {r['asks']:.2f} GETs per photo{extra}")


def print_cpu(cpu):
    """Where the cores went: CPU ms per photo by part of the stack, per level."""
    parts = ["celery worker", "gunicorn", "postgresql", "redis-server", "clients"]
    print("\nCPU ms per photo, by part (user + system, all cores; clients = this process's threads):")
    print(f"{'':>12} " + " ".join(f"{part:>13}" for part in parts) + f" {'total':>8}")
    for level, used in cpu.items():
        name = level if isinstance(level, str) else f"level {level}"
        print(f"{name:>12} " + " ".join(f"{used.get(part, 0.0):>13.1f}" for part in parts)
              + f" {sum(used.values()):>8.1f}")


def worker_alone(base_url, token, images, app, worker_name, n, *, timeout, stop, children):
    """Throughput of the warm worker draining a backlog of n queued photos, no clients polling,
    and the CPU each part of the stack used per photo during the drain."""
    from labeling.models import Photo, Prediction

    replies = app.control.cancel_consumer("inference", destination=[worker_name], reply=True, timeout=5)
    if not replies:
        raise RuntimeError(f"{worker_name} did not answer cancel_consumer")
    time.sleep(0.5)
    phase = run_uploads(base_url, token, images, uploads=n, clients=min(8, n), time_limit=timeout, stop=stop)
    ids = [r.photo_id for r in phase.results if r.photo_id is not None]
    queued = Photo.objects.filter(id__in=ids, status=Photo.Status.QUEUED).count()
    log(f"Worker alone: {len(ids)} photos uploaded, {queued} still queued with the consumer off; resuming it...")
    before = cpu_seconds(children)
    t0 = time.time()
    app.control.add_consumer("inference", destination=[worker_name], reply=True, timeout=5)
    deadline = time.monotonic() + timeout
    while Photo.objects.filter(id__in=ids, status=Photo.Status.QUEUED).exists():
        if time.monotonic() > deadline or stop.is_set():
            break
        time.sleep(0.2)
    cpu = cpu_per_photo(before, cpu_seconds(children), len(ids))
    created = [c.timestamp() for c in Prediction.objects.filter(photo_id__in=ids).values_list("created_at", flat=True)]
    left = Photo.objects.filter(id__in=ids, status=Photo.Status.QUEUED).count()
    if not created:
        return 0.0, 0.0, len(ids), left, cpu
    span = max(created) - t0
    return len(created) / span, span, len(created), left, cpu


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", default="1,4,16", help="client concurrency levels, comma-separated (1,4,16)")
    parser.add_argument("--uploads-per-level", type=int, default=100, help="photos uploaded at each level (100)")
    parser.add_argument("--poll-interval", type=float, default=None,
                        help="seconds between a client's polls (default: the web page's schedule, "
                             "labeling/polling.py)")
    parser.add_argument("--photo-timeout", type=float, default=60, help="seconds a client waits for one photo (60)")
    parser.add_argument("--worker-alone-photos", type=int, default=200,
                        help="backlog for the worker-alone measurement (200: smaller ones drain too fast to time well)")
    parser.add_argument("--concurrency", type=int, default=None,
                        help="inference worker processes, celery -c (2, or --worker-cores)")
    parser.add_argument("--worker-cores", type=int, default=0,
                        help="give the inference worker this many cores of its own (the last ones) and pin "
                             "everything else, PostgreSQL's processes included, to the others, for this run "
                             "(0: all share every core, the default)")
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn worker processes (2)")
    parser.add_argument("--web-threads", type=int, default=16, help="threads per gunicorn worker (16)")
    parser.add_argument("--web-waiters", type=int, default=12,
                        help="PHOTO_UPDATES_MAX_WAITERS: how many of a gunicorn worker's threads may hold a waiting "
                             "request (12; with 16 clients spread unevenly over 2 workers, the default 8 sends "
                             "some of them back to polling)")
    parser.add_argument("--warmup", type=int, default=None, help="uncounted uploads first (4 x --concurrency)")
    parser.add_argument("--time-limit", type=float, default=900, help="seconds for all the measurements (900)")
    parser.add_argument("--image-size", type=int, default=320, help="longest side of the uploaded JPEGs (320)")
    parser.add_argument("--model-image-size", type=int, default=224,
                        help="the model's input size (224: resnet18 at 224 px, as the targets are set)")
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--database", default="plantsite_bench_e2e")
    parser.add_argument("--conn-max-age", type=int, default=60)
    parser.add_argument("--keep", action="store_true", help="keep the database and the run folder (logs)")
    args = parser.parse_args()
    require_local(parser, args.postgres)
    levels = [int(x) for x in args.levels.split(",") if x.strip()]
    if not levels or min(levels) < 1 or args.uploads_per_level < 1:
        parser.error("--levels and --uploads-per-level must be positive.")
    cores = sorted(os.sched_getaffinity(0))
    if not 0 <= args.worker_cores < len(cores):
        parser.error(f"--worker-cores must leave at least one of the {len(cores)} cores to the rest.")
    if args.concurrency is None:
        args.concurrency = args.worker_cores or 2
    args.warmup = 4 * args.concurrency if args.warmup is None else args.warmup
    args.redis = None  # always a private Redis: nothing else may take this run's tasks
    args.worker_loglevel = "INFO"  # the task start times come from the worker's log
    args.worker_cpus, args.other_cpus = (cores[-args.worker_cores:], cores[:-args.worker_cores]) \
        if args.worker_cores else (None, None)
    # Photos end `final` (the quickly trained model is rarely sure): the latency is upload-to-final.
    with cores_split(args.other_cpus):
        return run_stack(args, prefix="plantsite-bench-e2e-", worker_name=lambda port: f"bench-e2e-{port}@%h",
                         extra_env={"CONFIDENCE_THRESHOLD": "0.0", "PHOTO_UPDATES_MAX_WAITERS": str(args.web_waiters)},
                         measure=lambda stack: _measure(stack, args, levels))


@contextmanager
def cores_split(others):
    """With --worker-cores: this process (and so gunicorn and Redis, which it starts) and every
    PostgreSQL process run on `others` for the run; the worker is started on its own cores
    (loadtest.run_stack). PostgreSQL's processes get their own affinity back afterwards."""
    if not others:
        yield
        return
    os.sched_setaffinity(0, others)
    restored = {}
    for pid in postgres_pids():
        try:
            restored[pid] = os.sched_getaffinity(pid)
            os.sched_setaffinity(pid, others)  # the postmaster's new backends inherit it
        except OSError as exc:
            log(f"PostgreSQL process {pid} not pinned ({exc}): it shares the worker's cores.")
    try:
        yield
    finally:
        for pid, cpus in restored.items():
            try:
                os.sched_setaffinity(pid, cpus)
            except OSError:
                pass  # a backend that has ended since
        # Backends started during the run inherited the pinned set from the postmaster; they
        # end with their connections, and the postmaster itself has its own set back.


def postgres_pids():
    return [pid for pid, comm, _ in processes() if comm == "postgres"]


def processes():
    """(pid, command name, the stat fields from field 3 on) of every process, from /proc."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:  # it ended while we looked
            continue
        yield int(entry), stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()


def _measure(stack, args, levels) -> int:
    alone_n = args.worker_alone_photos
    base_url, token, stop = stack.base_url, stack.token, stack.stop
    images = upload_images(max(args.uploads_per_level, alone_n), args.image_size, stack.run_dir)
    deadline = time.monotonic() + args.time_limit
    if args.warmup:
        log(f"Warming up: {args.warmup} uploads, not counted...")
        run_level(base_url, token, images, clients=min(args.warmup, 4), uploads=args.warmup,
                  poll_interval=args.poll_interval, photo_timeout=args.photo_timeout, deadline=deadline, stop=stop)
    raw, cpu = [], {}
    for level in levels:
        log(f"Level {level}: {args.uploads_per_level} uploads from {level} closed-loop clients...")
        before = cpu_seconds(stack.children)
        samples, wall = run_level(base_url, token, images, clients=level, uploads=args.uploads_per_level,
                                  poll_interval=args.poll_interval, photo_timeout=args.photo_timeout,
                                  deadline=deadline, stop=stop)
        cpu[level] = cpu_per_photo(before, cpu_seconds(stack.children), len(samples))
        stack.children.check_alive()
        raw.append((level, samples, wall))
    time.sleep(1.0)  # the last "succeeded" log lines
    runs = task_runs(stack.worker_log)
    if not runs:
        log("No 'succeeded' lines in the worker's log: queue wait and task time are not available.")
    rows = [level_row(level, samples, wall, runs) for level, samples, wall in raw]

    from plantsite.celery import app

    log(f"Worker alone: consumer off, {alone_n} photos queued, consumer on, timing the drain...")
    rate, span, done, left, cpu["worker alone"] = worker_alone(
        base_url, token, images, app, stack.worker_name, alone_n, timeout=max(30.0, deadline - time.monotonic()),
        stop=stop, children=stack.children)
    print_table(rows, args, worker_plan(stack.worker_log))
    print(f"worker alone: {done} queued photos predicted in {span:.2f} s = {rate:.2f} photos/s "
          f"(add_consumer to the last Prediction.created_at; {left} left queued)")
    print_cpu(cpu)
    top = rows[-1]
    if rate:
        print(f"level {top['level']} / worker alone = {top['throughput']:.2f} / {rate:.2f} = "
              f"{top['throughput'] / rate:.2f} (target >= 0.80)")
    used = cpu.get(top["level"], {})
    if used.get("celery worker") and sum(used.values()):
        # When the cores are saturated, the stack can go no faster than the worker alone times
        # the worker's share of the CPU each photo needs.
        share = used["celery worker"] / sum(used.values())
        print(f"the worker's share of the CPU per photo at level {top['level']}: {used['celery worker']:.1f} / "
              f"{sum(used.values()):.1f} ms = {share:.2f}"
              + ("" if args.worker_cpus else " (on shared, saturated cores the ratio above cannot go much beyond this)"))
    lost = sum(r["not_terminal"] for r in rows) + left
    print(f"not terminal, all levels and the worker-alone backlog: {lost}")
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
