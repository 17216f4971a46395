"""An inference worker process loads the active (and shadow) model as soon as it starts."""

import pytest

from classifier.inference import model_cache
from classifier.services import model_cache_warm_up


@pytest.fixture(autouse=True)
def _empty_cache():
    model_cache.clear()
    yield
    model_cache.clear()


@pytest.mark.django_db(transaction=True)
def test_the_active_version_is_in_the_cache_after_the_warm_up(active_model, monkeypatch):
    assert model_cache_warm_up() == [active_model.id]

    loads = []
    monkeypatch.setattr(model_cache, "_load", lambda *args: loads.append(args))
    model_cache.get(active_model.id, active_model.path, active_model.sha256)
    assert loads == []  # the first photo finds it loaded


@pytest.mark.django_db(transaction=True)
def test_the_shadow_version_is_warmed_up_too(active_model, settings):
    from tests.factories import ModelVersionFactory

    shadow = ModelVersionFactory(file=active_model.file, sha256=active_model.sha256, labels=active_model.labels,
                                 is_shadow=True)

    assert model_cache_warm_up() == [active_model.id, shadow.id]


@pytest.mark.django_db(transaction=True)
def test_without_an_active_model_there_is_nothing_to_warm_up():
    assert model_cache_warm_up() == []


@pytest.mark.django_db(transaction=True)
def test_a_model_that_cannot_be_loaded_is_logged_and_left_to_the_first_task(active_model, caplog):
    active_model.path.write_bytes(b"tampered")

    assert model_cache_warm_up() == []
    assert "Could not warm up the model cache" in caplog.text
