"""The book's interp.most_confused, from a version's confusion matrix, on the models page."""

import pytest
from django.test import Client

from tests.factories import ModelVersionFactory

LABELS = ["dieffenbachia", "monstera", "spider_plant"]


@pytest.fixture
def version(db):
    # Rows: what each photo was; columns: what the model said.
    return ModelVersionFactory(labels=LABELS, metrics={"error_rate": 0.3, "confusion_matrix": [
        [5, 1, 0],
        [3, 6, 1],
        [0, 1, 4],
    ]})


def test_the_pairs_mixed_up_most_come_first_and_ties_by_name(version):
    assert version.most_confused() == [("monstera", "dieffenbachia", 3), ("dieffenbachia", "monstera", 1),
                                       ("monstera", "spider_plant", 1), ("spider_plant", "monstera", 1)]
    assert version.most_confused(limit=1) == [("monstera", "dieffenbachia", 3)]


def test_a_version_without_a_matrix_or_mistakes_has_no_pairs(db):
    assert ModelVersionFactory(labels=LABELS, metrics={}).most_confused() == []
    perfect = ModelVersionFactory(labels=LABELS[:2], metrics={"confusion_matrix": [[2, 0], [0, 3]]})
    assert perfect.most_confused() == []


def test_the_models_page_lists_them(version, member):
    client = Client()
    client.force_login(member)

    page = client.get("/models/").content.decode()

    assert "Most confused (actual → predicted, validation photos):" in page
    assert "monstera → dieffenbachia 3 · dieffenbachia → monstera 1" in page
