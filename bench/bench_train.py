"""Training benchmark: seconds per epoch and images per second for the project's default
training setup (classifier.training.train with TrainingOptions() defaults: resnet18 at 128 px,
batch 32, RandomResizedCrop + aug_transforms), on the CPU and, when there is one, on the GPU.

No pretrained weights can be downloaded here, so train() falls back to training from scratch
(it logs so); fine_tune's frozen first epoch is then absent, the per-epoch cost is the same.

Usage (from the repository root):
  .venv/bin/python bench/bench_train.py [--photos 160] [--epochs 2] [--threads N] [--no-gpu]
      [--workers N] [--flowers DIR]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
warnings.filterwarnings("ignore")

from bench.bench_inference import FLOWERS, cpu_model  # noqa: E402


def rows_from_flowers(n, seed=0, folder=FLOWERS):
    from classifier.training import is_validation

    files = sorted(Path(folder).glob("*/*.jpg"))
    random.Random(seed).shuffle(files)
    return [(str(f), f.parent.name, is_validation(f.name)) for f in files[:n]]


def run(rows, device_name, epochs, workers=None):
    import torch

    import classifier.training as training
    from classifier.training import TrainingOptions

    options = TrainingOptions()
    options.epochs = epochs
    marks = []

    def on_progress(**kw):
        if "history" in kw:  # once per finished epoch
            marks.append(time.perf_counter())

    device = torch.device(device_name)
    original = training.pick_device
    training.pick_device = lambda: device
    try:
        with tempfile.TemporaryDirectory(prefix="plantsite-bench-train-") as tmp:
            t0 = time.perf_counter()
            result = training.train(rows, options, Path(tmp) / "model.pkl", on_progress=on_progress,
                                    workers=workers)
            total = time.perf_counter() - t0
    finally:
        training.pick_device = original
    epoch_times = [b - a for a, b in zip([t0] + marks[:-1], marks)]
    return options, result, epoch_times, total


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=160, help="flower photos (about 20%% go to validation)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per device (the default setup has 3)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-gpu", action="store_true")
    parser.add_argument("--workers", type=int, default=None,
                        help="data-loading processes (default: as the training worker chooses per device)")
    parser.add_argument("--flowers", default=str(FLOWERS), help="the flower photos' folder (default: %(default)s)")
    args = parser.parse_args()

    import fastai
    import torch

    import classifier.training as training

    if args.threads:
        torch.set_num_threads(args.threads)
    if not Path(args.flowers).is_dir():
        raise SystemExit(f"{args.flowers} is missing: the benchmark trains on the shared flower photos.")
    rows = rows_from_flowers(args.photos, folder=args.flowers)
    n_valid = sum(1 for r in rows if r[2])
    n_train = len(rows) - n_valid
    print("## Training benchmark\n")
    print(f"- CPU: {cpu_model()}, {os.cpu_count()} logical cores; torch {torch.__version__}, fastai {fastai.__version__}; "
          f"torch threads {torch.get_num_threads()}; load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"- {n_train} training and {n_valid} validation photos from shared/data/flowers, {args.epochs} epochs\n")
    print("| device | setup | loading workers | s/epoch (steady; each) | training images/s | total s |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() and not args.no_gpu else [])
    for name in devices:
        workers = training.loader_workers(torch.device(name), args.workers)
        options, result, epochs, total = run(rows, name, args.epochs, workers)
        label = torch.cuda.get_device_name(0) if name == "cuda" else "CPU"
        steady = epochs[1:] or epochs  # the first epoch also pays for warm-up
        median = sorted(steady)[len(steady) // 2] if steady else float("nan")
        bs = min(options.batch_size, n_train)
        trained = (n_train // bs) * bs  # fastai drops the last incomplete training batch
        setup = (f"{options.architecture} {options.image_size}px bs{options.batch_size}, "
                 f"pretrained used: {result.pretrained_used}")
        print(f"| {label} | {setup} | {workers} | {median:.1f} ({', '.join(f'{e:.1f}' for e in epochs)}) | "
              f"{trained / median:.1f} | {total:.0f} |", flush=True)
    print("\ns/epoch: median over the epochs after the first (which also pays for warm-up), validation pass "
          "included; images/s: photos trained per epoch (fastai drops the last incomplete batch) per second. "
          f"Load average at the end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}.")


if __name__ == "__main__":
    main()
