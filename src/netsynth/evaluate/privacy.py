"""Privacy and novelty: how many generated flows are verbatim copies of training flows.

A generator that replays its training set scores well on TSTR and leaks the data it was fitted on, so
the copy rate must be reported next to TSTR. It is read against the copy rate of *real test* flows:
traffic of IoT devices is so repetitive that most real test flows have an exact twin in train too, and
a generator copying no more than that is not memorising more than the traffic itself repeats.

A flow's key is its paper-style vector — payload length and direction of the first 10 packets, 0 after
n_packets (the same vector as verify_flows.py, so a flow whose kept packets end in zero-payload
initiator packets has the same key as its shorter prefix; this is the representation the classifier
sees, so it is the one that matters for TSTR). Later: distance to closest record against a hold-out.
"""

from __future__ import annotations

import numpy as np

from netsynth.evaluate.classifiers import PAPER_PACKETS, paper_features
from netsynth.flows import FlowTable


def row_keys(x: np.ndarray) -> list[bytes]:
    """One hashable key per row of an integer-valued matrix (exact equality, no tolerance)."""
    rows = np.ascontiguousarray(np.asarray(x).astype(np.int64))
    return [r.tobytes() for r in rows]


def copy_mask(x: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Boolean per row of `x`: does the row occur exactly in `reference`?"""
    ref = set(row_keys(reference))
    return np.fromiter((k in ref for k in row_keys(x)), dtype=bool, count=len(x))


def copy_rate(x: np.ndarray, reference: np.ndarray) -> float:
    """Share of rows of `x` that occur exactly in `reference` (0.0 for an empty `x`)."""
    return float(copy_mask(x, reference).mean()) if len(x) else 0.0


def n_distinct(x: np.ndarray) -> int:
    """Number of distinct rows."""
    return len(set(row_keys(x)))


def novelty(
    train: FlowTable, test: FlowTable, synthetic: FlowTable | None, *, packets: int = PAPER_PACKETS
) -> dict:
    """Copy rates against train and distinct-vector counts of the three tables.

    `synthetic_copy_rate` is the headline; `test_copy_rate` is the real-data reference. Distinct counts
    show mode collapse (few distinct synthetic vectors) and `synthetic_distinct_new` how many distinct
    synthetic vectors appear nowhere in train.
    """
    x_train, x_test = paper_features(train, packets), paper_features(test, packets)
    out: dict = {
        "packets": packets,
        "test_copy_rate": copy_rate(x_test, x_train),
        "distinct": {"train": n_distinct(x_train), "test": n_distinct(x_test)},
    }
    if synthetic is not None:
        x_syn = paper_features(synthetic, packets)
        out["synthetic_copy_rate"] = copy_rate(x_syn, x_train)
        out["distinct"]["synthetic"] = n_distinct(x_syn)
        train_keys = set(row_keys(x_train))
        out["synthetic_distinct_new"] = len(set(row_keys(x_syn)) - train_keys)
    return out
