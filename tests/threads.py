"""Running test code in threads at the same moment, each with its own database connection."""

import threading
import time

from django.db import connection

JOIN_TIMEOUT = 60  # seconds


def at_once(functions, *, return_exceptions=False):
    """Run the functions in threads released together; each thread closes its own connection.
    Returns their results; an exception fails the test, or with return_exceptions=True takes
    its function's place among the results."""
    barrier = threading.Barrier(len(functions))
    results, errors = [None] * len(functions), []

    def run(i, fn):
        try:
            barrier.wait(timeout=10)
            results[i] = fn()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, fn), daemon=True) for i, fn in enumerate(functions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=JOIN_TIMEOUT)
    stuck = [i for i, t in enumerate(threads) if t.is_alive()]
    # A stuck thread's result would read as None: a hang (a deadlock, a lock never released) must fail.
    assert not stuck, f"function(s) {stuck} of {len(functions)} still running after {JOIN_TIMEOUT} s"
    assert return_exceptions or not errors, errors
    return results


def hold_locks_until_another_waits(*, or_until: threading.Event) -> bool:
    """Keep this transaction (and its locks) open until another transaction waits for one of
    them (True), or `or_until` is set (False): the other one finished without waiting. A race
    made certain, with no sleep to guess at."""
    deadline = time.monotonic() + 10
    with connection.cursor() as cursor:
        while not or_until.is_set():
            # pg_locks, not pg_stat_activity: that one is read once per transaction, and this
            # transaction stays open.
            cursor.execute("SELECT EXISTS (SELECT 1 FROM pg_locks WHERE NOT granted "
                           "AND pg_backend_pid() = ANY(pg_blocking_pids(pid)))")
            if cursor.fetchone()[0]:
                return True
            assert time.monotonic() < deadline, "nobody waited for this transaction's locks"
            time.sleep(0.01)
    return False
