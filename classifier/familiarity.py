"""Whether a photo looks like anything a model version learned from.

A model is as sure of its answer for a photo unlike all its training data (a cat, a drawing, a
plant it was never shown) as for a familiar one: softmax has to put its probability somewhere.
Its confidence cannot tell, but its features can (the deep nearest-neighbour test of Sun et al.,
2022): the cosine similarity between a photo's features (classifier.similar) and those of the
nearest training photo. Training measures the same for each validation photo, photos the version
did not learn from but drawn like its data, and keeps them in bins of a thousandth. A new photo
less like the training photos than all but UNFAMILIAR_SHARE of the validation photos were is
unfamiliar: the model's answer is not saved on its own, and an expert decides.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

RESOLUTION = 1000  # bins per unit of cosine similarity
CHUNK = 1024       # validation rows compared with the training rows at once (memory)


def similarity_bin(s: float) -> int:
    """k such that k / RESOLUTION <= s < (k + 1) / RESOLUTION, compared exactly as a photo's
    similarity is compared with a cut-off k / RESOLUTION (s * RESOLUTION may round across)."""
    k = math.floor(s * RESOLUTION)
    if k / RESOLUTION > s:
        k -= 1
    elif (k + 1) / RESOLUTION <= s:
        k += 1
    return k


def nearest_similarities(queries, reference) -> np.ndarray:
    """For each row of `queries` (n, d), its cosine similarity with the nearest row of `reference`
    (m, d); both L2-normalised. float64, so that the bins and the comparisons see one number."""
    queries = np.asarray(queries, dtype=np.float32)
    reference = np.asarray(reference, dtype=np.float32)
    if not len(queries):
        return np.zeros(0)
    return np.concatenate([(queries[i:i + CHUNK] @ reference.T).max(axis=1)
                           for i in range(0, len(queries), CHUNK)]).astype(np.float64)


def summarise(vectors, valid) -> dict | None:
    """The stored form, from every photo's features and whether it is a validation photo:
    {"photos": validation photos, "bins": [[k, photos], ...]}. None without both splits."""
    vectors = np.asarray(vectors)
    valid = np.asarray(valid, dtype=bool)
    if not valid.any() or valid.all():
        return None
    similarities = nearest_similarities(vectors[valid], vectors[~valid])
    bins = {}
    for s in similarities:
        if math.isfinite(s):  # features of a diverged model say nothing
            k = similarity_bin(float(s))
            bins[k] = bins.get(k, 0) + 1
    if not bins:
        return None
    return {"photos": sum(bins.values()), "bins": [[k, n] for k, n in sorted(bins.items())]}


@dataclass(frozen=True)
class Familiarity:
    """A version's validation photos, by their similarity with its nearest training photo."""
    photos: int
    bins: tuple  # ((k, photos), ...), k ascending

    @classmethod
    def from_dict(cls, data: dict) -> Familiarity:
        return cls(photos=int(data["photos"]), bins=tuple((int(k), int(n)) for k, n in data["bins"]))

    def cutoff(self, share: float) -> float:
        """The highest cut-off (a bin edge) below which at most `share` of the validation photos
        fall: a photo less similar than this is unfamiliar. At share 0 (or with fewer validation
        photos than 1 / share) it is the least similar validation photo's bin."""
        allowed = math.floor(share * self.photos + 1e-9)
        seen = 0
        for k, n in self.bins:
            seen += n
            if seen > allowed:
                return k / RESOLUTION
        return self.bins[-1][0] / RESOLUTION

    def below(self, cutoff: float) -> int:
        """Validation photos less similar than `cutoff`: what the check flags of them."""
        return sum(n for k, n in self.bins if k / RESOLUTION < cutoff)

    def quantile(self, q: float) -> float:
        """The lower edge of the bin holding the q-quantile of the validation photos' similarity."""
        target = q * self.photos
        seen = 0
        for k, n in self.bins:
            seen += n
            if seen >= target:
                return k / RESOLUTION
        return self.bins[-1][0] / RESOLUTION


def measure(version, features, n: int) -> list[tuple[float | None, float | None]]:
    """For each of the n photos the worker just predicted with `version` (their features, or
    None when its path gives none): its similarity with the nearest training photo, and the
    cut-off in force (None when UNFAMILIAR_CHECK is off). (None, None) for every photo when the
    version kept no familiarity (trained before it was, or its features could not be read:
    logged, and the photos are predicted as if there were no check)."""
    import logging

    from django.conf import settings

    from .similar import stored

    known = version.familiarity()
    if features is None or known is None:
        return [(None, None)] * n
    try:
        kept = stored(version)
    except (OSError, KeyError, ValueError):
        logging.getLogger(__name__).exception("Model version %s: its kept features cannot be read; photos are "
                                              "predicted without the familiarity check.", version.id)
        return [(None, None)] * n
    similarities = nearest_similarities(features, kept.training_vectors)
    cutoff = known.cutoff(float(settings.UNFAMILIAR_SHARE)) if settings.UNFAMILIAR_CHECK else None
    return [(float(s) if math.isfinite(s) else None, cutoff) for s in similarities]
