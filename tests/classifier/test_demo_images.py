"""The synthetic plant photos are well-formed, reproducible and tell the plants apart."""

import numpy as np
import pytest
from PIL import Image

from classifier.demo_images import LABELS, generate_dataset, generate_image


@pytest.mark.parametrize("label", LABELS)
def test_each_label_gives_an_rgb_image_of_the_requested_size(label):
    image = generate_image(label, seed=3, size=96)

    assert image.mode == "RGB"
    assert image.size == (96, 96)


@pytest.mark.parametrize("label", LABELS)
def test_the_same_seed_gives_identical_pixels(label):
    assert generate_image(label, seed=7, size=64).tobytes() == generate_image(label, seed=7, size=64).tobytes()


@pytest.mark.parametrize("label", LABELS)
def test_a_different_seed_gives_a_different_image(label):
    assert generate_image(label, seed=7, size=64).tobytes() != generate_image(label, seed=8, size=64).tobytes()


def test_the_same_seed_gives_different_images_for_different_labels():
    images = {generate_image(label, seed=0, size=64).tobytes() for label in LABELS}

    assert len(images) == len(LABELS)


def test_an_unknown_label_raises_value_error():
    with pytest.raises(ValueError, match="cactus"):
        generate_image("cactus", seed=0)


def test_generate_dataset_writes_per_label_jpegs_into_label_folders(tmp_path):
    written = generate_dataset(tmp_path, per_label=3, size=48, seed=1)

    assert len(written) == 3 * len(LABELS)
    for label in LABELS:
        expected = [tmp_path / label / f"{label}_{i:03d}.jpg" for i in range(3)]
        assert [path for path, lab in written if lab == label] == expected
        assert sorted((tmp_path / label).iterdir()) == expected
    with Image.open(written[0][0]) as image:
        assert image.format == "JPEG"
        assert image.size == (48, 48)


def test_generate_dataset_run_twice_overwrites_the_same_files(tmp_path):
    first = generate_dataset(tmp_path, per_label=2, size=32)
    contents = [path.read_bytes() for path, _ in first]

    second = generate_dataset(tmp_path, per_label=2, size=32)

    assert second == first
    assert [path.read_bytes() for path, _ in second] == contents
    assert len(list(tmp_path.rglob("*.jpg"))) == 2 * len(LABELS)


def _colour_histogram(image):
    """8 bins per RGB channel, square-rooted so big flat backgrounds do not drown the leaves."""
    pixels = np.asarray(image.resize((64, 64))).astype(int) // 32
    codes = pixels[..., 0] * 64 + pixels[..., 1] * 8 + pixels[..., 2]
    return np.sqrt(np.bincount(codes.ravel(), minlength=512) / codes.size)


def test_the_plants_are_told_apart_by_a_nearest_centroid_colour_classifier():
    # If this drops, make the plants look more different rather than lowering the bar:
    # a CNN trained on the demo set needs the classes to be separable.
    centroids = np.array([
        np.mean([_colour_histogram(generate_image(label, seed, size=128)) for seed in range(20)], axis=0)
        for label in LABELS
    ])
    correct = 0
    for index, label in enumerate(LABELS):
        for seed in range(1000, 1010):
            features = _colour_histogram(generate_image(label, seed, size=128))
            correct += int(np.argmin(((centroids - features) ** 2).sum(axis=1)) == index)

    assert correct / (10 * len(LABELS)) >= 0.7
