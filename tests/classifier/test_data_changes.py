"""A training run's page says how its data differs from the run before it that succeeded:
photos added, gone and relabelled, and each label's count with its change."""

from datetime import timedelta

from django.test import Client
from django.utils import timezone

from classifier.evaluation import data_changes
from classifier.models import TrainingRun
from tests.factories import TrainingRunFactory

BEFORE = [[1, "monstera", False], [2, "monstera", True], [3, "fern", False], [4, "fern", False]]
NOW = [[1, "monstera", False], [2, "fern", True], [4, "fern", False], [5, "cactus", False], [6, "monstera", False]]


def test_added_gone_and_relabelled_photos_and_each_labels_change_are_counted(db):
    previous = TrainingRunFactory(data=BEFORE)

    changes = data_changes(NOW, previous)

    assert (changes.previous_run_id, changes.added, changes.removed, changes.relabelled) == (previous.id, 2, 1, 1)
    assert changes.per_label == [("cactus", 1, 1), ("fern", 2, 0), ("monstera", 2, 0)]


def test_a_label_no_longer_trained_on_shows_with_none_left(db):
    changes = data_changes([[1, "monstera", False]], TrainingRunFactory(data=BEFORE))

    assert ("fern", 0, -2) in changes.per_label and changes.removed == 3


def _run(data, status=TrainingRun.Status.SUCCEEDED, days_ago=0):
    return TrainingRunFactory(data=data, status=status, created_at=timezone.now() - timedelta(days=days_ago))


def test_the_run_page_compares_with_the_last_run_before_it_that_succeeded(staff):
    older = _run(BEFORE, days_ago=3)
    _run([[9, "cactus", False]], status=TrainingRun.Status.FAILED, days_ago=2)
    run = _run(NOW, days_ago=1)
    later = _run(BEFORE)
    client = Client()
    client.force_login(staff)

    page = client.get(f"/training/{run.id}/").content.decode()
    first = client.get(f"/training/{older.id}/").content.decode()

    assert f'Since <a href="/training/{older.id}/">run {older.id}</a>:' in page
    assert "2 photos added, 1 gone, 1 relabelled." in page
    assert "Per label: cactus 1 (+1) · fern 2 (0) · monstera 2 (0)." in page
    assert 'data-role="data-changes"' not in first  # nothing before it
    assert f"run {run.id}</a>" in client.get(f"/training/{later.id}/").content.decode()
