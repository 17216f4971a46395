"""Training as in the fast.ai book's chapter 2, kept free of Django so that it can be read
(and tested) on its own: a DataBlock over a frozen list of (path, label, is_valid) rows,
RandomResizedCrop item transforms, aug_transforms batch transforms, fine_tune (or
fit_one_cycle from scratch), metrics from the validation split, and export."""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import cores

ARCHITECTURES = ("resnet18", "resnet34", "xresnet18", "xresnet34")
# Architectures that have torchvision pretrained weights; xresnets always train from scratch.
PRETRAINABLE = {"resnet18": "ResNet18_Weights", "resnet34": "ResNet34_Weights"}


# The API's serializer and the page's form take their bounds from here.
LEARNING_RATE_MIN, LEARNING_RATE_MAX = 1e-7, 9.99


@dataclass
class TrainingOptions:
    architecture: str = "resnet18"
    image_size: int = 128
    epochs: int = 3
    batch_size: int = 32
    learning_rate: float | None = 2e-3  # None: use the learning-rate finder
    pretrained: bool = True
    seed: int = 42
    # k >= 2 trains k extra models for out-of-sample losses of the training photos (cleaning).
    cleaning_folds: int = 0

    def __post_init__(self):
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"Unknown architecture {self.architecture!r}; choose one of {', '.join(ARCHITECTURES)}.")
        if not 16 <= int(self.image_size) <= 1024:
            raise ValueError("image_size must be between 16 and 1024 pixels.")
        if not 1 <= int(self.epochs) <= 100:
            raise ValueError("epochs must be between 1 and 100.")
        if not 1 <= int(self.batch_size) <= 512:
            raise ValueError("batch_size must be between 1 and 512.")
        if int(self.cleaning_folds) not in (0, *range(2, 11)):
            raise ValueError("cleaning_folds must be 0 (off) or between 2 and 10.")
        if not 0 <= int(self.seed) <= 2**32 - 1:  # numpy's seeds; the API's serializer has the same bounds
            raise ValueError("seed must be between 0 and 4294967295.")
        if self.learning_rate is not None and not LEARNING_RATE_MIN <= float(self.learning_rate) <= LEARNING_RATE_MAX:
            raise ValueError(f"learning_rate must be between {LEARNING_RATE_MIN:g} and {LEARNING_RATE_MAX:g}, "
                             "or null for the finder.")

    @classmethod
    def from_dict(cls, data):
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"Unknown training options: {', '.join(sorted(unknown))}.")
        return cls(**data)

    def as_dict(self):
        return {f: getattr(self, f) for f in self.__dataclass_fields__}


@dataclass
class TrainingResult:
    labels: list[str]
    metrics: dict
    history: list[dict]
    device: str
    pretrained_used: bool
    log: list[str] = field(default_factory=list)
    # {row index: (loss, {label: p})} from a model that did not train on the row.
    out_of_sample: dict = field(default_factory=dict)
    # float16 (rows, d): each row's features as the trained model sees them (classifier.similar); None if not kept.
    features: object = None


def is_validation(key: str, percent: int = 20) -> bool:
    """The split is fixed per photo (from a stable key such as its id), so runs are comparable."""
    digest = hashlib.sha256(str(key).encode()).digest()
    return int.from_bytes(digest[:4], "big") % 100 < percent


def labels_without_training_rows(rows) -> dict:
    """{label: number of rows} for the labels none of whose (key, label, is_valid) rows is in
    the training split.

    The split is fixed per photo, so a new label's first photo or two may all be validation
    photos: trained on, such a label would be an output the model never learnt, every one of
    its photos a validation error, and its zero scores would look measured."""
    trained = {label for _, label, valid in rows if not valid}
    counts = {}
    for _, label, _ in rows:
        if label not in trained:
            counts[label] = counts.get(label, 0) + 1
    return dict(sorted(counts.items()))


def data_hash(rows) -> str:
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()


def pretrained_weights_path(architecture: str) -> Path | None:
    """Where torchvision keeps the weights in the local torch cache (TORCH_HOME)."""
    if architecture not in PRETRAINABLE:
        return None
    import torch
    import torchvision.models as tvm

    weights = getattr(tvm, PRETRAINABLE[architecture]).DEFAULT
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)


def pick_device():
    import torch

    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def loader_workers(device, requested: int | None = None) -> int:
    """Worker processes that decode and augment the training photos.

    On a GPU the training process alone cannot feed it: with none, an H200 trained 262 images/s
    while it waited on one core's JPEG decoding and RandomResizedCrop, and 613 with 8 (see
    docs/performance.md). On the CPU, workers would take cores from the training arithmetic
    itself, so there are none unless asked for."""
    if requested is not None:
        return int(requested)
    if device.type != "cuda":
        return 0
    return max(0, min(8, cores.given() - 1))  # the cores this process is given, less its own


def _make_callback(on_progress, should_cancel):
    """A fastai callback reporting batch and epoch progress and honouring cancellation."""
    from fastai.callback.core import Callback, CancelFitException

    class ProgressCallback(Callback):
        order = 90  # after the Recorder, so that epoch losses are available in after_epoch

        def __init__(self):
            self.total_epochs = 0
            self.done_epochs = 0
            self.history = []
            self._last_report = 0.0
            self._cancelled = False
            self.record_history = True  # the loss curve shows the main fit, not the cleaning folds

        def cancelled(self):
            return self._cancelled

        def _stop_if_cancelled(self):
            if should_cancel():
                self._cancelled = True
                raise CancelFitException()

        def after_batch(self):
            if not self.training:
                return
            now = time.monotonic()
            if now - self._last_report < 0.5:
                return
            self._last_report = now
            self._stop_if_cancelled()
            done = self.done_epochs + self.iter / max(1, self.n_iter)
            on_progress(epoch=self.done_epochs + 1, total_epochs=self.total_epochs, batch=self.iter + 1,
                        total_batches=self.n_iter, fraction=min(0.99, done / max(1, self.total_epochs)))

        def after_epoch(self):
            self.done_epochs += 1
            names = self.recorder.metric_names[1:-1]  # drop "epoch" and "time"
            values = self.recorder.values[-1] if self.recorder.values else []
            entry = {"epoch": self.done_epochs}
            # A diverged loss is NaN or inf, which JSON (and PostgreSQL's json type) cannot hold.
            entry.update({n: _finite_or_none(v) for n, v in zip(names, values)})
            if self.record_history:
                self.history.append(entry)
            on_progress(epoch=self.done_epochs, total_epochs=self.total_epochs, batch=self.n_iter,
                        total_batches=self.n_iter, fraction=min(0.99, self.done_epochs / max(1, self.total_epochs)),
                        history=self.history)
            self._stop_if_cancelled()

    return ProgressCallback()


def _finite_or_none(value):
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


class TrainingCancelled(Exception):
    pass


def train(rows, options: TrainingOptions, export_path: Path, *, on_progress=lambda **kw: None,
          should_cancel=lambda: False, confusion_png: Path | None = None,
          top_losses_png: Path | None = None, workers: int | None = None) -> TrainingResult:
    """Train on rows of (path, label, is_valid) and export the learner to export_path.

    The result carries, per row, the loss and probabilities from a model that did not train
    on that row: the validation rows from this model and, with cleaning_folds >= 2, the
    training rows from k-fold models (in-sample losses would hide label errors). workers:
    data-loading processes, None to choose by device (loader_workers).
    """
    import torch

    log = []
    labels = sorted({label for _, label, _ in rows})
    if len(labels) < 2:
        raise ValueError("Training needs human-verified photos of at least two labels.")
    if not any(valid for _, _, valid in rows):
        raise ValueError("The validation split is empty; add more labelled photos.")
    if all(valid for _, _, valid in rows):
        raise ValueError("The training split is empty; add more labelled photos.")
    untrained = labels_without_training_rows(rows)
    if untrained:
        raise ValueError(f"No training photo of {', '.join(untrained)}: all its photos are in the validation "
                         "split, and the model would have an output it never learnt. Leave the label out, "
                         "or add more photos of it.")

    device = pick_device()
    workers = loader_workers(device, workers)
    folds = int(options.cleaning_folds)
    fits = 1 + (folds if folds >= 2 else 0)
    epochs_per_fit = options.epochs + (1 if _use_pretrained(options, []) else 0)
    progress = _make_callback(on_progress, should_cancel)
    # Every epoch of every fit: fine_tune's frozen epoch and the cleaning folds' fits count too, so
    # that the epoch shown never passes the total (the run was created with the epochs asked for).
    progress.total_epochs = fits * epochs_per_fit

    learn, pretrained = _fit(rows, labels, options, device, progress, log, workers)
    metrics = evaluate(learn, labels, confusion_png)
    out_of_sample = _losses(learn, [i for i, r in enumerate(rows) if r[2]], labels)
    if top_losses_png is not None:
        _plot_top_losses(learn, top_losses_png)
    learn.logger = print  # the export pickles the learner, and a closure does not pickle
    _export(learn, export_path)
    features = _features(learn, rows, log)

    if folds >= 2:
        log.append(f"Cleaning pass: {folds}-fold out-of-sample losses for the training photos.")
        progress.record_history = False
        out_of_sample.update(_kfold_losses(rows, labels, options, device, progress, log, folds, workers))
    return TrainingResult(labels=labels, metrics=metrics, history=progress.history,
                          device=str(device) if device.type == "cpu" else torch.cuda.get_device_name(0),
                          pretrained_used=pretrained, log=log, out_of_sample=out_of_sample, features=features)


def _features(learn, rows, log):
    """What classifier.similar compares a reviewed photo with. Optional: a failure here costs the
    review page its similar photos, not the run its model."""
    from .similar import NOT_KEPT, embed_learner_rows

    try:
        with learn.no_bar():
            return embed_learner_rows(learn, [path for path, _, _ in rows])
    except Exception as exc:  # noqa: BLE001 - logged in the run, and the model is kept
        log.append(NOT_KEPT.format(f"{type(exc).__name__}: {exc}"))
        return None


def _use_pretrained(options, log):
    """Pretrained weights only from the local torch cache: nothing is downloaded."""
    if not options.pretrained:
        return False
    if options.architecture not in PRETRAINABLE:
        log.append(f"{options.architecture} has no pretrained weights; training from scratch.")
        return False
    weights = pretrained_weights_path(options.architecture)
    if not weights.exists():
        log.append(f"Pretrained weights for {options.architecture} are not in the local torch cache "
                   f"({weights}); training from scratch instead.")
        return False
    log.append(f"Loaded pretrained weights from {weights}.")
    return True


def _fit(rows, labels, options, device, progress, log, workers=0):
    """Build the book's DataBlock and learner over rows, and train it. Returns (learner, pretrained)."""
    import pandas as pd
    import torch
    from fastai.vision.all import (CategoryBlock, ColReader, ColSplitter, DataBlock, ImageBlock,
                                   RandomResizedCrop, aug_transforms, error_rate, set_seed,
                                   vision_learner)
    import fastai.vision.models.xresnet as fxr
    import torchvision.models as tvm

    set_seed(options.seed, reproducible=True)
    df = pd.DataFrame(rows, columns=["path", "label", "is_valid"])
    size = int(options.image_size)
    dblock = DataBlock(
        blocks=(ImageBlock, CategoryBlock(vocab=labels)),
        get_x=ColReader("path"),
        get_y=ColReader("label"),
        splitter=ColSplitter("is_valid"),
        item_tfms=RandomResizedCrop(size, min_scale=0.5),
        batch_tfms=aug_transforms(),
    )
    # fastai drops the last incomplete training batch: with fewer training photos than the batch
    # size there would be no batch at all, and the "trained" model would be the untrained one.
    bs = int(options.batch_size)
    n_train = len(df) - int(df.is_valid.astype(bool).sum())
    if n_train < bs:
        log.append(f"Batch size lowered from {bs} to {n_train}: the training split has only {n_train} photos.")
        bs = n_train
    dls = dblock.dataloaders(df, bs=bs, num_workers=workers, device=device, pin_memory=device.type == "cuda")

    pretrained = _use_pretrained(options, log)
    arch = getattr(fxr, options.architecture) if options.architecture.startswith("x") else getattr(tvm, options.architecture)
    learn = vision_learner(dls, arch, pretrained=pretrained, metrics=error_rate)
    # fastai prints each epoch's row; keep it in the run's log instead of on stdout.
    learn.logger = lambda row: log.append("epoch " + " ".join(str(v) for v in row))
    if device.type == "cuda":
        learn.to_fp16()
        learn.to_channelslast()
        log.append(f"Training on {torch.cuda.get_device_name(0)} with mixed precision and channels_last, "
                   f"{_workers_phrase(workers)}.")
    else:
        log.append(f"Training on the CPU with {torch.get_num_threads()} threads, {_workers_phrase(workers)}.")

    lr = options.learning_rate
    if lr is None:
        with tempfile.TemporaryDirectory(prefix="plantsite-lr-find-") as scratch, learn.no_bar():
            # fastai's finder saves and restores the weights under learn.path/model_dir, which
            # is ./models in whatever directory the worker was started from.
            learn.model_dir = scratch
            lr = float(learn.lr_find(show_plot=False).valley)
        learn.model_dir = "models"
        log.append(f"Learning-rate finder suggests {lr:.2e}.")
    with learn.no_bar():
        if pretrained:
            learn.fine_tune(options.epochs, base_lr=lr, cbs=[progress])
        else:
            learn.fit_one_cycle(options.epochs, lr, cbs=[progress])
    if progress.cancelled():
        raise TrainingCancelled()
    return learn, pretrained


def _export(learn, path):
    """learn.export, with loaders that start no worker processes and pin no memory: the exported
    learner's loaders are what inference (in daemonic Celery processes, maybe without a GPU)
    and a user's own load_learner(...).dls.test_dl build on."""
    from fastai.data.core import DataLoaders

    trained = learn.dls
    learn.dls = DataLoaders(*(dl.new(num_workers=0, pin_memory=False) for dl in trained.loaders),
                            path=trained.path, device=trained.device)
    try:
        learn.export(path)
    finally:
        learn.dls = trained


def _workers_phrase(workers):
    if not workers:
        return "photos loaded in the training process"
    return f"{workers} data-loading worker{'s' if workers != 1 else ''}"


def _losses(learn, row_indices, labels):
    """{row index: (loss, {label: p})} for the learner's validation set, in row order."""
    with learn.no_bar():
        probs, _, losses = learn.get_preds(ds_idx=1, with_loss=True)
    vocab = list(learn.dls.vocab)
    return {
        row: (_finite_or_none(loss), {vocab[j]: float(p[j]) for j in range(len(vocab))})
        for row, loss, p in zip(row_indices, losses.tolist(), probs)
    }


def _kfold_losses(rows, labels, options, device, progress, log, folds, workers=0):
    """Out-of-sample losses for the training rows: each fold is predicted by a model trained
    on the other folds. The frozen validation rows stay out of these fits."""
    train_idx = [i for i, r in enumerate(rows) if not r[2]]
    result = {}
    for k in range(folds):
        fitted = [i for n, i in enumerate(train_idx) if n % folds != k]
        trained = {rows[i][1] for i in fitted}
        held_out = [i for n, i in enumerate(train_idx) if n % folds == k]
        # A held-out photo whose label no fitted photo has would score a high loss because the
        # label is rare here, not because it is wrong, and the cleaner would list it among the
        # likely mistakes: nothing out of sample can score it, so it is left unscored.
        unscored = [i for i in held_out if rows[i][1] not in trained]
        held_out = [i for i in held_out if rows[i][1] in trained]
        if unscored:
            log.append(f"Fold {k + 1}: {len(unscored)} photo(s) not scored: no other training photo has "
                       "their label.")
        if len(trained) < 2 or not held_out:
            log.append(f"Fold {k + 1}: too few photos, skipped.")
            continue
        fold_rows = [(*rows[i][:2], False) for i in fitted] + [(*rows[i][:2], True) for i in held_out]
        fold_options = TrainingOptions.from_dict({**options.as_dict(), "cleaning_folds": 0})
        learn, _ = _fit(fold_rows, labels, fold_options, device, progress, log, workers)
        result.update(_losses(learn, held_out, labels))
    return result


def evaluate(learn, labels, confusion_png=None) -> dict:
    """Error rate, per-label precision/recall/F1, the confusion matrix and the calibration of the
    top confidence on the validation set."""
    import numpy as np

    from classifier.calibration import summarise

    with learn.no_bar():
        probs, targets = learn.get_preds(ds_idx=1)
    preds = probs.argmax(dim=1).numpy()
    targets = targets.numpy()
    n = len(labels)
    matrix = np.zeros((n, n), dtype=int)
    for t, p in zip(targets, preds):
        matrix[t, p] += 1
    per_label = {}
    for i, label in enumerate(labels):
        tp = int(matrix[i, i])
        predicted = int(matrix[:, i].sum())
        actual = int(matrix[i, :].sum())
        if not actual:
            # No validation photo of the label: its recall (and F1) was not measured, which 0.0
            # would not say. Its precision was, if the model gave the label to other photos: 0.
            per_label[label] = {"precision": 0.0 if predicted else None, "recall": None, "f1": None, "support": 0}
            continue
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_label[label] = {"precision": precision, "recall": recall, "f1": f1, "support": actual}
    total = int(matrix.sum())
    error = 1.0 - (float(np.trace(matrix)) / total if total else 0.0)
    if confusion_png is not None:
        _plot_confusion(matrix, labels, confusion_png)
    return {"error_rate": error, "accuracy": 1.0 - error, "valid_count": total,
            "per_label": per_label, "confusion_matrix": matrix.tolist(),
            "calibration": summarise(probs.max(dim=1).values.tolist(), (preds == targets).tolist(),
                                     [labels[i] for i in preds.tolist()])}


def _plot_top_losses(learn, path, k=9):
    """The book's plot_top_losses for the validation set, saved as a picture."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from fastai.interpret import ClassificationInterpretation

    # Both predict (plot_top_losses predicts its photos again, with their inputs): without
    # no_bar, fastai would draw a progress bar into the worker's log and the command's output.
    with learn.no_bar():
        interp = ClassificationInterpretation.from_learner(learn)
        k = min(k, len(interp.losses))
        interp.plot_top_losses(k, nrows=max(1, int(k ** 0.5)))
    plt.gcf().savefig(path, dpi=80, bbox_inches="tight")
    plt.close("all")


def _plot_confusion(matrix, labels, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.2 * len(labels) + 2, 1.2 * len(labels) + 1.5))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("Predicted")
    ax.set_ylabel("Actual")
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, int(matrix[i][j]), ha="center", va="center",
                    color="white" if matrix[i][j] > matrix.max() / 2 else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
