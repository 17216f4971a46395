"""The fast inference path gives learn.predict's answers: the same validation transforms, read
from the exported learner, and the same model; transforms it cannot reproduce are refused."""

import logging
import random
import shutil

import numpy as np
import pytest
from PIL import Image

from classifier.demo_images import generate_dataset
from classifier.fastpath import DRAFT_MIN_PIXELS, FastPredictor, UnsupportedLearner, load_image
from classifier.inference import ModelCache, file_sha256
from tests.paths import FLOWERS

TOLERANCE = 1e-4


def _load(path):
    from fastai.learner import load_learner

    learn = load_learner(path, cpu=True)
    learn.model.eval()
    return learn


def _reference(learn, paths):
    """What the fast.ai book's deployment does: learn.predict on one image at a time."""
    from fastai.vision.core import PILImage

    with learn.no_bar():
        return np.stack([learn.predict(PILImage.create(str(p)))[2].numpy() for p in paths])


def _assert_same_answers(expected, actual, paths):
    assert actual.shape == expected.shape
    top_expected, top_actual = expected.argmax(1), actual.argmax(1)
    mismatched = [str(p) for p, a, b in zip(paths, top_expected, top_actual) if a != b]
    assert not mismatched, f"top-1 differs on {mismatched}"
    diff = float(np.abs(expected - actual).max())
    # A saturated (one-hot) model would hide differences: the comparison must see real probabilities.
    assert expected.max(1).min() < 0.99
    assert diff <= TOLERANCE, f"max abs probability difference {diff:.2e} > {TOLERANCE}"
    return diff


def _train_export(folder, item_tfms, batch_tfms, *, seed=3):
    """A small learner from a test-only DataBlock, trained for one epoch and exported."""
    import pandas as pd
    from fastai.vision.all import (CategoryBlock, ColReader, ColSplitter, DataBlock, ImageBlock,
                                   resnet18, set_seed, vision_learner)

    items = generate_dataset(folder / "data", per_label=6, size=64, seed=seed)
    df = pd.DataFrame([(str(p), label, i % 3 == 0) for i, (p, label) in enumerate(items)],
                      columns=["path", "label", "is_valid"])
    set_seed(seed, reproducible=True)
    dblock = DataBlock(blocks=(ImageBlock, CategoryBlock), get_x=ColReader("path"), get_y=ColReader("label"),
                       splitter=ColSplitter("is_valid"), item_tfms=item_tfms, batch_tfms=batch_tfms)
    dls = dblock.dataloaders(df, bs=6, num_workers=0)
    learn = vision_learner(dls, resnet18, pretrained=False)
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(1, 2e-3)
    export = folder / "model.pkl"
    learn.export(export)
    return export


@pytest.fixture(scope="module")
def normalized_model_file(tmp_path_factory):
    """RandomResizedCrop + aug_transforms + Normalize (fastai adds Normalize only for pretrained
    models, and nothing pretrained can be downloaded here, so it is added by hand)."""
    from fastai.vision.all import Normalize, RandomResizedCrop, aug_transforms, imagenet_stats

    return _train_export(tmp_path_factory.mktemp("normalized"), RandomResizedCrop(48, min_scale=0.5),
                         [*aug_transforms(), Normalize.from_stats(*imagenet_stats, cuda=False)])


@pytest.fixture(scope="module")
def resize_model_file(tmp_path_factory):
    """Resize(size) item transforms (ResizeMethod.Crop, fastai's default)."""
    from fastai.vision.all import Resize, aug_transforms

    return _train_export(tmp_path_factory.mktemp("resize"), Resize(40), aug_transforms(), seed=4)


def test_fastai_does_not_add_normalize_without_pretrained_weights(tiny_model_file, normalized_model_file):
    from fastai.data.transforms import Normalize

    def has_normalize(path):
        return any(isinstance(t, Normalize) for t in _load(path).dls.valid.after_batch.fs)

    assert not has_normalize(tiny_model_file)  # the project's own training, pretrained=False
    assert has_normalize(normalized_model_file)


# --- images ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_photos():
    """About ten photos across the five classes, of different sizes and aspect ratios: per
    class the widest and the tallest. Read where they are, never copied into the repository."""
    chosen = []
    for label_dir in sorted(p for p in FLOWERS.iterdir() if p.is_dir()):
        files = sorted(label_dir.glob("*.jpg"))[:40]
        ratios = []
        for f in files:
            with Image.open(f) as im:
                ratios.append((im.width / im.height, f))
        ratios.sort()
        chosen += [ratios[0][1], ratios[-1][1]]
    return chosen


@pytest.fixture(scope="module")
def generated_images(tmp_path_factory):
    """Generated plants plus the awkward cases: grey, palette and RGBA files, an image smaller
    than the model's input, a panorama and a PNG."""
    folder = tmp_path_factory.mktemp("generated")
    paths = [p for p, _ in generate_dataset(folder / "plants", per_label=1, size=96, seed=11)]
    rng = np.random.default_rng(0)
    base = Image.fromarray(rng.integers(0, 256, (120, 200, 3), dtype=np.uint8)).resize((300, 180))
    cases = {
        "grey.jpg": base.convert("L"),
        "palette.png": base.convert("P", palette=Image.ADAPTIVE),
        "rgba.png": base.convert("RGBA"),
        "small.jpg": base.resize((23, 17)),
        "panorama.jpg": base.resize((640, 90)),
        "portrait.png": base.resize((90, 250)),
    }
    for name, im in cases.items():
        im.save(folder / name)
        paths.append(folder / name)
    return paths


@pytest.fixture(scope="module")
def all_images(real_photos, generated_images):
    return [*real_photos, *generated_images]


# --- the same answers as learn.predict ----------------------------------------------------------


@pytest.fixture(params=["tiny", "normalized", "resize"])
def model_file(request):
    name = {"tiny": "tiny_model_file", "normalized": "normalized_model_file", "resize": "resize_model_file"}
    return request.getfixturevalue(name[request.param])


def test_batch_of_one_matches_learn_predict_on_every_image(model_file, all_images):
    learn = _load(model_file)
    expected = _reference(learn, all_images)
    predictor = FastPredictor.from_learner(_load(model_file))

    actual = np.concatenate([predictor.predict_paths([str(p)]) for p in all_images])

    assert predictor.backend == "onnxruntime"  # the production default, on these resnets
    diff = _assert_same_answers(expected, actual, all_images)
    print(f"{model_file.parent.name}: batch of one, max abs diff {diff:.1e}")


@pytest.mark.parametrize("backend", ["onnxruntime", "torchscript", "eager"])
def test_batches_match_learn_predict(model_file, all_images, backend):
    learn = _load(model_file)
    expected = _reference(learn, all_images)
    predictor = FastPredictor.from_learner(_load(model_file), max_batch=7, backend=backend)  # one partial

    actual = predictor.predict_paths([str(p) for p in all_images])

    assert predictor.backend == backend
    diff = _assert_same_answers(expected, actual, all_images)
    print(f"{model_file.parent.name}: batches ({backend}), max abs diff {diff:.1e}")


def test_torchscript_is_used_when_onnx_export_fails(tiny_model_file, real_photos, monkeypatch):
    import torch

    def broken_export(*args, **kwargs):
        raise RuntimeError("export is not available")

    monkeypatch.setattr(torch.onnx, "export", broken_export)
    predictor = FastPredictor.from_learner(_load(tiny_model_file))

    assert predictor.backend == "torchscript"
    assert any("ONNX Runtime not used (RuntimeError: export is not available)" in n for n in predictor.notes)
    _assert_same_answers(_reference(_load(tiny_model_file), real_photos), predictor.predict_paths(real_photos),
                         real_photos)


def test_the_model_falls_back_to_eager_when_neither_export_nor_tracing_works(tiny_model_file, real_photos,
                                                                             monkeypatch):
    import torch

    def broken(*args, **kwargs):
        raise RuntimeError("not available")

    monkeypatch.setattr(torch.onnx, "export", broken)
    monkeypatch.setattr(torch.jit, "trace", broken)
    predictor = FastPredictor.from_learner(_load(tiny_model_file))

    assert predictor.backend == "eager" and predictor.model is predictor.eager_model
    assert any("TorchScript not used (RuntimeError: not available)" in n for n in predictor.notes)
    _assert_same_answers(_reference(_load(tiny_model_file), real_photos), predictor.predict_paths(real_photos),
                         real_photos)


def test_the_model_falls_back_to_eager_when_the_faster_backends_disagree(tiny_model_file, monkeypatch):
    import classifier.fastpath as fastpath

    monkeypatch.setattr(fastpath, "BACKEND_CHECK_TOLERANCE", -1.0)  # no backend can pass

    predictor = FastPredictor.from_learner(_load(tiny_model_file))

    assert predictor.backend == "eager"
    assert any("ONNX Runtime model differs from eager" in n for n in predictor.notes)
    assert any("frozen model differs from eager" in n for n in predictor.notes)


def test_an_unknown_backend_is_refused(tiny_model_file):
    with pytest.raises(ValueError, match="backend must be one of"):
        FastPredictor.from_learner(_load(tiny_model_file), backend="tensorrt")


def test_predict_takes_pil_images(tiny_model_file, real_photos):
    from fastai.vision.core import PILImage

    learn = _load(tiny_model_file)
    predictor = FastPredictor.from_learner(_load(tiny_model_file))

    actual = predictor.predict([PILImage.create(p) for p in real_photos])

    assert actual.dtype == np.float32 and actual.shape == (len(real_photos), len(predictor.vocab))
    _assert_same_answers(_reference(learn, real_photos), actual, real_photos)


def test_with_the_eager_model_and_fastais_identity_resample_a_batch_of_one_is_bit_identical(model_file,
                                                                                           all_images):
    # The transforms are reproduced exactly: what remains in the default path (< 1e-5) comes
    # from the frozen TorchScript model, batch sizes and the skipped identity grid_sample.
    learn = _load(model_file)
    expected = _reference(learn, all_images)
    predictor = FastPredictor.from_learner(_load(model_file), backend="eager", exact_resample=True)

    actual = np.concatenate([predictor.predict_paths([str(p)]) for p in all_images])

    assert np.array_equal(expected, actual), float(np.abs(expected - actual).max())


@pytest.mark.parametrize("method", ["squish", "pad"])
def test_the_other_resize_methods_match_learn_predict(resize_model_file, all_images, method):
    # The method only changes what the network is shown, so one trained model serves all three.
    def loaded():
        learn = _load(resize_model_file)
        (resize,) = [t for t in learn.dls.valid.after_item.fs if type(t).__name__ == "Resize"]
        resize.method = method
        return learn

    expected = _reference(loaded(), all_images)
    actual = FastPredictor.from_learner(loaded(), max_batch=5).predict_paths([str(p) for p in all_images])

    _assert_same_answers(expected, actual, all_images)


def test_the_model_cache_predicts_with_the_fast_path(tiny_model_file, tmp_path, all_images):
    copy = tmp_path / "m.pkl"
    shutil.copy(tiny_model_file, copy)
    loaded = ModelCache().get(1, copy, file_sha256(copy))
    expected = _reference(_load(tiny_model_file), all_images)

    assert isinstance(loaded.predictor, FastPredictor)
    predictions = loaded.predict_paths(all_images)

    assert [set(p) for p in predictions] == [set(loaded.labels)] * len(all_images)
    actual = np.array([[p[label] for label in loaded.labels] for p in predictions])
    _assert_same_answers(expected, actual, all_images)


def test_a_learner_the_fast_path_refuses_is_still_predicted_by_fastai(tiny_model_file, tmp_path, monkeypatch,
                                                                     real_photos, caplog):
    def refuse(learn, **kwargs):
        raise UnsupportedLearner("Item transform Something is not supported by the fast path.")

    monkeypatch.setattr(FastPredictor, "from_learner", staticmethod(refuse))
    copy = tmp_path / "m.pkl"
    shutil.copy(tiny_model_file, copy)

    with caplog.at_level(logging.WARNING, logger="classifier.inference"):
        loaded = ModelCache().get(3, copy, file_sha256(copy))

    assert loaded.predictor is None
    assert "Model version 3 is predicted with fastai's slower get_preds" in caplog.text
    predictions = loaded.predict_paths(real_photos[:3])
    actual = np.array([[p[label] for label in loaded.labels] for p in predictions])
    _assert_same_answers(_reference(_load(tiny_model_file), real_photos[:3]), actual, real_photos[:3])


# --- refusing what it cannot reproduce -----------------------------------------------------------


def _with_item_tfm(learn, tfm):
    from fastai.vision.all import Pipeline

    learn.dls.valid.after_item = Pipeline([*learn.dls.valid.after_item.fs, tfm], split_idx=1)
    return learn


def test_an_unknown_item_transform_is_refused(tiny_model_file):
    from fastai.vision.all import RandomCrop

    with pytest.raises(UnsupportedLearner, match="RandomCrop"):
        FastPredictor.from_learner(_with_item_tfm(_load(tiny_model_file), RandomCrop(16)))


def test_an_unknown_batch_transform_is_refused(tiny_model_file):
    from fastai.vision.all import Pipeline, RandomResizedCropGPU

    learn = _load(tiny_model_file)
    learn.dls.valid.after_batch = Pipeline([*learn.dls.valid.after_batch.fs, RandomResizedCropGPU(16)], split_idx=1)

    with pytest.raises(UnsupportedLearner, match="RandomResizedCropGPU"):
        FastPredictor.from_learner(learn)


def test_an_affine_transform_that_resizes_is_refused(tiny_model_file):
    from fastai.vision.all import Pipeline, aug_transforms

    learn = _load(tiny_model_file)
    learn.dls.valid.after_batch = Pipeline([*learn.dls.valid.after_batch.fs[:1], *aug_transforms(size=24)],
                                           split_idx=1)

    with pytest.raises(UnsupportedLearner, match="output size"):
        FastPredictor.from_learner(learn)


def test_a_training_only_transform_is_skipped_not_refused(tiny_model_file):
    from fastai.vision.all import Brightness, Pipeline

    learn = _load(tiny_model_file)
    learn.dls.valid.after_batch = Pipeline([*learn.dls.valid.after_batch.fs, Brightness(p=1.0)], split_idx=1)

    predictor = FastPredictor.from_learner(learn)

    assert "Brightness: training only, skipped" in predictor.notes


def test_another_loss_than_softmax_cross_entropy_is_refused(tiny_model_file):
    from fastai.losses import BCEWithLogitsLossFlat

    learn = _load(tiny_model_file)
    learn.loss_func = BCEWithLogitsLossFlat()

    with pytest.raises(UnsupportedLearner, match="CrossEntropyLossFlat"):
        FastPredictor.from_learner(learn)


def test_a_callback_that_could_change_predictions_is_refused(tiny_model_file):
    from fastai.callback.core import Callback

    class Tta(Callback):
        pass

    learn = _load(tiny_model_file)
    learn.add_cb(Tta())

    with pytest.raises(UnsupportedLearner, match="Tta"):
        FastPredictor.from_learner(learn)


# --- decoding -------------------------------------------------------------------------------------


def _upscaled_jpeg(source, target, megapixels=12.0):
    with Image.open(source) as im:
        im = im.convert("RGB")
        s = (megapixels * 1e6 / (im.width * im.height)) ** 0.5
        im.resize((round(im.width * s), round(im.height * s)), Image.BICUBIC).save(target, quality=92)
    return target


@pytest.fixture(scope="module")
def big_jpegs(real_photos, tmp_path_factory):
    folder = tmp_path_factory.mktemp("big")
    picks = random.Random(2).sample(real_photos, 2)
    return [_upscaled_jpeg(p, folder / f"big{i}.jpg") for i, p in enumerate(picks)]


def test_without_a_target_an_image_decodes_as_pil_image_create_does(real_photos, generated_images):
    from fastai.vision.core import PILImage

    for path in [*real_photos[:3], *generated_images]:
        ours, theirs = load_image(path), PILImage.create(path)
        assert ours.mode == "RGB" and ours.size == theirs.size
        assert np.array_equal(np.asarray(ours), np.asarray(theirs)), path


def test_photos_below_the_draft_threshold_decode_at_full_size(real_photos):
    for path in real_photos:
        with Image.open(path) as im:
            assert im.width * im.height < DRAFT_MIN_PIXELS
            size = im.size
        assert load_image(path, target=(40, 40)).size == size


def test_a_12_megapixel_jpeg_is_decoded_at_reduced_scale_but_never_below_the_target(big_jpegs):
    for path in big_jpegs:
        with Image.open(path) as im:
            full = im.size
        for target in [(80, 80), (496, 496), (1500, 1500), (3000, 3000)]:
            size = load_image(path, target).size
            assert size == full or (size[0] >= target[0] and size[1] >= target[1]), (target, size)
            assert size[0] <= full[0] and size[1] <= full[1]
        assert load_image(path, (80, 80)).size[0] in (-(-full[0] // 8), -(-full[0] // 4))  # 1/8 (or 1/4)
        assert load_image(path, (3000, 3000)).size == full  # 2x reduction would go below 3000


def test_a_12_megapixel_jpeg_gets_learn_predicts_top_label(model_file, big_jpegs):
    learn = _load(model_file)
    expected = _reference(learn, big_jpegs)
    predictor = FastPredictor.from_learner(_load(model_file))

    drafted = np.concatenate([predictor.predict_paths([str(p)]) for p in big_jpegs])
    full = np.concatenate([predictor.predict_paths([str(p)], draft=False) for p in big_jpegs])

    assert list(drafted.argmax(1)) == list(expected.argmax(1))
    _assert_same_answers(expected, full, big_jpegs)  # without draft, the same answers
    print(f"{model_file.parent.name}: 12 MP, draft decoding changes probabilities by up to "
          f"{np.abs(drafted - expected).max():.1e}")


def test_an_exif_orientation_tag_is_applied(tmp_path):
    im = Image.new("RGB", (60, 20), "white")
    im.paste((255, 0, 0), (0, 0, 10, 20))  # red on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display 90 degrees clockwise
    path = tmp_path / "rotated.jpg"
    im.save(path, exif=exif, quality=95)

    upright = load_image(path)
    as_stored = load_image(path, exif_transpose=False)

    assert as_stored.size == (60, 20)
    assert upright.size == (20, 60)
    assert upright.getpixel((10, 2))[0] > 200 and upright.getpixel((10, 2))[1] < 80  # red now on top


def test_a_learner_exported_from_gpu_training_is_served_by_the_cpu_fast_path(tiny_model_file, real_photos, tmp_path):
    # A GPU training run exports its learner with fastai's MixedPrecision and ChannelsLast
    # callbacks (classifier.training). Loaded for the CPU they are dropped and the model is made
    # contiguous fp32 again, so the fast path takes it and gives learn.predict's answers.
    from fastai.learner import load_learner

    gpu_style = _load(tiny_model_file)
    gpu_style.to_fp16()
    gpu_style.to_channelslast()
    assert {"MixedPrecision", "ChannelsLast"} <= {type(cb).__name__ for cb in gpu_style.cbs}
    exported = tmp_path / "gpu-trained.pkl"
    gpu_style.export(exported)

    predictor = FastPredictor.from_learner(load_learner(exported, cpu=True))

    assert predictor.backend == "onnxruntime"
    _assert_same_answers(_reference(_load(tiny_model_file), real_photos), predictor.predict_paths(real_photos),
                         real_photos)
