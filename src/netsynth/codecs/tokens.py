"""Flow ⇄ token sequences for autoregressive models (transformer, SSM), fitted on training flows.

One flow becomes ``[CLASS] [PROTO] (SIZE [OFFSET] TIME)* EOS`` with one group per kept packet:

- SIZE carries direction and payload length. Exact sizes carry most of the class signal (a 517-byte
  ClientHello is not a 512-byte one), so every (direction, size) seen at least `min_size_count` times
  gets its own token (up to `max_exact_sizes`, most frequent first). Rare sizes fall back to a coarse
  (direction, bin) token; with ``rare_sizes="offset"`` an OFFSET token follows with the exact position
  inside the bin (lossless), with ``"bin"`` the size is decoded to a uniform draw inside the bin.
- TIME carries the inter-arrival-time bin and the TCP flag byte as one token (the product of both
  vocabularies): one token fewer per packet than separate tokens, and flags and timing are strongly
  coupled anyway (a SYN-ACK follows a SYN after one round trip). IAT bins are log-spaced with an
  exact-zero bin and decode to the training median of the bin. Flags: one entry per flag byte seen.
- PROTO is the IP protocol, so an autoregressive model can condition the whole flow on TCP vs UDP.

Sizes above `size_cap` are clipped to it when encoding (the generator's output bound is lower still).
The codec is JSON-serialisable (`to_dict` / `from_dict`) and knows nothing about torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from netsynth.errors import InputError
from netsynth.flows import FlowTable

PAD, EOS = 0, 1
IAT_QUANTILES = 33  # quantiles kept per IAT bin (every 1/32 of the bin's training distribution)
# token kinds, used by grammar masks
K_PAD, K_EOS, K_CLASS, K_PROTO, K_SIZE, K_BIN, K_OFFSET, K_TIME = range(8)
KIND_NAMES = ("pad", "eos", "class", "proto", "size", "bin", "offset", "time")


@dataclass
class TokenCodec:
    """A fitted flow tokenizer. Build with `TokenCodec.fit(flows, ...)`; see the module docstring."""

    classes: list[str]
    protocols: list[int]
    exact_sizes: list[tuple[int, int]]
    flag_values: list[int]
    iat_edges: list[float]
    iat_values: list[float]
    max_packets: int
    size_cap: int = 1480
    bin_width: int = 64
    rare_sizes: str = "offset"
    # Per IAT bin, evenly spaced quantiles of the training IATs inside it: decoding draws from this
    # within-bin distribution instead of returning one value per bin, so synthetic IATs are continuous
    # (bin medians alone give a spiky histogram: IAT JSD 0.38 vs 0.02 for real train on iot-type16).
    iat_quantiles: list[list[float]] = field(default_factory=list)

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(cls, flows: FlowTable, *, min_size_count: int = 3, max_exact_sizes: int = 1024,
            bin_width: int = 64, rare_sizes: str = "offset", iat_bins: int = 16, iat_min: float = 1e-6,
            iat_max: float = 1e3, size_cap: int = 1480) -> TokenCodec:
        """Choose the vocabulary from training flows."""
        if rare_sizes not in ("offset", "bin"):
            raise InputError(f"rare_sizes must be 'offset' or 'bin', got {rare_sizes!r}")
        if iat_bins < 2 or bin_width < 1 or max_exact_sizes < 0:
            raise InputError("iat_bins must be >= 2, bin_width >= 1, max_exact_sizes >= 0")
        mask = flows.mask
        dirs = flows.direction[mask].astype(np.int64)
        sizes = np.minimum(flows.payload_len[mask].astype(np.int64), size_cap)
        keys, counts = np.unique(dirs * (size_cap + 1) + sizes, return_counts=True)
        order = np.argsort(-counts, kind="stable")
        keep = [k for k in keys[order] if counts[np.searchsorted(keys, k)] >= min_size_count][:max_exact_sizes]
        exact = sorted((int(k // (size_cap + 1)), int(k % (size_cap + 1))) for k in keep)
        flags = sorted({0, *(int(v) for v in np.unique(flows.tcp_flags[mask]))})
        edges = [0.0, *np.geomspace(iat_min, iat_max, iat_bins - 1).tolist()]
        codec = cls(classes=flows.classes, protocols=sorted({int(p) for p in flows.protocol}), exact_sizes=exact,
                    flag_values=flags, iat_edges=edges, iat_values=[], max_packets=flows.max_packets,
                    size_cap=size_cap, bin_width=bin_width, rare_sizes=rare_sizes)
        codec.iat_values = codec._bin_medians(flows.iat[mask].astype(np.float64))
        codec.iat_quantiles = codec._bin_quantiles(flows.iat[mask].astype(np.float64))
        return codec

    def _bin_quantiles(self, iat: np.ndarray, k: int = IAT_QUANTILES) -> list[list[float]]:
        """`k` evenly spaced quantiles of the training IATs in each bin ([] for an empty bin)."""
        b = self.iat_bin(iat)
        levels = np.linspace(0.0, 1.0, k)
        return [np.quantile(iat[b == i], levels).tolist() if np.any(b == i) else [] for i in range(self.n_iat)]

    def _draw_iat(self, bins: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
        """IAT values for bin indices: a draw from the bin's training distribution, or its median."""
        out = np.asarray(self.iat_values, np.float64)[bins]
        if rng is None or not self.iat_quantiles:
            return out
        u = rng.random(len(bins))
        for i, q in enumerate(self.iat_quantiles):
            sel = bins == i
            if len(q) >= 2 and sel.any():
                out[sel] = np.interp(u[sel] * (len(q) - 1), np.arange(len(q)), q)
        return out

    def _bin_medians(self, iat: np.ndarray) -> list[float]:
        """Decode value of each IAT bin: the training median inside it, else its geometric centre."""
        b = self.iat_bin(iat)
        edges = self.iat_edges
        out = []
        for i in range(len(edges)):
            vals = iat[b == i]
            if len(vals):
                out.append(float(np.median(vals)))
            elif i == 0:
                out.append(0.0)
            else:
                hi = edges[i + 1] if i + 1 < len(edges) else edges[i] * 10
                out.append(float(np.sqrt(edges[i] * hi)))
        return out

    # ------------------------------------------------------------------ vocabulary layout
    @property
    def n_bins(self) -> int:
        return self.size_cap // self.bin_width + 1

    @property
    def n_iat(self) -> int:
        return len(self.iat_edges)

    def _offsets(self) -> dict[str, int]:
        o: dict[str, int] = {}
        pos = 2
        for name, size in (("class", len(self.classes)), ("proto", len(self.protocols) + 1),
                           ("size", len(self.exact_sizes)), ("bin", 2 * self.n_bins),
                           ("offset", self.bin_width if self.rare_sizes == "offset" else 0),
                           ("time", self.n_iat * len(self.flag_values))):
            o[name] = pos
            pos += size
        o["end"] = pos
        return o

    @property
    def vocab_size(self) -> int:
        return self._offsets()["end"]

    @property
    def max_length(self) -> int:
        """Longest possible sequence: class, proto, N × (size, offset, time), EOS."""
        per_packet = 3 if self.rare_sizes == "offset" else 2
        return 3 + per_packet * self.max_packets

    def kinds(self) -> np.ndarray:
        """Kind (K_*) of every token id, for grammar masks."""
        o = self._offsets()
        kind = np.zeros(self.vocab_size, np.int64)
        kind[EOS] = K_EOS
        for name, k in (("class", K_CLASS), ("proto", K_PROTO), ("size", K_SIZE), ("bin", K_BIN),
                        ("offset", K_OFFSET), ("time", K_TIME)):
            nxt = min(v for key, v in o.items() if v > o[name] or key == "end")
            kind[o[name]:nxt] = k
        return kind

    def token_size_floor(self) -> np.ndarray:
        """Smallest payload a SIZE/BIN token can decode to (-1 for other tokens): for per-flow caps."""
        o = self._offsets()
        out = np.full(self.vocab_size, -1, np.int64)
        out[o["size"]:o["size"] + len(self.exact_sizes)] = [s for _, s in self.exact_sizes]
        out[o["bin"]:o["bin"] + 2 * self.n_bins] = np.tile(np.arange(self.n_bins) * self.bin_width, 2)
        return out

    def time_token_parts(self) -> tuple[np.ndarray, np.ndarray]:
        """(iat bin, flag byte) of every token id (-1 for non-TIME tokens)."""
        o = self._offsets()
        n_t = self.n_iat * len(self.flag_values)
        ib = np.full(self.vocab_size, -1, np.int64)
        fl = np.full(self.vocab_size, -1, np.int64)
        idx = np.arange(n_t)
        ib[o["time"]:o["time"] + n_t] = idx // len(self.flag_values)
        fl[o["time"]:o["time"] + n_t] = np.asarray(self.flag_values)[idx % len(self.flag_values)]
        return ib, fl

    def class_token(self, label: str) -> int:
        try:
            return self._offsets()["class"] + self.classes.index(str(label))
        except ValueError:
            raise InputError(f"unknown class {label!r}; known: {', '.join(self.classes)}") from None

    def proto_token(self, protocol: int) -> int:
        """Token of an IP protocol; unseen protocols share one 'other' token."""
        o = self._offsets()["proto"]
        p = int(protocol)
        return o + (self.protocols.index(p) if p in self.protocols else len(self.protocols))

    # ------------------------------------------------------------------ encode / decode
    def iat_bin(self, iat: np.ndarray) -> np.ndarray:
        """Bin index: 0 for exactly 0, then log-spaced (values past the last edge go to the last bin)."""
        iat = np.asarray(iat, np.float64)
        b = np.searchsorted(np.asarray(self.iat_edges[1:]), iat, side="right")
        return np.where(iat <= 0, 0, np.maximum(b, 1))

    def encode(self, flows: FlowTable) -> tuple[np.ndarray, np.ndarray]:
        """(tokens int64 (n, max_length) padded with PAD, lengths). Unseen classes are an InputError."""
        o = self._offsets()
        n, width = len(flows), min(flows.max_packets, self.max_packets)
        f = flows.truncate(width)
        mask = f.mask
        cls_tok = np.array([self.class_token(c) for c in f.label])
        proto_tok = np.array([self.proto_token(p) for p in f.protocol])
        size = np.minimum(f.payload_len.astype(np.int64), self.size_cap)
        d = f.direction.astype(np.int64)
        table = np.full((2, self.size_cap + 1), -1, np.int64)
        for i, (dd, s) in enumerate(self.exact_sizes):
            table[dd, s] = o["size"] + i
        exact = table[d, size]
        size_tok = np.where(exact >= 0, exact, o["bin"] + d * self.n_bins + size // self.bin_width)
        off_tok = np.where(exact >= 0, -1, o["offset"] + size % self.bin_width)
        if self.rare_sizes != "offset":
            off_tok[:] = -1
        flag_idx = np.searchsorted(self.flag_values, f.tcp_flags.astype(np.int64))
        flag_idx = np.where(np.isin(f.tcp_flags, self.flag_values), flag_idx, 0)
        ib = self.iat_bin(f.iat)
        ib[:, 0] = 0
        time_tok = o["time"] + ib * len(self.flag_values) + flag_idx
        groups = np.stack([size_tok, off_tok, time_tok], axis=2)
        groups[~mask] = -1
        rows = np.concatenate([cls_tok[:, None], proto_tok[:, None], groups.reshape(n, -1),
                               np.full((n, 1), EOS)], axis=1)
        order = np.argsort(rows < 0, axis=1, kind="stable")
        rows = np.take_along_axis(rows, order, axis=1)
        lengths = (rows >= 0).sum(axis=1)
        rows[rows < 0] = PAD
        return rows[:, : self.max_length].astype(np.int64), lengths

    def decode(self, tokens: np.ndarray, rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
        """Token rows → per-flow arrays (class index, protocol, n_packets, per-packet matrices).

        Robust to any sequence (it reads tokens by kind, counting SIZE/BIN tokens as packet starts),
        so a grammar-constrained sampler and a sloppy one decode the same way. Rare-size bins decode to
        a uniform draw inside the bin when `rng` is given (`rare_sizes="bin"`), else to the bin centre;
        IATs are drawn from the bin's training distribution when `rng` is given, else its median.
        """
        tokens = np.asarray(tokens, np.int64)
        n, _ = tokens.shape
        o = self._offsets()
        kind = self.kinds()[np.clip(tokens, 0, self.vocab_size - 1)]
        N = self.max_packets
        is_size = (kind == K_SIZE) | (kind == K_BIN)
        ended = np.cumsum(kind == K_EOS, axis=1) > 0
        is_size &= ~ended
        pkt = np.cumsum(is_size, axis=1) - 1
        valid = (pkt >= 0) & (pkt < N) & ~ended
        n_packets = np.minimum(is_size.sum(axis=1), N)
        pl = np.zeros((n, N), np.int64)
        di = np.zeros((n, N), np.int64)
        iat = np.zeros((n, N), np.float64)
        flags = np.zeros((n, N), np.int64)
        rows, cols = np.nonzero(valid & (kind == K_SIZE))
        sizes = np.asarray(self.exact_sizes, np.int64).reshape(-1, 2)[tokens[rows, cols] - o["size"]]
        di[rows, pkt[rows, cols]], pl[rows, pkt[rows, cols]] = sizes[:, 0], sizes[:, 1]
        rows, cols = np.nonzero(valid & (kind == K_BIN))
        b = tokens[rows, cols] - o["bin"]
        di[rows, pkt[rows, cols]] = b // self.n_bins
        lo = (b % self.n_bins) * self.bin_width
        if self.rare_sizes == "offset":
            pl[rows, pkt[rows, cols]] = lo
        elif rng is not None:
            pl[rows, pkt[rows, cols]] = lo + rng.integers(0, self.bin_width, size=len(lo))
        else:
            pl[rows, pkt[rows, cols]] = lo + self.bin_width // 2
        rows, cols = np.nonzero(valid & (kind == K_OFFSET))
        pl[rows, pkt[rows, cols]] += tokens[rows, cols] - o["offset"]
        rows, cols = np.nonzero(valid & (kind == K_TIME))
        t = tokens[rows, cols] - o["time"]
        iat[rows, pkt[rows, cols]] = self._draw_iat(t // len(self.flag_values), rng)
        flags[rows, pkt[rows, cols]] = np.asarray(self.flag_values)[t % len(self.flag_values)]
        iat[:, 0] = 0.0
        cls_idx = np.where(kind[:, 0] == K_CLASS, tokens[:, 0] - o["class"], -1)
        proto_idx = np.where(kind[:, 1] == K_PROTO, tokens[:, 1] - o["proto"], len(self.protocols))
        protos = np.asarray([*self.protocols, 0])[proto_idx]
        return {"class_index": cls_idx, "protocol": protos, "n_packets": n_packets, "payload_len": pl,
                "direction": di, "iat": iat, "tcp_flags": flags}

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        return {"classes": self.classes, "protocols": self.protocols,
                "exact_sizes": [list(p) for p in self.exact_sizes], "flag_values": self.flag_values,
                "iat_edges": self.iat_edges, "iat_values": self.iat_values, "iat_quantiles": self.iat_quantiles,
                "max_packets": self.max_packets,
                "size_cap": self.size_cap, "bin_width": self.bin_width, "rare_sizes": self.rare_sizes}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TokenCodec:
        d = dict(data)
        d["exact_sizes"] = [tuple(int(x) for x in p) for p in d["exact_sizes"]]
        return cls(**d)

    def describe(self) -> dict[str, int]:
        """Vocabulary sizes per part (for info() and reports)."""
        return {"vocab": self.vocab_size, "exact_sizes": len(self.exact_sizes), "bins": 2 * self.n_bins,
                "flags": len(self.flag_values), "iat_bins": self.n_iat, "classes": len(self.classes)}


def class_index(codec: TokenCodec, labels: Sequence[str]) -> np.ndarray:
    """Integer class codes (positions in `codec.classes`)."""
    lookup = {c: i for i, c in enumerate(codec.classes)}
    return np.array([lookup[str(c)] for c in labels], np.int64)
