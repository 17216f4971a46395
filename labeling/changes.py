"""Photo changes, announced the moment they are committed, for the pages that wait on them.

A page with photos in flight asks GET /api/v1/photos/updates/?photos=ID:STATUS,...&wait=S, and
the server answers as soon as one of them is no longer in the status the page last saw, instead
of the page asking again and again. Each change is published on Redis (pub/sub) after its
transaction commits; a waiting request subscribes to its photos' channels, then re-reads them
from the database whenever a message comes, and at least every RECHECK_SECONDS anyway, so
a change that was never announced (Redis down, a bulk UPDATE) is still seen, only later.

A waiting request holds a web thread, so each web process lets at most PHOTO_UPDATES_MAX_WAITERS
of them wait at once; beyond that a request is answered at once and the page asks again on its
polling schedule (labeling/polling.py).
"""

from __future__ import annotations

import logging
import threading
import time

import redis
from django.conf import settings
from django.db import connection, transaction

logger = logging.getLogger(__name__)

# The safety net for changes that were not announced: how often a waiter re-reads anyway.
RECHECK_SECONDS = 1.0

_lock = threading.Lock()
_clients: dict[str, redis.Redis] = {}  # by URL: one connection pool per process
_slots: dict[int, threading.BoundedSemaphore] = {}  # by PHOTO_UPDATES_MAX_WAITERS


def _redis() -> redis.Redis:
    url = settings.REDIS_URL
    with _lock:
        if url not in _clients:
            _clients[url] = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=5)
        return _clients[url]


def _waiter_slots() -> threading.BoundedSemaphore:
    limit = settings.PHOTO_UPDATES_MAX_WAITERS
    with _lock:
        if limit not in _slots:
            _slots[limit] = threading.BoundedSemaphore(limit) if limit else None
        return _slots[limit]


def _channel(photo_id: int) -> str:
    # Pub/sub channels are shared by every database number of a Redis server: name ours.
    return f"plantsite:{connection.settings_dict['NAME']}:photo:{photo_id}"


def announce_photo_change(photo_id: int) -> None:
    """Tell waiting pages that photo_id changed, once the current transaction commits."""
    channel = _channel(photo_id)
    transaction.on_commit(lambda: _publish(channel))


# After a failed announcement, announcements are skipped this long: a save must not wait for an
# unreachable Redis again and again (waiting pages still see the change at their next re-read).
PUBLISH_BACKOFF_SECONDS = 5.0
_publish_paused_until = 0.0


def _publish(channel: str) -> None:
    global _publish_paused_until
    if time.monotonic() < _publish_paused_until:
        return
    try:
        _redis().publish(channel, "changed")
    except redis.RedisError as exc:
        _publish_paused_until = time.monotonic() + PUBLISH_BACKOFF_SECONDS
        logger.warning("Could not announce a photo change on %s (%s); not trying again for %s s.",
                       channel, exc, PUBLISH_BACKOFF_SECONDS)


def wait_for_change(photo_ids, read, timeout: float):
    """Call read() (which returns something falsy while nothing has changed) until it returns
    something truthy or `timeout` seconds have passed; return its last result.

    Wakes on an announcement for one of photo_ids, and re-reads every RECHECK_SECONDS anyway.
    When too many requests of this process are waiting already, reads once and returns.
    """
    if timeout <= 0:
        return read()
    slots = _waiter_slots()
    if slots is None or not slots.acquire(blocking=False):
        return read()
    try:
        return _wait(photo_ids, read, time.monotonic() + timeout)
    finally:
        slots.release()


def _wait(photo_ids, read, deadline):
    channels = [_channel(i) for i in photo_ids]
    # Subscribe before the first read: a change committed in between is then not missed.
    pubsub = _subscribe(channels)
    try:
        while True:
            result = read()
            now = time.monotonic()
            if result or now >= deadline:
                return result
            _sleep_until_announced(pubsub, min(deadline, now + RECHECK_SECONDS), channels)
    finally:
        if pubsub is not None:
            _unsubscribe(pubsub, channels)


# Each web thread keeps its pub/sub connection between the requests it holds: opening one (a new
# connection and its handshake) cost more CPU than the rest of a waiting request's Redis work.
_thread = threading.local()


def _subscribe(channels):
    """This thread's pub/sub connection, subscribed to channels; None when Redis is unreachable."""
    url = settings.REDIS_URL
    kept = getattr(_thread, "pubsub", None)
    if kept is not None and _thread.url == url:
        try:
            kept.subscribe(*channels)
            return kept
        except redis.RedisError:
            _forget(kept)  # closed by Redis or a restart since the last wait: one new connection
    elif kept is not None:
        _forget(kept)
    pubsub = _redis().pubsub(ignore_subscribe_messages=True)
    try:
        pubsub.subscribe(*channels)
    except redis.RedisError as exc:
        _close(pubsub)
        logger.warning("Photo updates are re-read every %s s: Redis pub/sub is unavailable (%s).",
                       RECHECK_SECONDS, exc)
        return None
    _thread.pubsub, _thread.url = pubsub, url
    return pubsub


def _unsubscribe(pubsub, channels):
    if getattr(_thread, "pubsub", None) is not pubsub:
        return  # forgotten after an error: closed already
    try:
        pubsub.unsubscribe(*channels)
    except redis.RedisError:
        _forget(pubsub)


def _forget(pubsub):
    if getattr(_thread, "pubsub", None) is pubsub:
        _thread.pubsub = None
    _close(pubsub)


def _close(pubsub):
    try:
        pubsub.close()
    except redis.RedisError:
        pass


def _sleep_until_announced(pubsub, until, channels=()):
    # A kept connection may still deliver a message for an earlier request's photo, published
    # before that request unsubscribed: only our own channels wake us.
    ours = {c.encode() for c in channels}
    while (left := until - time.monotonic()) > 0:
        if pubsub is None:
            time.sleep(left)
            return
        try:
            message = pubsub.get_message(timeout=left)
        except redis.RedisError:
            _forget(pubsub)
            time.sleep(max(0.0, until - time.monotonic()))
            return
        if message is not None and message.get("channel") in ours:
            return
