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


# ---------------------------------------------------------------------------------------------- DCR, MIA
def closest_distance(x: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Euclidean distance from every row of `x` to its nearest row of `reference` (0 = exact copy)."""
    from sklearn.neighbors import NearestNeighbors

    if len(x) == 0 or len(reference) == 0:
        return np.full(len(x), np.nan)
    nn = NearestNeighbors(n_neighbors=1).fit(reference)
    return nn.kneighbors(x)[0][:, 0]


def dcr_ratio(train: np.ndarray, test: np.ndarray, synthetic: np.ndarray) -> dict[str, float]:
    """Distance to closest training record: synthetic's mean against real test's mean (a ratio).

    Ratio < 1: synthetic flows sit closer to training flows than fresh real traffic does (memorisation);
    ≈ 1: no closer than real data; > 1: farther (novel, or off-distribution — read next to fidelity).
    Means, not medians: with this repetitive traffic both medians are often exactly 0.
    """
    d_syn, d_test = closest_distance(synthetic, train), closest_distance(test, train)
    mean_syn, mean_test = float(np.mean(d_syn)), float(np.mean(d_test))
    return {"dcr_synthetic_mean": mean_syn, "dcr_test_mean": mean_test,
            "dcr_ratio": mean_syn / mean_test if mean_test > 0 else float("nan")}


def membership_auc(member_scores: np.ndarray, nonmember_scores: np.ndarray) -> float:
    """ROC AUC of 'higher score = member' (0.5 = the attacker learns nothing)."""
    from sklearn.metrics import roc_auc_score

    y = np.r_[np.ones(len(member_scores)), np.zeros(len(nonmember_scores))]
    s = np.r_[member_scores, nonmember_scores]
    if len(set(y)) < 2 or not np.all(np.isfinite(s)):
        return float("nan")
    return float(roc_auc_score(y, s))


def distance_attack_scores(candidates: np.ndarray, synthetic: np.ndarray) -> np.ndarray:
    """Black-box membership score: minus the distance to the closest synthetic flow.

    A generator that memorised a training flow emits it (or something very near), so members sit closer
    to the synthetic sample than non-members do.
    """
    return -closest_distance(candidates, synthetic)
