"""Feature builders and classifier factories shared by every downstream-utility measurement.

One place defines what a classifier sees, so TRTR, TSTR, augmentation and the benchmark all compare
generators on exactly the same representation and the same estimators.

Feature sets (per flow, first `k` packets, positions after n_packets are 0):
- ``paper``: payload length and direction of the first 10 packets — the representation of the seed
  paper and of shared/tools/verify_flows.py (columns ``[payload_len[:, :k], direction[:, :k]]``).
- ``all``: ``paper`` plus log1p(IAT in µs) and raw TCP flag bits per packet.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.ensemble import RandomForestClassifier

from netsynth.errors import InputError
from netsynth.flows import FlowTable

PAPER_PACKETS = 10


def _first_k(table: FlowTable, column: str, k: int) -> np.ndarray:
    """(flows, k) float matrix of a per-packet column, masked by n_packets and zero-padded to k."""
    values = getattr(table, column)[:, :k].astype(np.float64) * table.mask[:, :k]
    if values.shape[1] < k:  # a table narrower than k: the missing slots are padding
        values = np.pad(values, ((0, 0), (0, k - values.shape[1])))
    return values


def paper_features(table: FlowTable, k: int = PAPER_PACKETS) -> np.ndarray:
    """[payload_len of the first k packets, direction of the first k packets], shape (flows, 2k)."""
    return np.hstack([_first_k(table, "payload_len", k), _first_k(table, "direction", k)])


def all_features(table: FlowTable, k: int = PAPER_PACKETS) -> np.ndarray:
    """``paper`` plus log1p(IAT µs) and TCP flags per packet, shape (flows, 4k).

    IAT spans nine orders of magnitude; the log keeps microsecond gaps distinguishable from one another
    (trees are scale-free, but LightGBM's histogram binning is not).
    """
    iat = np.log1p(_first_k(table, "iat", k) * 1e6)
    return np.hstack([paper_features(table, k), iat, _first_k(table, "tcp_flags", k)])


FEATURES: dict[str, Callable[[FlowTable, int], np.ndarray]] = {"paper": paper_features, "all": all_features}


def build_features(table: FlowTable, kind: str = "paper", k: int = PAPER_PACKETS) -> np.ndarray:
    """The feature matrix of `table` for feature set `kind` (see FEATURES)."""
    try:
        return FEATURES[kind](table, k)
    except KeyError:
        raise InputError(f"unknown feature set {kind!r}; choose from {', '.join(FEATURES)}") from None


def random_forest(seed: int, *, n_estimators: int = 300, n_jobs: int | None = -1) -> RandomForestClassifier:
    """The reference classifier: scikit-learn defaults, `n_estimators` trees, seeded."""
    return RandomForestClassifier(n_estimators=n_estimators, random_state=seed, n_jobs=n_jobs)


def lightgbm(seed: int, *, n_estimators: int = 300, n_jobs: int | None = -1) -> Any:
    """LightGBM with library defaults (imported lazily: it is an optional dependency)."""
    try:
        from lightgbm import LGBMClassifier
    except ImportError:  # pragma: no cover - depends on the environment
        raise InputError("classifier 'lightgbm' needs the lightgbm package (netsynth[lightgbm])") from None
    return LGBMClassifier(n_estimators=n_estimators, random_state=seed, n_jobs=n_jobs, verbose=-1)


CLASSIFIERS: dict[str, Callable[..., Any]] = {"rf": random_forest, "lightgbm": lightgbm}


def make_classifier(name: str, seed: int, *, n_estimators: int = 300, n_jobs: int | None = -1) -> Any:
    """A fresh, unfitted classifier `name` (see CLASSIFIERS) seeded with `seed`."""
    try:
        factory = CLASSIFIERS[name]
    except KeyError:
        raise InputError(f"unknown classifier {name!r}; choose from {', '.join(CLASSIFIERS)}") from None
    return factory(seed, n_estimators=n_estimators, n_jobs=n_jobs)
