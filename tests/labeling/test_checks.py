"""The deploy check on the broker's Redis, against real redis-server processes of the test's own."""

import pytest
from django.core.checks import Warning
from django.core.checks.registry import registry

from labeling.checks import W_APPENDONLY, W_EVICTION, W_UNREACHABLE, W_UNREADABLE, broker_redis_is_durable


def ids(messages):
    return sorted(m.id for m in messages)


@pytest.fixture
def broker(settings):
    def use(url, *, require_durable=True):
        settings.CELERY_BROKER_URL = url
        settings.REDIS_REQUIRE_DURABLE = require_durable
        return broker_redis_is_durable()

    return use


def test_a_durable_redis_passes_the_check(broker, private_redis):
    assert broker(private_redis(appendonly="yes", maxmemory_policy="noeviction")) == []


def test_a_redis_without_append_only_persistence_gets_a_warning(broker, private_redis):
    messages = broker(private_redis(appendonly="no"))

    assert ids(messages) == [W_APPENDONLY]
    assert isinstance(messages[0], Warning)
    assert "appendonly no: a restart loses every queued task" in messages[0].msg
    assert "--appendonly yes --maxmemory-policy noeviction" in messages[0].hint


@pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-lru", "allkeys-random"])
def test_a_redis_that_may_evict_keys_gets_a_warning(broker, private_redis, policy):
    messages = broker(private_redis(maxmemory_policy=policy))

    assert ids(messages) == [W_EVICTION]
    assert f"maxmemory-policy {policy}" in messages[0].msg


def test_a_redis_with_neither_gets_both_warnings(broker, private_redis):
    assert ids(broker(private_redis(appendonly="no", maxmemory_policy="allkeys-lru"))) == [W_APPENDONLY, W_EVICTION]


def test_durability_is_not_checked_when_it_is_not_required(broker, private_redis):
    url = private_redis(appendonly="no", maxmemory_policy="allkeys-lru")

    assert broker(url, require_durable=False) == []


@pytest.mark.parametrize("require_durable", [True, False])
def test_a_broker_that_cannot_be_reached_gets_a_warning_either_way(broker, closed_port, require_durable):
    messages = broker(f"redis://127.0.0.1:{closed_port}/0", require_durable=require_durable)

    assert ids(messages) == [W_UNREACHABLE]
    assert f"127.0.0.1:{closed_port}" in messages[0].msg


def test_the_warning_never_shows_the_brokers_password(broker, closed_port):
    messages = broker(f"redis://:s3cret-pass@127.0.0.1:{closed_port}/0")

    assert "s3cret-pass" not in messages[0].msg
    assert f"redis://:***@127.0.0.1:{closed_port}/0" in messages[0].msg


def test_a_redis_that_hides_its_configuration_gets_a_warning(broker, private_redis):
    url = private_redis(extra=['rename-command CONFIG ""'])

    messages = broker(url)

    assert ids(messages) == [W_UNREADABLE]
    assert "Could not read the configuration" in messages[0].msg


def test_a_broker_that_is_not_redis_is_not_checked(broker):
    assert broker("amqp://guest@127.0.0.1:5672//") == []


def test_the_check_runs_only_with_deploy():
    assert broker_redis_is_durable in registry.get_checks(include_deployment_checks=True)
    assert broker_redis_is_durable not in registry.get_checks(include_deployment_checks=False)
