"""Loading exported learners and predicting with them, once per worker process.

Exported learners are pickles, and unpickling runs code: a file is loaded only when its
sha256 matches the one the registry recorded when it wrote the file itself.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)


class ModelIntegrityError(Exception):
    """The file on disk is not the file the registry recorded."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class LoadedModel:
    version_id: int
    sha256: str
    learner: object
    labels: list[str]

    def predict_paths(self, paths) -> list[dict[str, float]]:
        """Probabilities for every label, per image, computed as one batch."""
        import torch

        learn = self.learner
        dl = learn.dls.test_dl([str(p) for p in paths], num_workers=0)
        with torch.inference_mode(), learn.no_bar():
            probs, _ = learn.get_preds(dl=dl)
        vocab = list(learn.dls.vocab)
        return [{vocab[i]: float(row[i]) for i in range(len(vocab))} for row in probs]


class ModelCache:
    """One loaded model per process; swapped when another version becomes active."""

    def __init__(self):
        self._lock = threading.Lock()
        self._loaded: LoadedModel | None = None

    def get(self, version_id: int, path: Path, sha256: str, threads: int = 1) -> LoadedModel:
        with self._lock:
            if self._loaded and self._loaded.version_id == version_id and self._loaded.sha256 == sha256:
                return self._loaded
            self._loaded = self._load(version_id, Path(path), sha256, threads)
            return self._loaded

    def clear(self):
        with self._lock:
            self._loaded = None

    @staticmethod
    def _load(version_id, path, sha256, threads):
        import torch
        from fastai.learner import load_learner

        actual = file_sha256(path)
        if actual != sha256:
            logger.error("Refusing model version %s: %s has sha256 %s, the registry recorded %s.",
                         version_id, path, actual, sha256)
            raise ModelIntegrityError(
                f"Model version {version_id} was refused: its file does not match the recorded sha256."
            )
        torch.set_num_threads(threads)
        learner = load_learner(path, cpu=True)
        learner.model.eval()
        logger.info("Loaded model version %s from %s.", version_id, path)
        return LoadedModel(version_id, sha256, learner, list(learner.dls.vocab))


model_cache = ModelCache()
