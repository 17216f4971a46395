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


def save(path, ids, labels, vectors):
    """Written aside and renamed: a killed process leaves no half-written file."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        with open(partial, "wb") as fh:
            np.savez(fh, ids=np.asarray(ids, dtype=np.int64), labels=np.asarray(labels, dtype=str),
                     vectors=np.asarray(vectors, dtype=np.float16))
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class Neighbour:
    photo_id: int
    label: str         # the label it was trained with
    similarity: float  # cosine, 1 for the same picture


_loaded = {}  # (version id, file name) -> (ids, labels, vectors float32): one version at a time
_loaded_lock = threading.Lock()


def _stored(version):
    key = (version.id, version.metrics["neighbours_npz"])
    with _loaded_lock:
        if key not in _loaded:
            # allow_pickle=False: arrays only, nothing in the file runs as code.
            with np.load(version.path.parent / key[1], allow_pickle=False) as data:
                stored = (data["ids"], data["labels"], data["vectors"].astype(np.float32))
            _loaded.clear()
            _loaded[key] = stored
        return _loaded[key]


def nearest(version, photo, k=NEIGHBOURS) -> list[Neighbour]:
    """The k photos `version` trained on that are nearest to `photo` (itself left out), nearest
    first. Raises OSError (a file cannot be read) or the model cache's ModelIntegrityError."""
    def find():
        import torch

        ids, labels, vectors = _stored(version)
        loaded = model_cache.get(version.id, version.path, version.sha256, threads=inference_threads())
        x, _ = model_input(loaded, photo.model_input_path)
        with torch.inference_mode():
            query = features(loaded.learner.model, x)[0].numpy()
        similarity = vectors @ query
        order = [i for i in np.argsort(-similarity, kind="stable") if int(ids[i]) != photo.pk][:k]
        return [Neighbour(int(ids[i]), str(labels[i]), float(similarity[i])) for i in order]

    return cached(f"similar:{version.id}:{version.sha256}:{photo.pk}:{k}", find, CACHE_SECONDS,
                  "finding similar photos")
