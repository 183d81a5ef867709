"""Bidirectional flow assembly: decoded packets of one capture → finished flows, in batches.

Defaults follow nfstream (the tool the benchmark counts were cross-checked with); every other common
choice is an option of `AssemblyConfig`:

* key = (protocol, unordered pair of (ip, port) endpoints). For kept non-TCP/UDP protocols the "ports"
  are ICMP echo identifiers / the ESP SPI / 0 (see `packets._other`); the table shows ports 0 for them.
* `idle_timeout` (120 s): a gap longer than it since the flow's last packet ends the flow and the packet
  starts a new one. `active_timeout` (None: off, as TASKS.md's rules have none; nfstream uses 1800 s):
  a packet more than that after the flow's first packet starts a new flow.
* `tcp_end` (off, as nfstream): after an RST, or a FIN from each side, the TCP flow is closed; trailing
  packets without SYN (the last ACK, retransmitted FINs) still count to it, and a SYN without ACK on
  the same 5-tuple (port reuse) starts a new flow.
* `initiator`: "first" (default) = the sender of the first packet; "syn" = the SYN sender (or the
  receiver of a SYN-ACK) when the capture shows the handshake, else the first sender; "port" = as
  "syn", and without a handshake the endpoint with the higher port (the lower port is the server).
* `include_empty` / `include_retransmissions` (both on, nfstream's choice; CESNET's PPI drops both):
  whether zero-payload packets and TCP retransmissions (a payload segment whose end does not advance
  past the highest sequence end seen in its direction, modulo 2^32) take a place in the per-packet
  columns. Totals always cover every packet.
* timestamps going backwards: packets stay in file order, IAT is clamped at 0, the flow's last time is
  the latest seen, and each such packet is counted.
* IP fragments: a datagram is one packet of its flow, as if reassembled. The first fragment carries the
  transport header (and, for UDP, the whole datagram's length); later fragments are matched by
  (IP version, addresses, protocol, IP id) and only add their bytes (TCP); a later fragment whose first
  fragment was not seen (or came after it) is counted as `ip_fragment_orphan`, never a flow.

The hot loop works on plain lists (one list per active flow, indexed by the constants below) instead of
objects: it runs once per packet, and attribute access and object creation dominate CPython's cost.
Records are fed in chunks; at each chunk's end flows that can take no more packets are swept out and,
with the flows ended inside the chunk, handed out as a batch, so memory follows active flows only.
Sweeping only at chunk ends keeps the result independent of which decoder (scalar or vectorised) ran.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

# Indices into a flow state list.
FIRST, LAST, SRC, SPORT, DST, DPORT, VER, PROTO = 0, 1, 2, 3, 4, 5, 6, 7
TOTAL, BYTES, ELIGIBLE, LAST_KEPT, SEQ = 8, 9, 10, 11, 12
PAYLOAD, DIRECTION, IAT, FLAGS, WINDOW = 13, 14, 15, 16, 17
SYN_SIDE, FINS, NEXT0, NEXT1 = 18, 19, 20, 21
FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10
INITIATORS = ("first", "syn", "port")
FRAG_TIMEOUT = 30.0  # seconds a datagram's first fragment waits for the rest (Linux ipfrag_time)


@dataclass(frozen=True)
class AssemblyConfig:
    """Flow-assembly parameters (the part of the extract options that shapes flows)."""

    packets: int = 20
    min_packets: int = 1
    idle_timeout: float = 120.0
    include_empty: bool = True
    active_timeout: float | None = None
    tcp_end: bool = False
    initiator: str = "first"
    include_retransmissions: bool = True
    protocols: frozenset[int] = frozenset()

    @property
    def vectorisable(self) -> bool:
        """Whether the vectorised assembler implements these semantics (the rest need per-packet state)."""
        return not self.tcp_end and self.include_retransmissions


@dataclass
class AssemblyStats:
    """Counts from assembling one capture; merged across files by addition."""

    packets_used: int = 0
    packets_skipped: Counter[str] = field(default_factory=Counter)
    flows_total: int = 0
    flows_dropped: Counter[str] = field(default_factory=Counter)
    backwards_timestamps: int = 0
    fragments_attributed: int = 0
    retransmissions: int = 0

    def add(self, other: AssemblyStats) -> None:
        """Add `other`'s counts to these."""
        self.packets_used += other.packets_used
        self.packets_skipped.update(other.packets_skipped)
        self.flows_total += other.flows_total
        self.flows_dropped.update(other.flows_dropped)
        self.backwards_timestamps += other.backwards_timestamps
        self.fragments_attributed += other.fragments_attributed
        self.retransmissions += other.retransmissions


Record = tuple[int, float, bytes, int]
Batch = dict[str, np.ndarray]


def new_flow(ts: float, src: bytes, sport: int, dst: bytes, dport: int, ver: int, proto: int, seq: int) -> list:
    """A fresh flow state list (shared by the scalar and the vectorised assembler)."""
    return [ts, ts, src, sport, dst, dport, ver, proto, 0, 0, 0, ts, seq, [], [], [], [], [], None, 0, None, None]


class Assembler:
    """Stateful assembly of one capture's packets; feed chunks, then `finish()`; batches come out."""

    def __init__(self, config: AssemblyConfig, stats: AssemblyStats) -> None:
        self.config = config
        self.stats = stats
        self.active: dict[tuple, list] = {}
        self.done: list[list] = []
        self.frags: dict[tuple, tuple[list, int, float]] = {}  # fragment key -> (flow, kept index, time)
        self.seq = 0
        self.max_ts: float | None = None

    # ------------------------------------------------------------------ scalar path
    def feed(self, records: Iterable[Record], decode: Callable[..., tuple | str]) -> None:
        """Decode and assemble one chunk of records, one packet at a time (every option supported)."""
        cfg = self.config
        n_keep, timeout, active_to = cfg.packets, cfg.idle_timeout, cfg.active_timeout
        include_empty, retrans, tcp_end = cfg.include_empty, cfg.include_retransmissions, cfg.tcp_end
        want_syn = cfg.initiator != "first"
        keep = cfg.protocols
        active, done, frags = self.active, self.done, self.frags
        skipped = self.stats.packets_skipped
        used = backwards = attributed = n_retrans = 0
        seq = self.seq
        max_ts = self.max_ts
        for linktype, ts, data, wirelen in records:
            if max_ts is None or ts > max_ts:
                max_ts = ts
            d = decode(linktype, data, wirelen, keep)
            if type(d) is str:
                skipped[d] += 1
                continue
            if len(d) == 3:  # a later fragment
                hit = frags.get(d[1])
                if hit is None:
                    skipped["ip_fragment_orphan"] += 1
                    continue
                attributed += 1
                f, idx, _t = hit
                if f[PROTO] != 17:  # UDP's length field already covered the whole datagram
                    f[BYTES] += d[2]
                    if idx >= 0:
                        f[PAYLOAD][idx] += d[2]
                continue
            used += 1
            ver, proto, src, sport, dst, dport, payload, flags, window, tseq, fkey = d
            a, b = (src, sport), (dst, dport)
            key = (proto, a, b) if a <= b else (proto, b, a)
            flow = active.get(key)
            if flow is not None and (
                ts - flow[LAST] > timeout
                or (active_to is not None and ts - flow[FIRST] > active_to)
                or (tcp_end and proto == 6 and flags & (SYN | ACK) == SYN and (flow[FINS] & 4 or flow[FINS] == 3))
            ):
                done.append(flow)
                flow = None
            if flow is None:
                flow = new_flow(ts, src, sport, dst, dport, ver, proto, seq)
                seq += 1
                active[key] = flow
            gap = ts - flow[LAST]
            if gap < 0:
                backwards += 1
            else:
                flow[LAST] = ts
            flow[TOTAL] += 1
            flow[BYTES] += payload
            direction = 0 if src == flow[SRC] and sport == flow[SPORT] else 1
            if want_syn and flags & SYN and flow[SYN_SIDE] is None:
                flow[SYN_SIDE] = 1 - direction if flags & ACK else direction
            if tcp_end and flags & (FIN | RST):
                flow[FINS] |= 4 if flags & RST else 1 << direction
            eligible = payload or include_empty
            if not retrans and payload and proto == 6:
                end = (tseq + payload) & 0xFFFFFFFF
                prev = flow[NEXT0 + direction]
                if prev is not None and not 0 < ((end - prev) & 0xFFFFFFFF) < 0x80000000:
                    n_retrans += 1
                    eligible = False
                else:
                    flow[NEXT0 + direction] = end
            idx = -1
            if eligible:
                flow[ELIGIBLE] += 1
                pl = flow[PAYLOAD]
                if len(pl) < n_keep:
                    iat = ts - flow[LAST_KEPT] if pl else 0.0
                    idx = len(pl)
                    pl.append(payload)
                    flow[DIRECTION].append(direction)
                    flow[IAT].append(iat if iat > 0.0 else 0.0)
                    flow[FLAGS].append(flags)
                    flow[WINDOW].append(window)
                    if ts > flow[LAST_KEPT]:
                        flow[LAST_KEPT] = ts
            if fkey is not None:
                frags[fkey] = (flow, idx, ts)
        self.seq = seq
        self.max_ts = max_ts
        st = self.stats
        st.packets_used += used
        st.backwards_timestamps += backwards
        st.fragments_attributed += attributed
        st.retransmissions += n_retrans

    # ------------------------------------------------------------------ batches
    def end_chunk(self) -> list[list]:
        """Sweep flows that can take no more packets and return every flow finished so far."""
        if self.max_ts is not None:
            cfg = self.config
            horizon = self.max_ts - cfg.idle_timeout
            start_horizon = self.max_ts - cfg.active_timeout if cfg.active_timeout is not None else None
            stale = [
                k for k, f in self.active.items()
                if f[LAST] < horizon or (start_horizon is not None and f[FIRST] < start_horizon)
            ]
            for k in stale:
                self.done.append(self.active.pop(k))
        out, self.done = self.done, []
        if self.frags:  # a fragment can only add to a flow still held, and only for FRAG_TIMEOUT
            old = self.max_ts - FRAG_TIMEOUT if self.max_ts is not None else float("-inf")
            gone = {id(f) for f in out}
            self.frags = {k: v for k, v in self.frags.items() if v[2] >= old and id(v[0]) not in gone}
        return self._finalise(out)

    def finish(self) -> list[list]:
        """All remaining flows (the capture has ended)."""
        out = self.end_chunk()
        rest = list(self.active.values())
        self.active = {}
        self.frags = {}
        return out + self._finalise(rest) if out else self._finalise(rest)

    def _finalise(self, flows: list[list]) -> list[list]:
        """Apply the initiator rule, count and drop flows the table cannot use; order by start."""
        stats, cfg = self.stats, self.config
        stats.flows_total += len(flows)
        flows.sort(key=lambda f: (f[FIRST], f[SEQ]))
        kept = []
        for f in flows:
            if not f[PAYLOAD]:
                stats.flows_dropped["no_payload_packets"] += 1
            elif f[ELIGIBLE] < cfg.min_packets:
                stats.flows_dropped["min_packets"] += 1
            else:
                if cfg.initiator != "first" and _swap(f, cfg.initiator):
                    f[SRC], f[SPORT], f[DST], f[DPORT] = f[DST], f[DPORT], f[SRC], f[SPORT]
                    f[DIRECTION] = [1 - d for d in f[DIRECTION]]
                kept.append(f)
        return kept


def _swap(f: list, rule: str) -> bool:
    """Whether the first packet's sender is not the initiator under `rule`."""
    if f[SYN_SIDE] is not None:
        return f[SYN_SIDE] == 1
    return rule == "port" and f[SPORT] < f[DPORT]


def to_batch(flows: list[list], width: int) -> Batch:
    """Finished flow lists → compact NumPy columns (a few hundred bytes per flow instead of kilobytes)."""
    n = len(flows)
    mats = {
        "payload": np.zeros((n, width), np.int32),
        "direction": np.zeros((n, width), np.int8),
        "iat": np.zeros((n, width), np.float32),
        "flags": np.zeros((n, width), np.uint8),
        "window": np.zeros((n, width), np.uint16),
    }
    cols = (("payload", PAYLOAD), ("direction", DIRECTION), ("iat", IAT), ("flags", FLAGS), ("window", WINDOW))
    lens = np.fromiter((len(f[PAYLOAD]) for f in flows), np.int64, n)
    n_packets = lens.astype(np.int16)
    total = int(lens.sum())
    rows = np.repeat(np.arange(n), lens)
    at = np.arange(total) - np.repeat(np.cumsum(lens) - lens, lens)  # position within its flow
    for name, idx in cols:  # one flat pass per column instead of five slice copies per flow
        mat = mats[name]
        mat[rows, at] = np.fromiter(itertools.chain.from_iterable(f[idx] for f in flows), mat.dtype, total)

    def col(idx: int, dtype: type) -> np.ndarray:
        return np.array([f[idx] for f in flows], dtype=dtype) if n else np.zeros(0, dtype)

    other = np.array([f[PROTO] not in (6, 17) for f in flows], dtype=bool)
    sport, dport = col(SPORT, np.int64), col(DPORT, np.int64)
    sport[other] = 0  # identifiers (ICMP id, SPI) keyed the flow; they are not ports
    dport[other] = 0
    return {
        "first": col(FIRST, np.float64),
        "last": col(LAST, np.float64),
        "src": np.array([f[SRC] for f in flows], dtype=object),
        "dst": np.array([f[DST] for f in flows], dtype=object),
        "sport": sport.astype(np.int32),
        "dport": dport.astype(np.int32),
        "ver": col(VER, np.uint8),
        "proto": col(PROTO, np.uint8),
        "total": col(TOTAL, np.int64),
        "bytes": col(BYTES, np.int64),
        "seq": col(SEQ, np.int64),
        "n_packets": n_packets,
        **mats,
    }


def assemble(
    records: Iterable[Record],
    decode: Callable[..., tuple | str],
    config: AssemblyConfig,
    stats: AssemblyStats,
) -> list[list]:
    """Assemble all `records` in one chunk (kept for callers of the first version): finished flows."""
    asm = Assembler(config, stats)
    asm.feed(records, decode)
    return asm.finish()
