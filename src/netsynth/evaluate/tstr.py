"""Downstream utility: train on real (TRTR) or on synthetic (TSTR), always test on real.

TRTR is the ceiling TSTR is read against. Both use the same classifier, features, test set and seeds.
Scores are over the *test set's* classes (labels = sorted test classes, as verify_flows.py): a class the
synthetic set lacks can never be predicted, so its F1 is 0 and it pulls the macro mean down — a generator
is charged for every class it fails to produce.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

from netsynth.errors import InputError
from netsynth.evaluate.classifiers import PAPER_PACKETS, build_features, make_classifier
from netsynth.flows import FlowTable

Step = Callable[[str], None]


def _summary(values: Sequence[float]) -> dict:
    """Mean, population std (ddof=0, as verify_flows.py) and the per-seed values."""
    arr = np.asarray(values, dtype=np.float64)
    return {"mean": float(arr.mean()), "std": float(arr.std()), "per_seed": [float(v) for v in arr]}


def score_seeds(
    x_fit: np.ndarray,
    y_fit: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    seeds: int = 3,
    classifier: str = "rf",
    n_estimators: int = 300,
    n_jobs: int | None = -1,
    step: Step | None = None,
    name: str = "fit",
) -> dict:
    """Fit one classifier per seed 0..seeds-1 and score it on the test set.

    Returns macro F1 and accuracy (mean/std/per seed), per-class F1 (mean over seeds) over the sorted
    test classes, and fit seconds. Undefined precision (a class never predicted) counts as 0.
    """
    if seeds < 1:
        raise InputError("seeds must be at least 1")
    if len(y_fit) == 0 or len(y_test) == 0:
        raise InputError("cannot train or test a classifier on zero flows")
    labels = sorted({str(v) for v in y_test})
    y_fit, y_test = np.asarray(y_fit).astype(str), np.asarray(y_test).astype(str)
    f1s, accs, per_class = [], [], []
    start = time.perf_counter()
    for seed in range(seeds):
        if step:
            step(f"{name} seed {seed}")
        model = make_classifier(classifier, seed, n_estimators=n_estimators, n_jobs=n_jobs).fit(x_fit, y_fit)
        pred = model.predict(x_test)
        f1s.append(f1_score(y_test, pred, labels=labels, average="macro", zero_division=0))
        accs.append(accuracy_score(y_test, pred))
        per_class.append(f1_score(y_test, pred, labels=labels, average=None, zero_division=0))
    class_f1 = np.mean(per_class, axis=0)
    return {
        "macro_f1": _summary(f1s),
        "accuracy": _summary(accs),
        "per_class_f1": {c: float(v) for c, v in zip(labels, class_f1, strict=True)},
        "fit_seconds": time.perf_counter() - start,
    }


def trtr_tstr(
    train: FlowTable,
    test: FlowTable,
    synthetic: FlowTable | None,
    *,
    seeds: int = 3,
    features: str = "paper",
    packets: int = PAPER_PACKETS,
    classifier: str = "rf",
    n_estimators: int = 300,
    n_jobs: int | None = -1,
    step: Step | None = None,
) -> dict:
    """TRTR (fit on `train`) and, when `synthetic` is given, TSTR (fit on `synthetic`), both on `test`."""
    x_test = build_features(test, features, packets)
    kw = dict(seeds=seeds, classifier=classifier, n_estimators=n_estimators, n_jobs=n_jobs, step=step)
    out: dict = {
        "labels": test.classes,
        "features": features,
        "packets": packets,
        "classifier": classifier,
        "n_estimators": n_estimators,
        "seeds": list(range(seeds)),
        "trtr": score_seeds(build_features(train, features, packets), train.label, x_test, test.label,
                            name="TRTR", **kw),
    }
    if synthetic is not None:
        out["tstr"] = score_seeds(build_features(synthetic, features, packets), synthetic.label, x_test,
                                  test.label, name="TSTR", **kw)
        present = set(synthetic.classes)
        out["missing_in_synthetic"] = [c for c in test.classes if c not in present]
    return out
