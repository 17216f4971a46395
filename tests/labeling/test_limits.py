import threading

import pytest
from django.test import Client
from rest_framework.request import Request
from rest_framework.test import APIClient, APIRequestFactory

from labeling.throttling import UploadRateThrottle

from tests.factories import jpeg_bytes
from django.core.files.uploadedfile import SimpleUploadedFile

PASSWORD = "pw-for-tests-1"


def _fail_logins(client, username, times):
    for _ in range(times):
        client.post("/login/", {"username": username, "password": "wrong"})


def test_logins_are_refused_with_429_after_too_many_failures_even_with_the_right_password(member, settings):
    settings.LOGIN_MAX_FAILURES = 3
    client = Client()
    _fail_logins(client, "member", 3)

    response = client.post("/login/", {"username": "member", "password": PASSWORD})

    assert response.status_code == 429
    assert b"Too many failed logins" in response.content
    assert "_auth_user_id" not in client.session


def test_the_limit_counts_per_user_across_addresses(member, settings):
    settings.LOGIN_MAX_FAILURES = 2
    _fail_logins(Client(REMOTE_ADDR="10.0.0.1"), "member", 1)
    _fail_logins(Client(REMOTE_ADDR="10.0.0.2"), "member", 1)

    response = Client(REMOTE_ADDR="10.0.0.3").post("/login/", {"username": "member", "password": PASSWORD})

    assert response.status_code == 429


def test_the_address_limit_counts_failures_across_users(member, other_member, settings):
    settings.LOGIN_MAX_FAILURES_PER_ADDRESS = 2
    client = Client(REMOTE_ADDR="10.0.0.9")
    _fail_logins(client, "someone", 1)
    _fail_logins(client, "someone-else", 1)

    response = client.post("/login/", {"username": "other", "password": PASSWORD})

    assert response.status_code == 429


def test_one_users_failures_do_not_lock_out_the_others_at_the_same_address(member, other_member, settings):
    # A team behind one proxy or NAT shares an address.
    settings.LOGIN_MAX_FAILURES = 3
    client = Client(REMOTE_ADDR="10.0.0.9")
    _fail_logins(client, "membr", 3)  # a typo, three times

    response = client.post("/login/", {"username": other_member.username, "password": PASSWORD})

    assert response.status_code == 302
    assert client.post("/login/", {"username": "membr", "password": PASSWORD}).status_code == 429


def test_a_successful_login_below_the_limit_works(member, settings):
    settings.LOGIN_MAX_FAILURES = 3
    client = Client()
    _fail_logins(client, "member", 2)

    response = client.post("/login/", {"username": "member", "password": PASSWORD})

    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(member.pk)


def test_the_token_endpoint_shares_the_login_limit(member, settings):
    settings.LOGIN_MAX_FAILURES = 2
    client = APIClient()
    for _ in range(2):
        assert client.post("/api/v1/auth/token/", {"username": "member", "password": "x"}).status_code == 400

    response = client.post("/api/v1/auth/token/", {"username": "member", "password": PASSWORD})

    assert response.status_code == 429
    assert "Too many failed logins" in response.json()["detail"]


def test_failures_for_a_long_username_of_any_characters_are_counted_under_a_short_cache_key(db, settings):
    from django.core.cache import cache

    settings.LOGIN_MAX_FAILURES = 2
    username = "\u00e9\U0001f331 x\n" * 2000
    client = APIClient(REMOTE_ADDR="10.0.0.7")
    for _ in range(2):
        assert client.post("/api/v1/auth/token/", {"username": username, "password": "x"},
                           format="json").status_code == 400

    response = APIClient(REMOTE_ADDR="10.0.0.8").post("/api/v1/auth/token/", {"username": username, "password": "x"},
                                                      format="json")

    assert response.status_code == 429
    assert all(len(key) < 100 for key in cache._cache)


def test_uploads_beyond_the_rate_get_429_with_a_message(api_for, member, settings, monkeypatch):
    settings.UPLOAD_THROTTLE_RATE = "2/min"
    monkeypatch.setattr("labeling.tasks.photo_predict_task.delay", lambda *a: None)
    client = api_for(member)
    statuses = []
    for i in range(3):
        image = SimpleUploadedFile(f"p{i}.jpg", jpeg_bytes(colour=(i, 100, 50)), content_type="image/jpeg")
        response = client.post("/api/v1/photos/", {"image": image}, format="multipart")
        statuses.append(response.status_code)

    assert statuses == [201, 201, 429]
    assert "Too many uploads" in response.json()["detail"]


def test_a_limit_lowered_below_a_users_recent_uploads_is_a_429_that_says_when(api_for, member, settings, monkeypatch):
    monkeypatch.setattr("labeling.tasks.photo_predict_task.delay", lambda *a: None)
    monkeypatch.setattr(UploadRateThrottle, "timer", staticmethod(lambda: 600.0))  # a window's start
    client = api_for(member)

    def upload(i):
        image = SimpleUploadedFile(f"p{i}.jpg", jpeg_bytes(colour=(i, 100, 50)), content_type="image/jpeg")
        return client.post("/api/v1/photos/", {"image": image}, format="multipart")

    settings.UPLOAD_THROTTLE_RATE = "5/min"
    assert [upload(i).status_code for i in range(4)] == [201] * 4
    settings.UPLOAD_THROTTLE_RATE = "2/min"
    response = upload(5)

    # Four uploads in this minute: in the next one they weigh 4 x (1 - f), and 4 x (1 - f) + 1 <= 2
    # once f = 3/4, 45 s into it: 60 + 45 s from now.
    assert response.status_code == 429
    assert response.json()["detail"] == "Too many uploads: at most 2/min. Try again in 105 s."
    assert response["Retry-After"] == "105"


def _throttle_request(user):
    request = Request(APIRequestFactory().post("/api/v1/photos/"))
    request.user = user
    return request


@pytest.mark.parametrize("backend", ["redis", "locmem"])
def test_uploads_sent_at_once_never_pass_the_limit(member, settings, monkeypatch, backend):
    # DRF's throttle read each user's history and wrote it back: 16 uploads at once read the same
    # history, and 7 to 11 of them passed a limit of 5.
    from django.core.cache import caches

    settings.UPLOAD_THROTTLE_RATE = "5/min"
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": settings.REDIS_URL}} if backend == "redis" else settings.CACHES
    shared = caches.create_connection("default")
    shared.clear()
    monkeypatch.setattr("labeling.throttling.cache", shared)
    start = threading.Barrier(16)
    allowed = []

    def upload():
        request = _throttle_request(member)
        start.wait()
        allowed.append(UploadRateThrottle().allow_request(request, None))

    threads = [threading.Thread(target=upload) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(allowed) == [False] * 11 + [True] * 5


def test_the_previous_minutes_uploads_count_for_the_part_of_it_still_within_the_last_minute(member, settings,
                                                                                             monkeypatch):
    settings.UPLOAD_THROTTLE_RATE = "5/min"
    now = [600.0 + 50]  # 50 s into a window
    monkeypatch.setattr(UploadRateThrottle, "timer", staticmethod(lambda: now[0]))

    def attempt():
        throttle = UploadRateThrottle()
        return throttle.allow_request(_throttle_request(member), None), throttle

    assert [attempt()[0] for _ in range(5)] == [True] * 5
    assert attempt()[0] is False
    now[0] = 660.0 + 10  # 10 s into the next window: the five weigh 5 x 50/60 = 4.17
    refused, throttle = attempt()
    assert refused is False
    assert throttle.wait() == pytest.approx(2.0)  # at 12 s they weigh 4.0, and one more fits
    now[0] = 660.0 + 12.1
    assert attempt()[0] is True
    assert attempt()[0] is False  # a refused attempt did not count, an allowed one does


def test_a_limit_of_zero_says_no_time(member, settings):
    settings.UPLOAD_THROTTLE_RATE = "0/min"
    throttle = UploadRateThrottle()

    assert throttle.allow_request(_throttle_request(member), None) is False
    assert throttle.wait() is None
    assert throttle.wait_message() == ("Too many uploads: at most 0/min. "
                                       "Try again when the limit's window has passed.")


def test_the_upload_limit_is_per_user(api_for, member, other_member, settings, monkeypatch):
    settings.UPLOAD_THROTTLE_RATE = "1/min"
    monkeypatch.setattr("labeling.tasks.photo_predict_task.delay", lambda *a: None)

    def upload(user):
        image = SimpleUploadedFile("p.jpg", jpeg_bytes(), content_type="image/jpeg")
        return api_for(user).post("/api/v1/photos/", {"image": image}, format="multipart").status_code

    assert upload(member) == 201
    assert upload(other_member) == 201
    assert upload(member) == 429


def test_the_page_upload_is_throttled_too(member, settings):
    settings.UPLOAD_THROTTLE_RATE = "0/min"
    client = Client()
    client.force_login(member)
    image = SimpleUploadedFile("p.jpg", jpeg_bytes(), content_type="image/jpeg")

    response = client.post("/", {"image": image})

    assert response.status_code == 429
    assert b"Too many uploads" in response.content


def test_with_the_cache_down_logins_and_uploads_still_work_and_it_is_logged(member, api_for, settings, caplog,
                                                                             monkeypatch):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": "redis://127.0.0.1:1/0"}}  # nothing listens there
    from django.core.cache import caches

    monkeypatch.setattr("labeling.throttling.cache", caches.create_connection("default"))
    monkeypatch.setattr("rest_framework.throttling.SimpleRateThrottle.cache",
                        caches.create_connection("default"))
    monkeypatch.setattr("labeling.tasks.photo_predict_task.delay", lambda *a: None)

    login = Client().post("/login/", {"username": "member", "password": PASSWORD})
    image = SimpleUploadedFile("p.jpg", jpeg_bytes(), content_type="image/jpeg")
    upload = api_for(member).post("/api/v1/photos/", {"image": image}, format="multipart")

    assert login.status_code == 302
    assert upload.status_code == 201
    assert "not rate-limited" in caplog.text


def test_a_logged_in_member_guessing_another_accounts_password_is_limited_too(member, staff, settings):
    settings.LOGIN_MAX_FAILURES = 3
    client = Client()
    client.force_login(member)
    _fail_logins(client, staff.username, 3)

    response = client.post("/login/", {"username": staff.username, "password": PASSWORD})

    assert response.status_code == 429
    assert client.session["_auth_user_id"] == str(member.pk)


def test_unicode_variants_of_a_username_count_against_the_account_they_log_in_as(staff, settings):
    settings.LOGIN_MAX_FAILURES = 3
    for variant in ("\uff53\uff54\uff41\uff46\uff46", "\u017ftaff", "STAFF"):  # fullwidth, long s, upper case
        _fail_logins(Client(), variant, 1)

    response = Client().post("/login/", {"username": staff.username, "password": PASSWORD})

    assert response.status_code == 429


def test_the_admins_own_login_form_is_not_served_the_sites_rate_limited_login_is(staff):
    client = Client()

    response = client.get("/admin/login/?next=/admin/")

    assert (response.status_code, response["Location"]) == (302, "/login/?next=/admin/")
    client.post("/admin/login/", {"username": staff.username, "password": PASSWORD})
    assert "_auth_user_id" not in client.session  # nothing logs in there, limited or not
