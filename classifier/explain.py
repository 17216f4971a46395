"""Where the model looked: Grad-CAM, as the fast.ai book's chapter 18 builds it.

The body of a vision_learner (its pretrained convolutional part) turns the image into a grid of
feature maps; the head pools them into the labels' scores. The gradient of one label's score
with respect to each feature map says how much that map argues for the label; the maps,
weighted so, summed and with what argues against it dropped, give a coarse picture of the
regions behind the answer. It is drawn over the image as the model saw it (after its resize
and crop), so that an expert can see whether the model looked at the plant or at the pot,
the background or a watermark.

Computed on demand, for a photo someone opens, and cached: nothing here is stored in a row."""
from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image

from .caching import cached
from .cores import inference_threads
from .inference import model_cache

CACHE_SECONDS = 7 * 24 * 3600  # what a version says about a stored photo never changes
MIN_SIDE = 224                 # a 32 px model input is drawn larger, so that it can be seen
ALPHA = 0.5                    # the heat map over the image


class CannotExplain(Exception):
    """The model is not a body and a head (not made by vision_learner), or its input is unknown."""


def grad_cam(model, x, class_index: int) -> np.ndarray:
    """The Grad-CAM map of one input x (1, 3, H, W) for one label: (h, w) in [0, 1], the body's
    feature-map grid. All zeros when nothing in the image argues for the label.

    No hooks: the body runs first and its output becomes the leaf the gradient is taken for, so
    other threads predicting with the same model at the same time are not touched."""
    import torch

    if not (isinstance(model, torch.nn.Sequential) and len(model) == 2):
        raise CannotExplain("The model is not a body and a head, as vision_learner makes them.")
    body, head = model
    with torch.enable_grad():
        with torch.no_grad():
            features = body(x)
        if features.shape[-2:] == (1, 1):  # one cell: the map would be a flat colour passed off as an answer
            raise CannotExplain("The model sees this image as a single cell: there is no where to show.")
        features = features.detach().float().requires_grad_(True)
        score = head(features)[0, class_index]
        (gradients,) = torch.autograd.grad(score, features)
    weights = gradients[0].mean(dim=(1, 2))  # one per feature map: how much it argues for the label
    cam = torch.relu((weights[:, None, None] * features[0].detach()).sum(dim=0))
    top = float(cam.max())
    return (cam / top).numpy() if top > 0 else cam.numpy()


def overlay_png(image: Image.Image, cam: np.ndarray) -> bytes:
    """The map, in the book's magma colours, over the image as the model saw it, as a PNG."""
    from matplotlib import colormaps

    scale = max(1, math.ceil(MIN_SIDE / min(image.size)))
    size = (image.width * scale, image.height * scale)
    base = image.convert("RGB").resize(size, Image.Resampling.BICUBIC)
    heat = Image.fromarray(np.uint8(np.clip(cam, 0, 1) * 255)).resize(size, Image.Resampling.BILINEAR)
    colours = np.uint8(colormaps["magma"](np.asarray(heat) / 255.0)[..., :3] * 255)
    out = io.BytesIO()
    Image.blend(base, Image.fromarray(colours), ALPHA).save(out, format="PNG")
    return out.getvalue()


def model_input(loaded, path):
    """(the batch the model sees, that image as a picture) for one file: the fast path's exact
    validation transforms, or fastai's own where the fast path does not apply."""
    if loaded.predictor is not None:
        picture = loaded.predictor.transform_image(loaded.predictor.load(path))
        return loaded.predictor.to_batch([picture]).contiguous(), picture
    learn = loaded.learner
    dl = learn.dls.test_dl([str(path)], num_workers=0)
    (x,) = dl.one_batch()[:1]
    decoded = dl.decode((x,))[0][0]  # normalisation undone: the picture the model was given
    picture = Image.fromarray(np.uint8(decoded.permute(1, 2, 0).clamp(0, 255).numpy()))
    return x, picture


def explanation_png(version, path, label: str, cache_key: str) -> bytes:
    """Grad-CAM of `label` for the image at `path` under `version`, as a PNG; cached under
    cache_key (the caller names the photo). Raises CannotExplain, the model cache's
    ModelIntegrityError, or OSError for a file that cannot be read."""
    def draw():
        loaded = model_cache.get(version.id, version.path, version.sha256, threads=inference_threads())
        if label not in loaded.labels:
            raise CannotExplain(f"Model version {version.id} has no label {label}.")
        x, picture = model_input(loaded, path)
        return overlay_png(picture, grad_cam(loaded.learner.model, x, loaded.labels.index(label)))

    return cached(f"explain:{version.id}:{version.sha256}:{cache_key}:{label}", draw, CACHE_SECONDS,
                  "explaining")
