"""Flow ⇄ scaled 2-D array (packets × channels) for the diffusion model, fitted on training flows.

Every channel lives in [-1, 1] so that a denoiser can clip its x0 estimate to the data range:

| channel | encoding |
| --- | --- |
| 0 payload | 2 · log1p(size) / log1p(size_cap) − 1 (log: small sizes need finer steps than large ones) |
| 1 direction | −1 initiator→responder, +1 responder→initiator |
| 2 iat | log(iat + 1e-6) mapped affinely from the training [min, max] to [−1, 1] (clipped outside) |
| 3 mask | +1 kept packet, −1 padding (the flow length is read from it) |
| 4.. flags | one channel per TCP flag bit (FIN SYN RST PSH ACK URG ECE CWR): +1 set, −1 clear |

Padding positions are −1 in every channel, a constant the model learns trivially.

Decoding is sound for any real-valued array: direction = sign, flow length = first position whose mask
is < 0 (at least 1), flags snapped to the nearest flag byte seen in training for that direction, and
payload sizes optionally snapped to the nearest size seen in training for the class (in the scaled
space, where "nearest" respects the log resolution). Values outside the data range are clipped and
counted. The codec is JSON-serialisable and knows nothing about torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from netsynth.errors import InputError
from netsynth.flows import FlowTable

C_SIZE, C_DIR, C_IAT, C_MASK, C_FLAGS = 0, 1, 2, 3, 4
N_FLAG_BITS = 8
N_CHANNELS = C_FLAGS + N_FLAG_BITS
IAT_EPS = 1e-6


def _flag_bits(flags: np.ndarray) -> np.ndarray:
    """(...,) flag bytes -> (..., 8) in ±1."""
    bits = (np.asarray(flags, np.int64)[..., None] >> np.arange(N_FLAG_BITS)) & 1
    return bits.astype(np.float32) * 2 - 1


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

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(cls, flows: FlowTable, *, size_cap: int = 1480) -> GridCodec:
        """Scaling ranges, per-class sizes and per-direction flag bytes from training flows."""
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
        tcp = (flows.protocol == 6)[:, None] & mask
        flags_dir = []
        for d in (0, 1):
            seen = flows.tcp_flags[tcp & (flows.direction == d)]
            # only bytes really seen (0 only if seen, or if nothing was): snapping must not invent flags
            flags_dir.append(sorted({int(v) for v in np.unique(seen)}) or [0])
        return cls(classes=flows.classes, max_packets=flows.max_packets, iat_lo=lo, iat_hi=hi,
                   sizes_by_class=by_class, flags_by_direction=flags_dir, size_cap=size_cap)

    # ------------------------------------------------------------------ scalings
    def scale_size(self, size: np.ndarray) -> np.ndarray:
        return (2 * np.log1p(np.minimum(np.asarray(size, np.float64), self.size_cap))
                / np.log1p(self.size_cap) - 1).astype(np.float32)

    def unscale_size(self, v: np.ndarray) -> np.ndarray:
        return np.expm1((np.asarray(v, np.float64) + 1) / 2 * np.log1p(self.size_cap))

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
        part[..., C_SIZE] = self.scale_size(f.payload_len)
        part[..., C_DIR] = f.direction.astype(np.float32) * 2 - 1
        part[..., C_IAT] = self.scale_iat(f.iat)
        part[..., C_MASK] = 1.0
        part[..., C_FLAGS:] = _flag_bits(f.tcp_flags)
        part[~mask] = -1.0
        return grid

    def decode(self, grid: np.ndarray, labels: Sequence[str], *, snap_sizes: bool = True,
               protocol: np.ndarray | None = None) -> dict[str, Any]:
        """Grid (n, N, C) -> n_packets, payload_len, direction, iat, tcp_flags and clip counts.

        With `protocol`, flows that are not TCP get flag byte 0 (flags exist only on TCP).
        """
        g = np.asarray(grid, np.float64)
        if g.ndim != 3 or g.shape[1:] != (self.max_packets, N_CHANNELS):
            raise InputError(f"grid must have shape (n, {self.max_packets}, {N_CHANNELS}), got {g.shape}")
        width = g.shape[1]
        outside = int((~np.isfinite(g) | (np.abs(g) > 1)).sum())
        g = np.clip(np.nan_to_num(g, nan=-1.0), -1, 1)
        off = g[..., C_MASK] < 0
        n_packets = np.where(off.any(axis=1), off.argmax(axis=1), width)
        n_packets = np.maximum(n_packets, 1)
        direction = (g[..., C_DIR] > 0).astype(np.int64)
        if snap_sizes:
            size = self._snap_sizes(g[..., C_SIZE], np.asarray(labels).astype(str))
        else:
            size = np.clip(np.rint(self.unscale_size(g[..., C_SIZE])), 0, self.size_cap).astype(np.int64)
        iat = self.unscale_iat(g[..., C_IAT])
        iat[:, 0] = 0.0
        flags = self._snap_flags(g[..., C_FLAGS:], direction)
        if protocol is not None:
            flags[np.asarray(protocol) != 6] = 0
        mask = np.arange(width)[None, :] < n_packets[:, None]
        for arr in (size, direction, iat, flags):
            arr[~mask] = 0
        return {"n_packets": n_packets, "payload_len": size, "direction": direction, "iat": iat,
                "tcp_flags": flags, "clipped": {"grid_outside_range": outside}}

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
                "flags_by_direction": self.flags_by_direction, "size_cap": self.size_cap}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GridCodec:
        d = dict(data)
        d["sizes_by_class"] = {str(k): [int(x) for x in v] for k, v in d["sizes_by_class"].items()}
        d["flags_by_direction"] = [[int(x) for x in v] for v in d["flags_by_direction"]]
        return cls(**d)
