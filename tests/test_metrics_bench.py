"""The benchmark's extra metrics (extended fidelity, multivariate, DCR, membership, augmentation helpers,
tie rule) against values computed by hand on tiny inputs."""

from __future__ import annotations

import numpy as np
import pytest

from netsynth.evaluate import augment as A
from netsynth.evaluate import fidelity as F
from netsynth.evaluate import multivariate as M
from netsynth.evaluate import privacy as P
from netsynth.evaluate.bench import Records, lookup
from netsynth.evaluate.bench_report import mark
from test_metrics import table

FLOWS = [[(10, 0), (20, 1), (30, 0), (40, 1)], [(0, 0), (1500, 1), (3000, 1)], [(5, 1), (6, 0), (7, 0), (8, 0)]]
IAT = [[0, 0.001, 0.5, 0.2], [0, 0, 2.0], [0, 1e-7, 10, 2000]]


# ------------------------------------------------------------------------------------------- 1-D distances
def test_extended_identical_is_zero() -> None:
    t = table(FLOWS, iat=IAT)
    res = F.extended_metrics(t, t)
    assert all(v == pytest.approx(0.0, abs=1e-12) for v in res.values() if np.isfinite(v)), res


def test_extended_disjoint_supports_are_maximal() -> None:
    a = table([[(10, 0), (10, 0), (10, 0)]] * 3)
    b = table([[(900, 1), (900, 1), (900, 1), (900, 1), (900, 1), (900, 1)]] * 3)
    res = F.extended_metrics(a, b)
    assert res["payload_jsd_dir0"] == 1.0 and res["payload_jsd_dir1"] == 1.0  # one side empty
    assert res["direction_2gram_jsd"] == pytest.approx(1.0)
    assert res["flow_len_jsd"] == pytest.approx(1.0)
    assert res["burst_jsd"] == pytest.approx(1.0)  # bursts of 3 vs 6
    assert res["direction_share_gap"] == pytest.approx(1.0)


def test_known_shift_gives_known_wasserstein_and_ks() -> None:
    x = np.arange(100.0)
    assert F.wasserstein1(x, x + 7) == pytest.approx(7.0)
    assert F.ks_statistic(x, x) == 0.0
    assert F.ks_statistic(x, x + 1000) == 1.0
    assert F.ks_statistic(x, x + 10) == pytest.approx(0.10)
    a = table([[(100, 0), (200, 0)]])
    b = table([[(150, 0), (250, 0)]])
    assert F.extended_metrics(a, b)["payload_w1_dir0"] == pytest.approx(50.0)


def test_log_iat_shift_of_one_decade() -> None:
    a = table([[(1, 0), (1, 0), (1, 0)]], iat=[[0, 0.01, 0.1]])
    b = table([[(1, 0), (1, 0), (1, 0)]], iat=[[0, 0.1, 1.0]])
    assert F.extended_metrics(a, b)["iat_w1_log10_dir0"] == pytest.approx(1.0, abs=1e-3)


def test_burst_lengths_by_hand() -> None:
    # directions 0 0 1 0 0 0 → bursts 2, 1, 3; second flow 1 1 → burst 2
    t = table([[(1, 0), (1, 0), (1, 1), (1, 0), (1, 0), (1, 0)], [(1, 1), (1, 1)]])
    assert F.burst_lengths(t).tolist()[:4] == [0, 1, 2, 1]


def test_payload_autocorr_by_hand() -> None:
    t = table([[(1, 0), (2, 0), (3, 0), (4, 0)], [(4, 0), (3, 0), (2, 0), (1, 0)]])
    # lag-1 pairs: (1,2),(2,3),(3,4),(4,3),(3,2),(2,1)
    u, v = np.array([1, 2, 3, 4, 3, 2]), np.array([2, 3, 4, 3, 2, 1])
    assert F.payload_autocorr(t, lags=(1,))[0] == pytest.approx(np.corrcoef(u, v)[0, 1])


def test_position_metrics_and_flags() -> None:
    a = table([[(10, 0), (20, 1)]])
    b = table([[(10, 0), (30, 0)]])
    assert F.position_payload_jsd(a, b)[:2] == [0.0, 1.0]
    assert np.isnan(F.position_payload_jsd(a, b)[2:]).all()  # positions neither side reaches
    assert F.position_direction_gap(a, b)[:2] == [0.0, 1.0]
    assert F.flag_histogram(a).sum() == 2


# ------------------------------------------------------------------------------------------- multivariate
def _cloud(n: int, shift: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 4)) + shift


def test_mmd_identical_zero_and_shift_positive() -> None:
    x = _cloud(200, 0, 0)
    assert abs(M.mmd2(x, x)) < 0.02
    assert abs(M.mmd2(x, _cloud(200, 0, 1))) < 0.02
    assert M.mmd2(x, _cloud(200, 5, 1)) > 0.5


def test_prdc_identical_sets() -> None:
    x = _cloud(150, 0, 0)
    r = M.prdc(x, x, k=5)
    assert r["precision"] == 1.0 and r["recall"] == 1.0 and r["coverage"] == 1.0
    assert r["density"] >= 1.0  # every point lies in its own ball and at least k others' on average
    far = M.prdc(x, _cloud(150, 50, 1), k=5)
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_detection_auc_identical_and_disjoint() -> None:
    x = _cloud(300, 0, 0)
    same = M.detection_auc(x, _cloud(300, 0, 1), n_estimators=30, n_jobs=1)
    assert abs(same - 0.5) < 0.1  # two draws of one distribution: chance ± noise
    assert M.detection_auc(x, _cloud(300, 20, 1), n_estimators=30, n_jobs=1) == 1.0


def test_embed_is_fixed_and_bounded() -> None:
    t = table(FLOWS, iat=IAT, width=20)
    e = M.embed(t)
    assert e.shape == (3, 31)
    assert np.array_equal(e, M.embed(t))  # nothing fitted
    assert e[0, 0] == pytest.approx(10 / 1500)


# ------------------------------------------------------------------------------------------- privacy
def test_dcr_ratio_and_membership_auc() -> None:
    train = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    test = np.array([[0.0, 2.0], [3.0, 0.0]])  # distances 1 and 2 → mean 1.5
    syn = np.array([[0.0, 0.0], [1.0, 0.0]])  # exact copies → 0
    d = P.dcr_ratio(train, test, syn)
    assert d["dcr_test_mean"] == pytest.approx(1.5) and d["dcr_ratio"] == 0.0
    assert P.dcr_ratio(train, test, test)["dcr_ratio"] == pytest.approx(1.0)
    assert P.membership_auc(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 1.0
    assert P.membership_auc(np.array([1.0, 1.0]), np.array([1.0, 1.0])) == 0.5
    scores = P.distance_attack_scores(train, syn)
    assert scores.tolist() == [0.0, 0.0, -1.0]


# ------------------------------------------------------------------------------------------- augmentation
def test_low_data_subset_keeps_every_class() -> None:
    labels = np.array(["a"] * 100 + ["b"] * 3 + ["c"])
    idx = A.low_data_subset(labels, 0.05, np.random.default_rng(0))
    got = dict(zip(*np.unique(labels[idx], return_counts=True), strict=True))
    assert got == {"a": 5, "b": 1, "c": 1}


def test_topup_ratio_and_gap() -> None:
    assert A.topup_counts({"a": 10, "b": 4}, {"a": 1, "b": 4}) == {"a": 9, "b": 0}
    assert A.ratio_counts({"a": 3, "b": 1}, 0.5) == {"a": 2, "b": 1}
    assert A.gap_closed(0.4, 0.6, 0.8) == pytest.approx(0.5)
    assert np.isnan(A.gap_closed(0.8, 0.9, 0.8))
    pool = table(FLOWS, labels=["a", "b", "a"])
    assert A.take_per_class(pool, {"a": 1, "b": 5}).label.tolist() == ["a", "b"]


# ------------------------------------------------------------------------------------------- summary, ties
def test_records_summary_mean_std_over_folds_and_seeds() -> None:
    r = Records()
    for fold, v in enumerate([0.5, 0.7]):
        for seed in range(2):
            r.add(v + seed * 0.1, section="tstr", generator="g", metric="macro_f1", fold=fold, seed=seed)
    s = lookup(r.summary(), section="tstr", generator="g", metric="macro_f1")
    assert s["n"] == 4 and s["mean"] == pytest.approx(0.65)
    assert s["std"] == pytest.approx(np.std([0.5, 0.6, 0.7, 0.8]))


def test_tie_rule_marks_best_and_no_difference() -> None:
    cells = mark({"a": {"mean": 0.80, "std": 0.05}, "b": {"mean": 0.77, "std": 0.01},
                  "c": {"mean": 0.50, "std": 0.02}}, "macro_f1")
    assert cells["a"].startswith("**") and cells["b"].startswith("≈") and cells["c"] == "0.500 ± 0.020"
    dist = mark({"a": {"mean": 0.1, "std": 0.0}, "b": {"mean": 0.3, "std": 0.0}}, "burst_jsd")
    assert dist["a"].startswith("**") and not dist["b"].startswith("≈")
    auc = mark({"a": {"mean": 0.55, "std": 0.0}, "b": {"mean": 0.95, "std": 0.0}}, "detection_auc")
    assert auc["a"].startswith("**")
