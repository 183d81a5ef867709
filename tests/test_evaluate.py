"""evaluate(): end to end on a small separable crafted dataset, files written, numbers consistent."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from netsynth.errors import InputError
from netsynth.evaluate import evaluate, fidelity_metrics, format_summary, novelty, render_markdown
from netsynth.flows import FlowTable

CLASS_SIZES = {"cam": (100, 0), "plug": (40, 1), "hub": (700, 0)}


def crafted(n_per_class: int, seed: int, classes: dict = CLASS_SIZES) -> FlowTable:
    """Flows whose first packet size and direction identify the class; the rest is noise."""
    rng = np.random.default_rng(seed)
    labels, pl, di, n = [], [], [], []
    for name, (size, d) in classes.items():
        for _ in range(n_per_class):
            row = rng.integers(0, 1400, 12)
            row[0] = size + rng.integers(0, 5)
            dirs = rng.integers(0, 2, 12)
            dirs[0] = d
            labels.append(name)
            pl.append(row)
            di.append(dirs)
            n.append(rng.integers(5, 13))
    iat = rng.exponential(0.01, (len(labels), 12))
    return FlowTable.build(label=labels, n_packets=np.array(n), payload_len=np.array(pl),
                           direction=np.array(di), iat=iat)


@pytest.fixture(scope="module")
def data() -> tuple[FlowTable, FlowTable]:
    return crafted(30, 0), crafted(10, 1)


@pytest.fixture(scope="module")
def run(data: tuple[FlowTable, FlowTable], tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    train, test = data
    out = tmp_path_factory.mktemp("report")
    metrics = evaluate(train, test, train, seeds=2, n_estimators=20, n_jobs=1, out_dir=out,
                       paths={"train": "train.parquet", "test": "test.parquet", "synthetic": "train.parquet"})
    return metrics, out


def test_separable_trtr_and_tstr_are_perfect(run: tuple[dict, Path]) -> None:
    cls = run[0]["classification"]
    for side in ("trtr", "tstr"):
        assert cls[side]["macro_f1"]["mean"] == 1.0
        assert cls[side]["accuracy"]["mean"] == 1.0
        assert set(cls[side]["per_class_f1"]) == set(CLASS_SIZES)
    assert cls["labels"] == sorted(CLASS_SIZES)
    assert cls["missing_in_synthetic"] == []


def test_files_written_and_json_matches_library(run: tuple[dict, Path], data: tuple[FlowTable, FlowTable]) -> None:
    metrics, out = run
    train, test = data
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk == metrics
    report = (out / "report.md").read_text()
    assert report.startswith("# netsynth evaluation report")
    assert "direction_3gram_jsd" in report and "Definitions" in report
    lib = fidelity_metrics(train, test)
    for name, value in lib.items():
        assert on_disk["fidelity"]["metrics"][name]["train_vs_test"] == pytest.approx(value)
        assert on_disk["fidelity"]["metrics"][name]["synthetic_vs_test"] == pytest.approx(value)
    assert on_disk["novelty"] == novelty(train, test, train)
    assert on_disk["novelty"]["synthetic_copy_rate"] == 1.0
    assert on_disk["inputs"]["class_counts"]["train"] == {"cam": 30, "hub": 30, "plug": 30}
    assert on_disk["inputs"]["paths"]["train"] == "train.parquet"
    assert on_disk["config"]["seeds"] == 2 and on_disk["classification"]["seeds"] == [0, 1]
    assert {"fidelity", "classification", "novelty", "total"} <= set(on_disk["timing"])
    assert "scikit-learn" in on_disk["versions"]


def test_summary_renders(run: tuple[dict, Path]) -> None:
    console = Console(record=True, width=160)
    console.print(format_summary(run[0]))
    text = console.export_text()
    assert "Macro F1" in text and "1.000 ± 0.000" in text


def test_missing_class_counts_zero(data: tuple[FlowTable, FlowTable]) -> None:
    train, test = data
    syn = train.take(train.label != "plug")
    m = evaluate(train, test, syn, seeds=1, n_estimators=10, n_jobs=1)
    tstr = m["classification"]["tstr"]
    assert m["classification"]["missing_in_synthetic"] == ["plug"]
    assert tstr["per_class_f1"]["plug"] == 0.0
    assert tstr["macro_f1"]["mean"] < 0.9
    assert "absent from synthetic" in render_markdown(m)


def test_shuffled_synthetic_is_novel_and_narrower_width(data: tuple[FlowTable, FlowTable]) -> None:
    """Per-position shuffling within class keeps marginals but breaks copies; width 10 < 12 is fine."""
    train, test = data
    rng = np.random.default_rng(3)
    syn = train.truncate(10)
    for c in syn.classes:
        idx = np.flatnonzero(syn.label == c)
        for j in range(10):
            perm = rng.permutation(idx)
            syn.payload_len[idx, j] = syn.payload_len[perm, j]
            syn.direction[idx, j] = syn.direction[perm, j]
    syn.n_packets[:] = 10
    m = evaluate(train, test, syn, seeds=1, n_estimators=10, n_jobs=1)
    assert m["fidelity"]["packets"] == 10
    assert m["novelty"]["synthetic_copy_rate"] < 0.1
    json.dumps(m, allow_nan=False)


def test_empty_table_is_an_input_error(data: tuple[FlowTable, FlowTable]) -> None:
    train, test = data
    with pytest.raises(InputError, match="synthetic"):
        evaluate(train, test, train.take(np.zeros(len(train), bool)))
