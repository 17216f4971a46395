import pytest
from rest_framework.test import APIClient

from .factories import UserFactory


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Rate-limit counters start from zero in every test."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    """Every test writes photos and models into its own temporary folder."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.MODEL_ROOT = tmp_path / "media" / "models"
    settings.MEDIA_ROOT.mkdir()
    return settings.MEDIA_ROOT


@pytest.fixture
def member(db):
    return UserFactory(username="member")


@pytest.fixture
def other_member(db):
    return UserFactory(username="other")


@pytest.fixture
def expert(db):
    return UserFactory(username="expert", expert=True)


@pytest.fixture
def staff(db):
    return UserFactory(username="staff", is_staff=True)


def _client_for(user):
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


@pytest.fixture
def api_for():
    return _client_for


@pytest.fixture(scope="session")
def tiny_model_file(tmp_path_factory):
    """A real exported learner, trained once per test session on a few generated images.

    Small (32 px, one epoch, no pretrained weights) so that it takes seconds on a CPU; what it
    predicts is not the point, that it goes through the real training and export is.
    """
    from classifier.demo_images import generate_dataset
    from classifier.training import TrainingOptions, train

    root = tmp_path_factory.mktemp("tiny-model")
    items = generate_dataset(root / "data", per_label=6, size=64, seed=1)
    rows = [(str(path), label, i % 3 == 0) for i, (path, label) in enumerate(items)]
    export = root / "tiny.pkl"
    train(rows, TrainingOptions(image_size=32, epochs=1, batch_size=8, pretrained=False), export)
    return export


@pytest.fixture
def active_model(db, settings, tiny_model_file):
    """The tiny learner registered and activated as it would be after a training run."""
    import shutil

    from classifier.inference import file_sha256, model_cache
    from classifier.models import ModelVersion
    from labeling.models import Label

    settings.MODEL_ROOT.mkdir(parents=True, exist_ok=True)
    shutil.copy(tiny_model_file, settings.MODEL_ROOT / "tiny.pkl")
    labels = ["dieffenbachia", "monstera", "spider_plant"]
    for name in labels:
        Label.objects.get_or_create(name=name)
    model_cache.clear()
    version = ModelVersion.objects.create(
        file="tiny.pkl", sha256=file_sha256(tiny_model_file), size=tiny_model_file.stat().st_size,
        labels=labels, architecture="resnet18", image_size=32, is_active=True,
        metrics={"error_rate": 0.5, "per_label": {}, "confusion_matrix": []},
    )
    yield version
    model_cache.clear()
