"""GET /api/v1/photos/updates/: pages learn that a photo changed the moment it is stored,
with one request that the server holds until then, instead of polling."""

import socket
import threading
import time

import pytest
import redis
from django.db import connection
from django.utils import timezone

from labeling import changes
from labeling.models import Photo
from tests.factories import PhotoFactory

URL = "/api/v1/photos/updates/"


@pytest.fixture(autouse=True)
def _announcements_not_paused(monkeypatch):
    """An earlier test with Redis down may have paused announcements; these tests need them."""
    monkeypatch.setattr(changes, "_publish_paused_until", 0.0)


def _ask(client, seen, wait=None, multithreaded_server=True):
    params = {"photos": ",".join(f"{photo_id}:{status}" for photo_id, status in seen)}
    if wait is not None:
        params["wait"] = wait
    # What a threaded WSGI server (gunicorn gthread, runserver) says; the test client says False.
    return client.get(URL, params, **{"wsgi.multithread": multithreaded_server})


def _finalise(photo):
    photo.status, photo.decided_at = Photo.Status.FINAL, timezone.now()
    photo.save()


@pytest.mark.django_db
def test_a_photo_whose_status_changed_is_returned_at_once_and_one_that_did_not_is_not(api_for, member):
    changed = PhotoFactory(owner=member, status=Photo.Status.FINAL)
    unchanged = PhotoFactory(owner=member)

    response = _ask(api_for(member), [(changed.id, "queued"), (unchanged.id, "queued")])

    assert response.status_code == 200
    assert [p["id"] for p in response.json()["photos"]] == [changed.id]
    assert response.json()["photos"][0]["status"] == "final"
    assert response.json()["missing"] == []


@pytest.mark.django_db
def test_with_nothing_changed_and_no_wait_the_answer_is_empty(api_for, member):
    photo = PhotoFactory(owner=member)

    response = _ask(api_for(member), [(photo.id, "queued")])

    assert response.status_code == 200
    assert response.json() == {"photos": [], "missing": []}


@pytest.mark.django_db
def test_another_members_photo_is_missing_and_reveals_nothing(api_for, member, other_member):
    theirs = PhotoFactory(owner=other_member, status=Photo.Status.FINAL)

    response = _ask(api_for(member), [(theirs.id, "queued"), (999_999, "queued")])

    assert response.json() == {"photos": [], "missing": [theirs.id, 999_999]}


@pytest.mark.django_db
def test_an_expert_may_watch_anyones_photo(api_for, expert, member):
    photo = PhotoFactory(owner=member, status=Photo.Status.NEEDS_REVIEW)

    response = _ask(api_for(expert), [(photo.id, "queued")])

    assert [p["id"] for p in response.json()["photos"]] == [photo.id]


@pytest.mark.django_db
def test_a_request_without_credentials_is_401(api_for, member):
    photo = PhotoFactory(owner=member)

    assert _ask(api_for(None), [(photo.id, "queued")]).status_code == 401


@pytest.mark.django_db
@pytest.mark.parametrize("photos, message", [
    ("", "This field may not be blank."),
    ("12", '"12" is not ID:STATUS'),
    ("12:done", '"12:done" is not ID:STATUS'),
    ("x:queued", '"x:queued" is not ID:STATUS'),
    ("0:queued", '"0:queued" is not ID:STATUS'),
    ("²:queued", '"²:queued" is not ID:STATUS'),
    ("①:queued", '"①:queued" is not ID:STATUS'),
    (",".join(f"{i}:queued" for i in range(1, 52)), "At most 50 photos at once."),
])
def test_a_malformed_photos_parameter_is_a_400_that_says_why(api_for, member, photos, message):
    response = api_for(member).get(URL, {"photos": photos})

    assert response.status_code == 400
    assert message in response.json()["photos"][0]


@pytest.mark.django_db
def test_a_negative_wait_is_a_400(api_for, member):
    photo = PhotoFactory(owner=member)

    response = _ask(api_for(member), [(photo.id, "queued")], wait=-1)

    assert response.status_code == 400 and "wait" in response.json()


@pytest.mark.django_db
def test_a_wait_longer_than_the_servers_maximum_is_shortened_to_it(api_for, member, settings):
    settings.PHOTO_UPDATES_MAX_WAIT = 0.3
    photo = PhotoFactory(owner=member)

    started = time.monotonic()
    response = _ask(api_for(member), [(photo.id, "queued")], wait=600)

    assert response.status_code == 200 and response.json() == {"photos": [], "missing": []}
    assert 0.3 <= time.monotonic() - started < 30


def _in_thread(target):
    """Run target() in a thread with its own database connection; returns (thread, result box)."""
    box = {}

    def run():
        try:
            box["result"] = target()
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, box


def _answer_while_waiting(client, photo, change, *, in_this_thread=False):
    """Ask about `photo` (wait=40), make `change()` while the request waits, and return
    (response, seconds the request took). The request runs in a thread of its own, or with
    in_this_thread in the test's thread (which then keeps its pub/sub connection between calls)."""

    def ask():
        started = time.monotonic()
        return _ask(client, [(photo.id, "queued")], wait=40), time.monotonic() - started

    if in_this_thread:
        changer, _ = _in_thread(lambda: (time.sleep(0.5), change()))
        result = ask()
        changer.join(30)
        return result
    thread, box = _in_thread(ask)
    time.sleep(0.5)
    assert thread.is_alive()  # the request is waiting
    change()
    thread.join(30)
    assert not thread.is_alive()
    return box["result"]


@pytest.fixture
def long_waits(settings, monkeypatch):
    """Waits of up to a minute; returns a function that sets how often a waiter re-reads."""
    settings.PHOTO_UPDATES_MAX_WAIT = 60
    return lambda seconds: monkeypatch.setattr(changes, "RECHECK_SECONDS", seconds)


@pytest.mark.django_db(transaction=True)
def test_a_waiting_request_is_answered_as_soon_as_the_change_commits(api_for, member, long_waits):
    long_waits(60.0)  # only the announcement can wake it
    photo = PhotoFactory(owner=member)

    response, took = _answer_while_waiting(api_for(member), photo, lambda: _finalise(photo))

    assert [p["status"] for p in response.json()["photos"]] == ["final"]
    assert took < 20  # woken by the announcement, long before the 40 s wait or a re-read


@pytest.mark.django_db(transaction=True)
def test_a_change_that_was_never_announced_is_seen_at_the_next_re_read(api_for, member, long_waits):
    long_waits(0.2)
    photo = PhotoFactory(owner=member)

    response, _ = _answer_while_waiting(  # a bulk UPDATE announces nothing
        api_for(member), photo, lambda: Photo.objects.filter(id=photo.id).update(status=Photo.Status.FAILED))

    assert [p["status"] for p in response.json()["photos"]] == ["failed"]


@pytest.mark.django_db(transaction=True)
def test_the_worker_marking_a_prediction_failed_announces_it(api_for, member, long_waits):
    from labeling.services import photo_mark_failed

    long_waits(60.0)
    photo = PhotoFactory(owner=member)

    response, took = _answer_while_waiting(api_for(member), photo, lambda: photo_mark_failed(photo.id, "broken file"))

    assert [p["reason"] for p in response.json()["photos"]] == ["broken file"]
    assert took < 20


@pytest.mark.django_db
def test_a_server_that_runs_one_request_at_a_time_never_holds_one(api_for, member, settings, monkeypatch):
    settings.PHOTO_UPDATES_MAX_WAIT = 60
    photo = PhotoFactory(owner=member)
    waits = []
    monkeypatch.setattr(changes, "_wait", lambda *args: waits.append(args))

    response = _ask(api_for(member), [(photo.id, "queued")], wait=40, multithreaded_server=False)

    assert response.json() == {"photos": [], "missing": []}
    assert waits == []


@pytest.mark.django_db
def test_when_every_wait_slot_is_taken_the_request_is_answered_at_once(api_for, member, settings):
    settings.PHOTO_UPDATES_MAX_WAIT = 60
    settings.PHOTO_UPDATES_MAX_WAITERS = 1
    slots = changes._waiter_slots()
    photo = PhotoFactory(owner=member)
    assert slots.acquire(blocking=False)  # another request of this process is waiting
    try:
        started = time.monotonic()
        response = _ask(api_for(member), [(photo.id, "queued")], wait=40)
    finally:
        slots.release()

    assert response.json() == {"photos": [], "missing": []}
    assert time.monotonic() - started < 20  # the page asks again on its polling schedule


@pytest.mark.django_db
def test_with_redis_down_a_waiting_request_still_sees_the_change_by_re_reading(
        api_for, member, settings, monkeypatch, closed_port):
    settings.REDIS_URL = f"redis://127.0.0.1:{closed_port}/0"
    settings.PHOTO_UPDATES_MAX_WAIT = 60
    monkeypatch.setattr(changes, "RECHECK_SECONDS", 0.2)
    photo = PhotoFactory(owner=member)
    reads = []
    original = changes._sleep_until_announced

    def change_after_first_pause(pubsub, until, channels):
        assert pubsub is None  # no subscription: re-reading is all there is
        reads.append(until)
        original(pubsub, until, channels)
        Photo.objects.filter(id=photo.id).update(status=Photo.Status.FINAL)

    monkeypatch.setattr(changes, "_sleep_until_announced", change_after_first_pause)

    response = _ask(api_for(member), [(photo.id, "queued")], wait=40)

    assert [p["status"] for p in response.json()["photos"]] == ["final"]
    assert len(reads) == 1


@pytest.mark.django_db(transaction=True)
def test_a_web_thread_keeps_one_pub_sub_connection_for_all_the_requests_it_holds(
        api_for, member, long_waits, monkeypatch):
    long_waits(60.0)
    opened = []
    real_pubsub = redis.Redis.pubsub
    monkeypatch.setattr(redis.Redis, "pubsub", lambda self, **kw: opened.append(1) or real_pubsub(self, **kw))
    client = api_for(member)

    for _ in range(3):
        photo = PhotoFactory(owner=member)
        response, took = _answer_while_waiting(client, photo, lambda: _finalise(photo), in_this_thread=True)
        assert [p["status"] for p in response.json()["photos"]] == ["final"] and took < 20

    assert len(opened) == 1


@pytest.mark.django_db(transaction=True)
def test_a_kept_pub_sub_connection_that_redis_closed_is_replaced(api_for, member, long_waits):
    long_waits(60.0)
    client = api_for(member)
    first = PhotoFactory(owner=member)
    _answer_while_waiting(client, first, lambda: _finalise(first), in_this_thread=True)
    kept = changes._thread.pubsub
    kept.connection._sock.shutdown(socket.SHUT_RDWR)  # what a Redis restart does to it

    photo = PhotoFactory(owner=member)
    response, took = _answer_while_waiting(client, photo, lambda: _finalise(photo), in_this_thread=True)

    assert [p["status"] for p in response.json()["photos"]] == ["final"]
    assert took < 20  # woken by the announcement on the new connection, not by a re-read
    assert changes._thread.pubsub is not kept


def test_a_message_for_an_earlier_requests_photo_does_not_wake_a_later_one(settings):
    pubsub = redis.Redis.from_url(settings.REDIS_URL).pubsub(ignore_subscribe_messages=True)
    earlier, ours = "plantsite:test:photo:earlier", "plantsite:test:photo:ours"
    try:
        pubsub.subscribe(earlier, ours)  # the earlier request's unsubscribe not yet processed
        changes._redis().publish(earlier, "changed")

        started = time.monotonic()
        changes._sleep_until_announced(pubsub, started + 0.5, [ours])
        assert time.monotonic() - started >= 0.5

        changes._redis().publish(ours, "changed")
        started = time.monotonic()
        changes._sleep_until_announced(pubsub, started + 20, [ours])
        assert time.monotonic() - started < 10
    finally:
        pubsub.close()


def test_announcing_with_redis_down_is_logged_never_an_error_and_paused_for_a_while(
        settings, closed_port, caplog, monkeypatch):
    settings.REDIS_URL = f"redis://127.0.0.1:{closed_port}/0"

    changes._publish("plantsite:test:photo:1")
    changes._publish("plantsite:test:photo:2")  # within the pause: not even tried

    assert "Could not announce a photo change on plantsite:test:photo:1" in caplog.text
    assert "plantsite:test:photo:2" not in caplog.text
    assert changes._publish_paused_until > time.monotonic() + changes.PUBLISH_BACKOFF_SECONDS - 1



@pytest.mark.django_db
def test_a_read_that_finds_nothing_changed_asks_only_for_ids_and_statuses(member, django_assert_num_queries):
    from labeling.selectors import photo_updates

    photo = PhotoFactory(owner=member)

    with django_assert_num_queries(2) as captured:  # is_expert, then the statuses
        assert photo_updates(member, {photo.id: "queued"}) == ([], [])

    statuses = captured.captured_queries[-1]["sql"]
    assert "JOIN" not in statuses and '"labeling_photo"."status"' in statuses


@pytest.mark.django_db
def test_a_photo_deleted_between_the_status_read_and_the_full_read_is_missing(member, monkeypatch):
    from labeling import selectors

    photo = PhotoFactory(owner=member, status=Photo.Status.FINAL)
    real_visible = selectors.photos_visible_to
    monkeypatch.setattr(selectors, "photos_visible_to", lambda user: _DeletedBeforeTheFullRead(real_visible(user), photo))

    assert selectors.photo_updates(member, {photo.id: "queued"}) == ([], [photo.id])


class _DeletedBeforeTheFullRead:
    """photos_visible_to's queryset, except that the photo is deleted just before the second
    filter() (the full read of the changed photos; the first one builds the status read)."""

    def __init__(self, qs, photo):
        self.qs, self.photo, self.filters = qs, photo, 0

    def filter(self, **kwargs):
        self.filters += 1
        if self.filters == 2:
            Photo.objects.filter(id=self.photo.id).delete()
        return self.qs.filter(**kwargs)
