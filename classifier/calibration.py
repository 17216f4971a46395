"""How far a model version's confidence can be trusted, measured on its validation photos.

The worker saves a prediction on its own when its confidence reaches CONFIDENCE_THRESHOLD, so
what the threshold does rests on the confidences meaning what they say. Training records, for
the validation photos, how many had each top confidence and how many of those were right, in
bins of a thousandth: small whatever the number of photos, and exact for any threshold given
to three decimals. From those come the reliability table (the share right against the stated
confidence), the expected calibration error, and what any threshold would accept."""
import math
from dataclasses import dataclass

RESOLUTION = 1000      # bins per unit of confidence
RELIABILITY_BINS = 10  # the usual equal-width bins of a reliability diagram and of the ECE


def confidence_bin(p: float) -> int:
    """k such that k / RESOLUTION <= p < (k + 1) / RESOLUTION, compared as the worker compares a
    confidence with the threshold (p * RESOLUTION may round across a boundary; this does not)."""
    k = min(math.floor(p * RESOLUTION), RESOLUTION)
    if k / RESOLUTION > p:
        k -= 1
    elif k < RESOLUTION and (k + 1) / RESOLUTION <= p:
        k += 1
    return max(k, 0)


def summarise(confidences, correct, answers=None) -> dict:
    """The stored form: {"photos": n, "bins": [[k, photos, right, sum of confidences], ...], "ece",
    "by_answer": {label: its bins}}. confidences: each validation photo's top probability;
    correct: whether that label was its own; answers: that label, so that what a threshold
    accepts can leave out the labels the model may not save on its own (by_answer is left out
    without them). A confidence that is not a number (a model whose training diverged) says
    nothing: left out."""
    answers = list(answers) if answers is not None else None
    kept = [(float(p), bool(right), answers[i] if answers is not None else None)
            for i, (p, right) in enumerate(zip(confidences, correct, strict=True)) if math.isfinite(p)]
    summary = {"photos": len(kept), "bins": _bins(kept)}
    if answers is not None:
        summary["by_answer"] = {label: _bins([row for row in kept if row[2] == label])
                                for label in sorted({row[2] for row in kept})}
    summary["ece"] = Calibration.from_dict(summary).ece
    return summary


def _bins(rows):
    bins = {}
    for p, right, _ in rows:
        entry = bins.setdefault(confidence_bin(p), [0, 0, 0.0])
        entry[0] += 1
        entry[1] += int(right)
        entry[2] += p
    return [[k, n, right, round(total, 6)] for k, (n, right, total) in sorted(bins.items())]


def _first_bin_at(threshold: float) -> int:
    """The first bin wholly at or above `threshold`."""
    return math.ceil(threshold * RESOLUTION - 1e-9)


def _minus(b):
    return (b[0], -b[1], -b[2], -b[3])


@dataclass(frozen=True)
class ReliabilityRow:
    low: float
    high: float
    photos: int
    confidence: float | None  # their mean stated confidence
    accuracy: float | None    # the share of them that were right

    @property
    def gap(self) -> float | None:
        """Accuracy minus confidence: below 0 the model claims more than it achieves."""
        return None if self.photos == 0 else self.accuracy - self.confidence


@dataclass(frozen=True)
class Calibration:
    photos: int
    bins: tuple  # ((k, photos, right, sum of confidences), ...), k ascending
    by_answer: dict | None = None  # {the model's answer: its bins}; None when not recorded

    @classmethod
    def from_dict(cls, data: dict) -> "Calibration":
        by_answer = data.get("by_answer")
        return cls(photos=int(data["photos"]), bins=tuple(tuple(b) for b in data["bins"]),
                   by_answer={label: tuple(tuple(b) for b in bins) for label, bins in by_answer.items()}
                   if by_answer is not None else None)

    def accepted(self, threshold: float, leave_out=(), floors=None) -> tuple[int, int]:
        """(photos, right) of the validation photos whose confidence is at or above threshold,
        less those whose answer is one of `leave_out` (labels the model may not save on its own)
        or, for an answer in `floors` ({label: its own threshold}), below that label's own
        threshold. Both are ignored when the answers were not recorded."""
        k = _first_bin_at(threshold)
        rows = [b for b in self.bins if b[0] >= k]
        if self.by_answer is not None:
            for label in leave_out:
                rows += [_minus(b) for b in self.by_answer.get(label, ()) if b[0] >= k]
            for label, floor in (floors or {}).items():
                if label not in leave_out:
                    rows += [_minus(b) for b in self.by_answer.get(label, ()) if k <= b[0] < _first_bin_at(floor)]
        return sum(b[1] for b in rows), sum(b[2] for b in rows)

    def for_answer(self, label: str) -> "Calibration | None":
        """The validation photos the model gave `label`, alone; None when answers were not recorded."""
        if self.by_answer is None:
            return None
        bins = self.by_answer.get(label, ())
        return Calibration(photos=sum(b[1] for b in bins), bins=bins, by_answer={label: bins})

    def reliability(self, bins: int = RELIABILITY_BINS) -> list[ReliabilityRow]:
        width = RESOLUTION // bins
        rows = []
        for i in range(bins):
            last = i == bins - 1  # a confidence of exactly 1 falls in the last bin
            inside = [b for b in self.bins if i * width <= b[0] < (i + 1) * width or (last and b[0] == RESOLUTION)]
            n = sum(b[1] for b in inside)
            rows.append(ReliabilityRow(
                low=i / bins, high=(i + 1) / bins, photos=n,
                confidence=sum(b[3] for b in inside) / n if n else None,
                accuracy=sum(b[2] for b in inside) / n if n else None))
        return rows

    @property
    def ece(self) -> float | None:
        """Expected calibration error: the photo-weighted mean of |accuracy - confidence| over the
        reliability bins (0 when every stated confidence came true)."""
        if not self.photos:
            return None
        return sum(row.photos * abs(row.gap) for row in self.reliability() if row.photos) / self.photos
