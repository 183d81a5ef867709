"""evaluate() on the real iot-type16 task: TRTR near TASKS.md, and agreement with verify_flows.py.

One seed only, to stay fast (about 10 s); skipped when the captures or the extractor are absent.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from netsynth.evaluate import evaluate
from netsynth.flows import FlowTable


@pytest.fixture(scope="module")
def split(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[FlowTable, FlowTable, Path]:
    extract = pytest.importorskip("netsynth.extract").extract
    from sklearn.model_selection import StratifiedGroupKFold

    root = shared_data / "iot-sentinel"
    table = extract([root], packets=20, min_packets=5, labels=root / "labels.csv").table
    cv = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=0)
    tr, te = next(cv.split(np.zeros(len(table)), table.label.astype(str), groups=table.capture.astype(str)))
    out = tmp_path_factory.mktemp("iot")
    train, test = table.take(tr), table.take(te)
    train.write(out / "train.parquet")
    test.write(out / "test.parquet")
    return train, test, out


def test_iot_type16_trtr_and_verify_flows_agree(split: tuple[FlowTable, FlowTable, Path]) -> None:
    train, test, folder = split
    m = evaluate(train, test, train, seeds=1, n_jobs=2)
    trtr = m["classification"]["trtr"]
    assert trtr["macro_f1"]["mean"] == pytest.approx(0.67, abs=0.03)
    assert trtr["accuracy"]["mean"] == pytest.approx(0.83, abs=0.03)
    assert m["novelty"]["synthetic_copy_rate"] == 1.0

    tool = Path(__file__).resolve().parents[2] / "shared" / "tools" / "verify_flows.py"
    if not tool.is_file():
        pytest.skip("shared/tools/verify_flows.py not found")
    args = [sys.executable, str(tool), str(folder / "train.parquet"), str(folder / "test.parquet"), "--seeds", "1"]
    ref = json.loads(subprocess.run(args, check=True, capture_output=True, text=True).stdout)
    assert trtr["macro_f1"]["mean"] == pytest.approx(ref["trtr_macro_f1"], abs=1e-9)
    assert m["novelty"]["test_copy_rate"] == pytest.approx(ref["test_copy_rate"], abs=1e-12)
    dir3 = m["fidelity"]["metrics"]["direction_3gram_jsd"]["train_vs_test"]
    assert dir3 == pytest.approx(ref["dir3_jsd_train_vs_test"], abs=1e-12)
