"""A fast inference path for exported fastai image learners: the same answers as
``learn.predict``, without fastai's per-call DataLoader and callback loop.

``learn.predict`` builds a one-item DataLoader, runs the whole callback loop, decodes the full
JPEG and copies it several times before the network sees it. ``FastPredictor`` keeps only what
decides the answer: the model (eval mode), the vocab, and the learner's VALIDATION transforms,
read from the exported ``dls.valid.after_item`` / ``after_batch`` pipelines and reproduced step by
step with the same Pillow and torch calls. A transform it does not know how to reproduce is
refused (``UnsupportedLearner``) when the predictor is built, so a fast path that would give
different answers can never silently ship.

What fastai does on the validation split, and what is reproduced here:

* ``RandomResizedCrop`` (split_idx None): at validation, squish-resize the whole image to
  ``size + xtra`` (xtra = ceil(max(size) * val_xtra / 8) * 8) with its resample mode, then a
  centre crop to ``size``. (fastai's no-op crop and zero-width pad copies are left out.)
* ``Resize`` (squish, crop or pad): the same arithmetic as ``Resize.encodes`` with the centre
  position (0.5, 0.5); a crop that would need padding goes through fastai's own ``crop_pad``.
* ``ToTensor``, ``IntToFloatTensor`` (``x.float() / div``), ``Normalize`` (only when the learner
  has one: fastai adds it only for pretrained models).
* ``AffineCoordTfm`` (the flip/rotate/zoom/warp group of ``aug_transforms``): at validation it
  resamples the batch through an identity grid; the result equals the input up to float
  rounding (<= 3e-5 on a 0..1 pixel scale). With ``exact_resample=True`` that identity
  ``grid_sample`` is run as fastai runs it; by default it is skipped (see docs/performance.md
  for what that changes: nothing in top-1, well under 1e-4 in probability).
* Transforms with ``split_idx == 0`` (``Brightness``/``Contrast`` lighting, ...) do not run on the
  validation split and are skipped.

Beside the probabilities, the network gives each image's features (the body's output averaged
over the image, L2-normalised, as classifier.similar computes them), which the worker compares
with the training photos' (classifier.familiarity); a model that is not a vision learner's
Sequential(body, head) gives probabilities only. The network runs on the fastest backend that
gives the eager model's probabilities (and features) on a check batch: ONNX Runtime (the model
exported to ONNX in memory; the network alone about 1.5x faster than TorchScript at batch 1 on 2
cores), else a TorchScript trace, frozen (batch norm folded into the convolutions) and optimised
for inference, else the eager module. Everything runs under ``torch.inference_mode()``, in
batches of at most ``max_batch`` images.

``load_image`` decodes a file the way ``PILImage.create`` does (load, convert to RGB), except that
a large JPEG is decoded at a reduced DCT scale (``Image.draft``) when it is at least 8x the size
the first resize produces in both directions and over ``DRAFT_MIN_PIXELS``, never below 4x that
size; and that an EXIF orientation tag, when one is present, is applied.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageOps

# Draft (reduced-scale) JPEG decoding changes pixels slightly, so it is used only where it pays:
# on images of at least this many pixels (a phone photo, not a web-sized one).
DRAFT_MIN_PIXELS = 2_000_000
# Draft never reduces an image below this multiple of the size its first resize produces. At 2x,
# 3 of 30 12-megapixel photos changed top-1 label with a weakly trained 128 px model (near ties);
# at 4x none did, and decoding costs the same (entropy decoding dominates, not the IDCT).
DRAFT_HEADROOM = 4
DEFAULT_MAX_BATCH = 32
# A faster backend (ONNX Runtime, frozen TorchScript) is used only if its probabilities are the
# eager model's to this on a check batch.
BACKEND_CHECK_TOLERANCE = 1e-5
# The features only place a photo among the training photos (a cosine similarity, binned by a
# thousandth): a looser check than the probabilities'.
FEATURES_CHECK_TOLERANCE = 1e-4
BACKENDS = ("auto", "onnxruntime", "torchscript", "eager")

_ORIENTATION_TAG = 0x0112


class UnsupportedLearner(ValueError):
    """The learner uses a transform, loss or callback this fast path cannot reproduce."""


# --- decoding ----------------------------------------------------------------------------------


def load_image(path, target: tuple[int, int] | None = None, *, draft_min_pixels: int = DRAFT_MIN_PIXELS,
               exif_transpose: bool = True) -> Image.Image:
    """Open and decode an image as RGB.

    ``target`` is the smallest (width, height) the decoded image may have: a JPEG of at least
    ``draft_min_pixels`` pixels is decoded at the largest DCT reduction (1/2, 1/4, 1/8) that
    keeps both sides >= target. None decodes at full size, exactly as ``PILImage.create``.
    Stored uploads are already upright (labeling.image_checks bakes the orientation in); an
    orientation tag, if a file has one, is applied after decoding.
    """
    with open(path, "rb") as fh:
        im = Image.open(fh)
        orientation = 1
        if exif_transpose:
            orientation = im.getexif().get(_ORIENTATION_TAG, 1) or 1
        if target is not None and im.format in ("JPEG", "MPO") and im.width * im.height >= draft_min_pixels:
            tw, th = target
            if orientation in (5, 6, 7, 8):  # stored sideways: the target is in the upright frame
                tw, th = th, tw
            # Pillow picks the largest reduction that keeps both sides >= (tw, th); a reduction
            # happens only when the image is at least 2x that.
            if im.width >= 2 * tw and im.height >= 2 * th:
                im.draft("RGB", (tw, th))
        im.load()
    if orientation != 1:
        im = ImageOps.exif_transpose(im)
    if im.mode != "RGB":
        im = im.convert("RGB")
    return im


# --- the validation transforms, as a plan ---------------------------------------------------------


@dataclass
class _Step:
    """One PIL-level step of the item plan."""

    kind: str  # "squish" | "center_crop" | "resize"
    size: tuple[int, int]  # (width, height)
    resample: int = Image.BILINEAR
    method: str = "squish"  # for "resize": fastai's ResizeMethod
    pad_mode: str = "zeros"

    def __call__(self, im: Image.Image) -> Image.Image:
        if self.kind == "squish":
            return im.resize(self.size, self.resample)
        if self.kind == "center_crop":
            w, h = im.size
            cw, ch = self.size
            left, top = (w - cw) // 2, (h - ch) // 2
            if left < 0 or top < 0:
                raise ValueError("centre crop larger than the image")  # never from RandomResizedCrop
            return im.crop((left, top, left + cw, top + ch))
        return self._resize(im)

    def _resize(self, im):
        """fastai's Resize.encodes at validation (pcts = 0.5, 0.5)."""
        if self.method == "squish":
            return im.resize(self.size, self.resample)
        import operator

        w, h = im.size
        sw, sh = self.size
        op = operator.gt if self.method == "pad" else operator.lt
        m = w / sw if op(w / sw, h / sh) else h / sh
        cp_w, cp_h = int(m * sw), int(m * sh)
        left, top = int(0.5 * (w - cp_w)), int(0.5 * (h - cp_h))
        if left >= 0 and top >= 0 and left + cp_w <= w and top + cp_h <= h:
            # Inside the image: fastai's zero-width pad is a copy, so crop + resize is the same.
            return im.crop((left, top, left + cp_w, top + cp_h)).resize(self.size, self.resample)
        # Padding needed: let fastai's own crop_pad do exactly what it does.
        from fastcore.basics import fastuple
        import fastai.vision.augment  # noqa: F401  (patches Image.crop_pad)

        return im.crop_pad(fastuple(cp_w, cp_h), fastuple(left, top), orig_sz=fastuple(w, h),
                           pad_mode=self.pad_mode, resize_mode=self.resample, resize_to=fastuple(sw, sh))

    @property
    def first_resize_size(self):
        return self.size if self.kind in ("squish", "resize") else None


@dataclass
class _BatchPlan:
    div: float | None = None
    mean: object = None  # torch tensor (1, C, 1, 1) or None
    std: object = None
    identity_resamples: list = field(default_factory=list)  # AffineCoordTfm kwargs, validation


def _type_name(obj):
    return type(obj).__name__


def _item_plan(after_item) -> tuple[list[_Step], list[str]]:
    from fastai.vision.augment import RandomResizedCrop, Resize
    from fastai.vision.core import ToTensor

    steps, notes, saw_tensor = [], [], False
    for tfm in after_item.fs:
        if getattr(tfm, "split_idx", None) == 0:
            notes.append(f"{_type_name(tfm)}: training only, skipped")
            continue
        if saw_tensor:
            raise UnsupportedLearner(f"Item transform {_type_name(tfm)} after ToTensor is not supported.")
        if type(tfm) is RandomResizedCrop:
            w, h = (int(v) for v in tfm.size)
            xtra = math.ceil(max(w, h) * tfm.val_xtra / 8) * 8
            steps.append(_Step("squish", (w + xtra, h + xtra), resample=tfm.mode))
            if xtra:
                steps.append(_Step("center_crop", (w, h)))
            notes.append(f"RandomResizedCrop: squish to {w + xtra}x{h + xtra}, centre crop {w}x{h}")
        elif type(tfm) is Resize:
            w, h = (int(v) for v in tfm.size)
            method = str(tfm.method)
            if method not in ("squish", "crop", "pad"):
                raise UnsupportedLearner(f"Resize method {method!r} is not supported.")
            steps.append(_Step("resize", (w, h), resample=tfm.mode, method=method, pad_mode=str(tfm.pad_mode)))
            notes.append(f"Resize: {method} to {w}x{h}")
        elif type(tfm) is ToTensor:
            saw_tensor = True
        else:
            raise UnsupportedLearner(f"Item transform {_type_name(tfm)} is not supported by the fast path.")
    if not saw_tensor:
        raise UnsupportedLearner("The item pipeline has no ToTensor.")
    if not steps:
        # Without a resize, images of different sizes cannot be batched, and fastai could not either.
        raise UnsupportedLearner("The item pipeline has no resize.")
    return steps, notes


def _batch_plan(after_batch) -> tuple[_BatchPlan, list[str]]:
    import torch
    from fastai.data.transforms import IntToFloatTensor, Normalize
    from fastai.vision.augment import AffineCoordTfm, LightingTfm

    plan, notes = _BatchPlan(), []
    for tfm in after_batch.fs:
        if isinstance(tfm, LightingTfm) or (getattr(tfm, "split_idx", None) == 0
                                            and not isinstance(tfm, AffineCoordTfm)):
            notes.append(f"{_type_name(tfm)}: training only, skipped")
            continue
        if type(tfm) is IntToFloatTensor:
            if plan.div is not None or plan.mean is not None:
                raise UnsupportedLearner("IntToFloatTensor twice or after Normalize is not supported.")
            plan.div = tfm.div
            notes.append(f"IntToFloatTensor: / {tfm.div}")
        elif isinstance(tfm, AffineCoordTfm):
            # At validation the matrix is the identity and coordinate transforms are off: an
            # identity resample, unless the transform also resizes.
            if getattr(tfm, "size", None) is not None:
                raise UnsupportedLearner(f"{_type_name(tfm)} with an output size is not supported.")
            if plan.mean is not None:
                raise UnsupportedLearner(f"{_type_name(tfm)} after Normalize is not supported.")
            plan.identity_resamples.append(dict(mode=tfm.mode, pad_mode=tfm.pad_mode,
                                                align_corners=tfm.align_corners))
            notes.append(f"{_type_name(tfm)}: identity resample at validation")
        elif type(tfm) is Normalize:
            if plan.mean is not None:
                raise UnsupportedLearner("Normalize twice is not supported.")
            if tfm.mean is None or tfm.std is None:
                raise UnsupportedLearner("Normalize without statistics is not supported.")
            plan.mean = torch.as_tensor(tfm.mean).detach().cpu().float().clone()
            plan.std = torch.as_tensor(tfm.std).detach().cpu().float().clone()
            if plan.mean.dim() != 4 or plan.std.dim() != 4:
                raise UnsupportedLearner("Normalize statistics must be broadcast as (1, C, 1, 1).")
            notes.append("Normalize")
        else:
            raise UnsupportedLearner(f"Batch transform {_type_name(tfm)} is not supported by the fast path.")
    if plan.div is None:
        raise UnsupportedLearner("The batch pipeline has no IntToFloatTensor.")
    return plan, notes


def _harmless_callbacks():
    """fastai's default callbacks: they change nothing about what get_preds computes."""
    from fastai.callback.core import TrainEvalCallback
    from fastai.callback.progress import ProgressCallback
    from fastai.learner import CastToTensor, Recorder

    return (TrainEvalCallback, Recorder, CastToTensor, ProgressCallback)


def _with_features(model, example):
    """A module that returns (logits, features) for a vision learner's Sequential(body, head);
    None for any other model (it then gives probabilities only)."""
    import torch

    if not (isinstance(model, torch.nn.Sequential) and len(model) == 2):
        return None

    class LogitsAndFeatures(torch.nn.Module):
        def __init__(self, body, head):
            super().__init__()
            self.body, self.head = body, head

        def forward(self, x):
            found = self.body(x)
            # As classifier.similar.features: the body's output averaged over the image, L2-normalised.
            features = torch.nn.functional.normalize(found.float().mean(dim=(2, 3)), dim=1)
            return self.head(found), features

    net = LogitsAndFeatures(model[0], model[1]).eval()
    try:
        with torch.no_grad():
            logits, features = net(example)
            same = torch.allclose(logits, model(example), rtol=0, atol=1e-6)
    except Exception:  # noqa: BLE001 - a body whose output is not an image of features
        return None
    return net if same and features.dim() == 2 else None


def _check_learner(learn):
    from fastai.losses import CrossEntropyLossFlat
    from fastai.vision.core import PILImage

    dls = learn.dls
    pipe = getattr(dls.valid, "before_batch", None)
    if pipe is not None and len(pipe.fs):
        raise UnsupportedLearner("A before_batch pipeline is not supported.")
    try:
        x_tfms = list(dls.valid_ds.tls[0].tfms.fs)
    except (AttributeError, IndexError):
        x_tfms = []
    if x_tfms:
        # The x type transform must be PILImage.create (RGB), not e.g. PILImageBW.create.
        last = x_tfms[-1]
        impls = [m.implementation for m in getattr(getattr(last, "encodes", None), "methods", [])]
        if not any(getattr(f, "__self__", None) is PILImage and getattr(f, "__name__", "") == "create"
                   for f in impls):
            raise UnsupportedLearner(f"The input type transform {last!r} is not PILImage.create.")
    others = {type(cb).__name__ for cb in learn.cbs if type(cb) not in _harmless_callbacks()}
    if others:
        raise UnsupportedLearner(f"Callbacks {', '.join(sorted(others))} may change predictions.")
    if not isinstance(learn.loss_func, CrossEntropyLossFlat):
        raise UnsupportedLearner(f"Loss {learn.loss_func!r}: only CrossEntropyLossFlat (softmax) is supported.")
    return learn.loss_func.axis


# --- the predictor ------------------------------------------------------------------------------


class FastPredictor:
    """Predict class probabilities for PIL images with a learner's model and validation transforms."""

    def __init__(self, model, vocab, steps, batch_plan, *, softmax_axis=-1, max_batch=DEFAULT_MAX_BATCH,
                 channels_last=False, exact_resample=False, notes=(), gives_features=False):
        # The eager module: logits, or (logits, features) when gives_features.
        self.model = model  # what the torch backends call: the eager module, or its frozen TorchScript
        self.eager_model = model
        self.gives_features = gives_features
        self.backend = "eager"  # "onnxruntime" | "torchscript" | "eager": see from_learner
        self._session = None  # the onnxruntime InferenceSession when backend == "onnxruntime"
        self.vocab = list(vocab)
        self.steps = list(steps)
        self.batch_plan = batch_plan
        self.softmax_axis = softmax_axis
        self.max_batch = int(max_batch)
        self.channels_last = channels_last
        self.exact_resample = exact_resample
        self.notes = list(notes)
        first = next(s.first_resize_size for s in self.steps if s.first_resize_size is not None)
        # The decoder may reduce an image down to DRAFT_HEADROOM x what the first resize produces.
        self.decode_target = (DRAFT_HEADROOM * first[0], DRAFT_HEADROOM * first[1])
        self.input_size = next(s.size for s in reversed(self.steps))  # (width, height) the model sees

    @property
    def jit(self) -> bool:
        return self.backend == "torchscript"

    @classmethod
    def from_learner(cls, learn, *, max_batch=DEFAULT_MAX_BATCH, backend="auto", channels_last=False,
                     exact_resample=False):
        """Build from a (loaded, exported) learner; raise UnsupportedLearner if it cannot be reproduced.

        backend: how the network runs. "auto" (the default) tries, in order of speed on a CPU,
        ONNX Runtime, then a frozen TorchScript trace, then the eager module, and keeps the first
        that builds and gives the eager model's probabilities on a check batch (to
        BACKEND_CHECK_TOLERANCE). "onnxruntime", "torchscript" try only that one before eager;
        "eager" is the module as fastai runs it.
        """
        import torch

        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}")
        axis = _check_learner(learn)
        dls = learn.dls
        # learn.predict and test_dl use the validation DataLoader's pipelines (split_idx 1).
        steps, item_notes = _item_plan(dls.valid.after_item)
        batch_plan, batch_notes = _batch_plan(dls.valid.after_batch)
        model = learn.model.cpu().eval()
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        predictor = cls(model, list(dls.vocab), steps, batch_plan, softmax_axis=axis, max_batch=max_batch,
                        channels_last=channels_last, exact_resample=exact_resample,
                        notes=item_notes + batch_notes)
        net = _with_features(model, predictor._check_batches()[0][:1])
        if net is None:
            predictor.notes.append("no features: the model is not a vision learner's Sequential(body, head)")
        else:
            predictor.model = predictor.eager_model = net
            predictor.gives_features = True
        if backend in ("auto", "onnxruntime") and predictor.use_onnxruntime():
            return predictor
        if backend in ("auto", "torchscript"):
            predictor.use_jit()
        return predictor

    def _check_batches(self):
        """Random images at the model's input size: a batch of 3 and a batch of 1."""
        rng = np.random.default_rng(0)
        w, h = self.input_size
        images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for _ in range(3)]
        example = self.to_batch(images)
        return example, (example, example[:1])

    def _outputs(self, out):
        """(logits tensor, features ndarray or None) from what a backend returned."""
        import torch

        if not self.gives_features:
            return torch.as_tensor(out), None
        logits, features = out
        return torch.as_tensor(logits), np.asarray(features, dtype=np.float32)

    def _check_against_eager(self, run, batches, what):
        import torch

        for x in batches:
            got, got_features = self._outputs(run(x))
            want, want_features = self._outputs(self.eager_model(x))
            diff = float((torch.softmax(got.float(), dim=self.softmax_axis)
                          - torch.softmax(want.float(), dim=self.softmax_axis)).abs().max())
            if not diff <= BACKEND_CHECK_TOLERANCE:
                raise ValueError(f"{what} differs from eager by {diff:.1e}")
            if got_features is not None:
                diff = float(np.abs(got_features - want_features).max())
                if not diff <= FEATURES_CHECK_TOLERANCE:
                    raise ValueError(f"{what}'s features differ from eager by {diff:.1e}")

    def use_onnxruntime(self) -> bool:
        """Switch to an ONNX Runtime session of the model if it is faithful; say whether it is used.

        The model is exported to ONNX in memory (nothing is written next to the registry's file,
        whose sha256 is what was checked) and run by ONNX Runtime's CPU provider with as many
        threads as torch has, without spinning threads (the worker shares its cores).
        """
        import io

        import torch

        try:
            import onnxruntime as ort

            example, batches = self._check_batches()
            buffer = io.BytesIO()
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation notice
                outputs = ["logits", "features"] if self.gives_features else ["logits"]
                torch.onnx.export(self.eager_model, (example[:2],), buffer, input_names=["x"], output_names=outputs,
                                  dynamic_axes={"x": {0: "batch"}, **{name: {0: "batch"} for name in outputs}},
                                  opset_version=17, dynamo=False)
            options = ort.SessionOptions()
            options.intra_op_num_threads = torch.get_num_threads()
            options.inter_op_num_threads = 1
            options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            # Spinning threads would burn the cores the web server and database share with us.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            session = ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])
            run = self._onnx_runner(session)
            with torch.no_grad():
                self._check_against_eager(run, batches, "ONNX Runtime model")
        except Exception as exc:  # noqa: BLE001 - any failure keeps a torch backend
            self.notes.append(f"ONNX Runtime not used ({type(exc).__name__}: {exc})")
            return False
        self._session, self.backend = session, "onnxruntime"
        self.notes.append(f"ONNX Runtime {ort.__version__} (CPU, {options.intra_op_num_threads} threads)")
        return True

    def _onnx_runner(self, session):
        if self.gives_features:
            return lambda x: session.run(None, {"x": x.contiguous().numpy()})
        return lambda x: session.run(None, {"x": x.contiguous().numpy()})[0]

    def use_jit(self) -> bool:
        """Switch to a frozen TorchScript trace of the model if it is faithful; say whether it is used."""
        import torch

        example, batches = self._check_batches()
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")  # torch.jit's deprecation and tracer warnings
                traced = torch.jit.trace(self.eager_model, example[:2], check_trace=False)
                frozen = torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))
                with torch.jit.optimized_execution(False):  # other batch sizes than the traced one
                    self._check_against_eager(frozen, batches, "frozen model")
        except Exception as exc:  # noqa: BLE001 - any failure keeps the eager model
            self.notes.append(f"TorchScript not used ({type(exc).__name__}: {exc}); eager model")
            return False
        self.model, self.backend = frozen, "torchscript"
        self.notes.append("TorchScript trace, frozen and optimised for inference")
        return True

    # PIL level ------------------------------------------------------------------------------------

    def transform_image(self, im: Image.Image) -> Image.Image:
        if im.mode != "RGB":
            im = im.convert("RGB")
        for step in self.steps:
            im = step(im)
        return im

    def load(self, path, *, draft: bool = True) -> Image.Image:
        return load_image(path, self.decode_target if draft else None)

    # tensor level ---------------------------------------------------------------------------------

    def to_batch(self, images):
        """uint8 (N, H, W, 3) -> the float tensor the model sees, as fastai builds it.

        The arithmetic is fastai's (float32, divide, then normalise), done in numpy: torch's
        elementwise ops run on its OpenMP threads, which keep spinning for a while afterwards
        and took a core from ONNX Runtime's run that follows (35.5 instead of 31 ms per photo at
        batch 1 with 2 threads on an AMD EPYC).
        """
        import torch

        plan = self.batch_plan
        arr = np.stack([np.asarray(self.transform_image(im)) for im in images])
        x = np.ascontiguousarray(arr.transpose(0, 3, 1, 2), dtype=np.float32)
        x /= np.float32(plan.div)
        if self.exact_resample and plan.identity_resamples:
            x = self._identity_resamples(torch.from_numpy(x)).numpy()
        if plan.mean is not None:
            x -= plan.mean.numpy()
            x /= plan.std.numpy()
        x = torch.from_numpy(x)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _identity_resamples(self, x):
        """fastai's identity grid_sample at validation, run as fastai runs it (exact_resample)."""
        from fastai.vision.augment import _grid_sample, _init_mat, _prepare_mat, affine_grid

        for kw in self.batch_plan.identity_resamples:
            mat = _prepare_mat(x, _init_mat(x))
            coords = affine_grid(mat, x.shape[:2] + x.shape[-2:], align_corners=kw["align_corners"])
            x = _grid_sample(x, coords, mode=kw["mode"], padding_mode=kw["pad_mode"],
                             align_corners=kw["align_corners"])
        return x.contiguous()

    def predict(self, images) -> np.ndarray:
        """Probabilities, shape (len(images), len(vocab)), in batches of at most max_batch."""
        return self.predict_with_features(images)[0]

    def predict_with_features(self, images):
        """(probabilities (n, len(vocab)), features (n, d) float32 or None without them)."""
        import torch

        probs, features = [], []
        # A frozen module runs as optimised at freeze time; the profiling executor would also
        # re-specialise it for every new batch size, which costs more than it brings here.
        with torch.inference_mode(), torch.jit.optimized_execution(not self.jit):
            for start in range(0, len(images), self.max_batch):
                logits, found = self.run(self.to_batch(images[start:start + self.max_batch]))
                probs.append(torch.softmax(logits.float(), dim=self.softmax_axis).numpy())
                features.append(found)
        return self._joined(probs, features)

    def _joined(self, probs, features):
        if not probs:
            return np.zeros((0, len(self.vocab)), dtype=np.float32), None
        return np.concatenate(probs), np.concatenate(features) if self.gives_features else None

    def run(self, x):
        """The network on a ready batch, on whichever backend this predictor uses: (logits
        tensor, features ndarray or None)."""
        if self._session is not None:
            out = self._session.run(None, {"x": x.contiguous().numpy()})
            return self._outputs(out if self.gives_features else out[0])
        return self._outputs(self.model(x))

    def logits(self, x):
        return self.run(x)[0]

    def predict_paths(self, paths, *, draft: bool = True) -> np.ndarray:
        return self.predict_paths_with_features(paths, draft=draft)[0]

    def predict_paths_with_features(self, paths, *, draft: bool = True):
        probs, features = [], []
        for start in range(0, len(paths), self.max_batch):
            images = [self.load(p, draft=draft) for p in paths[start:start + self.max_batch]]
            batch_probs, batch_features = self.predict_with_features(images)
            probs.append(batch_probs)
            features.append(batch_features)
        return self._joined(probs, features)

    def as_dicts(self, probs) -> list[dict[str, float]]:
        return [{label: float(p) for label, p in zip(self.vocab, row)} for row in probs]


__all__ = ["FastPredictor", "UnsupportedLearner", "load_image", "DRAFT_MIN_PIXELS"]
