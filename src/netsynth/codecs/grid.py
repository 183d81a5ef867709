"""Flow ⇄ scaled 2-D array (packets × channels) for the diffusion model, fitted on training flows.

Every channel lives in [-1, 1] so that a denoiser can clip its x0 estimate to the data range:

| channel | encoding |
| --- | --- |
| 0 payload | `quantile` (default fit): 2·F − 1, F = mid-point of the size's training-CDF interval |
| | (`log`, older: 2 · log1p(size) / log1p(size_cap) − 1) |
| 1 direction | −1 initiator→responder, +1 responder→initiator |
| 2 iat | log(iat + 1e-6) mapped affinely from the training [min, max] to [−1, 1] (clipped outside) |
| 3 mask | +1 kept packet, −1 padding (the flow length is read from it) |
| 4.. flags | one channel per TCP flag bit (FIN SYN RST PSH ACK URG ECE CWR): +1 set, −1 clear |

Padding positions are −1 in every channel, a constant the model learns trivially.

Why the quantile (rank) transform for sizes: exact sizes carry the class signal, and a few sizes take
most packets (on iot-type16, 512 distinct sizes in 85 k packets). In the log scale every size, frequent
or not, gets the same resolution, so a blurred denoiser output lands between frequent sizes and decodes
to sizes that are rare or never seen (a model trained with it produced 725 distinct sizes, 6, 9 and 31
bytes among its most common). Under the rank transform each training size owns an interval as wide as
its frequency, and decoding by the inverse empirical CDF (the size whose interval holds the value)
always lands on a training size: a small error keeps a frequent size exact. Uniform ranks, not
Gaussianised ones, because the sampler clips x0 to [-1, 1]: a Gaussian's tails would be cut.

Decoding is sound for any real-valued array: direction = sign, flow length = first position whose mask
is < 0 (at least 1, and at least the class's shortest training flow: counted when raised), flags
snapped to the nearest flag byte seen in training for that direction, and payload sizes either
decoded by the inverse transform (inverse empirical CDF for `quantile`, rounded for `log`) or snapped
to the nearest size seen in training for the class (in the scaled space, where "nearest" respects the
transform's resolution). Values outside the data range are clipped and
counted. The codec is JSON-serialisable and knows nothing about torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from netsynth.errors import InputError
from netsynth.flows import FlowTable

C_SIZE, C_DIR, C_IAT, C_MASK, C_FLAGS = 0, 1, 2, 3, 4
N_FLAG_BITS = 8
N_CHANNELS = C_FLAGS + N_FLAG_BITS
IAT_EPS = 1e-6
SizeTransform = Literal["class_quantile", "quantile", "log"]
SIZE_TRANSFORMS = ("class_quantile", "quantile", "log")


def _cdf_table(sizes: np.ndarray) -> dict[str, list]:
    """{"values": sorted distinct sizes, "edges": empirical CDF at each} — JSON-ready."""
    values, counts = np.unique(np.asarray(sizes, np.int64), return_counts=True)
    return {"values": [int(v) for v in values], "edges": [float(e) for e in np.cumsum(counts) / counts.sum()]}


def _table_points(table: dict[str, list]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sizes, CDF edges, scaled mid-points 2·(F(k−1) + F(k))/2 − 1) of a CDF table."""
    values = np.asarray(table["values"], np.float64)
    edges = np.asarray(table["edges"], np.float64)
    mids = (np.concatenate([[0.0], edges[:-1]]) + edges) / 2
    return values, edges, 2 * mids - 1


def _table_scale(table: dict[str, list], size: np.ndarray) -> np.ndarray:
    """Sizes -> [-1, 1]: a training size goes to the mid-point of its CDF interval, others in between."""
    values, _, points = _table_points(table)
    return np.interp(np.asarray(size, np.float64), values, points)


def _table_unscale(table: dict[str, list], v: np.ndarray) -> np.ndarray:
    """[-1, 1] -> the size whose CDF interval holds (v + 1) / 2: the inverse empirical CDF."""
    values, edges, _ = _table_points(table)
    idx = np.searchsorted(edges, (np.asarray(v, np.float64) + 1) / 2, side="left")
    return values[np.clip(idx, 0, len(values) - 1)]


def _flag_bits(flags: np.ndarray) -> np.ndarray:
    """(...,) flag bytes -> (..., 8) in ±1."""
    bits = (np.asarray(flags, np.int64)[..., None] >> np.arange(N_FLAG_BITS)) & 1
    return bits.astype(np.float32) * 2 - 1


def _direction_shares(flows: FlowTable) -> dict[str, list[float]]:
    """Per class, per position: share of kept packets sent responder→initiator (class share if none)."""
    labels, mask = flows.label.astype(str), flows.mask
    out = {}
    for c in flows.classes:
        rows = labels == c
        whole = float(flows.direction[rows][mask[rows]].mean())
        out[c] = [float(flows.direction[rows, j][mask[rows, j]].mean()) if mask[rows, j].any() else whole
                  for j in range(flows.max_packets)]
    return out


@dataclass
class GridCodec:
    """A fitted flow ⇄ grid codec. Build with `GridCodec.fit(flows)`; see the module docstring."""

    classes: list[str]
    max_packets: int
    iat_lo: float
    iat_hi: float
    sizes_by_class: dict[str, list[int]]
    flags_by_direction: list[list[int]] = field(default_factory=lambda: [[0], [0]])
    size_cap: int = 1480
    # "log" is the default here only so that codecs saved before the quantile transform load unchanged
    size_transform: SizeTransform = "log"
    size_values: list[int] = field(default_factory=list)  # sorted distinct training sizes (quantile)
    size_edges: list[float] = field(default_factory=list)  # empirical CDF at each of them, last = 1
    # class_quantile: per class, one CDF table per packet position (positions the class never reached
    # use the class's table over all positions; unknown classes the global table above)
    class_size_tables: dict[str, list[dict[str, list]]] = field(default_factory=dict)
    # class_direction: direction coded by its (class, position) CDF too — P(responder→initiator) per
    # class and position; 0 codes as the middle of [−1, 1 − 2p], 1 as the middle of [1 − 2p, 1]
    class_direction_p: dict[str, list[float]] = field(default_factory=dict)
    # shortest training flow per class (capped at max_packets): a decoded flow is never shorter, since
    # extraction's --min-packets made shorter ones impossible. Empty for codecs saved before it existed
    min_packets: dict[str, int] = field(default_factory=dict)

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(cls, flows: FlowTable, *, size_cap: int = 1480, size_transform: SizeTransform = "quantile",
            class_direction: bool = False) -> GridCodec:
        """Scaling ranges, size quantile table, per-class sizes and per-direction flags from training flows."""
        if size_transform not in SIZE_TRANSFORMS:
            raise InputError(f"size_transform must be one of {', '.join(SIZE_TRANSFORMS)}, got {size_transform!r}")
        if len(flows) == 0:
            raise InputError("cannot fit a grid codec on zero flows")
        mask = flows.mask
        later = mask.copy()
        later[:, 0] = False  # the first packet's IAT is 0 by definition and says nothing
        logs = np.log(flows.iat[later].astype(np.float64) + IAT_EPS) if later.any() else np.zeros(1)
        lo, hi = float(min(logs.min(), np.log(IAT_EPS))), float(logs.max())
        if hi - lo < 1e-6:
            hi = lo + 1.0
        labels = flows.label.astype(str)
        sizes = np.minimum(flows.payload_len.astype(np.int64), size_cap)
        by_class = {c: sorted({int(v) for v in sizes[(labels == c)[:, None] & mask]}) for c in flows.classes}
        table = _cdf_table(sizes[mask])
        per_class = {}
        if size_transform == "class_quantile":
            for c in flows.classes:
                rows = labels == c
                whole = _cdf_table(sizes[rows][mask[rows]])
                per_class[c] = [_cdf_table(sizes[rows, j][mask[rows, j]]) if mask[rows, j].any() else whole
                                for j in range(flows.max_packets)]
        tcp = (flows.protocol == 6)[:, None] & mask
        flags_dir = []
        for d in (0, 1):
            seen = flows.tcp_flags[tcp & (flows.direction == d)]
            # only bytes really seen (0 only if seen, or if nothing was): snapping must not invent flags
            flags_dir.append(sorted({int(v) for v in np.unique(seen)}) or [0])
        return cls(classes=flows.classes, max_packets=flows.max_packets, iat_lo=lo, iat_hi=hi,
                   sizes_by_class=by_class, flags_by_direction=flags_dir, size_cap=size_cap,
                   size_transform=size_transform, size_values=table["values"], size_edges=table["edges"],
                   class_size_tables=per_class,
                   class_direction_p=_direction_shares(flows) if class_direction else {},
                   min_packets={c: int(min(flows.n_packets[labels == c].min(), flows.max_packets))
                                for c in flows.classes})

    # ------------------------------------------------------------------ scalings
    @property
    def _global_table(self) -> dict[str, list]:
        return {"values": self.size_values, "edges": self.size_edges}

    def scale_size(self, size: np.ndarray) -> np.ndarray:
        """Sizes -> [-1, 1] ignoring class and position (log, or the global quantile table)."""
        s = np.minimum(np.asarray(size, np.float64), self.size_cap)
        if self.size_transform == "log":
            return (2 * np.log1p(s) / np.log1p(self.size_cap) - 1).astype(np.float32)
        return _table_scale(self._global_table, s).astype(np.float32)

    def unscale_size(self, v: np.ndarray) -> np.ndarray:
        """[-1, 1] -> sizes ignoring class and position; quantile: always a size seen in training."""
        v = np.asarray(v, np.float64)
        if self.size_transform == "log":
            return np.expm1((v + 1) / 2 * np.log1p(self.size_cap))
        return _table_unscale(self._global_table, v)

    def _class_tables(self, label: str) -> list[dict[str, list]]:
        return self.class_size_tables.get(str(label)) or [self._global_table] * self.max_packets

    def scale_sizes(self, sizes: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """(n, w) sizes -> size channel; class_quantile uses each flow's (class, position) table."""
        if self.size_transform != "class_quantile":
            return self.scale_size(sizes)
        s = np.minimum(np.asarray(sizes, np.float64), self.size_cap)
        return self._per_class_position(s, labels, _table_scale, np.float32)

    def unscale_sizes(self, v: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Inverse of `scale_sizes`: class_quantile lands on sizes the class used at that position."""
        if self.size_transform != "class_quantile":
            return self.unscale_size(v)
        return self._per_class_position(v, labels, _table_unscale, np.float64)

    def _per_class_position(self, x: np.ndarray, labels: np.ndarray, fn: Any, dtype: Any) -> np.ndarray:
        """Apply `fn(table, column)` with each flow's (class, position) table, column by column."""
        out = np.zeros(x.shape, dtype)
        for c in np.unique(labels):
            rows = labels == c
            for j, table in enumerate(self._class_tables(c)[: x.shape[1]]):
                out[rows, j] = fn(table, x[rows, j])
        return out

    def scale_iat(self, iat: np.ndarray) -> np.ndarray:
        u = np.log(np.asarray(iat, np.float64) + IAT_EPS)
        return np.clip(2 * (u - self.iat_lo) / (self.iat_hi - self.iat_lo) - 1, -1, 1).astype(np.float32)

    def unscale_iat(self, v: np.ndarray) -> np.ndarray:
        u = self.iat_lo + (np.asarray(v, np.float64) + 1) / 2 * (self.iat_hi - self.iat_lo)
        return np.maximum(np.exp(u) - IAT_EPS, 0.0)

    # ------------------------------------------------------------------ encode / decode
    def encode(self, flows: FlowTable) -> np.ndarray:
        """(n, max_packets, N_CHANNELS) float32 grid; padding is −1 everywhere."""
        f = flows.truncate(self.max_packets)
        n, width = len(f), f.max_packets
        grid = np.full((n, self.max_packets, N_CHANNELS), -1.0, np.float32)
        mask = f.mask
        part = grid[:, :width]
        part[..., C_SIZE] = self.scale_sizes(f.payload_len, f.label.astype(str))
        part[..., C_DIR] = self._scale_direction(f.direction, f.label.astype(str))
        part[..., C_IAT] = self.scale_iat(f.iat)
        part[..., C_MASK] = 1.0
        part[..., C_FLAGS:] = _flag_bits(f.tcp_flags)
        part[~mask] = -1.0
        return grid

    def decode(self, grid: np.ndarray, labels: Sequence[str], *, snap_sizes: bool = True,
               protocol: np.ndarray | None = None) -> dict[str, Any]:
        """Grid (n, N, C) -> n_packets, payload_len, direction, iat, tcp_flags and clip counts.

        With `protocol`, flows that are not TCP get flag byte 0 (flags exist only on TCP). Under
        class_quantile `snap_sizes` changes nothing: the inverse CDF of the flow's (class, position)
        table already lands on a size that class used at that position.
        """
        g = np.asarray(grid, np.float64)
        if g.ndim != 3 or g.shape[1:] != (self.max_packets, N_CHANNELS):
            raise InputError(f"grid must have shape (n, {self.max_packets}, {N_CHANNELS}), got {g.shape}")
        width = g.shape[1]
        outside = int((~np.isfinite(g) | (np.abs(g) > 1)).sum())
        g = np.clip(np.nan_to_num(g, nan=-1.0), -1, 1)
        off = g[..., C_MASK] < 0
        n_packets = np.where(off.any(axis=1), off.argmax(axis=1), width)
        labels = np.asarray(labels).astype(str)
        classes, inverse = np.unique(labels, return_inverse=True)  # one lookup per class, not per flow
        floor = np.array([self.min_packets.get(c, 1) for c in classes], np.int64)[inverse.reshape(-1)]
        short = int((n_packets < floor).sum())
        n_packets = np.maximum(n_packets, np.maximum(floor, 1))
        direction = self._unscale_direction(g[..., C_DIR], labels)
        if snap_sizes and self.size_transform != "class_quantile":
            size = self._snap_sizes(g[..., C_SIZE], labels)
        else:
            size = np.clip(np.rint(self.unscale_sizes(g[..., C_SIZE], labels)), 0, self.size_cap).astype(np.int64)
        iat = self.unscale_iat(g[..., C_IAT])
        iat[:, 0] = 0.0
        flags = self._snap_flags(g[..., C_FLAGS:], direction)
        if protocol is not None:
            flags[np.asarray(protocol) != 6] = 0
        mask = np.arange(width)[None, :] < n_packets[:, None]
        for arr in (size, direction, iat, flags):
            arr[~mask] = 0
        return {"n_packets": n_packets, "payload_len": size, "direction": direction, "iat": iat,
                "tcp_flags": flags, "clipped": {"grid_outside_range": outside, "below_training_min_packets": short}}

    def _direction_p(self, labels: np.ndarray, width: int) -> np.ndarray | None:
        """(n, width) P(direction = 1) per flow and position, or None when direction is plain ±1."""
        if not self.class_direction_p:
            return None
        fallback = float(np.mean([np.mean(v) for v in self.class_direction_p.values()]))
        p = np.full((len(labels), width), fallback)
        for c in np.unique(labels):
            if str(c) in self.class_direction_p:
                p[labels == c] = np.asarray(self.class_direction_p[str(c)][:width])
        return p

    def _scale_direction(self, direction: np.ndarray, labels: np.ndarray) -> np.ndarray:
        d = np.asarray(direction)
        p = self._direction_p(labels, d.shape[1])
        if p is None:
            return d.astype(np.float32) * 2 - 1
        u = np.where(d == 1, 1 - p / 2, (1 - p) / 2)  # the middle of the value's CDF interval
        return (2 * u - 1).astype(np.float32)

    def _unscale_direction(self, v: np.ndarray, labels: np.ndarray) -> np.ndarray:
        p = self._direction_p(labels, v.shape[1])
        threshold = 0.0 if p is None else 1 - 2 * p
        return (v > threshold).astype(np.int64)

    def _snap_sizes(self, v: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Nearest size seen in training for each flow's class, measured in the scaled space."""
        out = np.zeros(v.shape, np.int64)
        for c in np.unique(labels):
            rows = labels == c
            seen = np.asarray(self.sizes_by_class.get(str(c)) or [0], np.int64)
            scaled = self.scale_size(seen).astype(np.float64)
            idx = np.clip(np.searchsorted(scaled, v[rows]), 1, max(len(seen) - 1, 1))
            if len(seen) == 1:
                out[rows] = seen[0]
                continue
            left = np.abs(v[rows] - scaled[idx - 1]) <= np.abs(scaled[idx] - v[rows])
            out[rows] = np.where(left, seen[idx - 1], seen[idx])
        return out

    def _snap_flags(self, bits: np.ndarray, direction: np.ndarray) -> np.ndarray:
        """Nearest flag byte (L2 over the ±1 bit channels) among those seen for the direction."""
        out = np.zeros(direction.shape, np.int64)
        for d in (0, 1):
            values = np.asarray(self.flags_by_direction[d] or [0], np.int64)
            codes = _flag_bits(values).astype(np.float64)  # (k, 8)
            sel = direction == d
            dist = ((bits[sel][:, None, :] - codes[None]) ** 2).sum(-1)
            out[sel] = values[dist.argmin(axis=1)]
        return out

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        return {"classes": self.classes, "max_packets": self.max_packets, "iat_lo": self.iat_lo,
                "iat_hi": self.iat_hi, "sizes_by_class": self.sizes_by_class,
                "flags_by_direction": self.flags_by_direction, "size_cap": self.size_cap,
                "size_transform": self.size_transform, "size_values": self.size_values,
                "size_edges": self.size_edges, "class_size_tables": self.class_size_tables,
                "class_direction_p": self.class_direction_p, "min_packets": self.min_packets}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GridCodec:
        d = dict(data)
        d["sizes_by_class"] = {str(k): [int(x) for x in v] for k, v in d["sizes_by_class"].items()}
        d["flags_by_direction"] = [[int(x) for x in v] for v in d["flags_by_direction"]]
        d["size_values"] = [int(x) for x in d.get("size_values", [])]
        d["size_edges"] = [float(x) for x in d.get("size_edges", [])]
        d["class_size_tables"] = {str(c): [{"values": [int(x) for x in t["values"]],
                                            "edges": [float(x) for x in t["edges"]]} for t in tables]
                                  for c, tables in d.get("class_size_tables", {}).items()}
        d["class_direction_p"] = {str(c): [float(x) for x in v] for c, v in d.get("class_direction_p", {}).items()}
        d["min_packets"] = {str(c): int(v) for c, v in d.get("min_packets", {}).items()}
        return cls(**d)
