"""The photos a version learned from that look most like a given photo, as the version sees them.

Training keeps, for every photo of its data, the body's features averaged over the image (the
vector its head classifies), L2-normalised, as float16 in an .npz next to the learner, with the
photo ids and the labels they were trained with. An expert reviewing a photo can then see the
training photos nearest to it: when the model says monstera because the photo looks like those
three mislabelled ferns, the neighbours show it. Computed for one photo on demand, and cached.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from .caching import cached
from .cores import inference_threads
from .explain import model_input
from .inference import model_cache

NEIGHBOURS = 8
NOT_KEPT = ("The photos' features were not kept, so reviews show no similar photos and unfamiliar photos are not "
            "recognised: {}")
CACHE_SECONDS = 7 * 24 * 3600


def features(model, x):
    """(n, d) float32 torch tensor: the body's output averaged over the image, L2-normalised.
    model: a vision_learner's Sequential(body, head)."""
    import torch

    return torch.nn.functional.normalize(model[0](x).float().mean(dim=(2, 3)), dim=1)


def embed_learner_rows(learn, paths, batch_size=64) -> np.ndarray:
    """float16 (len(paths), d) for the photos a run trained on, with the trained learner on its
    own device and its validation transforms (fastai's test_dl): what training keeps."""
    import torch

    dl = learn.dls.test_dl([str(p) for p in paths], bs=batch_size, num_workers=0)
    out = []
    learn.model.eval()
    with torch.inference_mode():
        for batch in dl:
            out.append(features(learn.model, batch[0]).cpu().numpy())
    return np.concatenate(out).astype(np.float16)


def save(path, ids, labels, vectors, valid):
    """Written aside and renamed: a killed process leaves no half-written file. valid: whether
    each photo was in the validation split (classifier.familiarity compares with the others)."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        with open(partial, "wb") as fh:
            np.savez(fh, ids=np.asarray(ids, dtype=np.int64), labels=np.asarray(labels, dtype=str),
                     vectors=np.asarray(vectors, dtype=np.float16), valid=np.asarray(valid, dtype=bool))
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class Neighbour:
    photo_id: int
    label: str         # the label it was trained with
    similarity: float  # cosine, 1 for the same picture


@dataclass(frozen=True)
class Stored:
    ids: np.ndarray
    labels: np.ndarray
    vectors: np.ndarray         # float32 (n, d)
    training: np.ndarray | None  # the rows of the training split; None in a file kept before the split was

    @property
    def training_vectors(self):
        return self.vectors if self.training is None else self.vectors[self.training]


# (version id, file name, its mtime and size) -> Stored: the active and the shadow version, or the
# ones last asked for. complete_model_versions rewrites a file under the same name: the new one is
# read on the next prediction, without a restart.
_loaded: dict = {}
_loaded_lock = threading.Lock()
KEEP_LOADED = 2


def stored(version) -> Stored:
    """A version's kept features, read once per process (again when the file changes). Raises
    OSError, KeyError or ValueError for a missing or damaged file."""
    path = version.path.parent / version.metrics["neighbours_npz"]
    status = path.stat()
    key = (version.id, path.name, status.st_mtime_ns, status.st_size)
    with _loaded_lock:
        found = _loaded.pop(key, None)
        if found is None:
            # allow_pickle=False: arrays only, nothing in the file runs as code.
            with np.load(path, allow_pickle=False) as data:
                valid = data["valid"] if "valid" in data.files else None
                found = Stored(data["ids"], data["labels"], data["vectors"].astype(np.float32),
                               None if valid is None else np.flatnonzero(~valid))
        _loaded[key] = found  # re-inserted last: the most recently used
        while len(_loaded) > KEEP_LOADED:
            _loaded.pop(next(iter(_loaded)))
        return found


def nearest(version, photo, k=NEIGHBOURS) -> list[Neighbour]:
    """The k photos `version` trained on that are nearest to `photo` (itself left out), nearest
    first. Raises OSError (a file cannot be read) or the model cache's ModelIntegrityError."""
    def find():
        import torch

        kept = stored(version)
        ids, labels, vectors = kept.ids, kept.labels, kept.vectors
        loaded = model_cache.get(version.id, version.path, version.sha256, threads=inference_threads())
        x, _ = model_input(loaded, photo.model_input_path)
        with torch.inference_mode():
            query = features(loaded.learner.model, x)[0].numpy()
        similarity = vectors @ query
        order = [i for i in np.argsort(-similarity, kind="stable") if int(ids[i]) != photo.pk][:k]
        return [Neighbour(int(ids[i]), str(labels[i]), float(similarity[i])) for i in order]

    return cached(f"similar:{version.id}:{version.sha256}:{photo.pk}:{k}", find, CACHE_SECONDS,
                  "finding similar photos")
