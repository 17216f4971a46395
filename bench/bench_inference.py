"""Inference benchmark: fastai's learn.predict / get_preds against Plantsite's fast path.

One process. It trains and exports two learners with the project's own training code
(classifier.training.train): resnet18 at 224 px, and the project's default TrainingOptions
(resnet18 at 128 px), each for one quick epoch on a few photos from shared/data/flowers. No
pretrained weights can be downloaded here, so both are trained from scratch (the logs say so);
the network's size and the input pipeline, which is what is timed, are the same either way.

Images: real photos from shared/data/flowers (never copied into the repository) and the
first of them upscaled to 12 megapixels and saved as JPEGs (quality 92, the quality uploads are
stored at) in a temporary folder, standing in for phone photos.

Rows (interleaved: for every chunk of images each method runs in turn, the order rotating):
  learn.predict       learn.predict(PILImage.create(path)), one image per call
  get_preds           learn.get_preds on learn.dls.test_dl(chunk of paths)
  project bs1         classifier.inference LoadedModel.predict_paths([path]) (decode included)
  project batched     LoadedModel.predict_paths(chunk of paths)
and on the 12 MP JPEGs also
  12 MP via working copy   LoadedModel.predict_paths([working copy]), one image per call: decoding the
                      JPEG working copy that upload stores (labeling.image_checks.working_copy, longer
                      side WORKING_COPY_MAX_SIDE=1024) plus the prediction, compared with learn.predict
                      on the 12 MP original; making the working copy is upload-time work, timed and
                      reported on its own line
and, with --extras (the 224 model), the optional speedups measured against the project's path:
no draft decoding, a frozen TorchScript trace or the eager model instead of ONNX Runtime, fastai's identity
grid_sample kept (exact_resample), channels_last, and with --compile torch.compile (inductor,
freezing; it compiles for a minute or more).

Usage (from the repository root):
  .venv/bin/python bench/bench_inference.py [--real 48] [--big 10] [--batch 16] [--rounds 2]
      [--threads N] [--extras] [--compile] [--only-224] [--working-copy-only]
  --working-copy-only: only the 12 MP JPEGs, only learn.predict, project bs1 and the working-copy
  row, no extras (about a minute on a small CPU).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
warnings.filterwarnings("ignore")

FLOWERS = REPO.parent / "shared" / "data" / "flowers"
RESNET18_GFLOPS_224 = 2 * 1.82  # multiply-adds x 2


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# The CPU features that decide how fast the network runs, as /proc/cpuinfo names them.
SPEED_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def onnxruntime_version():
    try:
        import onnxruntime

        return onnxruntime.__version__
    except ImportError:
        return "not installed"


def cpu_flags():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("flags"):
                present = set(line.split(":", 1)[1].split())
                return " ".join(f for f in SPEED_FLAGS if f in present) or "none of " + " ".join(SPEED_FLAGS)
    except OSError:
        pass
    return "unknown"


def loadavg():
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def pick_photos(n_train, n_eval, seed=0):
    labels = sorted(p.name for p in FLOWERS.iterdir() if p.is_dir())
    rng = random.Random(seed)
    train, evaluate = [], []
    per_train = -(-n_train // len(labels))
    per_eval = -(-n_eval // len(labels))
    for label in labels:
        files = sorted((FLOWERS / label).glob("*.jpg"))
        rng.shuffle(files)
        train += [(f, label) for f in files[:per_train]]
        evaluate += [(f, label) for f in files[per_train:per_train + per_eval]]
    rng.shuffle(evaluate)
    return train, evaluate[:n_eval]


def upscale(paths, folder, megapixels=12.0):
    from PIL import Image

    out = []
    for i, path in enumerate(paths):
        with Image.open(path) as im:
            im = im.convert("RGB")
            s = (megapixels * 1e6 / (im.width * im.height)) ** 0.5
            big = im.resize((round(im.width * s), round(im.height * s)), Image.BICUBIC)
        target = Path(folder) / f"big_{i:02d}.jpg"
        big.save(target, quality=92)
        out.append(str(target))
    return out


def make_working_copies(paths, folder, max_side=1024):
    """What upload stores next to each 12 MP JPEG: check_and_clean, then the working copy.
    Returns {original path: working copy path}, the seconds each working copy took to make and
    write, and for comparison the seconds check_and_clean took (every upload runs it anyway)."""
    from labeling.image_checks import check_and_clean, working_copy

    mapping, seconds, cleaning = {}, [], []
    for path in paths:
        t0 = time.perf_counter()
        with open(path, "rb") as fh:
            clean = check_and_clean(fh, max_bytes=20 * 1024 * 1024, max_pixels=40_000_000)
        cleaning.append(time.perf_counter() - t0)
        target = Path(folder) / (Path(path).stem + "-work.jpg")
        t0 = time.perf_counter()
        target.write_bytes(working_copy(clean, max_side))
        seconds.append(time.perf_counter() - t0)
        mapping[path] = str(target)
    return mapping, seconds, cleaning


def train_model(rows, options, export_path):
    from classifier.training import train

    t0 = time.perf_counter()
    result = train(rows, options, export_path)
    return time.perf_counter() - t0, result


class Method:
    def __init__(self, name, fn, batched, note=""):
        self.name, self.fn, self.batched, self.note = name, fn, batched, note
        self.times = []  # seconds per image, one sample per call
        self.total_time = 0.0
        self.total_images = 0
        self.probs = {}  # path -> probabilities (first round)

    def run(self, paths, record=True):
        t0 = time.perf_counter()
        probs = self.fn(paths)
        dt = time.perf_counter() - t0
        if record:
            self.times.append(dt / len(paths))
            self.total_time += dt
            self.total_images += len(paths)
            for p, row in zip(paths, probs):
                self.probs.setdefault(p, row)


def percentile(values, q):
    values = sorted(values)
    if not values:
        return float("nan")
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


SETTLE_S = 0.05


def run_interleaved(methods, paths, batch, rounds):
    chunks = [paths[i:i + batch] for i in range(0, len(paths), batch)]
    # Warm-up: every method once on the first chunk, not recorded.
    for m in methods:
        m.run(chunks[0][:1] if not m.batched else chunks[0], record=False)
    turn = 0
    for _ in range(rounds):
        for chunk in chunks:
            order = methods[turn % len(methods):] + methods[:turn % len(methods)]
            turn += 1
            for m in order:
                # Each method starts on quiet cores: threads the previous one left spinning (torch's
                # OpenMP pool spins a while after each parallel region) would slow its first image.
                time.sleep(SETTLE_S)
                if m.batched:
                    m.run(chunk)
                else:
                    for p in chunk:
                        m.run([p])


def report(title, methods, reference, lines):
    import numpy as np

    ref = methods[0]
    ref_rate = ref.total_images / ref.total_time
    lines.append(f"\n{title}\n")
    lines.append("| method | p50 ms/img | p95 ms/img | images/s | vs learn.predict | top-1 agreement | max prob diff |")
    lines.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for m in methods:
        rate = m.total_images / m.total_time
        agree, diff = [], 0.0
        for p, row in m.probs.items():
            r = reference[p]
            agree.append(int(np.argmax(row)) == int(np.argmax(r)))
            diff = max(diff, float(np.max(np.abs(np.asarray(row, dtype=np.float64) - np.asarray(r, dtype=np.float64)))))
        name = m.name + (f" ({m.note})" if m.note else "")
        lines.append(f"| {name} | {1000 * percentile(m.times, 0.5):.1f} | {1000 * percentile(m.times, 0.95):.1f} | "
                     f"{rate:.1f} | {rate / ref_rate:.2f}x | {100 * sum(agree) / len(agree):.0f}% "
                     f"({sum(agree)}/{len(agree)}) | {diff:.1e} |")


def build_methods(learn, loaded, export, batch, extras=(), compile_model=False, sample=None, working=None,
                  minimal=False):
    import numpy as np
    import torch
    from fastai.vision.core import PILImage

    def predict_loop(paths):
        with learn.no_bar():
            return [learn.predict(PILImage.create(p))[2].numpy() for p in paths]

    def get_preds(paths):
        dl = learn.dls.test_dl(paths, num_workers=0)
        with learn.no_bar():
            probs, _ = learn.get_preds(dl=dl)
        return probs.numpy()

    def project(paths):
        out = loaded.predict_paths(paths)
        return [np.array([d[k] for k in loaded.labels]) for d in out]

    methods = [
        Method("learn.predict", predict_loop, batched=False),
        Method("get_preds(test_dl)", get_preds, batched=True, note=f"batch {batch}"),
        Method("project bs1", project, batched=False, note="decode included"),
        Method("project batched", project, batched=True, note=f"batch {batch}"),
    ]
    if minimal:
        methods = [methods[0], methods[2]]
    if working:
        # Keyed by the 12 MP original, so that the row is compared with learn.predict on it.
        methods.append(Method("12 MP via working copy bs1", lambda paths: project([working[p] for p in paths]),
                              batched=False, note="decode of the stored working copy included"))
    base = loaded.predictor
    if base is None:
        raise SystemExit("The fast path refused this learner; nothing to compare.")

    def variant(**options):
        from fastai.learner import load_learner

        from classifier.fastpath import FastPredictor

        fresh = load_learner(export, cpu=True)  # its own model: variants never share modules
        return FastPredictor.from_learner(fresh, **options)

    def add(name, predictor, note="", draft=True):
        fn = lambda paths, pr=predictor: list(pr.predict_paths(paths, draft=draft))  # noqa: E731
        methods.append(Method(f"{name} bs1", fn, batched=False, note=note))
        methods.append(Method(f"{name} batched", fn, batched=True, note=note))

    if "nodraft" in extras:
        add("no draft", base, "full-size JPEG decode", draft=False)
    if "torchscript" in extras:
        add("torchscript", variant(backend="torchscript"), "frozen TorchScript instead of ONNX Runtime")
    if "eager" in extras:
        add("eager", variant(backend="eager"), "the module as fastai runs it")
    if "exact" in extras:
        add("exact_resample", variant(exact_resample=True), "fastai's identity grid_sample kept")
    if "channels_last" in extras:
        add("channels_last", variant(backend="eager", channels_last=True), "eager")
    if compile_model:
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True  # fold weights as constants, the CPU-inference setting
        v = variant(backend="eager")
        v.model = torch.compile(v.model, dynamic=False)
        t0 = time.perf_counter()
        for n in sorted({1, batch}):  # compile both batch shapes before timing
            v.predict(sample[:1] * n)
        print(f"torch.compile warm-up: {time.perf_counter() - t0:.0f} s", flush=True)
        add("torch.compile", v, f"compiled in {time.perf_counter() - t0:.0f} s")
    return methods


def bench_model(label, export, real, big, args, lines, extras=(), working=None):
    import torch
    from fastai.learner import load_learner

    from classifier.inference import ModelCache, file_sha256

    learn = load_learner(export, cpu=True)
    learn.model.eval()
    loaded = ModelCache().get(1, export, file_sha256(export), threads=args.threads)
    p = loaded.predictor
    lines.append(f"\n### {label}\n")
    lines.append("Fast path plan: " + "; ".join(p.notes) if p is not None else "Fast path refused.")
    sample = [p.load(x) for x in real[:args.batch]]
    for set_name, paths in (("real photos", real), ("12 MP JPEGs", big)):
        if not paths or (args.working_copy_only and set_name == "real photos"):
            continue
        methods = build_methods(learn, loaded, export, args.batch, extras=extras,
                                compile_model=args.compile and "compile" in extras, sample=sample,
                                working=working if set_name == "12 MP JPEGs" else None,
                                minimal=args.working_copy_only)
        t0 = time.perf_counter()
        run_interleaved(methods, paths, args.batch, args.rounds)
        ref = methods[0].probs
        report(f"{label}, {len(paths)} {set_name} (load {loadavg()} after {time.perf_counter() - t0:.0f} s)",
               methods, ref, lines)
        print("\n".join(lines[-len(methods) - 3:]), flush=True)
    if args.working_copy_only:
        return
    # The network alone on a ready batch, the part the arithmetic floor is about.
    x = p.to_batch(sample)
    with torch.inference_mode():
        for _ in range(2):
            p.logits(x)
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            p.logits(x)
            times.append((time.perf_counter() - t0) / len(x))
    size = x.shape[-1]
    floor = RESNET18_GFLOPS_224 * (size / 224) ** 2
    lines.append(f"\nNetwork alone ({p.backend}), batch {len(x)} at {size} px: median {1000 * statistics.median(times):.1f} ms/img "
                 f"(best {1000 * min(times):.1f}); resnet18 needs {floor:.2f} GFLOP per image.")
    print(lines[-1], flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real", type=int, default=48, help="real photos to predict")
    parser.add_argument("--big", type=int, default=10, help="12 MP JPEGs to predict")
    parser.add_argument("--train", type=int, default=40, help="photos to train on (one epoch)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--extras", action="store_true", help="also measure optional speedups (224 model)")
    parser.add_argument("--compile", action="store_true", help="with --extras, also torch.compile (slow to compile)")
    parser.add_argument("--only-224", action="store_true", help="skip the project-default model")
    parser.add_argument("--working-copy-only", action="store_true",
                        help="only the 12 MP JPEGs: learn.predict, project bs1 and the working-copy row")
    parser.add_argument("--out", type=Path, default=None, help="also write the report (markdown) here")
    args = parser.parse_args()

    import fastai
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    args.threads = torch.get_num_threads()
    if not FLOWERS.is_dir():
        raise SystemExit(f"{FLOWERS} is missing: the benchmark predicts the shared flower photos.")

    lines = [
        "## Inference benchmark",
        "",
        f"- CPU: {cpu_model()}, {os.cpu_count()} logical cores; torch {torch.__version__}, fastai {fastai.__version__}",
        f"- CPU flags: {cpu_flags()}",
        f"- torch threads: {torch.get_num_threads()}; torch.backends.cpu.get_cpu_capability(): "
        f"{torch.backends.cpu.get_cpu_capability()}; ONNX Runtime {onnxruntime_version()}",
        f"- load average at start: {loadavg()}",
        "- models trained from scratch (pretrained=False): no pretrained weights can be downloaded here",
    ]
    print("\n".join(lines), flush=True)
    started = time.perf_counter()

    from classifier.training import TrainingOptions

    train_rows, eval_rows = pick_photos(args.train, args.real)
    rows = [(str(p), label, i % 5 == 0) for i, (p, label) in enumerate(train_rows)]
    real = [str(p) for p, _ in eval_rows]
    with tempfile.TemporaryDirectory(prefix="plantsite-bench-") as tmp:
        big = upscale(real[:args.big], tmp) if args.big else []
        working, made, cleaning = make_working_copies(big, tmp) if big else ({}, [], [])
        if made:
            lines.append(f"\nWorking copies (upload time): {len(made)} 12 MP JPEGs -> longer side 1024 px, median "
                         f"{1000 * statistics.median(made):.0f} ms each (max {1000 * max(made):.0f} ms), on top of "
                         f"check_and_clean's median {1000 * statistics.median(cleaning):.0f} ms that every upload pays.")
            print(lines[-1], flush=True)
        models = [("resnet18 at 224 px", TrainingOptions(image_size=224, epochs=1, batch_size=16, pretrained=False),
                   ("nodraft", "torchscript", "eager", "exact", "channels_last", "compile") if args.extras else ())]
        if args.working_copy_only:
            models = [(label, options, ()) for label, options, _ in models]
        if not args.only_224:
            default = TrainingOptions()
            default.epochs = 1
            models.append((f"project default ({default.architecture} at {default.image_size} px, "
                           f"pretrained={default.pretrained})", default, ()))
        for label, options, extras in models:
            export = Path(tmp) / f"model_{options.image_size}.pkl"
            seconds, result = train_model(rows, options, export)
            lines.append(f"\nTrained {label} on {len(rows)} photos for 1 epoch in {seconds:.0f} s "
                         f"(pretrained used: {result.pretrained_used}).")
            print(lines[-1], flush=True)
            bench_model(label, export, real, big, args, lines, extras=extras, working=working)

    lines.append(f"\nTotal {time.perf_counter() - started:.0f} s; load average at the end: {loadavg()}.")
    print(lines[-1])
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
