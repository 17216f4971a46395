"""The training page says what a run started now would bring against the active version: the
photos it would train on against those of the active version's run, and what people found of
that version's answers here, so that an admin can tell whether retraining is worth it."""
import pytest
from django.test import Client

from classifier.selectors import since_active_version
from labeling.models import Photo
from tests.factories import LabelFactory, ModelVersionFactory, PhotoFactory, PredictionFactory, TrainingRunFactory


def _verified(label, **fields):
    return PhotoFactory(status=Photo.Status.FINAL, final_label=label, label_source=Photo.LabelSource.IMPORT,
                        decided_by=Photo.DecidedBy.IMPORT, **fields)


@pytest.fixture
def active(db):
    """The active version's run trained on two monstera and a fern; since then the fern was
    deleted, one monstera relabelled fern, a fern and a monstera added, and a model-labelled
    photo (not training data) appeared. People decided two of its predictions and changed one;
    one of its photos was unfamiliar."""
    monstera, fern = LabelFactory(name="monstera"), LabelFactory(name="fern")
    kept, relabelled, gone = _verified(monstera), _verified(monstera), _verified(fern)
    run = TrainingRunFactory(data=[[kept.id, "monstera", False], [relabelled.id, "monstera", False],
                                   [gone.id, "fern", True]], metrics={"include_model_labels": False})
    version = ModelVersionFactory(is_active=True, training_run=run)
    gone.delete()
    Photo.objects.filter(id=relabelled.id).update(final_label=fern, label_source=Photo.LabelSource.EXPERT)
    _verified(fern), _verified(monstera)
    PhotoFactory(status=Photo.Status.FINAL, final_label=monstera, label_source=Photo.LabelSource.MODEL,
                 decided_by=Photo.DecidedBy.MODEL)
    for said, decided in (("monstera", monstera), ("monstera", fern)):
        PredictionFactory(model_version=version, label=monstera, photo=PhotoFactory(
            status=Photo.Status.FINAL, final_label=decided, decided_by=Photo.DecidedBy.EXPERT,
            review_kind=Photo.ReviewKind.UNCERTAIN, label_source=Photo.LabelSource.EXPERT))
    PredictionFactory(model_version=version, familiarity=0.2, familiarity_cutoff=0.5)
    return version


def test_it_compares_what_a_run_would_take_now_with_the_active_versions_run_and_counts_peoples_work(active):
    since = since_active_version()

    changes = since.changes
    # Now: kept, relabelled (fern), the two added, and the two photos people decided.
    assert (changes.added, changes.removed, changes.relabelled) == (4, 1, 1)
    assert changes.per_label == [("fern", 3, 2), ("monstera", 3, 1)]
    assert (since.decided, since.changed, since.unfamiliar) == (2, 1, 1)


def test_the_training_page_shows_it(active, staff):
    client = Client()
    client.force_login(staff)

    page = client.get("/training/").content.decode()

    card = page.split('id="since-active"')[1].split("</div>")[0]
    assert f'against those of the active version\'s <a href="/training/{active.training_run_id}/">run' in card
    assert "4 photos added, 1 gone, 1 relabelled." in card
    assert "people decided 2 of version" in card and "and changed\n    1; 1 of its photos" in card


def test_without_an_active_version_trained_here_there_is_nothing_to_compare(db, staff):
    ModelVersionFactory(is_active=True)  # registered, not trained here
    client = Client()
    client.force_login(staff)

    assert since_active_version() is None
    assert 'id="since-active"' not in client.get("/training/").content.decode()
