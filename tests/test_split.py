"""Splits: stratified, capture-grouped without leakage, deterministic search reported."""

from __future__ import annotations

import numpy as np
import pytest

from netsynth.errors import InputError
from netsynth.flows import FlowTable
from netsynth.flows.split import split_flows


def table_with_captures(captures_per_class: dict[str, int], flows_per_capture: int = 5) -> FlowTable:
    labels, captures = [], []
    for label, k in captures_per_class.items():
        for c in range(k):
            labels += [label] * flows_per_capture
            captures += [f"{label}/{c}.pcap"] * flows_per_capture
    n = len(labels)
    rng = np.random.default_rng(0)
    return FlowTable.build(
        label=labels,
        n_packets=np.full(n, 3),
        payload_len=rng.integers(0, 1000, (n, 4)),
        direction=rng.integers(0, 2, (n, 4)),
        capture=np.array(captures, dtype=object),
    )


def test_capture_split_keeps_captures_on_one_side() -> None:
    t = table_with_captures({"a": 10, "b": 10, "c": 5})
    r = split_flows(t, by="capture", test_size=0.2, seed=0)
    assert set(r.train.capture) & set(r.test.capture) == set()
    assert set(r.train.label) == set(r.test.label) == {"a", "b", "c"}
    assert len(r.train) + len(r.test) == len(t)
    assert r.info["method"].startswith("StratifiedGroupKFold(n_splits=5")
    again = split_flows(t, by="capture", test_size=0.2, seed=0)
    assert again.test.flow_id.tolist() == r.test.flow_id.tolist()


def test_capture_split_searches_until_every_class_is_on_both_sides() -> None:
    # Two captures of "rare": for some seeds the first of 5 folds holds neither; pick such a seed with
    # sklearn directly, then the split must move on to a later fold and say so.
    from sklearn.model_selection import StratifiedGroupKFold

    t = table_with_captures({"big": 20, "rare": 2})
    y, groups = t.label.astype(str), t.capture.astype(str)

    def first_fold_has_rare(seed: int) -> bool:
        cv = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=seed)
        _, test_idx = next(cv.split(np.zeros(len(y)), y, groups))
        return "rare" in set(y[test_idx])

    seed = next(s for s in range(100) if not first_fold_has_rare(s))
    r = split_flows(t, by="capture", test_size=0.2, seed=seed)
    assert set(r.test.label) == {"big", "rare"} and set(r.train.label) == {"big", "rare"}
    assert r.info["searched"] is True and r.info["requested_seed"] == seed
    assert (r.info["seed"], r.info["fold"]) != (seed, 0)


def test_single_capture_class_is_a_clear_error() -> None:
    t = table_with_captures({"big": 6, "lonely": 1})
    with pytest.raises(InputError, match="lonely"):
        split_flows(t, by="capture")


def test_flow_split_is_stratified() -> None:
    t = table_with_captures({"a": 8, "b": 2}, flows_per_capture=10)
    r = split_flows(t, by="flow", test_size=0.2, seed=0)
    assert r.test.class_counts() == {"a": 16, "b": 4}
    assert r.info["n_train"] == 80


def test_bad_options() -> None:
    t = table_with_captures({"a": 5, "b": 5})
    with pytest.raises(InputError, match="--by"):
        split_flows(t, by="device")
    with pytest.raises(InputError, match="test-size"):
        split_flows(t, test_size=1.5)
