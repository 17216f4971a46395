"""How well the familiarity check tells unfamiliar photos apart, against the confidence threshold.

Not a speed benchmark: the numbers are how often each check sends a photo to an expert. One
flower class is held out of training altogether (a plant the model was never shown); the model
is trained on the other four with the project's own training code (classifier.training.train,
resnet18 at the default 128 px, pretrained weights only when the torch cache has them, so here
from scratch), and then the worker's own path (classifier.inference: the fast path, with its
features) predicts:

  familiar        photos of the four trained classes that were neither trained on nor validated
  held-out class  every photo of the fifth class (a near unfamiliar photo: another flower)
  generated       demo plants (classifier.demo_images): another domain altogether
  noise           random pixels

For each set it prints, side by side, the familiarity check (the cosine similarity with the
nearest training photo, the cut-off set from the validation photos at UNFAMILIAR_SHARE) and the
baseline it adds to: the model's confidence (the maximum softmax probability, Hendrycks and
Gimpel 2017), with a threshold set from the same validation photos so that it flags the same
share of them. Columns: the area under the ROC curve against the familiar photos (1: the score
ranks every such photo below every familiar one; 0.5: chance), and the share flagged at each
cut-off.

Usage (from the repository root): .venv/bin/python bench/bench_familiarity.py [--held-out tulips]
    [--epochs 12] [--shares 0.01,0.05] [--flowers DIR]
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

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
warnings.filterwarnings("ignore")
FLOWERS = REPO.parent / "shared" / "data" / "flowers"


def auroc(familiar, other) -> float:
    """P(a familiar photo scores above another), ties counted half: Mann-Whitney's U / (n m)."""
    familiar, other = np.asarray(familiar), np.asarray(other)
    above = (familiar[:, None] > other[None, :]).sum()
    ties = (familiar[:, None] == other[None, :]).sum()
    return float((above + 0.5 * ties) / (len(familiar) * len(other)))


def split(folder, held_out, seed):
    """[(path, label, is_valid)] to train on, the familiar test photos, the held-out class's."""
    rng = random.Random(seed)
    rows, test, unseen = [], [], []
    for label_dir in sorted(p for p in Path(folder).iterdir() if p.is_dir()):
        files = sorted(label_dir.glob("*.jpg"))
        if label_dir.name == held_out:
            unseen += [str(f) for f in files]
            continue
        rng.shuffle(files)
        n = len(files)
        rows += [(str(f), label_dir.name, i >= 0.6 * n) for i, f in enumerate(files[:int(0.8 * n)])]
        test += [str(f) for f in files[int(0.8 * n):]]
    return rows, test, unseen


def generated(folder, n):
    from classifier.demo_images import LABELS, generate_image

    paths = []
    for i in range(n):
        paths.append(str(Path(folder) / f"plant_{i}.jpg"))
        generate_image(LABELS[i % len(LABELS)], seed=1000 + i, size=256).save(paths[-1], quality=90)
    return paths


def noise(folder, n):
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        paths.append(str(Path(folder) / f"noise_{i}.png"))
        Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(paths[-1])
    return paths


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--held-out", default="tulips", help="the flower class never trained on")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--shares", default="0.01,0.05", help="UNFAMILIAR_SHARE values to print")
    parser.add_argument("--flowers", default=str(FLOWERS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not Path(args.flowers).is_dir():
        raise SystemExit(f"{args.flowers} is missing: the benchmark reads the shared flower photos.")

    import torch
    from fastai.learner import load_learner

    from classifier.familiarity import Familiarity, nearest_similarities, summarise
    from classifier.inference import LoadedModel, _fast_predictor
    from classifier.training import TrainingOptions, train

    rows, test, unseen = split(args.flowers, args.held_out, args.seed)
    work = Path(tempfile.mkdtemp(prefix="bench-familiarity-"))
    options = TrainingOptions(epochs=args.epochs)
    started = time.perf_counter()
    result = train(rows, options, work / "model.pkl")
    trained_s = time.perf_counter() - started
    valid = np.array([r[2] for r in rows])
    familiarity = Familiarity.from_dict(summarise(result.features, valid))
    training_vectors = result.features[~valid].astype(np.float32)

    learner = load_learner(work / "model.pkl", cpu=True)
    learner.model.eval()
    model = LoadedModel(0, "", learner, list(learner.dls.vocab), _fast_predictor(learner, 0))
    if model.predictor is None or not model.predictor.gives_features:
        raise SystemExit("The worker's fast path gives no features for this learner.")

    def scores(paths):
        probabilities, features = model.predict_paths_with_features(paths)
        return nearest_similarities(features, training_vectors), np.array([max(p.values()) for p in probabilities])

    valid_similarity, valid_confidence = scores([r[0] for r in rows if r[2]])
    sets = {"familiar (test)": test, f"held-out class ({args.held_out})": unseen,
            "generated plants": generated(work, 40), "noise": noise(work, 20)}
    measured = {name: scores(paths) for name, paths in sets.items()}
    shares = [float(s) for s in args.shares.split(",")]

    print("## Familiarity benchmark\n")
    print(f"- torch {torch.__version__}, {os.cpu_count()} logical cores; {options.architecture} at "
          f"{options.image_size} px, {args.epochs} epochs, pretrained weights used: {result.pretrained_used}; "
          f"trained in {trained_s:.0f} s")
    print(f"- {int((~valid).sum())} training and {int(valid.sum())} validation photos of four classes; "
          f"validation error rate {result.metrics['error_rate']:.3f}")
    print(f"- validation similarity with the nearest training photo: least {familiarity.quantile(0):.3f}, "
          f"median {familiarity.quantile(0.5):.3f}\n")
    head = " | ".join(f"flagged at {s:.0%}: familiarity / confidence" for s in shares)
    print(f"| photos | n | AUROC familiarity | AUROC confidence | {head} |")
    print("| --- | ---: | ---: | ---: |" + " ---: |" * len(shares))
    familiar_similarity, familiar_confidence = measured["familiar (test)"]
    for name, (similarity, confidence) in measured.items():
        cells = []
        for share in shares:
            cutoff = familiarity.cutoff(share)
            # The confidence threshold that flags as many validation photos as the cut-off does.
            flagged = familiarity.below(cutoff)
            below = np.sort(valid_confidence)[flagged] if flagged < len(valid_confidence) else np.inf
            cells.append(f"{(similarity < cutoff).mean():.0%} / {(confidence < below).mean():.0%}")
        if name == "familiar (test)":
            areas = "—", "—"
        else:
            areas = (f"{auroc(familiar_similarity, similarity):.3f}", f"{auroc(familiar_confidence, confidence):.3f}")
        print(f"| {name} | {len(similarity)} | {areas[0]} | {areas[1]} | {' | '.join(cells)} |")
    print(f"\nValidation photos flagged at each share: "
          f"{', '.join(f'{s:.0%}: {familiarity.below(familiarity.cutoff(s))} of {familiarity.photos}' for s in shares)}"
          " (the confidence threshold is set to flag as many).")


if __name__ == "__main__":
    main()
