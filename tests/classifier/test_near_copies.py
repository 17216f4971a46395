"""Near copies in a run's data (the same picture resized or re-encoded): one in each split
flatters the validation scores, two labels mean one is wrong. The run finds them by difference
hash, keeps them with its data, and its page and its version's card say so."""
import io
from unittest import mock

import pytest
from django.test import Client
from PIL import Image

from classifier import services
from classifier.demo_images import generate_dataset, generate_image
from classifier.near_copies import MAX_DISTANCE, dhash, find, summarise
from labeling.services import photos_import_folder

TINY = {"architecture": "resnet18", "image_size": 32, "epochs": 1, "batch_size": 4, "pretrained": False}


def _saved(image, path, **kwargs):
    image.save(path, **kwargs)
    return path


def test_a_resized_re_encoded_copy_stays_within_a_few_bits_and_another_photo_does_not(tmp_path):
    original = generate_image("monstera", seed=3, size=256)
    hashed = dhash(_saved(original, tmp_path / "a.png"))
    copy = dhash(_saved(original.resize((180, 180)), tmp_path / "b.jpg", quality=70))
    other = dhash(_saved(generate_image("monstera", seed=4, size=256), tmp_path / "c.png"))

    assert bin(hashed ^ copy).count("1") <= 2
    assert bin(hashed ^ other).count("1") > 3 * MAX_DISTANCE


def test_pairs_within_the_distance_are_found_with_their_split_and_labels():
    rows = [[1, "fern", False], [2, "fern", True], [3, "monstera", False], [4, "fern", False], [5, "fern", True]]
    within, beyond = (1 << MAX_DISTANCE) - 1, (1 << (MAX_DISTANCE + 1)) - 1  # 4 and 5 bits set
    hashes = {1: 0, 2: within, 3: 1, 4: beyond << 20, 5: (beyond << 20) ^ beyond}

    pairs = find(rows, hashes)

    assert [(p.first, p.second, p.distance, p.across_split, p.labels) for p in pairs] == [
        (1, 3, 1, False, ("fern", "monstera")),
        (2, 3, 3, True, ("fern", "monstera")),
        (1, 2, 4, True, ("fern", "fern")),
    ]  # 4 and 5 are 5 bits apart: not near copies


def test_the_summary_counts_each_leaked_validation_photo_once_and_the_unreadable_files(tmp_path):
    image = generate_image("monstera", seed=1, size=128)
    paths = {1: _saved(image, tmp_path / "1.png"), 2: _saved(image.resize((100, 100)), tmp_path / "2.jpg"),
             3: _saved(image.resize((90, 90)), tmp_path / "3.jpg"), 4: tmp_path / "gone.jpg"}
    rows = [[1, "monstera", True], [2, "monstera", False], [3, "spider_plant", False], [4, "monstera", False]]

    summary = summarise(rows, paths)

    assert (summary["photos"], summary["unreadable"], summary["across_split"], summary["different_labels"]) == (
        3, 1, 1, 2)
    assert len(summary["pairs"]) == 3


@pytest.fixture
def run_with_copies(staff, tmp_path):
    """Generated plants, and a resized copy of a training photo imported as a validation photo
    with another label."""
    generate_dataset(tmp_path / "plants", per_label=4, size=64, seed=2)
    photos_import_folder(directory=tmp_path / "plants", owner=staff)
    from labeling.models import Photo

    original = Photo.objects.filter(final_label__name="monstera").order_by("id").first()
    (tmp_path / "copy" / "spider_plant").mkdir(parents=True)
    with Image.open(original.image.path) as im:
        im.convert("RGB").resize((56, 56)).save(tmp_path / "copy" / "spider_plant" / "copy.jpg", quality=80)
    photos_import_folder(directory=tmp_path / "copy", owner=staff)
    copy = Photo.objects.latest("id")
    split = lambda key, percent=20: int(key) == copy.id or (int(key) % 4 == 0 and int(key) != original.id)  # noqa: E731
    with mock.patch.object(services, "is_validation", split):
        run = services.training_run_start(user=staff, options=TINY, enqueue=False)
        run = services.training_run_execute(run.id)
    return run, original, copy


def test_a_run_keeps_its_near_copies_and_its_page_and_card_say_so(run_with_copies, staff):
    run, original, copy = run_with_copies
    client = Client()
    client.force_login(staff)

    found = run.metrics["near_copies"]
    page = client.get(f"/training/{run.id}/").content.decode()
    card = client.get(f"/models/{run.model_version_id}/").content.decode()

    assert run.status == "succeeded"
    assert [original.id, copy.id] == found["pairs"][0][:2] and found["pairs"][0][3:] == [True, "monstera",
                                                                                            "spider_plant"]
    assert found["across_split"] == 1 and found["different_labels"] >= 1
    assert "<strong>1 validation photo</strong> has\n    a near copy among the training photos" in page
    assert f'<a href="/photos/{original.id}/history/">#{original.id}</a> (monstera) and' in page
    assert "one in each split" in page
    assert "<strong>1 validation photo</strong> has" in card and f'href="/training/{run.id}/">The pairs' in card


def test_completing_a_version_trained_before_runs_looked_finds_its_near_copies(run_with_copies, staff):
    import io

    from django.core.management import call_command

    run, original, copy = run_with_copies
    found = run.metrics.pop("near_copies")
    run.save(update_fields=["metrics"])
    out = io.StringIO()

    call_command("complete_model_versions", "--missing", stdout=out)

    run.refresh_from_db()
    assert run.metrics["near_copies"] == found
    assert (f"Version {run.model_version_id}: {found['photos']} photos compared: 1 validation photo(s) with a near "
            f"copy among the training photos, {found['different_labels']} pair(s) with different labels.") \
        in out.getvalue()
