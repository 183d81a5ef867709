"""Reference generators without neural networks: what a learned model has to beat.

- ``empirical`` resamples training flows of the class: the memorisation reference (TSTR ceiling of a
  copier, exact-copy rate 100 %).
- ``independent`` draws every feature at every position independently from the class's per-position
  marginals, and the flow length from the class's length distribution: exact sizes, no dependence.
- ``markov`` is a first-order chain per class over packet states (direction, exact size, IAT bin,
  flag byte) with START/END, additively smoothed towards the class's state frequencies; the amount of
  smoothing is chosen on the validation split.

All three condition on (class, protocol), since the protocol is drawn before the flow. Their "weights"
are NumPy arrays in safetensors; everything else is JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from netsynth.codecs.tokens import TokenCodec
from netsynth.errors import InputError
from netsynth.flows import FlowTable
from netsynth.models.base import BaseConfig, Generator, RawFlows

_PACKET = ("payload_len", "direction", "iat", "tcp_flags", "tcp_window")


def _group_keys(labels: np.ndarray, protocol: np.ndarray) -> np.ndarray:
    return np.array([f"{c}|{int(p)}" for c, p in zip(labels, protocol, strict=True)], dtype=object)


class _TableBaseline(Generator):
    """Shared by baselines that keep the training flows themselves as their state."""

    def _fit(self, train: FlowTable, valid: FlowTable, rng: np.random.Generator) -> dict[str, Any]:
        both = FlowTable.concat([train, valid]) if valid is not train else train
        self.arrays_ = {name: getattr(both, name).copy() for name in _PACKET}
        self.arrays_["n_packets"] = both.n_packets.astype(np.int16)
        self.arrays_["protocol"] = both.protocol.astype(np.uint8)
        self.arrays_["class_index"] = np.array([self.classes_.index(str(c)) for c in both.label], np.int32)
        return {"n_flows": len(both)}

    def _pools(self, labels: np.ndarray, protocol: np.ndarray) -> dict[str, np.ndarray]:
        """Training row indices per (class, protocol) group asked for; the class alone as fallback."""
        cls = np.asarray(self.classes_, dtype=object)[self.arrays_["class_index"]]
        have = _group_keys(cls, self.arrays_["protocol"])
        out = {}
        for key in np.unique(_group_keys(labels, protocol)):
            idx = np.flatnonzero(have == key)
            if len(idx) == 0:
                idx = np.flatnonzero(cls == key.rsplit("|", 1)[0])
            out[str(key)] = idx
        return out

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {}, dict(self.arrays_)

    def _load_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.arrays_ = dict(arrays)

    def n_parameters(self) -> int:
        return int(sum(v.size for v in self.arrays_.values()))


@dataclass(frozen=True, kw_only=True)
class EmpiricalConfig(BaseConfig):
    """No settings: resampling has nothing to tune."""


class EmpiricalGenerator(_TableBaseline):
    """Draws training flows of the same class (and protocol) with replacement."""

    name = "empirical"
    config_class = EmpiricalConfig

    def _sample_flows(self, labels: np.ndarray, protocol: np.ndarray, ip_version: np.ndarray,
                      rng: np.random.Generator) -> RawFlows:
        keys = _group_keys(labels, protocol)
        pick = np.zeros(len(labels), np.int64)
        for key, pool in self._pools(labels, protocol).items():
            m = keys == key
            pick[m] = rng.choice(pool, size=int(m.sum()))
        a = self.arrays_
        return RawFlows(n_packets=a["n_packets"][pick], **{k: a[k][pick] for k in _PACKET})


@dataclass(frozen=True, kw_only=True)
class IndependentConfig(BaseConfig):
    """No settings: per-position marginals are counted, not tuned."""


class IndependentGenerator(_TableBaseline):
    """Every (position, feature) drawn independently from the class's per-position marginal."""

    name = "independent"
    config_class = IndependentConfig

    def _sample_flows(self, labels: np.ndarray, protocol: np.ndarray, ip_version: np.ndarray,
                      rng: np.random.Generator) -> RawFlows:
        a = self.arrays_
        n, width = len(labels), a["payload_len"].shape[1]
        keys = _group_keys(labels, protocol)
        out = {k: np.zeros((n, width), a[k].dtype) for k in _PACKET}
        n_packets = np.zeros(n, np.int64)
        for key, pool in self._pools(labels, protocol).items():
            rows = np.flatnonzero(keys == key)
            n_packets[rows] = rng.choice(a["n_packets"][pool], size=len(rows))
            for j in range(width):
                here = pool[a["n_packets"][pool] > j]
                if len(here) == 0:
                    break
                for k in _PACKET:
                    out[k][rows, j] = a[k][rng.choice(here, size=len(rows)), j]
        return RawFlows(n_packets=n_packets, **out)


@dataclass(frozen=True, kw_only=True)
class MarkovConfig(BaseConfig):
    """`alpha` fixes the smoothing; None tunes it on the validation split over `alpha_grid`."""

    alpha: float | None = None
    alpha_grid: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
    backoff_global: float = 0.1
    iat_bins: int = 16

    def __post_init__(self) -> None:
        if self.alpha is not None and self.alpha <= 0:
            raise InputError("alpha must be > 0 (or None to tune it)")
        if not self.alpha_grid or min(self.alpha_grid) <= 0:
            raise InputError("alpha_grid must hold positive values")


class MarkovGenerator(Generator):
    """First-order chain over exact packet states per (class, protocol), smoothed to state frequencies.

    P(next | prev) = (C[prev, next] + α·Q[next]) / (C[prev, ·] + α), with Q the group's next-state
    frequencies mixed with the global ones (so every state reachable in training stays reachable).
    """

    name = "markov"
    config_class = MarkovConfig

    # ------------------------------------------------------------------ fit
    def _fit(self, train: FlowTable, valid: FlowTable, rng: np.random.Generator) -> dict[str, Any]:
        cfg = self.config_
        codec = TokenCodec.fit(train, iat_bins=cfg.iat_bins)
        self.iat_edges_, self.iat_values_ = codec.iat_edges, codec.iat_values
        states_tr = self._states(train)
        self.state_table_ = np.unique(states_tr[train.mask], axis=0).astype(np.int64)
        self.groups_ = sorted({str(k) for k in _group_keys(train.label, train.protocol)})
        self._count(train)
        if cfg.alpha is not None:
            self.alpha_ = float(cfg.alpha)
            return {"alpha": self.alpha_, "states": len(self.state_table_)}
        scores = {a: self._nll(valid, a) for a in cfg.alpha_grid}
        self.alpha_ = float(min(scores, key=scores.get))
        return {"alpha": self.alpha_, "states": len(self.state_table_),
                "valid_nll_per_transition": {str(k): round(v, 4) for k, v in scores.items()}}

    def _states(self, flows: FlowTable) -> np.ndarray:
        """(n, N, 4) packet states: direction, exact size, IAT bin, flag byte."""
        ib = np.searchsorted(np.asarray(self.iat_edges_[1:]), flows.iat.astype(np.float64), side="right")
        ib = np.where(flows.iat <= 0, 0, np.maximum(ib, 1))
        ib[:, 0] = 0
        return np.stack([flows.direction.astype(np.int64), flows.payload_len.astype(np.int64), ib,
                         flows.tcp_flags.astype(np.int64)], axis=2)

    def _state_ids(self, flows: FlowTable) -> np.ndarray:
        """(n, N+1) ids: START, packet states (-1 when unknown), END after the last packet."""
        S = len(self.state_table_)
        st = self._states(flows)
        view = np.ascontiguousarray(self.state_table_).view([("", np.int64)] * 4).ravel()
        q = np.ascontiguousarray(st.reshape(-1, 4)).view([("", np.int64)] * 4).ravel()
        pos = np.clip(np.searchsorted(view, q), 0, S - 1)
        ids = np.where(view[pos] == q, pos, -1).reshape(len(flows), -1)
        width = flows.max_packets
        ids = np.where(flows.mask, ids, S + 1)  # END after the last packet (and padding)
        return np.concatenate([np.full((len(flows), 1), S), ids, np.full((len(flows), 1), S + 1)], axis=1)[
            :, : width + 2]

    def _transitions(self, flows: FlowTable) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(group, prev, next) of every transition up to and including the one into END."""
        ids = self._state_ids(flows)
        g = np.array([self.groups_.index(k) if k in self.groups_ else -1
                      for k in _group_keys(flows.label, flows.protocol)])
        n_tr = flows.n_packets.astype(np.int64) + 1  # START→p1 … p_n→END
        keep = np.arange(ids.shape[1] - 1)[None, :] < n_tr[:, None]
        gg = np.broadcast_to(g[:, None], keep.shape)
        return gg[keep], ids[:, :-1][keep], ids[:, 1:][keep]

    def _count(self, train: FlowTable) -> None:
        S2 = len(self.state_table_) + 2
        g, prev, nxt = self._transitions(train)
        key = (g * S2 + prev) * S2 + nxt
        uniq, cnt = np.unique(key, return_counts=True)
        self.trans_key_, self.trans_count_ = uniq.astype(np.int64), cnt.astype(np.float64)
        G = len(self.groups_)
        uni = np.zeros((G, S2))
        np.add.at(uni, (g, nxt), 1.0)
        glob = uni.sum(axis=0) / uni.sum()
        b = self.config_.backoff_global
        self.backoff_ = (1 - b) * uni / np.maximum(uni.sum(axis=1, keepdims=True), 1) + b * glob[None, :]

    def _row_totals(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Unique (group, prev) rows, their first transition index and total count."""
        S2 = len(self.state_table_) + 2
        rows = self.trans_key_ // S2
        uniq, start = np.unique(rows, return_index=True)
        totals = np.add.reduceat(self.trans_count_, start) if len(start) else np.zeros(0)
        return uniq, start, totals

    def _nll(self, flows: FlowTable, alpha: float) -> float:
        """Mean negative log-likelihood per transition of `flows` (unknown states/groups skipped)."""
        S2 = len(self.state_table_) + 2
        g, prev, nxt = self._transitions(flows)
        ok = (g >= 0) & (prev >= 0) & (nxt >= 0)
        g, prev, nxt = g[ok], prev[ok], nxt[ok]
        if len(g) == 0:
            return 0.0
        key = (g * S2 + prev) * S2 + nxt
        pos = np.clip(np.searchsorted(self.trans_key_, key), 0, len(self.trans_key_) - 1)
        c = np.where(self.trans_key_[pos] == key, self.trans_count_[pos], 0.0)
        rows, _, totals = self._row_totals()
        rk = g * S2 + prev
        rpos = np.clip(np.searchsorted(rows, rk), 0, len(rows) - 1)
        tot = np.where(rows[rpos] == rk, totals[rpos], 0.0)
        p = (c + alpha * self.backoff_[g, nxt]) / (tot + alpha)
        return float(-np.mean(np.log(np.maximum(p, 1e-300))))

    # ------------------------------------------------------------------ sample
    def _sample_flows(self, labels: np.ndarray, protocol: np.ndarray, ip_version: np.ndarray,
                      rng: np.random.Generator) -> RawFlows:
        S = len(self.state_table_)
        S2 = S + 2
        n, width = len(labels), self.max_packets_
        g = self._groups_for(labels, protocol)
        rows, start, totals = self._row_totals()
        cum = np.cumsum(self.trans_count_)
        back_cum = np.cumsum(self.backoff_, axis=1)
        back_cum /= back_cum[:, -1:]
        flat = (np.arange(len(self.groups_))[:, None] + back_cum).ravel()
        prev = np.full(n, S)
        states = np.full((n, width), -1)
        alive = np.ones(n, bool)
        for j in range(width):
            idx = np.flatnonzero(alive)
            if len(idx) == 0:
                break
            rk = g[idx] * S2 + prev[idx]
            rpos = np.clip(np.searchsorted(rows, rk), 0, max(len(rows) - 1, 0))
            found = rows[rpos] == rk if len(rows) else np.zeros(len(idx), bool)
            tot = np.where(found, totals[rpos] if len(rows) else 0.0, 0.0)
            use_row = rng.random(len(idx)) < tot / (tot + self.alpha_)
            r = rng.random(len(idx))
            base = np.where(start[rpos] > 0, cum[np.maximum(start[rpos] - 1, 0)], 0.0) if len(rows) else 0.0
            tpos = np.clip(np.searchsorted(cum, base + r * tot, side="right"), 0, len(cum) - 1)
            from_row = self.trans_key_[tpos] % S2
            bpos = np.searchsorted(flat, g[idx] + rng.random(len(idx)), side="right")
            from_back = np.clip(bpos - g[idx] * S2, 0, S2 - 1)
            nxt = np.where(use_row, from_row, from_back)
            nxt = np.where(nxt == S, S + 1, nxt)  # START is never a next state
            if j == 0:  # a flow has at least one packet: redraw END at the start from packet states
                nxt = np.where(nxt >= S, self._any_state(g[idx], rng), nxt)
            end = nxt >= S
            alive[idx[end]] = False
            states[idx[~end], j] = nxt[~end]
            prev[idx] = nxt
        return self._decode(states)

    def _any_state(self, g: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        S = len(self.state_table_)
        p = self.backoff_[:, :S]
        cum = np.cumsum(p, axis=1)
        cum /= cum[:, -1:]
        return np.array([int(np.searchsorted(cum[k], rng.random(), side="right")) for k in g]).clip(0, S - 1)

    def _groups_for(self, labels: np.ndarray, protocol: np.ndarray) -> np.ndarray:
        """Group index per flow; a (class, protocol) never seen falls back to the class's first group."""
        out = np.zeros(len(labels), np.int64)
        for i, key in enumerate(_group_keys(labels, protocol)):
            if key in self.groups_:
                out[i] = self.groups_.index(key)
            else:
                cls = key.rsplit("|", 1)[0]
                out[i] = next((k for k, v in enumerate(self.groups_) if v.rsplit("|", 1)[0] == cls), 0)
        return out

    def _decode(self, states: np.ndarray) -> RawFlows:
        live = states >= 0
        n_packets = live.sum(axis=1)
        tab = self.state_table_[np.maximum(states, 0)]
        tab[~live] = 0
        iat = np.asarray(self.iat_values_)[tab[..., 2]]
        iat[~live] = 0.0
        iat[:, 0] = 0.0  # a smoothed first step may land on a mid-flow state: its IAT means nothing here
        return RawFlows(n_packets=n_packets, payload_len=tab[..., 1], direction=tab[..., 0], iat=iat,
                        tcp_flags=tab[..., 3])

    # ------------------------------------------------------------------ state
    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta = {"groups": self.groups_, "alpha": self.alpha_, "iat_edges": self.iat_edges_,
                "iat_values": self.iat_values_}
        arrays = {"state_table": self.state_table_, "trans_key": self.trans_key_,
                  "trans_count": self.trans_count_, "backoff": self.backoff_}
        return meta, arrays

    def _load_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.groups_, self.alpha_ = list(meta["groups"]), float(meta["alpha"])
        self.iat_edges_, self.iat_values_ = list(meta["iat_edges"]), list(meta["iat_values"])
        self.state_table_ = arrays["state_table"].astype(np.int64)
        self.trans_key_ = arrays["trans_key"].astype(np.int64)
        self.trans_count_ = arrays["trans_count"].astype(np.float64)
        self.backoff_ = arrays["backoff"].astype(np.float64)

    def n_parameters(self) -> int:
        return int(self.trans_count_.size + self.backoff_.size + self.state_table_.size)
