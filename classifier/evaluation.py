"""Comparing model versions: side by side on the same validation photos, and a shadow
version against the active one and the experts. Reads only; nothing here changes a row."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

from django.core.cache import cache

from labeling.models import Photo
from labeling.throttling import CACHE_ERRORS

from .cores import inference_threads
from .inference import model_cache
from .training import is_validation

logger = logging.getLogger(__name__)

COMPARE_LIMIT = 300  # bounded work per page view


@dataclass
class VersionScore:
    version_id: int
    correct: int = 0
    per_label: dict = field(default_factory=dict)  # label -> [correct, total]

    @property
    def accuracy(self):
        total = sum(t for _, t in self.per_label.values())
        return self.correct / total if total else None


def validation_photos(limit=COMPARE_LIMIT):
    """Human-verified photos in the fixed validation split, the newest `limit`: the same photos
    for every version. A retired label's photos are left out, as training leaves them out: no
    version trained since could predict that label, so they would count against it alone."""
    photos = (Photo.objects.filter(status=Photo.Status.FINAL, label_source__in=Photo.HUMAN_VERIFIED_SOURCES,
                                   excluded_from_training=False, final_label__retired=False)
              .select_related("final_label").order_by("-id"))
    chosen = [p for p in photos.iterator() if is_validation(p.id)]
    return chosen[:limit]


# What a version says about a photo never changes (the registry's file is checked against its
# sha256, a stored photo's file is never rewritten), so a page view predicts only the photos that
# no earlier view has: any member may open the page, and it is otherwise up to 600 predictions.
TOPS_CACHE_SECONDS = 7 * 24 * 3600


def _predict(version, photos):
    """Each photo's top label under `version`; None for a photo whose file cannot be read."""
    key = f"compare-tops:{version.id}:{version.sha256}"
    known = _cache_get(key)
    missing = [p for p in photos if p.id not in known]
    if missing:
        known.update(zip((p.id for p in missing), _predict_now(version, missing)))
        # Only this view's photos: the entry stays as small as the comparison.
        _cache_set(key, {p.id: known[p.id] for p in photos if known[p.id] is not None})
    return [known[p.id] for p in photos]


def _cache_get(key) -> dict:
    try:
        return dict(cache.get(key) or {})
    except CACHE_ERRORS:  # without the cache, everything is predicted again
        logger.warning("The cache is unavailable: comparing without it.", exc_info=True)
        return {}


def _cache_set(key, tops):
    try:
        cache.set(key, tops, TOPS_CACHE_SECONDS)
    except CACHE_ERRORS:
        logger.warning("The cache is unavailable: comparing without it.", exc_info=True)


def _predict_now(version, photos):
    model = model_cache.get(version.id, version.path, version.sha256, threads=inference_threads())
    paths = [p.model_input_path for p in photos]
    try:
        return [_top(probs) for probs in model.predict_paths(paths)]
    except Exception:  # noqa: BLE001 - one unreadable file fails its whole batch: each is tried alone
        logger.warning("Comparing model version %s: a batch failed; predicting its photos one by one.", version.id,
                       exc_info=True)
    return [_top_or_none(model, path) for path in paths]


def _top(probabilities):
    return max(probabilities, key=probabilities.get)


def _top_or_none(model, path):
    try:
        return _top(model.predict_paths([path])[0])
    except Exception:  # noqa: BLE001 - a missing or broken file is left out of the comparison
        logger.warning("Comparing model versions: %s cannot be predicted.", path, exc_info=True)
        return None


def model_versions_compare(a, b, photos=None):
    """Both versions on the same validation photos: accuracy overall and per label, and where
    they differ. Photos whose file cannot be read are left out and counted (`unreadable`)."""
    photos = validation_photos() if photos is None else photos
    tops = {a.id: _predict(a, photos), b.id: _predict(b, photos)} if photos else {a.id: [], b.id: []}
    readable = [i for i in range(len(photos)) if tops[a.id][i] is not None and tops[b.id][i] is not None]
    unreadable = len(photos) - len(readable)
    photos = [photos[i] for i in readable]
    tops = {v: [top[i] for i in readable] for v, top in tops.items()}
    scores = {v.id: VersionScore(v.id) for v in (a, b)}
    differences = []
    for i, photo in enumerate(photos):
        truth = photo.final_label.name
        for version_id, score in scores.items():
            hit = tops[version_id][i] == truth
            score.correct += hit
            counts = score.per_label.setdefault(truth, [0, 0])
            counts[0] += hit
            counts[1] += 1
        if tops[a.id][i] != tops[b.id][i]:
            differences.append({"photo": photo, "truth": truth, "a": tops[a.id][i], "b": tops[b.id][i]})
    agreement = (len(photos) - len(differences)) / len(photos) if photos else None
    labels = sorted({p.final_label.name for p in photos})
    per_label = [(label, scores[a.id].per_label[label], scores[b.id].per_label[label]) for label in labels]
    return {"a": scores[a.id], "b": scores[b.id], "count": len(photos), "agreement": agreement,
            "differences": differences, "per_label": per_label, "unreadable": unreadable}


def shadow_agreement(version):
    """How a shadow version agrees with the active model's predictions and with the experts'
    decisions on the same photos (each as matched/total, None when there is nothing to compare)."""
    from labeling.models import Prediction

    shadow = dict(version.shadow_predictions.values_list("photo_id", "label"))
    active = dict(Prediction.objects.filter(photo_id__in=shadow).values_list("photo_id", "label__name"))
    decided = dict(
        Photo.objects.filter(id__in=shadow, label_source__in=[Photo.LabelSource.EXPERT, Photo.LabelSource.AUDIT])
        .values_list("id", "final_label__name"))

    def rate(truth):
        matched = sum(1 for pid, label in truth.items() if shadow.get(pid) == label)
        return {"matched": matched, "total": len(truth), "rate": matched / len(truth) if truth else None}

    return {"predictions": len(shadow), "with_active": rate(active), "with_experts": rate(decided)}


@dataclass
class DataChanges:
    """What a run trained on that the run before it did not, photo by photo."""

    previous_run_id: int
    added: int
    removed: int
    relabelled: int
    per_label: list  # (label, photos now, change since the previous run), by label name


def data_changes(data, previous_run) -> DataChanges:
    """Compare a run's frozen data ([photo id, label, is_valid] rows) with `previous_run`'s:
    photos added, photos gone (deleted, excluded, retired), photos whose label changed (an
    expert's correction, a cleaner's relabel), and each label's count then and now. A new
    version that behaves differently is often explained here, not in its training options."""
    before = {pid: label for pid, label, _ in previous_run.data}
    now = {pid: label for pid, label, _ in data}
    counts_before, counts_now = Counter(before.values()), Counter(now.values())
    return DataChanges(
        previous_run_id=previous_run.id,
        added=len(now.keys() - before.keys()),
        removed=len(before.keys() - now.keys()),
        relabelled=sum(1 for pid in now.keys() & before.keys() if now[pid] != before[pid]),
        per_label=[(label, counts_now[label], counts_now[label] - counts_before[label])
                   for label in sorted(counts_now.keys() | counts_before.keys())],
    )

