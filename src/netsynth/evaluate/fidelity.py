"""Fidelity: how close the marginal and short-range temporal statistics of two flow tables are.

Every metric here is a pure function of two `FlowTable`s (or of count arrays) and returns a distance
where 0 means identical. They are meant to be read *side by side*: synthetic vs real test next to real
train vs real test, because two disjoint samples of real traffic are never at distance 0 and the
train-vs-test value is the floor a generator can be expected to reach.

Jensen–Shannon distances use base 2, so they lie in [0, 1] (1 = disjoint supports). All histograms are
over *kept* packets only (`FlowTable.mask`), never over padding.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.spatial.distance import jensenshannon
from scipy.stats import wasserstein_distance

from netsynth.flows import FlowTable

#: Payload-length histogram: one bin per exact size 0..1500, one overflow bin for > 1500 (jumbo frames,
#: segmentation offload on the capturing host). Exact sizes matter: protocols are recognised by them.
PAYLOAD_MAX_EXACT = 1500
#: IAT histogram edges in seconds (half-decade log bins from 1 µs to 1000 s). Bins: exactly 0 (its own
#: bin: coalesced or first packets), (0, 1 µs), the 18 half-decades, and >= 1000 s.
IAT_LOG_EDGES = np.logspace(-6, 3, 19)
#: Direction n-grams and flow length look at the first 10 packets, the paper-style representation.
NGRAM_PACKETS = 10
FLOW_LEN_CAP = 10


# ---------------------------------------------------------------------------------------------- helpers
def histogram_jsd(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen–Shannon distance (base 2) between two count vectors over the same bins.

    Counts are normalised here so callers can pass raw histograms. An empty side has no distribution:
    two empty sides count as identical (0), one empty side as maximally far (1), as verify_flows.py does.
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if p.shape != q.shape:
        raise ValueError(f"histograms over different bins: {p.shape} vs {q.shape}")
    sp, sq = p.sum(), q.sum()
    if sp == 0 and sq == 0:
        return 0.0
    if sp == 0 or sq == 0:
        return 1.0
    return float(np.clip(jensenshannon(p / sp, q / sq, base=2), 0.0, 1.0))


def _kept(table: FlowTable, column: str, direction: int | None, start: int = 0) -> np.ndarray:
    """Values of a per-packet column at kept positions >= `start`, optionally of one direction only."""
    sel = table.mask.copy()
    sel[:, :start] = False
    if direction is not None:
        sel &= table.direction == direction
    return getattr(table, column)[sel]


# ---------------------------------------------------------------------------------------------- payload
def payload_histogram(table: FlowTable, direction: int | None = None) -> np.ndarray:
    """Counts of kept packets per payload size: bins 0..1500 exact, bin 1501 = any size above 1500."""
    sizes = np.minimum(_kept(table, "payload_len", direction).astype(np.int64), PAYLOAD_MAX_EXACT + 1)
    return np.bincount(sizes, minlength=PAYLOAD_MAX_EXACT + 2)


def payload_len_jsd(a: FlowTable, b: FlowTable, direction: int | None = None) -> float:
    """JSD (base 2) of the payload-length histograms of kept packets (of one direction if given)."""
    return histogram_jsd(payload_histogram(a, direction), payload_histogram(b, direction))


def payload_len_wasserstein(a: FlowTable, b: FlowTable, direction: int | None = None) -> float:
    """Wasserstein-1 (earth mover's) distance in bytes between kept packets' payload sizes.

    Unlike the JSD it sees *how far* sizes are off (a 1-byte error costs little), so the two together
    separate "wrong sizes" from "almost right sizes". NaN when either side has no packet.
    """
    x = _kept(a, "payload_len", direction).astype(np.float64)
    y = _kept(b, "payload_len", direction).astype(np.float64)
    if x.size == 0 or y.size == 0:
        return float("nan")
    return float(wasserstein_distance(x, y))


# ---------------------------------------------------------------------------------------------- direction
def direction_ngram_counts(table: FlowTable, n: int = 3, packets: int = NGRAM_PACKETS) -> np.ndarray:
    """Counts of direction n-grams inside each flow's first min(n_packets, `packets`) packets.

    Returns a vector of 2**n counts indexed by the n-gram read as a binary number (first packet = most
    significant bit). A flow of L kept packets contributes max(0, L - n + 1) n-grams; n-grams never
    cross flows or run into padding.
    """
    k = min(packets, table.max_packets)
    if k < n or len(table) == 0:
        return np.zeros(2**n, dtype=np.int64)
    d = table.direction[:, :k].astype(np.int64)
    windows = np.lib.stride_tricks.sliding_window_view(d, n, axis=1)  # (flows, k-n+1, n)
    codes = windows @ (2 ** np.arange(n - 1, -1, -1))
    length = np.minimum(table.n_packets.astype(np.int64), k)
    valid = np.arange(k - n + 1)[None, :] + n <= length[:, None]
    return np.bincount(codes[valid], minlength=2**n)


def direction_ngram_jsd(a: FlowTable, b: FlowTable, n: int = 3, packets: int = NGRAM_PACKETS) -> float:
    """JSD (base 2) of direction n-gram counts over the first `packets` packets of each flow."""
    return histogram_jsd(direction_ngram_counts(a, n, packets), direction_ngram_counts(b, n, packets))


# ---------------------------------------------------------------------------------------------- length
def flow_length_counts(table: FlowTable, cap: int = FLOW_LEN_CAP) -> np.ndarray:
    """Flows per kept length, lengths above `cap` counted as `cap` (bins 0..cap; bin 0 stays empty)."""
    return np.bincount(np.minimum(table.n_packets.astype(np.int64), cap), minlength=cap + 1)


def flow_length_jsd(a: FlowTable, b: FlowTable, cap: int = FLOW_LEN_CAP) -> float:
    """JSD (base 2) of kept flow length, n_packets capped at `cap`."""
    return histogram_jsd(flow_length_counts(a, cap), flow_length_counts(b, cap))


# ---------------------------------------------------------------------------------------------- timing
def iat_histogram(table: FlowTable, direction: int | None = None) -> np.ndarray:
    """Counts of kept packets (except each flow's first) per log-spaced IAT bin, see IAT_LOG_EDGES.

    The first packet is left out because its IAT is 0 by definition and would only dilute the rest.
    Bin 0 is exactly 0 s, bin 1 is (0, 1 µs), then half-decades, the last bin is >= 1000 s.
    """
    x = _kept(table, "iat", direction, start=1).astype(np.float64)
    bins = np.where(x == 0, 0, 1 + np.searchsorted(IAT_LOG_EDGES, x, side="right"))
    return np.bincount(bins, minlength=len(IAT_LOG_EDGES) + 2)


def iat_jsd(a: FlowTable, b: FlowTable, direction: int | None = None) -> float:
    """JSD (base 2) of log-binned inter-arrival times (of one direction if given)."""
    return histogram_jsd(iat_histogram(a, direction), iat_histogram(b, direction))


# ---------------------------------------------------------------------------------------------- suite
#: name -> (function of two tables, definition for the report). The order is the report's order.
METRICS: dict[str, tuple[Callable[[FlowTable, FlowTable], float], str]] = {
    "payload_len_jsd_dir0": (
        lambda a, b: payload_len_jsd(a, b, 0),
        "JSD (base 2) of payload-length histograms, initiator→responder packets; bins = exact sizes "
        "0..1500 plus one bin for > 1500.",
    ),
    "payload_len_jsd_dir1": (
        lambda a, b: payload_len_jsd(a, b, 1),
        "Same, responder→initiator packets.",
    ),
    "payload_len_w1": (
        payload_len_wasserstein,
        "Wasserstein-1 distance (bytes) between payload sizes of all kept packets "
        "(scipy.stats.wasserstein_distance).",
    ),
    "direction_3gram_jsd": (
        direction_ngram_jsd,
        "JSD (base 2) of direction 3-gram counts inside each flow's first min(n_packets, 10) packets.",
    ),
    "flow_len_jsd": (
        flow_length_jsd,
        "JSD (base 2) of kept flow length, n_packets capped at 10.",
    ),
    "iat_jsd_dir0": (
        lambda a, b: iat_jsd(a, b, 0),
        "JSD (base 2) of log-binned IAT of initiator→responder packets (each flow's first packet "
        "excluded); bins: exactly 0, (0, 1 µs), half-decades 1 µs..1000 s, ≥ 1000 s.",
    ),
    "iat_jsd_dir1": (
        lambda a, b: iat_jsd(a, b, 1),
        "Same, responder→initiator packets.",
    ),
}
DEFINITIONS: dict[str, str] = {name: text for name, (_, text) in METRICS.items()}


def common_packets(*tables: FlowTable) -> int:
    """The smallest N among the tables: fidelity compares only packet positions all tables have."""
    return min(t.max_packets for t in tables)


def fidelity_metrics(a: FlowTable, b: FlowTable, *, packets: int | None = None) -> dict[str, float]:
    """All metrics of `METRICS` between `a` and `b`, after truncating both to `packets` slots.

    Truncation matters when tables keep different N (say 20 real packets vs 10 generated): without it
    the wider table would carry packets the other cannot have, and every histogram would differ.
    """
    k = packets if packets is not None else common_packets(a, b)
    a, b = a.truncate(k), b.truncate(k)
    return {name: fn(a, b) for name, (fn, _) in METRICS.items()}


# ---------------------------------------------------------------------------------------------- extended
# The benchmark's fuller suite (issue 5). Kept separate from `METRICS` so `evaluate()` and its tests keep
# their exact outputs; `extended_metrics` is what `bench` reports.
#: Packets the temporal statistics (n-grams, bursts, autocorrelation, positions) look at.
TEMPORAL_PACKETS = 10
AUTOCORR_LAGS = (1, 2, 3, 4, 5)
BURST_CAP = 10


def ks_statistic(x: np.ndarray, y: np.ndarray) -> float:
    """Two-sample Kolmogorov–Smirnov statistic sup|F_x − F_y| in [0, 1]; NaN if a side is empty."""
    from scipy.stats import ks_2samp

    x, y = np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel()
    if x.size == 0 or y.size == 0:
        return float("nan")
    return float(ks_2samp(x, y).statistic)


def wasserstein1(x: np.ndarray, y: np.ndarray) -> float:
    """Wasserstein-1 between two 1-D samples (NaN if a side is empty)."""
    x, y = np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel()
    if x.size == 0 or y.size == 0:
        return float("nan")
    return float(wasserstein_distance(x, y))


def log_iat(table: FlowTable, direction: int | None = None) -> np.ndarray:
    """log10(IAT + 1 µs) of kept non-first packets: W1/KS on raw seconds would be ruled by a few long gaps."""
    return np.log10(_kept(table, "iat", direction, start=1).astype(np.float64) + 1e-6)


def position_payload_jsd(a: FlowTable, b: FlowTable, packets: int = TEMPORAL_PACKETS) -> list[float]:
    """Per packet position 0..packets-1: JSD of payload-size histograms of flows that have that packet.

    NaN at positions no flow of either side reaches."""
    k = min(packets, a.max_packets, b.max_packets)
    out = []
    for pos in range(k):
        ha = np.bincount(np.minimum(a.payload_len[a.mask[:, pos], pos].astype(np.int64), PAYLOAD_MAX_EXACT + 1),
                         minlength=PAYLOAD_MAX_EXACT + 2)
        hb = np.bincount(np.minimum(b.payload_len[b.mask[:, pos], pos].astype(np.int64), PAYLOAD_MAX_EXACT + 1),
                         minlength=PAYLOAD_MAX_EXACT + 2)
        # a position neither side reaches says nothing (NaN, left out of means); one side only = maximal
        out.append(float("nan") if ha.sum() == 0 and hb.sum() == 0 else histogram_jsd(ha, hb))
    return out


def position_direction_gap(a: FlowTable, b: FlowTable, packets: int = TEMPORAL_PACKETS) -> list[float]:
    """Per position: |P_a(direction = 1) − P_b(direction = 1)| among flows that have that packet."""
    k = min(packets, a.max_packets, b.max_packets)
    out = []
    for pos in range(k):
        pa = a.direction[a.mask[:, pos], pos].astype(np.float64)
        pb = b.direction[b.mask[:, pos], pos].astype(np.float64)
        out.append(float(abs(pa.mean() - pb.mean())) if pa.size and pb.size else float("nan"))
    return out


def flag_histogram(table: FlowTable) -> np.ndarray:
    """Counts of kept TCP packets per raw flag byte (256 bins); UDP packets carry no flags."""
    sel = table.mask & (table.protocol == 6)[:, None]
    return np.bincount(table.tcp_flags[sel].astype(np.int64), minlength=256)


def direction_share(table: FlowTable) -> float:
    """Share of kept packets sent by the responder (direction 1)."""
    d = table.direction[table.mask]
    return float(d.mean()) if d.size else float("nan")


def payload_autocorr(table: FlowTable, lags: tuple[int, ...] = AUTOCORR_LAGS,
                     packets: int = TEMPORAL_PACKETS) -> np.ndarray:
    """Pearson correlation of payload_len[t] with payload_len[t + lag] over kept pairs, per lag.

    Pooled over flows (one flow has too few packets for its own estimate); NaN where undefined.
    """
    k = min(packets, table.max_packets)
    x = table.payload_len[:, :k].astype(np.float64)
    m = table.mask[:, :k]
    out = []
    for lag in lags:
        if lag >= k:
            out.append(float("nan"))
            continue
        sel = m[:, :-lag] & m[:, lag:]
        u, v = x[:, :-lag][sel], x[:, lag:][sel]
        ok = u.size > 1 and u.std() > 0 and v.std() > 0
        out.append(float(np.corrcoef(u, v)[0, 1]) if ok else float("nan"))
    return np.array(out)


def burst_lengths(table: FlowTable, packets: int = TEMPORAL_PACKETS, cap: int = BURST_CAP) -> np.ndarray:
    """Counts of burst lengths (runs of consecutive packets in one direction), capped at `cap`.

    Bursts are counted inside each flow's first min(n_packets, `packets`) packets; bins 0..cap (0 empty).
    """
    k = min(packets, table.max_packets)
    counts = np.zeros(cap + 1, dtype=np.int64)
    if len(table) == 0 or k == 0:
        return counts
    d = table.direction[:, :k].astype(np.int64)
    length = np.minimum(table.n_packets.astype(np.int64), k)
    # a run ends at position t when t is the last kept packet or the direction changes after t
    change = np.zeros_like(d, dtype=bool)
    change[:, :-1] = d[:, 1:] != d[:, :-1]
    last = np.arange(k)[None, :] == (length - 1)[:, None]
    ends = (change | last) & (np.arange(k)[None, :] < length[:, None])
    for row_ends in ends:
        pos = np.flatnonzero(row_ends)
        runs = np.diff(np.concatenate([[-1], pos]))
        counts += np.bincount(np.minimum(runs, cap), minlength=cap + 1)
    return counts


def extended_metrics(a: FlowTable, b: FlowTable, *, packets: int | None = None) -> dict[str, float]:
    """The benchmark's static + temporal fidelity suite between `a` and `b` (0 = identical for every key).

    Keys are stable names used by results.json and the report (see EXTENDED_DEFINITIONS).
    """
    k = packets if packets is not None else common_packets(a, b)
    a, b = a.truncate(k), b.truncate(k)
    out: dict[str, float] = {}
    for d in (0, 1):
        xa, xb = _kept(a, "payload_len", d), _kept(b, "payload_len", d)
        out[f"payload_jsd_dir{d}"] = payload_len_jsd(a, b, d)
        out[f"payload_w1_dir{d}"] = wasserstein1(xa, xb)
        out[f"payload_ks_dir{d}"] = ks_statistic(xa, xb)
        ia, ib = log_iat(a, d), log_iat(b, d)
        out[f"iat_jsd_dir{d}"] = iat_jsd(a, b, d)
        out[f"iat_w1_log10_dir{d}"] = wasserstein1(ia, ib)
        out[f"iat_ks_dir{d}"] = ks_statistic(ia, ib)
    out["position_payload_jsd_mean"] = float(np.nanmean(position_payload_jsd(a, b)))
    out["position_direction_gap_mean"] = float(np.nanmean(position_direction_gap(a, b)))
    out["flag_jsd"] = histogram_jsd(flag_histogram(a), flag_histogram(b))
    out["direction_share_gap"] = abs(direction_share(a) - direction_share(b))
    for n in (2, 3, 4):
        out[f"direction_{n}gram_jsd"] = direction_ngram_jsd(a, b, n)
    gap = np.abs(payload_autocorr(a) - payload_autocorr(b))
    out["payload_autocorr_gap"] = float(np.nanmean(gap)) if np.isfinite(gap).any() else float("nan")
    out["burst_jsd"] = histogram_jsd(burst_lengths(a), burst_lengths(b))
    out["flow_len_jsd"] = flow_length_jsd(a, b)
    return out


EXTENDED_DEFINITIONS: dict[str, str] = {
    "payload_jsd_dir{d}": "JSD (base 2) of exact payload sizes (0..1500, >1500), direction d.",
    "payload_w1_dir{d}": "Wasserstein-1 (bytes) of payload sizes, direction d.",
    "payload_ks_dir{d}": "KS statistic of payload sizes, direction d.",
    "iat_jsd_dir{d}": "JSD of log-binned IAT (first packet excluded), direction d.",
    "iat_w1_log10_dir{d}": "Wasserstein-1 of log10(IAT + 1 µs), direction d (decades).",
    "iat_ks_dir{d}": "KS statistic of log10(IAT + 1 µs), direction d.",
    "position_payload_jsd_mean": "Mean over positions 1..10 of the per-position payload-size JSD.",
    "position_direction_gap_mean": "Mean over positions 1..10 of |P(direction=1)| difference.",
    "flag_jsd": "JSD of raw TCP flag bytes over kept TCP packets.",
    "direction_share_gap": "|difference| in the share of responder→initiator packets.",
    "direction_{n}gram_jsd": "JSD of direction n-grams inside the first 10 packets (n = 2, 3, 4).",
    "payload_autocorr_gap": "Mean over lags 1..5 of |difference| of pooled payload-length autocorrelation.",
    "burst_jsd": "JSD of burst lengths (same-direction runs, capped at 10) in the first 10 packets.",
    "flow_len_jsd": "JSD of kept flow length, capped at 10.",
}
#: Which extended keys are "temporal" (the issue's second goal compares deep models on these).
TEMPORAL_KEYS = ("direction_2gram_jsd", "direction_3gram_jsd", "direction_4gram_jsd", "payload_autocorr_gap",
                 "burst_jsd", "iat_jsd_dir0", "iat_jsd_dir1", "flow_len_jsd")
