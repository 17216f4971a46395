"""How soon a page asks again for a photo's result when the server did not wait for it.

Pages learn of a result by GET /api/v1/photos/updates/?...&wait=20, which the server answers the
moment the photo changes (labeling/changes.py). When a web process has no wait slot free, it
answers at once, and the page asks again after these pauses: quick at first, because a warm
worker stores a prediction tens of milliseconds after the upload, then every 250 ms at most.
The pages (static/plantsite.js, through the `data-result-poll-ms` attribute that base.html
renders) and bench/bench_e2e.py (which measures what a user waits) follow this one schedule.
"""

# Milliseconds to wait before the 1st, 2nd, ... ask; the last value repeats.
RESULT_POLL_DELAYS_MS = (40, 40, 60, 80, 130, 250)


def result_poll_delay_ms(attempt: int) -> int:
    """The wait before ask number `attempt` (0-based)."""
    return RESULT_POLL_DELAYS_MS[min(attempt, len(RESULT_POLL_DELAYS_MS) - 1)]
