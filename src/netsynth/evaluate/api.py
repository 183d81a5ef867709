"""`evaluate`: fidelity, TRTR/TSTR and novelty of one synthetic flow table, in one metrics dict.

The function only orchestrates: every number comes from a pure function in fidelity.py, tstr.py or
privacy.py, so the later benchmark can call those directly and get identical values.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import platform
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from netsynth.errors import InputError
from netsynth.evaluate import fidelity as F
from netsynth.evaluate.classifiers import PAPER_PACKETS
from netsynth.evaluate.privacy import novelty
from netsynth.evaluate.report import render_markdown
from netsynth.evaluate.tstr import trtr_tstr
from netsynth.flows import FlowTable
from netsynth.utils.io import write_text_atomic

METRICS_VERSION = 1


def _versions() -> dict[str, str]:
    import numpy
    import scipy
    import sklearn

    import netsynth

    return {"netsynth": netsynth.__version__, "python": platform.python_version(), "numpy": numpy.__version__,
            "scipy": scipy.__version__, "scikit-learn": sklearn.__version__}


def _json_safe(value: Any) -> Any:
    """NaN/inf become null, so metrics.json is strict JSON any reader can parse."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


@contextmanager
def _stepper(enabled: bool) -> Iterator[Any]:
    """A `step(description)` callback: prints progress lines to stderr when enabled, else does nothing."""
    if not enabled:
        yield lambda _msg: None
        return
    from rich.console import Console

    console = Console(stderr=True)
    start = time.perf_counter()
    yield lambda msg: console.print(f"[dim]{time.perf_counter() - start:6.1f}s[/dim] {msg}")


def _check(tables: Mapping[str, FlowTable]) -> None:
    for name, table in tables.items():
        if len(table) == 0:
            raise InputError(f"{name} flow table is empty")


def fidelity_pair(
    train: FlowTable, test: FlowTable, synthetic: FlowTable, *, packets: int | None = None
) -> dict:
    """Every fidelity metric as {name: {synthetic_vs_test, train_vs_test}} over common packet slots."""
    k = packets if packets is not None else F.common_packets(train, test, synthetic)
    syn = F.fidelity_metrics(synthetic, test, packets=k)
    ref = F.fidelity_metrics(train, test, packets=k)
    return {
        "packets": k,
        "metrics": {n: {"synthetic_vs_test": syn[n], "train_vs_test": ref[n]} for n in F.METRICS},
        "definitions": dict(F.DEFINITIONS),
    }


def evaluate(
    train: FlowTable,
    test: FlowTable,
    synthetic: FlowTable,
    *,
    seeds: int = 3,
    n_estimators: int = 300,
    n_jobs: int | None = -1,
    features: str = "paper",
    classifier: str = "rf",
    out_dir: str | Path | None = None,
    paths: Mapping[str, str | Path] | None = None,
    progress: bool = False,
) -> dict:
    """Judge `synthetic` against real `test`, with real `train` as reference, and return the metrics.

    - fidelity: distances synthetic↔test next to train↔test (the floor two real samples reach);
    - classification: TRTR and TSTR macro F1/accuracy over `seeds` seeds, per-class F1;
    - novelty: exact-copy rate of synthetic flows vs train next to that of real test flows.

    With `out_dir`, writes `metrics.json` and `report.md` there atomically. `paths` (e.g. {"train": ...})
    is recorded as given, for provenance.
    """
    _check({"train": train, "test": test, "synthetic": synthetic})
    timing: dict[str, float] = {}
    t0 = time.perf_counter()
    with _stepper(progress) as step:
        step("fidelity")
        fid = fidelity_pair(train, test, synthetic)
        timing["fidelity"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        cls = trtr_tstr(train, test, synthetic, seeds=seeds, features=features, packets=PAPER_PACKETS,
                        classifier=classifier, n_estimators=n_estimators, n_jobs=n_jobs, step=step)
        timing["classification"] = time.perf_counter() - t1
        t2 = time.perf_counter()
        step("novelty")
        nov = novelty(train, test, synthetic, packets=PAPER_PACKETS)
        timing["novelty"] = time.perf_counter() - t2
    timing["total"] = time.perf_counter() - t0
    tables = {"train": train, "test": test, "synthetic": synthetic}
    metrics = {
        "metrics_version": METRICS_VERSION,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "inputs": {
            "paths": {k: str(v) for k, v in (paths or {}).items()},
            "n_flows": {k: len(t) for k, t in tables.items()},
            "class_counts": {k: t.class_counts() for k, t in tables.items()},
            "max_packets": {k: t.max_packets for k, t in tables.items()},
        },
        "config": {"seeds": seeds, "n_estimators": n_estimators, "n_jobs": n_jobs, "features": features,
                   "classifier": classifier},
        "fidelity": fid,
        "classification": cls,
        "novelty": nov,
        "timing": timing,
        "versions": _versions(),
    }
    metrics = _json_safe(metrics)
    if out_dir is not None:
        write_outputs(metrics, out_dir)
    return metrics


def write_outputs(metrics: dict, out_dir: str | Path) -> None:
    """Write metrics.json and report.md into `out_dir` (created if needed), each atomically."""
    out = Path(out_dir)
    write_text_atomic(out / "metrics.json", json.dumps(metrics, indent=2, allow_nan=False) + "\n")
    write_text_atomic(out / "report.md", render_markdown(metrics))


__all__ = ["evaluate", "fidelity_pair", "write_outputs"]
