"""Every operation of the published OpenAPI schema, fuzzed by Schemathesis: whatever a client
sends, the API answers with a client error at worst, never a 500.

The schema is the one the site serves at /api/schema/, loaded through the WSGI application, so
the requests run in-process against the test database. Each operation gets a bounded,
reproducible number of generated requests (derandomised), sent with the token of a staff user,
of an expert and of a member in turn: each role reaches its own code paths (a member's 404s and
403s, the owner filters).
Operations with an `{id}` are sent a second time with the id of a real row, so that detail
endpoints get past the 404 and into their real code paths. Nothing reaches the broker.
"""

import re
from dataclasses import dataclass
from unittest import mock

import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from django.urls import URLResolver, get_resolver
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error

from labeling.models import Photo
from plantsite.wsgi import application
from tests.factories import (
    LabelFactory,
    ModelVersionFactory,
    PhotoFactory,
    PredictionFactory,
    TrainingRunFactory,
    UserFactory,
)

schema = schemathesis.openapi.from_wsgi("/api/schema/", application)

EXAMPLES_PER_OPERATION = 15


@dataclass
class Rows:
    tokens: dict  # role -> token key
    photo_id: int
    training_run_id: int
    model_version_id: int

    def real_id_for(self, path: str) -> int | None:
        """The id of a row that the operation at `path` can find."""
        if path.startswith("/api/v1/photos/"):
            return self.photo_id
        if path.startswith("/api/v1/training-runs/"):
            return self.training_run_id
        if path.startswith("/api/v1/models/"):
            return self.model_version_id
        return None


@pytest.fixture
def rows(db):
    """A staff user with a token, a member's photo awaiting review with a prediction, labels,
    a finished training run with its model version, and a queued run that can be cancelled."""
    staff = UserFactory(username="schema-staff", is_staff=True)
    expert = UserFactory(username="schema-expert", expert=True)
    member = UserFactory(username="schema-member")
    LabelFactory(name="monstera")
    LabelFactory(name="spider_plant")
    run = TrainingRunFactory(started_by=staff)
    version = ModelVersionFactory(training_run=run)
    photo = PhotoFactory(owner=member, status=Photo.Status.NEEDS_REVIEW)
    PredictionFactory(photo=photo, model_version=version)
    PhotoFactory(owner=staff)
    tokens = {user.username.removeprefix("schema-"): Token.objects.create(user=user).key
              for user in (staff, expert, member)}
    return Rows(tokens=tokens, photo_id=photo.id, training_run_id=run.id, model_version_id=version.id)


@pytest.fixture(autouse=True)
def requests_keep_the_test_transaction():
    """Django closes the database connection when a WSGI request ends, which would end the
    test's transaction; its own test client disconnects that handler the same way."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture(autouse=True)
def nothing_is_sent_to_the_broker():
    with mock.patch("labeling.tasks.photo_predict_task.delay") as predict, \
            mock.patch("classifier.services._enqueue_training") as train:
        yield predict, train


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@pytest.mark.parametrize("role", ["staff", "expert", "member"])
def test_no_api_operation_answers_a_server_error_whatever_it_is_sent(case, rows, role):
    headers = {"Authorization": f"Token {rows.tokens[role]}"}

    case.call_and_validate(headers=headers, checks=[not_a_server_error])

    real_id = rows.real_id_for(case.path)
    if case.path_parameters and "id" in case.path_parameters and real_id is not None:
        case.path_parameters["id"] = real_id
        case.call_and_validate(headers=headers, checks=[not_a_server_error])


def _api_routes(patterns, prefix=""):
    """Every route of the URLconf under /api/v1/, with each path parameter written as {}."""
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            yield from _api_routes(pattern.url_patterns, route)
        elif route.startswith("api/v1/"):
            yield "/" + re.sub(r"<[^>]+>", "{}", route)


def test_the_schema_documents_every_api_route_so_every_one_is_fuzzed():
    documented = {re.sub(r"\{[^}]+\}", "{}", op.ok().path) for op in schema.get_all_operations()}

    routes = set(_api_routes(get_resolver().url_patterns))

    assert routes == documented
    assert {"/api/v1/auth/token/", "/api/v1/photos/", "/api/v1/photos/{}/", "/api/v1/review-queue/", "/api/v1/training-runs/{}/cancel/",
            "/api/v1/models/{}/activate/"} <= documented
