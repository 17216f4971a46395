"""Inference workers keep their database connection between tasks (a new PostgreSQL backend per
photo cost more than the photo), and drop it when it breaks, as Django does per request."""

import time
from types import SimpleNamespace

import psycopg
import pytest
from django.db import connection

from plantsite.celery import _close_old_database_connections, app

A_TASK = SimpleNamespace(request=SimpleNamespace(is_eager=False))


@pytest.fixture
def kept_connection():
    """The default connection, opened with CONN_MAX_AGE = 60 as production has it."""
    before = connection.settings_dict["CONN_MAX_AGE"]
    connection.close()
    connection.settings_dict["CONN_MAX_AGE"] = 60
    connection.ensure_connection()
    yield connection
    connection.settings_dict["CONN_MAX_AGE"] = before
    connection.close()


def test_celerys_django_fixup_is_told_not_to_close_the_connection_after_every_task():
    assert app.conf.get("CELERY_DB_REUSE_MAX", 0) >= 100


@pytest.mark.django_db(transaction=True)
def test_a_healthy_connection_is_kept_from_one_task_to_the_next(kept_connection):
    backend = kept_connection.connection

    _close_old_database_connections(task=A_TASK)
    _close_old_database_connections(task=A_TASK)

    assert kept_connection.connection is backend


@pytest.mark.django_db(transaction=True)
def test_a_connection_older_than_conn_max_age_is_closed(kept_connection):
    kept_connection.close_at = time.monotonic() - 1

    _close_old_database_connections(task=A_TASK)

    assert kept_connection.connection is None


@pytest.mark.django_db(transaction=True)
def test_a_connection_the_database_dropped_is_replaced_before_the_next_task(kept_connection):
    pid = kept_connection.connection.info.backend_pid
    dsn = kept_connection.connection.info.dsn
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    kept_connection.errors_occurred = True  # what Django records when a query fails on it

    _close_old_database_connections(task=A_TASK)

    assert kept_connection.connection is None
    with kept_connection.cursor() as cursor:  # the next task gets a working one
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)


@pytest.mark.django_db
def test_a_task_run_eagerly_leaves_the_callers_connection_and_transaction_alone():
    backend = connection.connection

    _close_old_database_connections(task=SimpleNamespace(request=SimpleNamespace(is_eager=True)))

    assert connection.connection is backend and connection.in_atomic_block
