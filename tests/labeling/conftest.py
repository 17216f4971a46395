"""Fixtures shared by the review and webhook tests. A test module's own `labels` fixture, where
it has one, takes precedence over this one."""

import pytest

from tests.factories import LabelFactory, PredictionFactory


@pytest.fixture
def labels(db):
    return {name: LabelFactory(name=name) for name in ("monstera", "spider_plant")}


@pytest.fixture
def waiting_photo(member, labels):
    """A member's photo the model was unsure about, waiting for an expert."""
    return PredictionFactory(photo__owner=member, label=labels["monstera"]).photo
