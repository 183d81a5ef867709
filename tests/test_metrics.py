"""Metric functions of netsynth.evaluate against values computed by hand on tiny tables."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon

from netsynth.evaluate import fidelity as F
from netsynth.evaluate.classifiers import all_features, build_features, paper_features
from netsynth.evaluate.privacy import copy_rate, n_distinct, novelty
from netsynth.evaluate.tstr import score_seeds
from netsynth.flows import FlowTable


def table(rows: list[list[tuple[int, int]]], labels: list[str] | None = None, width: int = 12,
          iat: list[list[float]] | None = None, protocol: int = 6) -> FlowTable:
    """A flow table from rows of (payload_len, direction) packets, padded to `width`."""
    n = len(rows)
    pl = np.zeros((n, width), np.int32)
    di = np.zeros((n, width), np.int8)
    ia = np.zeros((n, width), np.float32)
    for i, row in enumerate(rows):
        for j, (size, d) in enumerate(row):
            pl[i, j], di[i, j] = size, d
        if iat is not None:
            ia[i, : len(iat[i])] = iat[i]
    return FlowTable.build(label=labels or ["a"] * n, n_packets=np.array([len(r) for r in rows]),
                           payload_len=pl, direction=di, iat=ia, protocol=protocol)


FLOWS = [[(10, 0), (20, 1), (30, 0), (40, 1)], [(0, 0), (1500, 1), (3000, 1)], [(5, 1), (6, 0), (7, 0), (8, 0)]]


# ------------------------------------------------------------------------------------------- JSD basics
def test_identical_tables_are_at_distance_zero() -> None:
    t = table(FLOWS, iat=[[0, 0.001, 0.5], [0, 0, 2.0], [0, 1e-7, 10, 2000]])
    res = F.fidelity_metrics(t, t)
    assert set(res) == set(F.METRICS)
    assert all(v == 0.0 for v in res.values())


def test_disjoint_supports_give_maximum_distance() -> None:
    a = table([[(10, 0), (10, 0), (10, 0)]], width=3)
    b = table([[(20, 1), (20, 1), (20, 1), (20, 1)]], width=4)
    assert F.payload_len_jsd(a, b) == pytest.approx(1.0)
    assert F.direction_ngram_jsd(a, b) == pytest.approx(1.0)
    assert F.flow_length_jsd(a, b) == pytest.approx(1.0)
    assert F.histogram_jsd([1, 0], [0, 1]) == pytest.approx(1.0)


def test_empty_sides() -> None:
    assert F.histogram_jsd([0, 0], [0, 0]) == 0.0
    assert F.histogram_jsd([0, 0], [3, 1]) == 1.0
    a = table([[(10, 0), (10, 0)]])
    # no responder packets in `a`: direction-1 histogram empty on one side only
    assert F.payload_len_jsd(a, table([[(1, 1)]]), direction=1) == 1.0


def test_payload_jsd_matches_scipy_on_half_overlap() -> None:
    a = table([[(10, 0), (20, 0)]])
    b = table([[(10, 0), (30, 0)]])
    p, q = np.zeros(1502), np.zeros(1502)
    p[[10, 20]], q[[10, 30]] = 0.5, 0.5
    assert F.payload_len_jsd(a, b, 0) == pytest.approx(jensenshannon(p, q, base=2))
    assert F.payload_len_jsd(a, b, 0) == pytest.approx(np.sqrt(0.5))  # JS divergence of half overlap = 1/2


def test_payload_overflow_bin() -> None:
    h = F.payload_histogram(table([[(1500, 0), (1501, 0), (9000, 1)]]))
    assert h.shape == (1502,)
    assert h[1500] == 1 and h[1501] == 2 and h.sum() == 3
    assert F.payload_histogram(table([[(1501, 0)]]), direction=1).sum() == 0


# ------------------------------------------------------------------------------------------- Wasserstein
def test_known_shift_gives_known_wasserstein() -> None:
    a = table([[(100, 0), (200, 1), (300, 0)]])
    b = table([[(150, 0), (250, 1), (350, 0)]])
    assert F.payload_len_wasserstein(a, b) == pytest.approx(50.0)
    assert F.payload_len_wasserstein(a, b, direction=1) == pytest.approx(50.0)
    assert F.payload_len_wasserstein(a, a) == 0.0


def test_wasserstein_ignores_padding() -> None:
    a = table([[(100, 0)]], width=10)  # nine padding zeros must not count as packets of size 0
    assert F.payload_len_wasserstein(a, table([[(100, 0)]], width=1)) == 0.0


# ------------------------------------------------------------------------------------------- n-grams
def test_three_gram_counts_on_hand_made_flows() -> None:
    # 0,1,1,0,1 -> 011 (3), 110 (6), 101 (5); second flow 1,1 has no 3-gram
    t = table([[(1, 0), (1, 1), (1, 1), (1, 0), (1, 1)], [(1, 1), (1, 1)]])
    counts = F.direction_ngram_counts(t)
    expected = np.zeros(8, int)
    expected[[3, 6, 5]] = 1
    np.testing.assert_array_equal(counts, expected)


def test_three_grams_only_in_first_ten_packets() -> None:
    row = [(1, i % 2) for i in range(12)]  # 0,1,0,1,...: first 10 packets give 8 windows
    counts = F.direction_ngram_counts(table([row], width=12))
    assert counts.sum() == 8
    assert counts[0b010] == 4 and counts[0b101] == 4


def _verify_style_grams(t: FlowTable) -> Counter:
    """The 3-gram counting of shared/tools/verify_flows.py, restated for the cross-check."""
    c: Counter = Counter()
    n = np.minimum(t.n_packets, 10)
    di = t.direction[:, :10].astype(int) * t.mask[:, :10]
    for row, length in zip(di, n, strict=True):
        for i in range(max(0, int(length) - 2)):
            c[tuple(row[i : i + 3])] += 1
    return c


def test_three_gram_jsd_agrees_with_reference_counting() -> None:
    rng = np.random.default_rng(0)

    def random_table(m: int) -> FlowTable:
        n = rng.integers(1, 16, m)
        di = (rng.random((m, 15)) < 0.4).astype(np.int8)
        return FlowTable.build(label=["x"] * m, n_packets=n, payload_len=np.ones((m, 15), np.int32), direction=di)

    a, b = random_table(200), random_table(150)
    ca, cb = _verify_style_grams(a), _verify_style_grams(b)
    keys = sorted(set(ca) | set(cb))
    p = np.array([ca.get(k, 0) for k in keys], float)
    q = np.array([cb.get(k, 0) for k in keys], float)
    expected = jensenshannon(p / p.sum(), q / q.sum(), base=2)
    assert F.direction_ngram_jsd(a, b) == pytest.approx(expected, abs=1e-12)


# ------------------------------------------------------------------------------------------- length, IAT
def test_flow_length_capped_at_ten() -> None:
    t = table([[(1, 0)] * 12, [(1, 0)] * 10, [(1, 0)] * 3], width=12)
    counts = F.flow_length_counts(t)
    assert counts.tolist() == [0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 2]


def test_iat_bins_zero_first_packet_and_log_bins() -> None:
    t = table([[(1, 0), (1, 1), (1, 0), (1, 1), (1, 0)]], iat=[[0.0, 0.0, 5e-7, 0.002, 5000.0]])
    h = F.iat_histogram(t)
    assert h.sum() == 4  # first packet left out
    assert h[0] == 1  # exact zero
    assert h[1] == 1  # (0, 1 µs)
    assert h[-1] == 1  # >= 1000 s
    # 0.002 s lies in [10^-3, 10^-2.5): edge index 6 -> bin 1 + 7
    assert h[1 + np.searchsorted(F.IAT_LOG_EDGES, 0.002, side="right")] == 1
    assert F.iat_histogram(t, direction=1).sum() == 2


def test_fidelity_truncates_to_common_width() -> None:
    wide = table([[(1, 0)] * 5 + [(999, 1)] * 5], width=10)
    narrow = table([[(1, 0)] * 5], width=5)
    assert F.fidelity_metrics(wide, narrow)["payload_len_jsd_dir0"] == 0.0
    assert F.fidelity_metrics(wide, narrow)["flow_len_jsd"] == 0.0


# ------------------------------------------------------------------------------------------- features
def test_paper_features_masked_and_padded() -> None:
    t = table([[(7, 1), (8, 0)]], width=3)
    x = paper_features(t)
    assert x.shape == (1, 20)
    assert x[0, :3].tolist() == [7, 8, 0] and x[0, 10:13].tolist() == [1, 0, 0]
    assert build_features(t, "all").shape == (1, 40)
    assert all_features(t)[0, 20:].sum() == 0


# ------------------------------------------------------------------------------------------- novelty
def test_novelty_on_crafted_case() -> None:
    train = table([[(1, 0), (2, 1)], [(3, 0), (4, 1)], [(3, 0), (4, 1)]])
    test = table([[(1, 0), (2, 1)], [(9, 0), (9, 1)]])
    syn = table([[(1, 0), (2, 1)], [(3, 0), (4, 1)], [(3, 0), (4, 1)], [(5, 0)]])
    res = novelty(train, test, syn)
    assert res["test_copy_rate"] == 0.5
    assert res["synthetic_copy_rate"] == 0.75
    assert res["distinct"] == {"train": 2, "test": 2, "synthetic": 3}
    assert res["synthetic_distinct_new"] == 1


def test_copy_rate_is_exact() -> None:
    x = np.array([[1, 2], [1, 3]])
    assert copy_rate(x, np.array([[1, 2]])) == 0.5
    assert copy_rate(x[:0], x) == 0.0
    assert n_distinct(np.array([[1, 2], [1, 2], [2, 1]])) == 2


# ------------------------------------------------------------------------------------------- classification
def test_score_seeds_separable_gives_perfect_f1() -> None:
    rng = np.random.default_rng(1)
    x = np.vstack([rng.normal(0, 1, (30, 3)), rng.normal(50, 1, (30, 3))])
    y = np.array(["a"] * 30 + ["b"] * 30)
    res = score_seeds(x, y, x + 0.1, y, seeds=2, n_estimators=10, n_jobs=1)
    assert res["macro_f1"]["mean"] == 1.0 and res["macro_f1"]["std"] == 0.0
    assert res["accuracy"]["per_seed"] == [1.0, 1.0]
    assert res["per_class_f1"] == {"a": 1.0, "b": 1.0}


def test_class_absent_from_fit_set_scores_zero() -> None:
    x = np.array([[0.0], [0.1], [10.0], [10.1]])
    res = score_seeds(x[:2], np.array(["a", "a"]), x, np.array(["a", "a", "b", "b"]), seeds=1, n_estimators=5)
    assert res["per_class_f1"]["b"] == 0.0
    assert res["macro_f1"]["mean"] == pytest.approx((2 / 3 + 0) / 2)
