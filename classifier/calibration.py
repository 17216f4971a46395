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


def summarise(confidences, correct) -> dict:
    """The stored form: {"photos": n, "bins": [[k, photos, right, sum of confidences], ...], "ece"}.
    confidences: each validation photo's top probability; correct: whether that label was its own.
    A confidence that is not a number (a model whose training diverged) says nothing: left out."""
    bins = {}
    for p, right in zip(confidences, correct, strict=True):
        if not math.isfinite(p):
            continue
        entry = bins.setdefault(confidence_bin(float(p)), [0, 0, 0.0])
        entry[0] += 1
        entry[1] += int(bool(right))
        entry[2] += float(p)
    summary = {"photos": sum(e[0] for e in bins.values()),
               "bins": [[k, n, right, round(total, 6)] for k, (n, right, total) in sorted(bins.items())]}
    summary["ece"] = Calibration.from_dict(summary).ece
    return summary


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

    @classmethod
    def from_dict(cls, data: dict) -> "Calibration":
        return cls(photos=int(data["photos"]), bins=tuple(tuple(b) for b in data["bins"]))

    def accepted(self, threshold: float) -> tuple[int, int]:
        """(photos, right) of the validation photos whose confidence is at or above threshold."""
        k = math.ceil(threshold * RESOLUTION - 1e-9)  # the first bin wholly at or above it
        rows = [b for b in self.bins if b[0] >= k]
        return sum(b[1] for b in rows), sum(b[2] for b in rows)

    def reliability(self, bins: int = RELIABILITY_BINS) -> list[ReliabilityRow]:
        width = RESOLUTION // bins
        rows = []
        for i in range(bins):
            inside = [b for b in self.bins if i * width <= b[0] < (i + 1) * width or (i == bins - 1 and b[0] == RESOLUTION)]
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
