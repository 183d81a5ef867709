"""Train/test splits of a flow table, stratified by label.

Flows of one capture are near-duplicates (same device, same session), so the honest split keeps every
capture on one side (`by="capture"`). With few captures per class a plain first fold can leave a class
out of one side; then the next folds, and then the next seeds, are tried in a fixed order, and the split
that was used is reported so anyone can rebuild it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from netsynth.errors import InputError
from netsynth.flows.table import FlowTable

MAX_SEED_TRIES = 50


@dataclass
class SplitResult:
    """The two sides of a split and how they were drawn."""

    train: FlowTable
    test: FlowTable
    info: dict = field(default_factory=dict)


def split_flows(
    table: FlowTable, *, by: str = "capture", test_size: float = 0.2, seed: int = 0
) -> SplitResult:
    """Split `table` into train and test, stratified by label, grouped by capture when `by="capture"`."""
    if not 0.0 < test_size < 1.0:
        raise InputError(f"--test-size must be between 0 and 1, got {test_size}")
    if len(table) < 2:
        raise InputError("need at least two flows to split")
    y = table.label.astype(str)
    if by == "flow":
        test_idx, info = _split_by_flow(y, test_size, seed)
    elif by == "capture":
        test_idx, info = _split_by_capture(table, y, test_size, seed)
    else:
        raise InputError(f"--by must be 'capture' or 'flow', got {by!r}")
    is_test = np.zeros(len(table), dtype=bool)
    is_test[test_idx] = True
    train, test = table.take(~is_test), table.take(is_test)
    info.update(
        by=by,
        test_size=test_size,
        n_train=len(train),
        n_test=len(test),
        train_counts=train.class_counts(),
        test_counts=test.class_counts(),
    )
    for side in (train, test):
        side.metadata["netsynth.split"] = _json(info)
    return SplitResult(train=train, test=test, info=info)


def _split_by_flow(y: np.ndarray, test_size: float, seed: int) -> tuple[np.ndarray, dict]:
    from sklearn.model_selection import train_test_split

    values, counts = np.unique(y, return_counts=True)
    small = values[counts < 2]
    if len(small):
        raise InputError(f"class(es) with a single flow cannot be on both sides: {', '.join(small[:5])}")
    try:
        _, test_idx = train_test_split(np.arange(len(y)), test_size=test_size, stratify=y, random_state=seed)
    except ValueError as exc:
        raise InputError(f"cannot split by flow: {exc}") from None
    return np.sort(test_idx), {"method": "train_test_split(stratify=label)", "seed": seed}


def _split_by_capture(
    table: FlowTable, y: np.ndarray, test_size: float, seed: int
) -> tuple[np.ndarray, dict]:
    from sklearn.model_selection import StratifiedGroupKFold

    if any(c is None for c in table.capture):
        raise InputError("--by capture needs the 'capture' column on every flow (use --by flow)")
    groups = table.capture.astype(str)
    n_splits = max(2, round(1.0 / test_size))
    classes = set(y)
    for label, n_groups in _groups_per_class(y, groups).items():
        if n_groups < 2:
            raise InputError(
                f"class {label!r} comes from a single capture: it cannot be on both sides "
                "of a capture split (use --by flow, or drop the class)"
            )
    for attempt in range(MAX_SEED_TRIES):
        s = seed + attempt
        cv = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=s)
        for fold, (train_idx, test_idx) in enumerate(cv.split(np.zeros(len(y)), y, groups)):
            if set(y[train_idx]) == classes and set(y[test_idx]) == classes:
                info = {
                    "method": f"StratifiedGroupKFold(n_splits={n_splits}, shuffle=True)",
                    "seed": s,
                    "fold": fold,
                    "requested_seed": seed,
                    "searched": attempt > 0 or fold > 0,
                    "n_test_captures": len(set(groups[test_idx])),
                }
                return np.sort(test_idx), info
    raise InputError(
        f"no capture split with every class on both sides in {MAX_SEED_TRIES} seeds x {n_splits} folds "
        "(some class has too few captures; use --by flow)"
    )


def _groups_per_class(y: np.ndarray, groups: np.ndarray) -> dict[str, int]:
    out: dict[str, set[str]] = {}
    for label, group in zip(y, groups, strict=True):
        out.setdefault(label, set()).add(group)
    return {k: len(v) for k, v in out.items()}


def _json(obj: dict) -> str:
    import json

    return json.dumps(obj, sort_keys=True)
