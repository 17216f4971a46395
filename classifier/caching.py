"""Results worth keeping between requests, kept in the cache when it answers."""
import logging

from django.core.cache import cache

logger = logging.getLogger(__name__)


def cached(key: str, compute, timeout: int, what: str):
    """compute(), kept under `key` for `timeout` seconds. Without the cache (Redis down) it is
    computed every time: slower, never wrong. `what` names the work in the warning."""
    # Here, not at the top: training imports classifier.similar, and the benchmarks train without
    # Django's settings, which labeling.throttling (DRF) reads when imported.
    from labeling.throttling import CACHE_ERRORS

    try:
        found = cache.get(key)
    except CACHE_ERRORS:
        logger.warning("The cache is unavailable: %s without it.", what, exc_info=True)
        found = None
    if found is not None:
        return found
    value = compute()
    try:
        cache.set(key, value, timeout)
    except CACHE_ERRORS:
        logger.warning("The cache is unavailable: %s without it.", what, exc_info=True)
    return value
