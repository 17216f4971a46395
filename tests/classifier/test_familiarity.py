"""Photos unlike anything the model learned from: the worker compares each photo's features with
the training photos' (the nearest one's cosine similarity), against a cut-off set from the
validation photos, and sends an unfamiliar photo to an expert however sure the model is."""
import io
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from classifier import similar
from classifier.demo_images import generate_image
from classifier.familiarity import RESOLUTION, Familiarity, nearest_similarities, similarity_bin, summarise
from labeling import services
from labeling.models import Photo, Prediction


# --- the bins and the cut-off ---------------------------------------------------------------


def test_a_similarity_at_a_bins_edge_is_in_that_bin_and_just_below_it_in_the_one_before():
    for k in range(-RESOLUTION, RESOLUTION + 1):
        edge = k / RESOLUTION
        assert similarity_bin(edge) == k
        assert similarity_bin(math.nextafter(edge, -math.inf)) == k - 1
        # What the worker compares: a photo at the edge is not below a cut-off there, one just under is.
        assert not edge < k / RESOLUTION and math.nextafter(edge, -math.inf) < k / RESOLUTION


@given(st.lists(st.integers(min_value=-1000, max_value=1000), min_size=1, max_size=300),
       st.sampled_from([0.0, 0.01, 0.05, 0.2, 0.5]))
def test_the_cutoff_flags_at_most_the_share_of_validation_photos_and_is_the_highest_that_does(ks, share):
    bins = {}
    for k in ks:
        bins[k] = bins.get(k, 0) + 1
    familiarity = Familiarity(photos=len(ks), bins=tuple(sorted(bins.items())))

    cutoff = familiarity.cutoff(share)

    allowed = math.floor(share * len(ks) + 1e-9)
    assert familiarity.below(cutoff) == sum(1 for k in ks if k / RESOLUTION < cutoff) <= allowed
    # The next bin edge up would flag more than the share.
    assert familiarity.below(cutoff + 1 / RESOLUTION) > allowed or cutoff == max(ks) / RESOLUTION


def test_with_fewer_validation_photos_than_the_share_needs_only_a_photo_below_all_of_them_is_unfamiliar():
    familiarity = Familiarity(photos=50, bins=((612, 1), (700, 9), (810, 40)))

    assert familiarity.cutoff(0.01) == 0.612 and familiarity.below(0.612) == 0
    assert familiarity.cutoff(0.02) == 0.7 and familiarity.below(0.7) == 1
    assert familiarity.quantile(0.5) == 0.81


def test_a_validation_photo_is_compared_with_the_training_photos_only():
    rng = np.random.default_rng(0)
    training = rng.normal(size=(6, 8))
    training /= np.linalg.norm(training, axis=1, keepdims=True)
    # Two validation photos identical to each other, each a mix of two training photos.
    mixed = training[0] + training[1]
    validation = np.stack([mixed, mixed]) / np.linalg.norm(mixed)
    vectors = np.concatenate([training, validation]).astype(np.float16)

    summary = summarise(vectors, [False] * 6 + [True, True])

    expected = nearest_similarities(validation.astype(np.float16), training.astype(np.float16))
    assert summary == {"photos": 2, "bins": [[similarity_bin(float(expected[0])), 2]]}
    assert expected[0] < 0.99  # not 1: the other validation photo is not a reference


def test_without_both_splits_there_is_nothing_to_measure():
    vectors = np.eye(3, dtype=np.float16)

    assert summarise(vectors, [False, False, False]) is None
    assert summarise(vectors, [True, True, True]) is None


# --- the fast path gives the features ---------------------------------------------------------


@pytest.fixture
def images(tmp_path):
    """Generated plants of several sizes, and a photo of noise."""
    paths = []
    for i, (label, size) in enumerate([("monstera", 64), ("spider_plant", 90), ("dieffenbachia", 48)]):
        paths.append(tmp_path / f"{i}.jpg")
        generate_image(label, seed=40 + i, size=size).save(paths[-1])
    paths.append(tmp_path / "noise.png")
    _noise().save(paths[-1])
    return paths


@pytest.mark.parametrize("backend", ["onnxruntime", "torchscript", "eager"])
def test_every_backend_gives_the_features_training_computes(tiny_model_file, images, backend):
    import torch
    from fastai.learner import load_learner

    from classifier.fastpath import FastPredictor

    learn = load_learner(tiny_model_file, cpu=True)
    predictor = FastPredictor.from_learner(load_learner(tiny_model_file, cpu=True), backend=backend)

    probabilities, features = predictor.predict_paths_with_features([str(p) for p in images])

    assert predictor.backend == backend and predictor.gives_features
    with torch.inference_mode():
        expected = similar.embed_learner_rows(learn, images).astype(np.float32)
    assert features.shape == expected.shape
    assert np.abs(features - expected).max() < 2e-3  # float16 as kept; same within its rounding
    assert np.allclose(probabilities, predictor.predict_paths([str(p) for p in images]), atol=1e-6)


def test_a_model_that_is_not_a_body_and_a_head_gives_probabilities_without_features(tiny_model_file, images):
    import torch
    from fastai.learner import load_learner

    from classifier.fastpath import FastPredictor

    learn = load_learner(tiny_model_file, cpu=True)
    learn.model = torch.nn.Sequential(*learn.model[0], *learn.model[1])  # flattened: no body to take

    predictor = FastPredictor.from_learner(learn)
    probabilities, features = predictor.predict_paths_with_features([str(p) for p in images])

    assert features is None and not predictor.gives_features and probabilities.shape[0] == len(images)
    assert any("no features" in note for note in predictor.notes)


# --- the worker ---------------------------------------------------------------------------------


@pytest.fixture
def active(trained_here_model):
    return trained_here_model


def _jpeg(image):
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    buffer.seek(0)
    return buffer


def _noise(seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (64, 64, 3), dtype=np.uint8))


def _predicted(owner, image):
    photo = services.photo_upload(owner=owner, fileobj=_jpeg(image))
    return services.photo_predict(photo.id)


def _with_cutoff_at(version, similarity):
    """The version's validation photos set so that the cut-off at UNFAMILIAR_SHARE falls at
    `similarity`'s thousandth: what a model whose features tell photos apart would have measured."""
    version.metrics["familiarity"] = {"photos": 100, "bins": [[similarity_bin(similarity), 100]]}
    version.save(update_fields=["metrics"])


def test_a_training_photo_uploaded_again_is_as_like_the_training_photos_as_itself(active, member):
    photo_id = next(pid for pid, _, valid in active.training_run.data if not valid)
    with open(Photo.objects.get(id=photo_id).model_input_path, "rb") as fh:
        again = services.photo_upload(owner=member, fileobj=io.BytesIO(fh.read()))

    prediction = services.photo_predict(again.id).prediction

    # The worker's features (its fast path) are the ones training kept (fastai's), to float16.
    assert prediction.familiarity > 0.999
    assert prediction.familiarity_cutoff == active.familiarity().cutoff(0.01)


def test_a_confident_answer_for_a_photo_below_the_cutoff_goes_to_an_expert_and_one_above_is_saved(active, member):
    measured = {name: _predicted(member, image).prediction.familiarity
                for name, image in [("plant", generate_image("monstera", seed=500, size=64)), ("noise", _noise())]}
    lower, higher = sorted(measured, key=measured.get)
    _with_cutoff_at(active, (measured[lower] + measured[higher]) / 2)
    assert similarity_bin(measured[lower]) < similarity_bin(measured[higher])  # a thousandth apart at least

    below = _predicted(member, generate_image("monstera", seed=500, size=64) if lower == "plant" else _noise())
    above = _predicted(member, generate_image("monstera", seed=500, size=64) if higher == "plant" else _noise())

    assert below.status == Photo.Status.NEEDS_REVIEW and below.prediction.unfamiliar
    assert below.prediction.familiarity == pytest.approx(measured[lower], abs=1e-6)
    assert below.reason.startswith("The photo looks unlike the photos the model learned from (similarity ")
    assert f"below the cut-off of {below.prediction.familiarity_cutoff:.3f}" in below.reason
    assert above.status == Photo.Status.FINAL and not above.prediction.unfamiliar


def test_unfamiliar_photos_are_never_drawn_for_an_audit(active, member, settings):
    settings.AUDIT_FRACTION = 1.0
    _with_cutoff_at(active, 1.0)  # every photo unfamiliar

    photo = _predicted(member, _noise())

    assert photo.review_kind == Photo.ReviewKind.UNCERTAIN and photo.prediction.unfamiliar


def test_with_the_check_off_the_similarity_is_kept_and_nothing_is_routed_by_it(active, member, settings):
    settings.UNFAMILIAR_CHECK = False
    _with_cutoff_at(active, 1.0)

    photo = _predicted(member, _noise())

    assert photo.status == Photo.Status.FINAL
    assert photo.prediction.familiarity is not None and photo.prediction.familiarity_cutoff is None


def test_a_version_trained_before_familiarity_was_kept_predicts_without_the_check(active, member):
    del active.metrics["familiarity"]
    active.save(update_fields=["metrics"])

    photo = _predicted(member, _noise())

    assert photo.status == Photo.Status.FINAL
    assert (photo.prediction.familiarity, photo.prediction.familiarity_cutoff) == (None, None)


def test_an_unreadable_features_file_is_logged_and_the_photo_predicted_without_the_check(active, member, caplog):
    (active.path.parent / active.metrics["neighbours_npz"]).write_bytes(b"not an npz")
    similar._loaded.clear()

    photo = _predicted(member, _noise())

    assert photo.status == Photo.Status.FINAL and photo.prediction.familiarity is None
    assert f"Model version {active.id}: its kept features cannot be read" in caplog.text


def test_an_unmeasured_prediction_is_not_unfamiliar_in_a_query_nor_in_its_negation(db):
    from tests.factories import PredictionFactory

    unmeasured = PredictionFactory(familiarity=None, familiarity_cutoff=None)
    unchecked = PredictionFactory(familiarity=0.3, familiarity_cutoff=None)
    unfamiliar = PredictionFactory(familiarity=0.3, familiarity_cutoff=0.5)
    familiar = PredictionFactory(familiarity=0.7, familiarity_cutoff=0.5)

    assert list(Prediction.objects.filter(Prediction.unfamiliar_q())) == [unfamiliar]
    assert set(Prediction.objects.exclude(Prediction.unfamiliar_q())) == {unmeasured, unchecked, familiar}
    assert [p.unfamiliar for p in (unmeasured, unchecked, unfamiliar, familiar)] == [False, False, True, False]


def test_features_rewritten_under_the_same_name_are_read_again_without_a_restart(active, member):
    first = _predicted(member, _noise()).prediction.familiarity
    path = active.path.parent / active.metrics["neighbours_npz"]
    with np.load(path) as data:
        arrays = {name: data[name] for name in data.files}
    arrays["vectors"] = -arrays["vectors"]  # as complete_model_versions would, with other features
    similar.save(path, arrays["ids"], arrays["labels"], arrays["vectors"], arrays["valid"])

    again = _predicted(member, _noise()).prediction.familiarity

    assert again != pytest.approx(first, abs=1e-3)
