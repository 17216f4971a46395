"""Near copies in a run's data: the same picture uploaded twice (resized, re-encoded, another
phone's copy). Exact copies are refused at upload; near ones are not, and they do two kinds of
harm that nobody sees in the scores:

* one copy in the validation split and one in the training split: the model is scored on a
  picture it learned from, so its validation error rate (and calibration, and the threshold
  tables built on them) look better than they are;
* copies with different labels: at least one label is wrong, and the model is taught both.

Each photo gets a difference hash (dHash: the signs of the brightness steps across a 9 x 8
grey thumbnail, 64 bits), which survives resizing and re-encoding and changes with the content.
Two photos whose hashes differ in at most MAX_DISTANCE bits are near copies. This depends on no
model, so it means the same for every run.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

MAX_DISTANCE = 4  # bits of 64: resized and re-encoded copies differ by 0 to 2; different photos by ~30
KEEP_PAIRS = 50   # pairs kept with the run, for its page


def dhash(path) -> int:
    """The 64-bit difference hash of an image file (raises OSError for an unreadable one)."""
    with Image.open(path) as im:
        im.draft("L", (64, 64))  # a JPEG decodes at a reduced scale: the hash needs 9 x 8 pixels
        grey = np.asarray(im.convert("L").resize((9, 8), Image.LANCZOS), dtype=np.int16)
    bits = (grey[:, 1:] > grey[:, :-1]).flatten()
    return int(sum(1 << i for i, bit in enumerate(bits) if bit))


@dataclass
class Pair:
    first: int      # photo ids, the lower first
    second: int
    distance: int   # differing bits
    across_split: bool
    labels: tuple   # (first's label, second's label)


def find(rows, hashes) -> list[Pair]:
    """Near-copy pairs among `rows` ([photo id, label, is_valid]) whose `hashes` ({photo id:
    hash}) are known, the closest first."""
    rows = [r for r in rows if r[0] in hashes]
    if len(rows) < 2:
        return []
    values = np.array([hashes[r[0]] for r in rows], dtype=np.uint64)
    pairs = []
    for i in range(len(rows) - 1):
        distances = np.bitwise_count(values[i + 1:] ^ values[i])
        for j in np.flatnonzero(distances <= MAX_DISTANCE) + i + 1:
            a, b = sorted((rows[i], rows[j]), key=lambda r: r[0])
            pairs.append(Pair(first=a[0], second=b[0], distance=int(distances[j - i - 1]),
                              across_split=bool(a[2]) != bool(b[2]), labels=(a[1], b[1])))
    return sorted(pairs, key=lambda p: (p.distance, p.first, p.second))


def summarise(rows, paths) -> dict:
    """What a run keeps: {"photos": hashed, "unreadable": n, "across_split": validation photos
    with a near copy in the training split, "different_labels": pairs, "pairs": [[first,
    second, distance, across_split, first's label, second's label], ...] (the closest
    KEEP_PAIRS)}. paths: {photo id: the file the model reads}."""
    hashes, unreadable = {}, 0
    for photo_id, _, _ in rows:
        try:
            hashes[photo_id] = dhash(paths[photo_id])
        except Exception:  # noqa: BLE001 - a file the hash cannot read must not fail the run
            unreadable += 1
    pairs = find(rows, hashes)
    valid = {r[0] for r in rows if r[2]}
    leaked = {p.first if p.first in valid else p.second for p in pairs if p.across_split}
    return {"photos": len(hashes), "unreadable": unreadable, "across_split": len(leaked),
            "different_labels": sum(1 for p in pairs if p.labels[0] != p.labels[1]),
            "pairs": [[p.first, p.second, p.distance, p.across_split, *p.labels] for p in pairs[:KEEP_PAIRS]]}
