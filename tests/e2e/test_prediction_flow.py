"""Uploads over real HTTP are predicted by a real Celery worker and routed by confidence."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from labeling.models import Photo, ReviewDecision
from tests.paths import FLOWERS

pytestmark = pytest.mark.integration



def flower_photos(per_class=2) -> list[Path]:
    """Real photos, read where they are (never copied into the repository)."""
    classes = sorted(p for p in FLOWERS.iterdir() if p.is_dir())
    photos = [path for folder in classes for path in sorted(folder.glob("*.jpg"))[:per_class]]
    assert len(photos) == per_class * len(classes) >= 10
    return photos


def confidences_as_the_worker_will_see_them(version, paths, tmp_path) -> list[float]:
    """Predict in this process the exact bytes the upload stores, with the registered model."""
    import torch
    from django.conf import settings

    from classifier.cores import inference_threads
    from classifier.inference import ModelCache
    from labeling.image_checks import check_and_clean

    stored = []
    for i, path in enumerate(paths):
        with open(path, "rb") as fh:
            clean = check_and_clean(fh, max_bytes=settings.UPLOAD_MAX_BYTES, max_pixels=settings.UPLOAD_MAX_PIXELS)
        target = tmp_path / f"clean-{i}.{clean.extension}"
        target.write_bytes(clean.content)
        stored.append(target)
    threads = torch.get_num_threads()
    try:
        model = ModelCache().get(version.id, version.path, version.sha256, threads=inference_threads())
        return [max(probs.values()) for probs in model.predict_paths(stored)]
    finally:
        torch.set_num_threads(threads)


def threshold_splitting(confidences) -> float:
    """A threshold in the widest gap between the confidences: some photos above, some below."""
    ranked = sorted(confidences)
    gaps = [(ranked[i + 1] - ranked[i], i) for i in range(len(ranked) - 1)]
    width, i = max(gaps)
    assert width > 1e-3, f"the model gives nearly equal confidences {ranked}; no threshold separates them"
    return (ranked[i] + ranked[i + 1]) / 2


def test_uploaded_photos_are_predicted_by_the_worker_and_routed_by_confidence_and_an_expert_decides_once(
        active_model, start_worker, api_as, member, expert, tmp_path):
    photos = flower_photos()
    confidences = confidences_as_the_worker_will_see_them(active_model, photos, tmp_path)
    threshold = threshold_splitting(confidences)
    expected_final = {path.name: c >= threshold for path, c in zip(photos, confidences)}
    start_worker("inference", CONFIDENCE_THRESHOLD=repr(threshold))
    as_member = api_as(member)

    uploaded = {}
    for path in photos:
        response = as_member.upload(path)
        assert response.status_code == 201, response.text
        assert response.json()["status"] == "queued"
        uploaded[response.json()["id"]] = path

    results = {photo_id: as_member.wait_for_photo(photo_id) for photo_id in uploaded}

    assert not Photo.objects.filter(status=Photo.Status.QUEUED).exists()
    for photo_id, photo in results.items():
        prediction = photo["prediction"]
        assert photo["status"] in ("final", "needs_review"), photo
        assert prediction is not None, photo
        assert prediction["model_version"] == active_model.id
        assert set(prediction["probabilities"]) == set(active_model.labels)
        assert math.isclose(sum(prediction["probabilities"].values()), 1.0, abs_tol=1e-4)
        best = max(prediction["probabilities"], key=prediction["probabilities"].get)
        assert prediction["label"] == best
        assert prediction["confidence"] == prediction["probabilities"][best]
        if photo["status"] == "final":
            assert prediction["confidence"] >= threshold
            assert (photo["final_label"], photo["decided_by"]) == (best, "model")
        else:
            assert prediction["confidence"] < threshold
            assert photo["final_label"] is None and photo["decided_by"] is None
            assert "below the" in photo["reason"] and "threshold" in photo["reason"]
        assert (photo["status"] == "final") == expected_final[uploaded[photo_id].name], (uploaded[photo_id], photo)
    statuses = {photo["status"] for photo in results.values()}
    assert statuses == {"final", "needs_review"}

    waiting = sorted(pid for pid, photo in results.items() if photo["status"] == "needs_review")
    as_expert = api_as(expert)
    queue = as_expert.get("/api/v1/review-queue/").json()["results"]
    assert sorted(p["id"] for p in queue) == waiting
    margins = [top[0] - top[1] for top in (sorted(p["prediction"]["probabilities"].values(), reverse=True)
                                          for p in queue)]
    assert margins == sorted(margins), "the most uncertain photo comes first"

    chosen = waiting[0]
    first = as_expert.post(f"/api/v1/photos/{chosen}/review/", json={"label": "monstera"})
    assert first.status_code == 200, first.text
    assert (first.json()["status"], first.json()["final_label"], first.json()["decided_by"],
            first.json()["reviewed_by"]) == ("final", "monstera", "expert", "expert")

    second = as_expert.post(f"/api/v1/photos/{chosen}/review/", json={"label": "spider_plant"})
    assert second.status_code == 409, second.text
    assert "no longer awaiting review" in second.json()["detail"]
    photo = Photo.objects.get(pk=chosen)
    assert (photo.status, photo.final_label.name) == ("final", "monstera")
    assert ReviewDecision.objects.filter(photo=photo).count() == 1


def test_without_an_active_model_an_uploaded_photo_waits_for_an_expert_and_says_why(
        inference_worker, api_as, member):
    as_member = api_as(member)

    response = as_member.upload(flower_photos()[0])
    assert response.status_code == 201, response.text

    photo = as_member.wait_for_photo(response.json()["id"], timeout=60)
    assert photo["status"] == "needs_review"
    assert photo["prediction"] is None
    assert photo["reason"] == "No model is active yet: an expert will decide."


def test_a_fresh_inference_worker_loads_the_active_model_before_any_photo_arrives_and_healthz_lists_it(
        active_model, start_worker, client, staff):
    import time

    worker = start_worker("inference")

    deadline = time.monotonic() + 60
    while f"Warmed up model version(s) {active_model.id}." not in worker.log():
        assert time.monotonic() < deadline, f"no warm-up within 60 s:\n{worker.log()}"
        time.sleep(0.2)

    # The real ping through the broker (the unit tests of /healthz mock the workers).
    client.force_login(staff)
    response = client.get("/healthz")
    assert response.status_code == 200, response.content
    assert worker.name in response.json()["checks"]["workers"]["names"]


@pytest.mark.parametrize("processes", [1, 2])
def test_each_inference_worker_process_predicts_with_its_share_of_the_cores(
        active_model, start_worker, settings, processes):
    import time

    from classifier import cores

    settings.INFERENCE_THREADS = None  # the default: not passed to the worker
    worker = start_worker("inference", processes=processes)
    share = max(1, cores.given() // processes)

    deadline = time.monotonic() + 90
    while worker.log().count(f"Warmed up model version(s) {active_model.id}.") < processes:
        assert time.monotonic() < deadline, f"no warm-up in every process within 90 s:\n{worker.log()}"
        time.sleep(0.2)
    log = worker.log()
    assert f"Inference: {processes} pool process(es) x {share} inference thread(s) (its share)" in log
    # What each process's fast path runs with: the share, learnt from the pool size its parent
    # recorded before forking it.
    assert log.count(f"(CPU, {share} threads)") == processes, log
