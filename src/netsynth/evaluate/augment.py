"""Augmentation in low-data regimes: a small real subset, with and without synthetic flows on top.

Two protocols, named in every output:
- ``paper``: the generator was fitted on the *full* training set (the seed paper's protocol). Its samples
  carry information the low-data classifier never saw, so a gain here is partly leakage of the full set;
- ``strict``: the generator is fitted only on the low-data subset it augments, the test of whether
  generation adds anything beyond the data it saw.

Synthetic flows either top every class up to its full-data count, or come in a fixed synthetic:real ratio
per class (the ratio sweep).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from netsynth.flows import FlowTable

PROTOCOLS = ("paper", "strict")


def low_data_subset(labels: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of a stratified `fraction` of the flows, at least one flow of every class."""
    labels = np.asarray(labels).astype(str)
    keep = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        k = max(1, round(len(idx) * fraction))
        keep.append(rng.choice(idx, size=min(k, len(idx)), replace=False))
    return np.sort(np.concatenate(keep))


def topup_counts(full: Mapping[str, int], subset: Mapping[str, int]) -> dict[str, int]:
    """Synthetic flows per class that bring `subset` up to the `full` training count of every class."""
    return {c: max(0, int(n) - int(subset.get(c, 0))) for c, n in full.items()}


def ratio_counts(subset: Mapping[str, int], ratio: float) -> dict[str, int]:
    """Synthetic flows per class at `ratio` synthetic per real flow (rounded, at least one)."""
    return {c: max(1, round(ratio * int(n))) for c, n in subset.items()}


def take_per_class(pool: FlowTable, counts: Mapping[str, int]) -> FlowTable:
    """The first `counts[c]` flows of each class of `pool` (fewer if the pool has fewer)."""
    labels = pool.label.astype(str)
    idx = [np.flatnonzero(labels == c)[: int(k)] for c, k in counts.items() if k > 0]
    idx = np.sort(np.concatenate(idx)) if idx else np.zeros(0, dtype=np.int64)
    return pool.take(idx)


def gap_closed(real_only: float, augmented: float, full: float) -> float:
    """Share of the gap between low-data real-only and full-data TRTR that augmentation closes.

    1 = reaches full-data TRTR, 0 = no gain, < 0 = hurts; NaN when there is no gap to close.
    """
    gap = full - real_only
    return float((augmented - real_only) / gap) if gap > 1e-12 else float("nan")
