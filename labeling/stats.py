"""Agreement statistics for the labelling team: pure functions, no database.

- cohen_kappa: two raters on the same subjects (Cohen 1960).
- fleiss_kappa / fleiss_category_kappas: any number of raters per subject, the same number for
  every subject (Fleiss 1971), overall and per category.
- team_statistics: per labeller, per label and per pair of labellers, from a list of votes and
  the experts' decisions.

A category is any hashable value; the labelling workspace uses the label's name, and None for
"not a plant / unusable". A kappa that is undefined (chance agreement of 1: every rating in one
category) is None.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from itertools import combinations
from typing import Hashable, Iterable, Sequence


def cohen_kappa(pairs: Iterable[tuple[Hashable, Hashable]]) -> float | None:
    """Cohen's kappa of two raters from (rater A's category, rater B's category) per subject."""
    pairs = list(pairs)
    n = len(pairs)
    if n == 0:
        return None
    observed = sum(1 for a, b in pairs if a == b) / n
    first = Counter(a for a, _ in pairs)
    second = Counter(b for _, b in pairs)
    chance = sum(first[c] * second[c] for c in first) / (n * n)
    if chance >= 1:
        return None
    return (observed - chance) / (1 - chance)


def counts_table(ratings: Iterable[Sequence[Hashable]]) -> tuple[list, list[list[int]]]:
    """(categories, rows) from each subject's list of ratings: rows[i][j] is how many raters put
    subject i in categories[j]. Categories are sorted (None, "unusable", first)."""
    ratings = [list(r) for r in ratings]
    categories = sorted({c for r in ratings for c in r}, key=lambda c: (c is not None, str(c)))
    index = {c: j for j, c in enumerate(categories)}
    rows = []
    for subject in ratings:
        row = [0] * len(categories)
        for c in subject:
            row[index[c]] += 1
        rows.append(row)
    return categories, rows


def _check_table(table) -> tuple[list[list[int]], int]:
    rows = [list(map(int, r)) for r in table]
    if not rows:
        raise ValueError("Fleiss' kappa needs at least one subject.")
    raters = sum(rows[0])
    if raters < 2:
        raise ValueError("Fleiss' kappa needs at least two ratings per subject.")
    if any(sum(r) != raters for r in rows):
        raise ValueError("Fleiss' kappa needs the same number of ratings for every subject.")
    if any(len(r) != len(rows[0]) for r in rows):
        raise ValueError("Every row needs a count for every category.")
    return rows, raters


def fleiss_kappa(table: Sequence[Sequence[int]]) -> float | None:
    """Fleiss' kappa from a subjects × categories table of counts (every row sums to the number
    of raters per subject, the same for all)."""
    rows, n = _check_table(table)
    subjects = len(rows)
    proportions = [sum(r[j] for r in rows) / (subjects * n) for j in range(len(rows[0]))]
    agreement = sum((sum(c * c for c in r) - n) / (n * (n - 1)) for r in rows) / subjects
    chance = sum(p * p for p in proportions)
    if chance >= 1:
        return None
    return (agreement - chance) / (1 - chance)


def fleiss_category_kappas(table: Sequence[Sequence[int]]) -> list[float | None]:
    """Fleiss's (1971) kappa for each category j:
    1 - sum_i n_ij (n - n_ij) / (N n (n - 1) p_j q_j); None for a category no one, or everyone, used."""
    rows, n = _check_table(table)
    subjects = len(rows)
    kappas = []
    for j in range(len(rows[0])):
        p = sum(r[j] for r in rows) / (subjects * n)
        q = 1 - p
        if p <= 0 or q <= 0:
            kappas.append(None)
            continue
        disagreement = sum(r[j] * (n - r[j]) for r in rows)
        kappas.append(1 - disagreement / (subjects * n * (n - 1) * p * q))
    return kappas


def _ratio(part, whole):
    return part / whole if whole else None


def team_statistics(votes: Iterable[tuple[Hashable, str, Hashable]], expert: dict, *, raters: int) -> dict:
    """Statistics of the labelling team.

    votes: (photo, labeller, category) for every vote. expert: {photo: category} for the photos
    an expert decided (None: rejected). raters: the overlap; Fleiss' kappa is computed over the
    photos with exactly that many votes (or, when none has, the most common number of two or more).
    """
    by_photo: dict = defaultdict(dict)
    for photo, labeller, category in votes:
        by_photo[photo][labeller] = category

    # Fleiss over the photos with the same number of raters.
    sizes = Counter(len(v) for v in by_photo.values() if len(v) >= 2)
    fleiss_raters = raters if sizes.get(raters) else (sizes.most_common(1)[0][0] if sizes else raters)
    complete = [list(v.values()) for v in by_photo.values() if len(v) == fleiss_raters]
    categories, table = counts_table(complete)
    overall = fleiss_kappa(table) if table and fleiss_raters >= 2 else None
    per_category = dict(zip(categories, fleiss_category_kappas(table))) if table and fleiss_raters >= 2 else {}
    unanimous = sum(1 for r in complete if len(set(r)) == 1)

    labellers = sorted({labeller for v in by_photo.values() for labeller in v})
    per_labeller = []
    pairs_of: dict = defaultdict(list)
    for photo, given in by_photo.items():
        for a, b in combinations(sorted(given), 2):
            pairs_of[(a, b)].append((given[a], given[b]))
    for labeller in labellers:
        mine = {photo: given[labeller] for photo, given in by_photo.items() if labeller in given}
        with_others = [(mine[photo], other) for photo, given in by_photo.items() if labeller in given
                       for who, other in given.items() if who != labeller]
        checked = [(category, expert[photo]) for photo, category in mine.items() if photo in expert]
        correct = sum(1 for category, decided in checked if category == decided)
        per_labeller.append({
            "labeller": labeller,
            "labels": len(mine),
            "compared": len(with_others),
            "agreement": _ratio(sum(1 for a, b in with_others if a == b), len(with_others)),
            "kappa": cohen_kappa(with_others),
            "expert_checked": len(checked),
            "accuracy": _ratio(correct, len(checked)),
        })

    per_label = []
    all_votes = [(photo, category) for photo, given in by_photo.items() for category in given.values()]
    for category in sorted({c for _, c in all_votes}, key=lambda c: (c is not None, str(c))):
        given = [photo for photo, c in all_votes if c == category]
        checked = [photo for photo in given if photo in expert]
        per_label.append({
            "label": category,
            "votes": len(given),
            "kappa": per_category.get(category),
            "expert_checked": len(checked),
            "accuracy": _ratio(sum(1 for photo in checked if expert[photo] == category), len(checked)),
        })

    pairs = [{"labellers": [a, b], "photos": len(p), "agreement": _ratio(sum(1 for x, y in p if x == y), len(p)),
              "kappa": cohen_kappa(p)} for (a, b), p in sorted(pairs_of.items())]

    return {
        "raters": fleiss_raters,
        "photos": len(complete),
        "unanimous": unanimous,
        "fleiss_kappa": overall,
        "labellers": per_labeller,
        "labels": per_label,
        "pairs": pairs,
    }
