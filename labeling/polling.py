"""How soon the pages ask again for a photo's result while it is being predicted.

A prediction is stored tens of milliseconds after the upload on a warm worker, so a page that
first asked after a flat 250 ms showed every result a quarter of a second late. The pages
(static/plantsite.js, through the `data-result-poll-ms` attribute that base.html renders) and
bench/bench_e2e.py (which measures what a user waits) follow this one schedule: quick first
asks, then every 250 ms at most, until the photo leaves `queued`. Few photos need more than
the first two asks, so the quick start costs little.
"""

# Milliseconds to wait before the 1st, 2nd, ... ask; the last value repeats.
RESULT_POLL_DELAYS_MS = (40, 40, 60, 80, 130, 250)


def result_poll_delay_ms(attempt: int) -> int:
    """The wait before ask number `attempt` (0-based)."""
    return RESULT_POLL_DELAYS_MS[min(attempt, len(RESULT_POLL_DELAYS_MS) - 1)]
