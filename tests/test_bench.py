"""`run_bench` end to end on tiny data with two cheap generators: every output written, numbers sane."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from netsynth.errors import InputError
from netsynth.evaluate.bench import BenchOptions, fold_pairs, lookup, parse_overrides, run_bench
from netsynth.flows import FlowTable


def tiny_table(n_per_class: int = 24, seed: int = 0) -> FlowTable:
    """Three classes with distinct size/direction signatures, 4 captures each (for grouped folds)."""
    rng = np.random.default_rng(seed)
    width, rows = 12, []
    labels, captures = [], []
    for c, (size, pattern) in enumerate([(60, 0), (400, 1), (1200, 2)]):
        for i in range(n_per_class):
            labels.append(f"class{c}")
            captures.append(f"cap{c}-{i % 4}.pcap")
            rows.append((size, pattern))
    n = len(labels)
    n_pk = rng.integers(5, width + 1, n)
    pl = np.zeros((n, width), np.int32)
    di = np.zeros((n, width), np.int8)
    iat = np.zeros((n, width), np.float32)
    for i, (size, pattern) in enumerate(rows):
        pl[i] = rng.integers(size, size + 20, width)
        di[i] = (np.arange(width) + pattern) % 2 if pattern < 2 else rng.integers(0, 2, width)
        iat[i, 1:] = rng.exponential(0.01 * (pattern + 1), width - 1)
    t = FlowTable.build(label=labels, n_packets=n_pk, payload_len=pl, direction=di, iat=iat, protocol=6,
                        tcp_flags=np.full((n, width), 16))
    t.capture = np.array(captures, dtype=object)
    return t


@pytest.fixture(scope="module")
def bench_out(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("bench")
    opts = BenchOptions(folds=2, quick=True, progress=False, n_jobs=1, fractions=(0.25,), ratio_fractions=(0.25,),
                        multivariate_points=100, feature_sets=("paper",), command="test")
    return run_bench(tiny_table(), None, ["independent", "empirical"], out, opts), out


def test_bench_writes_all_outputs(bench_out: tuple[dict, Path]) -> None:
    _, out = bench_out
    for name in ("report.md", "report.html", "results.json"):
        assert (out / name).stat().st_size > 0
    assert json.loads((out / "results.json").read_text())["bench_version"] == 1
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "<table>" in html  # self-contained, plots embedded
    md = (out / "report.md").read_text()
    assert "## Headline" in md and "TSTR" in md and "Augmentation" in md
    assert (out / "plots" / "cdfs.png").exists()
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporaries


def test_bench_numbers_are_sane(bench_out: tuple[dict, Path]) -> None:
    results, _ = bench_out
    s = results["summary"]
    assert results["split"]["split_by"] == "capture" and len(results["folds"]) == 2
    trtr = lookup(s, section="tstr", generator="real", classifier="rf", features="paper", metric="macro_f1")
    emp = lookup(s, section="tstr", generator="empirical", classifier="rf", features="paper", metric="macro_f1")
    assert trtr["n"] == 2 * 2 and trtr["mean"] > 0.8  # 2 folds × 2 seeds; the classes are easy
    assert emp["mean"] > 0.8
    # empirical resamples training flows: every synthetic flow is a copy, DCR ratio 0
    assert lookup(s, section="privacy", generator="empirical", metric="copy_rate")["mean"] == 1.0
    dcr = lookup(s, section="privacy", generator="empirical", metric="dcr_ratio")
    assert dcr["mean"] == pytest.approx(0.0, abs=1e-6)
    assert lookup(s, section="cost", generator="independent", metric="parameters")["mean"] > 0
    for proto in ("paper", "strict"):
        assert lookup(s, section="augment", generator="independent", protocol=proto, fraction=0.25,
                      metric="macro_f1") is not None
    assert lookup(s, section="fidelity", generator="real", metric="detection_auc") is not None
    assert len(results["goals"]) == 4 and all(g["verdict"] is None for g in results["goals"])  # no deep model


def test_folds_are_grouped_and_complete() -> None:
    t = tiny_table()
    pairs, info = fold_pairs(t, None, BenchOptions(folds=2))
    assert info["split_by"] == "capture"
    tests = np.concatenate([te.flow_id for _, te in pairs])
    assert sorted(tests) == sorted(t.flow_id)
    for tr, te in pairs:
        assert not set(tr.capture) & set(te.capture)


def test_likelihood_hook_is_used_when_offered() -> None:
    """A generator with `log_likelihood` is attacked through it; the records name the attack."""
    from netsynth.evaluate.bench import FoldContext, Records, novelty_privacy

    t = tiny_table(8)
    tr, te = t.take(np.arange(0, len(t), 2)), t.take(np.arange(1, len(t), 2))

    class Model:
        def log_likelihood(self, flows: FlowTable) -> np.ndarray:
            return np.array([1.0 if fid in set(tr.flow_id) else 0.0 for fid in flows.flow_id])

    ctx = FoldContext(fold=0, train=tr, test=te, rec=Records(), opts=BenchOptions(), step=lambda _m: None)
    novelty_privacy(ctx, "fake", Model(), tr, seed=0)
    mia = [r for r in ctx.rec.rows if r["metric"] == "mia_auc"]
    assert mia[0]["attack"] == "likelihood" and mia[0]["value"] == 1.0


def test_bad_options_fail_early(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        run_bench(tiny_table(), None, ["nope"], tmp_path, BenchOptions(quick=True))
    with pytest.raises(InputError):
        run_bench(tiny_table(), None, ["independent"], tmp_path, BenchOptions(folds=1, quick=True))


def test_overrides_parse_and_are_checked(tmp_path: Path) -> None:
    assert parse_overrides(["transformer.max_time=60", "transformer.d_model=64", "ssm.lr=1e-3"]) == {
        "transformer": {"max_time": "60", "d_model": "64"}, "ssm": {"lr": "1e-3"}}
    with pytest.raises(InputError):
        parse_overrides(["max_time=60"])
    with pytest.raises(InputError):  # a key the config does not have fails before any work
        run_bench(tiny_table(), None, ["transformer"], tmp_path,
                  BenchOptions(quick=True, overrides={"transformer": {"no_such_key": "1"}}))
    with pytest.raises(InputError):
        run_bench(tiny_table(), None, ["independent"], tmp_path,
                  BenchOptions(quick=True, overrides={"ssm": {"lr": "1"}}))


def test_fold_jobs_give_the_same_records(tmp_path: Path, bench_out: tuple[dict, Path]) -> None:
    """Two worker processes must measure exactly what one process does (every seed follows the fold)."""
    opts = BenchOptions(folds=2, quick=True, progress=False, n_jobs=1, fractions=(0.25,), ratio_fractions=(0.25,),
                        multivariate_points=100, feature_sets=("paper",), command="test", fold_jobs=2, plots=False)
    parallel = run_bench(tiny_table(), None, ["independent", "empirical"], tmp_path, opts)

    def measured(results: dict) -> list[tuple]:  # timings and memory differ from run to run; nothing else may
        return [tuple(sorted((k, str(v)) for k, v in r.items())) for r in results["records"]
                if r.get("section") != "cost" and r.get("metric") != "train_seconds"]

    assert len(measured(parallel)) > 100
    assert measured(parallel) == measured(bench_out[0])


def test_per_class_detection_auc_is_recorded(bench_out: tuple[dict, Path]) -> None:
    results, _ = bench_out
    aucs = [r for r in results["records"] if r.get("section") == "fidelity_class" and r["metric"] == "detection_auc"]
    # 3 classes × 2 folds for real + 2 generators; tiny folds have ≥ 5 flows per class on both sides
    assert len(aucs) == 3 * 2 * 3
    emp = [r["value"] for r in aucs if r["generator"] == "empirical"]
    assert all(0.0 <= v <= 1.0 for v in emp)


def test_detection_auc_by_group_separates_only_the_shifted_class() -> None:
    """Group 'b' of the fake side is shifted far away, group 'a' is drawn like the real one."""
    from netsynth.evaluate.multivariate import detection_auc, detection_auc_by_group

    rng = np.random.default_rng(0)
    groups = np.repeat(["a", "b"], 300)
    real = rng.normal(size=(600, 4))
    fake = rng.normal(size=(600, 4))
    fake[groups == "b"] += 5.0
    overall, per = detection_auc_by_group(real, fake, groups, groups, seed=0, n_estimators=50, n_jobs=1)
    assert per["b"] > 0.99
    assert abs(per["a"] - 0.5) < 0.1
    assert 0.6 < overall < 0.9  # half the fake flows are indistinguishable
    # the ungrouped AUC draws the same subsample and forest
    assert detection_auc(real, fake, seed=0, n_estimators=50, n_jobs=1) == pytest.approx(overall)
    _, tiny = detection_auc_by_group(real[:4], fake[:4], groups[:4], groups[:4], seed=0, n_jobs=1)
    assert np.isnan(tiny["a"])  # fewer than 5 flows a side: no number rather than a noisy one


def test_training_reached_table_reports_capped_fits() -> None:
    from netsynth.evaluate.bench_report import _training_reached

    fit = lambda steps, loss, why: {"training": {"steps": steps, "best_val_loss": loss, "stop_reason": why}}  # noqa: E731
    results = {"generators": ["ssm", "markov"],
               "generator_info": {"0": {"ssm": fit(100, 0.5, "max_time"), "markov": {"training": {}}},
                                  "1": {"ssm": fit(300, 0.7, "early_stopping"), "markov": {"training": {}}}}}
    (_, _), (_, header, rows) = _training_reached(results)
    assert header[2].startswith("optimizer steps")
    assert rows == [["ssm", "2", "200 (100–300)", "0.600", "early_stopping ×1, max_time ×1"]]


def test_budget_line_says_defaults_instead_of_none() -> None:
    from netsynth.evaluate.bench_report import _budget_line

    assert "default" in _budget_line({"max_time": None, "strict_max_time": None, "overrides": {}})
    assert "None" not in _budget_line({"max_time": None, "strict_max_time": None, "overrides": {}})
    assert "max_time = 120.0 s (strict-protocol fits: 40.0 s)" in _budget_line(
        {"max_time": 120.0, "strict_max_time": 40.0, "overrides": {}})
