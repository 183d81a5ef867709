"""Per-flow random draws as a pure function of (seed, global flow index): counter-based, not sequential.

A streamed export sees one batch of flows at a time, possibly in an order other than the table's (when
start times are not ascending). A sequential generator would make each flow's ISNs, ports and addresses
depend on how many draws came before it, hence on the batch size and on the order of reading. Instead
every draw is one output of the SplitMix64 generator at a fixed position: flow `i`'s field `f` is
output number `i * FIELDS + f` of a SplitMix64 stream whose state starts at a 64-bit key derived from
the seed by NumPy's `SeedSequence`. SplitMix64 output n is `mix(key + n * GOLDEN)`, so any flow's
draws are computed directly, vectorised, in any order, with the same bits on every machine (only
wrapping uint64 arithmetic). The batch size therefore never changes the output bytes.
"""

from __future__ import annotations

import numpy as np

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)

# Field numbers: the position of each draw within a flow's block of FIELDS outputs.
ISN, CLIENT_PORT, CLIENT_HOST, SERVER_HOST, FLOW_LABEL, SERVER_PORT, START_GAP = range(7)
FIELDS = 7
_STREAM = 0x6E657473  # "nets": keeps these draws apart from other uses of the same seed


def stream_key(seed: int) -> np.uint64:
    """The 64-bit SplitMix64 starting state for a user seed (SeedSequence: well mixed, portable)."""
    return np.random.SeedSequence([int(seed), _STREAM]).generate_state(1, np.uint64)[0]


def raw(key: np.uint64, rows: np.ndarray, field: int) -> np.ndarray:
    """64 random bits (uint64) per row: SplitMix64 output number rows * FIELDS + field + 1."""
    with np.errstate(over="ignore"):
        counter = np.asarray(rows, dtype=np.uint64) * np.uint64(FIELDS) + np.uint64(field + 1)
        z = key + counter * GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def integers(key: np.uint64, rows: np.ndarray, field: int, low: int, high: int) -> np.ndarray:
    """int64 per row in [low, high). Modulo reduction: the bias is below (high - low) / 2**64 relative
    to the bin size, which is nil for ports and IPv4 pools and for IPv6 pools (capped at 2**62 hosts,
    a power of two for /64) is at most 1 in 4 for a few values of unusual pool sizes."""
    span = np.uint64(high - low)
    return (raw(key, rows, field) % span).astype(np.int64) + np.int64(low)


def uniform(key: np.uint64, rows: np.ndarray, field: int) -> np.ndarray:
    """float64 per row in [0, 1), from the top 53 bits (every value a multiple of 2**-53)."""
    return (raw(key, rows, field) >> np.uint64(11)).astype(np.float64) * 2.0**-53


def exponential(key: np.uint64, rows: np.ndarray, field: int, mean: float) -> np.ndarray:
    """Exponential variates of the given mean per row (inverse CDF of `uniform`)."""
    return -np.log1p(-uniform(key, rows, field)) * mean
