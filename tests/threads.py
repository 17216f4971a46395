"""Running test code in threads at the same moment, each with its own database connection."""

import threading

from django.db import connection


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

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(functions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert return_exceptions or not errors, errors
    return results
