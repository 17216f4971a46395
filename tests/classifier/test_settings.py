"""Settings are read strictly: a typo in an environment variable stops the process with a
message naming it, and production refuses to start without its secrets but passes Django's
deployment checks once they are given."""

import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from plantsite.settings.env import (env_bool, env_choice, env_float, env_hosts, env_int, env_list, env_origins,
                                    env_rate, env_str, env_url)

VAR = "PLANTSITE_TEST_SETTING"
STRONG_SECRET_KEY = "k3J9-pQ2_vX8mZ4tR7wY1nB6cL0sD5fG-hA2eU9iO3yT8rE4wQ7zX1cV6bN0mK5j"


# --- the env helpers -------------------------------------------------------------------


@pytest.mark.parametrize("raw, expected", [("1", True), ("yes", True), (" TRUE ", True), ("on", True),
                                           ("0", False), ("no", False), ("False", False)])
def test_env_bool_reads_the_usual_spellings(monkeypatch, raw, expected):
    monkeypatch.setenv(VAR, raw)

    assert env_bool(VAR, default=not expected) is expected


@pytest.mark.parametrize("raw", [None, "", "  "])
def test_env_bool_falls_back_to_the_default_when_unset_or_empty(monkeypatch, raw):
    # As every other kind of setting reads an empty value: `REDIS_REQUIRE_DURABLE=` in production
    # turned its checks off.
    if raw is None:
        monkeypatch.delenv(VAR, raising=False)
    else:
        monkeypatch.setenv(VAR, raw)

    assert env_bool(VAR, default=True) is True


@pytest.mark.parametrize("raw", ["1e11", "-1"])
def test_a_duration_setting_is_bounded_on_both_sides(raw):
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"], capture_output=True, text=True,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "plantsite.settings.local", "INFERENCE_BATCH_WAIT": raw})

    assert result.returncode != 0
    assert f"INFERENCE_BATCH_WAIT={float(raw)} must be between 0.0 and 604800." in result.stderr


def test_a_one_sided_bound_says_which_side(monkeypatch):
    monkeypatch.setenv(VAR, "-3")

    with pytest.raises(ImproperlyConfigured, match=f"{VAR}=-3.0 must be at least 0.0"):
        env_float(VAR, 1.0, minimum=0.0)


@pytest.mark.parametrize("raw", ["maybe", "2", "enabled", "tru"])
def test_env_bool_refuses_anything_else_naming_the_variable(monkeypatch, raw):
    monkeypatch.setenv(VAR, raw)

    with pytest.raises(ImproperlyConfigured, match=f"{VAR}='{raw}' is not a boolean"):
        env_bool(VAR)


def test_env_int_parses_integers_and_uses_the_default_when_unset_or_empty(monkeypatch):
    monkeypatch.setenv(VAR, "42")
    assert env_int(VAR, 7) == 42
    monkeypatch.setenv(VAR, "")
    assert env_int(VAR, 7) == 7
    monkeypatch.delenv(VAR)
    assert env_int(VAR, 7) == 7


@pytest.mark.parametrize("raw", ["12a", "1.5", "ten", "0x10"])
def test_env_int_refuses_a_value_that_is_not_an_integer(monkeypatch, raw):
    monkeypatch.setenv(VAR, raw)

    with pytest.raises(ImproperlyConfigured, match=f"{VAR}='{raw}' is not an integer"):
        env_int(VAR, 1)


def test_env_int_refuses_a_value_below_its_minimum(monkeypatch):
    monkeypatch.setenv(VAR, "-1")

    with pytest.raises(ImproperlyConfigured, match=f"{VAR}=-1 must be at least 0"):
        env_int(VAR, 1, minimum=0)


def test_env_float_parses_numbers_within_bounds(monkeypatch):
    monkeypatch.setenv(VAR, "0.75")

    assert env_float(VAR, 0.5, minimum=0.0, maximum=1.0) == 0.75


@pytest.mark.parametrize("raw", ["high", "0,8", "80%"])
def test_env_float_refuses_a_value_that_is_not_a_number(monkeypatch, raw):
    monkeypatch.setenv(VAR, raw)

    with pytest.raises(ImproperlyConfigured, match=f"{VAR}='{raw}' is not a number"):
        env_float(VAR, 0.5)


@pytest.mark.parametrize("raw", ["nan", "NaN", "inf", "-inf", "Infinity"])
def test_env_float_refuses_a_value_that_is_not_finite_even_without_bounds(monkeypatch, raw):
    monkeypatch.setenv(VAR, raw)

    with pytest.raises(ImproperlyConfigured, match=f"{VAR}='{raw}' is not a finite number"):
        env_float(VAR, 0.5)
    with pytest.raises(ImproperlyConfigured, match=f"{VAR}='{raw}' is not a finite number"):
        env_float(VAR, 0.5, minimum=0.0, maximum=1.0)


@pytest.mark.parametrize("raw", ["1.5", "-0.1"])
def test_env_float_refuses_a_value_outside_its_bounds(monkeypatch, raw):
    monkeypatch.setenv(VAR, raw)

    with pytest.raises(ImproperlyConfigured, match=f"{VAR}=.* must be between 0.0 and 1.0"):
        env_float(VAR, 0.5, minimum=0.0, maximum=1.0)


@pytest.mark.parametrize("raw", ["120/min", "5/s", "1000000/minute", "3/hour", " 10/day "])
def test_env_rate_reads_the_rates_drf_throttles_understand(monkeypatch, raw):
    monkeypatch.setenv(VAR, raw)

    assert env_rate(VAR, "1/s") == raw.strip()


@pytest.mark.parametrize("raw", ["fast", "10/fortnight", "10", "/min", "ten/min", "-1/min", "1.5/min"])
def test_env_rate_refuses_what_drf_would_fail_on_at_the_first_upload(monkeypatch, raw):
    monkeypatch.setenv(VAR, raw)

    with pytest.raises(ImproperlyConfigured, match=f"{VAR}=.* is not a rate like 120/min"):
        env_rate(VAR, "1/s")


def test_env_choice_takes_one_of_its_choices_and_refuses_anything_else(monkeypatch):
    monkeypatch.setenv(VAR, "WARNING")
    assert env_choice(VAR, "INFO", ("INFO", "WARNING")) == "WARNING"

    monkeypatch.setenv(VAR, "loud")
    with pytest.raises(ImproperlyConfigured, match=f"{VAR}='loud' is not one of INFO, WARNING"):
        env_choice(VAR, "INFO", ("INFO", "WARNING"))


def test_env_str_refuses_a_missing_required_variable_naming_it(monkeypatch):
    monkeypatch.delenv(VAR, raising=False)

    with pytest.raises(ImproperlyConfigured, match=f"The environment variable {VAR} must be set"):
        env_str(VAR, required=True)
    monkeypatch.setenv(VAR, "")
    with pytest.raises(ImproperlyConfigured, match=VAR):
        env_str(VAR, required=True)


def test_env_list_splits_on_commas_and_drops_blanks(monkeypatch):
    monkeypatch.setenv(VAR, " a.example, b.example ,,")

    assert env_list(VAR) == ["a.example", "b.example"]


# --- production settings, in a fresh interpreter ----------------------------------------


def run_with_production_settings(code_or_args, **env):
    """Run Python with DJANGO_SETTINGS_MODULE=plantsite.settings.production and only the given
    variables set: nothing is inherited from the test run (which sets DATABASE_URL and
    DJANGO_ALLOW_ASYNC_UNSAFE for itself)."""
    base = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR") if k in os.environ}
    base.update(DJANGO_SETTINGS_MODULE="plantsite.settings.production", **env)
    args = ["-c", code_or_args] if isinstance(code_or_args, str) else code_or_args
    return subprocess.run([sys.executable, *args], cwd=settings.BASE_DIR, env=base,
                          capture_output=True, text=True, timeout=120)


SETUP = "import django; django.setup()"


def test_production_refuses_to_start_without_a_secret_key():
    result = run_with_production_settings(SETUP, ALLOWED_HOSTS="plants.example.com")

    assert result.returncode != 0
    assert "ImproperlyConfigured: The environment variable SECRET_KEY must be set." in result.stderr


def test_production_refuses_to_start_without_allowed_hosts():
    result = run_with_production_settings(SETUP, SECRET_KEY=STRONG_SECRET_KEY)

    assert result.returncode != 0
    assert "ImproperlyConfigured: The environment variable ALLOWED_HOSTS must be set." in result.stderr


def test_production_refuses_to_start_with_a_malformed_setting_naming_it():
    result = run_with_production_settings(SETUP, SECRET_KEY=STRONG_SECRET_KEY, ALLOWED_HOSTS="plants.example.com",
                                          CONFIDENCE_THRESHOLD="high")

    assert result.returncode != 0
    assert "CONFIDENCE_THRESHOLD='high' is not a number" in result.stderr


DEPLOY_CHECK = ["manage.py", "check", "--deploy", "--fail-level", "WARNING"]


def test_production_with_its_secrets_and_a_durable_redis_passes_the_deploy_checks_at_warning_level(private_redis):
    broker = private_redis(appendonly="yes", maxmemory_policy="noeviction")

    result = run_with_production_settings(DEPLOY_CHECK, SECRET_KEY=STRONG_SECRET_KEY,
                                          ALLOWED_HOSTS="plants.example.com", DEBUG="true", REDIS_URL=broker)

    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


def test_the_deploy_checks_fail_production_whose_broker_redis_could_lose_tasks(private_redis):
    broker = private_redis(appendonly="no", maxmemory_policy="allkeys-lru")

    result = run_with_production_settings(DEPLOY_CHECK, SECRET_KEY=STRONG_SECRET_KEY,
                                          ALLOWED_HOSTS="plants.example.com", REDIS_URL=broker)

    assert result.returncode != 0
    assert "plantsite.W001" in result.stderr and "plantsite.W002" in result.stderr
    assert "--appendonly yes --maxmemory-policy noeviction" in result.stderr


def test_production_may_opt_out_of_the_durable_redis_check(private_redis):
    broker = private_redis(appendonly="no", maxmemory_policy="allkeys-lru")

    result = run_with_production_settings(DEPLOY_CHECK, SECRET_KEY=STRONG_SECRET_KEY,
                                          ALLOWED_HOSTS="plants.example.com", REDIS_URL=broker,
                                          REDIS_REQUIRE_DURABLE="0")

    assert result.returncode == 0, result.stderr


def test_the_deploy_checks_fail_production_whose_broker_cannot_be_reached(closed_port):
    result = run_with_production_settings(DEPLOY_CHECK, SECRET_KEY=STRONG_SECRET_KEY,
                                          ALLOWED_HOSTS="plants.example.com",
                                          REDIS_URL=f"redis://127.0.0.1:{closed_port}/0")

    assert result.returncode != 0
    assert "plantsite.W003" in result.stderr


def test_the_deploy_checks_fail_production_with_a_weak_secret_key():
    result = run_with_production_settings(DEPLOY_CHECK, SECRET_KEY="short", ALLOWED_HOSTS="plants.example.com")

    assert result.returncode != 0
    assert "security.W009" in result.stderr


@pytest.mark.parametrize("name", ["REDIS_URL", "CACHE_URL", "CELERY_BROKER_URL"])
@pytest.mark.parametrize("raw", ["garbage", "redis:/127.0.0.1:6379/0", "http://127.0.0.1:6379/0", "redis://"])
def test_a_redis_url_that_is_not_one_stops_the_process_naming_it(name, raw):
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"], capture_output=True, text=True,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "plantsite.settings.local", name: raw})

    assert result.returncode != 0
    assert f"{name} is not a URL like redis://HOST:PORT/..." in result.stderr


def test_redis_urls_with_a_password_tls_or_a_socket_are_taken(monkeypatch):
    from plantsite.settings.base import REDIS_SCHEMES

    for raw in ("redis://:secret@10.0.0.5:6380/2", "rediss://cache.example:6379/0", "unix:///run/redis.sock"):
        monkeypatch.setenv(VAR, raw)
        assert env_url(VAR, None, REDIS_SCHEMES) == raw


def test_a_database_url_that_is_not_one_stops_the_process_naming_it():
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"], capture_output=True, text=True,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "plantsite.settings.local", "DATABASE_URL": "garbage"})

    assert result.returncode != 0
    assert "DATABASE_URL is not a database URL: Scheme '://' is unknown." in result.stderr


# --- Redis URLs: the port and the database number ----------------------------------------


def redis_url_from(monkeypatch, raw):
    from plantsite.settings.base import REDIS_SCHEMES

    monkeypatch.setenv(VAR, raw)
    return env_url(VAR, None, REDIS_SCHEMES)


@pytest.mark.parametrize("raw", ["redis://127.0.0.1:abc/11", "redis://127.0.0.1:0/0", "redis://127.0.0.1:65536/0",
                                 "rediss://cache.example:-1/0", "redis://[::1/0"])
def test_a_redis_url_whose_port_is_not_a_port_is_refused(monkeypatch, raw):
    with pytest.raises(ImproperlyConfigured, match=f"{VAR} has a host or port that cannot be read: the port must "
                                                   "be a number from 1 to 65535"):
        redis_url_from(monkeypatch, raw)


@pytest.mark.parametrize("raw", ["redis://127.0.0.1:6379/notadb", "redis://127.0.0.1:6379/-1",
                                 "rediss://cache.example:6379/0/1", "redis://127.0.0.1/db0"])
def test_a_redis_url_whose_path_is_not_a_database_number_is_refused(monkeypatch, raw):
    with pytest.raises(ImproperlyConfigured, match=f"{VAR} must end with a database number like /0"):
        redis_url_from(monkeypatch, raw)


@pytest.mark.parametrize("raw", ["redis://:s3cr/et@127.0.0.1:6379/0", "redis://user:s3cr/et@127.0.0.1:6379/0"])
def test_a_redis_url_cut_short_by_a_slash_in_its_password_says_to_encode_it(monkeypatch, raw):
    with pytest.raises(ImproperlyConfigured, match="must be percent-encoded") as refused:
        redis_url_from(monkeypatch, raw)

    assert "s3cr" not in str(refused.value) and "et@" not in str(refused.value)


@pytest.mark.parametrize("raw", ["redis://127.0.0.1:6379", "redis://127.0.0.1:6379/", "redis://cache.example/15",
                                 "redis://[::1]:6379/3", "redis://:pass%2Fword@127.0.0.1:65535/0",
                                 "rediss://cache.example:6380/1?ssl_cert_reqs=required", "unix:///run/redis.sock?db=2"])
def test_redis_urls_with_or_without_a_port_and_a_database_number_are_taken(monkeypatch, raw):
    assert redis_url_from(monkeypatch, raw) == raw


@pytest.mark.parametrize("name", ["REDIS_URL", "CACHE_URL", "CELERY_BROKER_URL"])
def test_a_redis_url_with_a_bad_port_stops_the_process_without_showing_its_password(name):
    # It used to pass: every login was then a 500 and `check --deploy` a traceback.
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"], capture_output=True, text=True,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "plantsite.settings.local",
             name: "redis://:hunter2@127.0.0.1:abc/11"})

    assert result.returncode != 0
    assert f"ImproperlyConfigured: {name} has a host or port that cannot be read" in result.stderr
    assert "hunter2" not in result.stderr


# --- hosts and origins -----------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["plants.example.org plants2.example.org", "https://plants.example.org",
                                 "plants.example.org/", "plants.example.org:8000", "[::1]:8000",
                                 "localhost,plants .example.org"])
def test_allowed_hosts_that_no_host_header_could_match_are_refused(monkeypatch, raw):
    monkeypatch.setenv(VAR, raw)

    with pytest.raises(ImproperlyConfigured, match=f"{VAR} has .*: it takes comma-separated host names like "
                                                   "plants.example.org"):
        env_hosts(VAR)


def test_allowed_hosts_take_names_subdomain_patterns_and_addresses(monkeypatch):
    monkeypatch.setenv(VAR, "plants.example.org, .example.net,127.0.0.1,[::1],*")

    assert env_hosts(VAR) == ["plants.example.org", ".example.net", "127.0.0.1", "[::1]", "*"]


def test_production_refuses_to_start_with_space_separated_allowed_hosts():
    result = run_with_production_settings(SETUP, SECRET_KEY=STRONG_SECRET_KEY,
                                          ALLOWED_HOSTS="plants.example.org www.example.org")

    assert result.returncode != 0
    assert ("ImproperlyConfigured: ALLOWED_HOSTS has 'plants.example.org www.example.org': it takes "
            "comma-separated host names like plants.example.org") in result.stderr


@pytest.mark.parametrize("raw", ["plants.example.org", "https://plants.example.org/", "ftp://plants.example.org",
                                 "https://", "https://plants.example.org/login/"])
def test_a_trusted_origin_without_its_scheme_or_with_a_path_is_refused(monkeypatch, raw):
    monkeypatch.setenv(VAR, raw)

    with pytest.raises(ImproperlyConfigured, match=f"{VAR} has .*: each entry must start with https://"):
        env_origins(VAR)


def test_csrf_trusted_origins_are_read_from_the_environment():
    code = "import django; django.setup(); from django.conf import settings; print(settings.CSRF_TRUSTED_ORIGINS)"
    result = run_with_production_settings(code, SECRET_KEY=STRONG_SECRET_KEY, ALLOWED_HOSTS="plants.example.org",
                                          CSRF_TRUSTED_ORIGINS="https://plants.example.org, http://localhost:8000")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['https://plants.example.org', 'http://localhost:8000']"


def test_no_other_origin_is_trusted_by_default():
    assert settings.CSRF_TRUSTED_ORIGINS == []


# --- production over plain HTTP ----------------------------------------------------------------

PLAIN_HTTP_STATUSES = """
import django; django.setup()
from django.http import HttpResponse
from django.middleware.security import SecurityMiddleware
from django.test import RequestFactory
middleware = SecurityMiddleware(lambda request: HttpResponse("ok"))
for path, proto in (("/healthz", "http"), ("/", "http"), ("/healthz/more", "http"), ("/", "https")):
    request = RequestFactory().get(path, HTTP_HOST="plants.example.org", HTTP_X_FORWARDED_PROTO=proto)
    print(path, proto, middleware(request).status_code)
"""


def test_production_answers_the_health_check_over_plain_http_and_redirects_the_rest():
    # A load balancer checks /healthz over HTTP: redirected to HTTPS, it only ever saw a 301.
    result = run_with_production_settings(PLAIN_HTTP_STATUSES, SECRET_KEY=STRONG_SECRET_KEY,
                                          ALLOWED_HOSTS="plants.example.org")

    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:4] == ["/healthz http 200", "/ http 301", "/healthz/more http 301",
                                             "/ https 200"]


# --- durations and the beat schedule ---------------------------------------------------------


@pytest.mark.parametrize("name, raw, message", [
    ("REVIEW_CLAIM_SECONDS", "100000000000", "REVIEW_CLAIM_SECONDS=100000000000 must be between 1 and 604800."),
    ("LABELLING_LEASE_SECONDS", "100000000000", "LABELLING_LEASE_SECONDS=100000000000 must be between 1 and 604800."),
    ("LOGIN_FAILURE_WINDOW", "604801", "LOGIN_FAILURE_WINDOW=604801 must be between 1 and 604800."),
    ("TRAINING_HARD_TIME_LIMIT", "604801", "TRAINING_HARD_TIME_LIMIT=604801 must be between 60 and 604800."),
    ("PHOTO_UPDATES_MAX_WAIT", "1e6", "PHOTO_UPDATES_MAX_WAIT=1000000.0 must be between 0.0 and 300.0."),
])
def test_a_duration_too_long_to_add_to_a_date_stops_the_process_naming_it(name, raw, message):
    # A huge claim or lease overflowed the date arithmetic: every claim, or every labelling page, a 500.
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"], capture_output=True, text=True,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "plantsite.settings.local", name: raw})

    assert result.returncode != 0
    assert message in result.stderr


def test_every_beat_entry_expires_by_the_time_the_next_one_is_sent():
    # With the workers down for an hour, unexpiring sweeps piled up in the queue and all ran.
    from plantsite.celery import app

    schedule = app.conf.beat_schedule
    assert schedule
    for name, entry in schedule.items():
        assert 0 < entry["options"]["expires"] <= entry["schedule"], name


def test_the_local_setup_serves_its_static_files_with_debug_off_and_no_collectstatic(tmp_path):
    # STATIC_ROOT is pointed at an empty folder (as before any collectstatic) before the first
    # request builds WhiteNoise: the file must come from static/ itself.
    code = ("import django; django.setup(); from django.conf import settings; "
            f"settings.STATIC_ROOT = {str(tmp_path)!r}; from django.test import Client; "
            "r = Client(HTTP_HOST='localhost').get('/static/plantsite.js'); "
            "print(r.status_code, b''.join(r.streaming_content)[:200].decode() if r.streaming else '')")
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR") if k in os.environ}
    env.update(DJANGO_SETTINGS_MODULE="plantsite.settings.local", DEBUG="0")
    result = subprocess.run([sys.executable, "-c", code], cwd=settings.BASE_DIR, env=env,
                            capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("200 "), result.stdout
