"""Loading exported learners and predicting with them, once per worker process.

Exported learners are pickles, and unpickling runs code: a file is loaded only when its
sha256 matches the one the registry recorded when it wrote the file itself.
"""

from __future__ import annotations

import hashlib
import io
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)


class ModelIntegrityError(Exception):
    """The file on disk is not the file the registry recorded."""


def file_sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return stream_sha256(fh)


def stream_sha256(fh) -> str:
    """The sha256 of what is left to read in an open binary file, read a megabyte at a time."""
    digest = hashlib.sha256()
    for chunk in iter(lambda: fh.read(1 << 20), b""):
        digest.update(chunk)
    return digest.hexdigest()


@dataclass
class LoadedModel:
    version_id: int
    sha256: str
    learner: object
    labels: list[str]
    # classifier.fastpath.FastPredictor built from the learner; None when the learner uses a
    # transform the fast path cannot reproduce, and then fastai's own get_preds is used.
    predictor: object = None

    def predict_paths(self, paths) -> list[dict[str, float]]:
        """Probabilities for every label, per image, computed in batches."""
        return self.predict_paths_with_features(paths)[0]

    def predict_paths_with_features(self, paths):
        """(probabilities per image, their features (n, d) or None): fastai's own path, for a
        learner the fast path cannot reproduce, gives no features."""
        paths = [str(p) for p in paths]
        if self.predictor is not None:
            probs, features = self.predictor.predict_paths_with_features(paths)
            return self.predictor.as_dicts(probs), features
        return self._predict_paths_with_fastai(paths), None

    def _predict_paths_with_fastai(self, paths):
        import torch

        learn = self.learner
        dl = learn.dls.test_dl(paths, num_workers=0)
        with torch.inference_mode(), learn.no_bar():
            probs, _ = learn.get_preds(dl=dl)
        vocab = list(learn.dls.vocab)
        return [{vocab[i]: float(row[i]) for i in range(len(vocab))} for row in probs]


class ModelCache:
    """The models a process uses, loaded once: the active version and, in shadow mode, the
    shadow one. The least recently used is dropped when another version is asked for."""

    def __init__(self, capacity: int = 2):
        self._lock = threading.Lock()
        self._capacity = capacity
        self._loaded: dict[int, LoadedModel] = {}

    def get(self, version_id: int, path: Path, sha256: str, threads: int = 1) -> LoadedModel:
        with self._lock:
            model = self._loaded.pop(version_id, None)
            if model is None or model.sha256 != sha256:
                model = self._load(version_id, Path(path), sha256, threads)
            self._loaded[version_id] = model  # re-inserted last: the most recently used
            while len(self._loaded) > self._capacity:
                self._loaded.pop(next(iter(self._loaded)))
            return model

    def clear(self):
        with self._lock:
            self._loaded.clear()

    @staticmethod
    def _load(version_id, path, sha256, threads):
        import torch
        from fastai.learner import load_learner

        # The bytes that are checked are the bytes that are unpickled: hashing the file and then
        # loading it again by name would unpickle whatever replaced it in between.
        try:
            data = path.read_bytes()
        except OSError as exc:
            # The path and the error go to the log: the message reaches pages and photo reasons.
            logger.error("Refusing model version %s: %s cannot be read: %s", version_id, path, exc)
            raise ModelIntegrityError(f"Model version {version_id} was refused: its file is missing or unreadable.") \
                from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            logger.error("Refusing model version %s: %s has sha256 %s, the registry recorded %s.",
                         version_id, path, actual, sha256)
            raise ModelIntegrityError(
                f"Model version {version_id} was refused: its file does not match the recorded sha256."
            )
        torch.set_num_threads(threads)
        learner = load_learner(io.BytesIO(data), cpu=True)
        del data
        learner.model.eval()
        predictor = _fast_predictor(learner, version_id)
        logger.info("Loaded model version %s from %s.", version_id, path)
        return LoadedModel(version_id, sha256, learner, list(learner.dls.vocab), predictor)


def _fast_predictor(learner, version_id):
    """The fast path when it reproduces this learner's validation transforms, else None."""
    from .fastpath import FastPredictor, UnsupportedLearner

    try:
        predictor = FastPredictor.from_learner(learner)
    except UnsupportedLearner as exc:
        logger.warning("Model version %s is predicted with fastai's slower get_preds: %s", version_id, exc)
        return None
    logger.info("Model version %s fast path: %s.", version_id, "; ".join(predictor.notes))
    return predictor


model_cache = ModelCache()
