"""Bidirectional flow assembly: decoded packets of one capture → finished flows.

Semantics follow nfstream (the tool the benchmark counts were cross-checked with):
* key = (protocol, unordered pair of (ip, port) endpoints); the initiator is the sender of the first
  packet, direction 0 initiator→responder and 1 back;
* a gap longer than `idle_timeout` since the flow's last packet ends it and the packet starts a new one;
  there is no active timeout and no FIN/RST termination (nfstream's defaults would split flows longer
  than 30 min; the benchmark captures hold none);
* the first `packets` packets keep their payload length, direction, inter-arrival time, TCP flags and
  window; totals, duration and end time cover the whole flow.

The hot loop works on plain lists (one list per active flow, indexed by the constants below) instead of
objects: it runs once per packet, and attribute access and object creation dominate CPython's cost.
Idle flows are swept out of the active table while streaming, so memory follows active flows only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

# Indices into a flow state list.
FIRST, LAST, SRC, SPORT, DST, DPORT, VER, PROTO = 0, 1, 2, 3, 4, 5, 6, 7
TOTAL, BYTES, ELIGIBLE, LAST_KEPT, SEQ = 8, 9, 10, 11, 12
PAYLOAD, DIRECTION, IAT, FLAGS, WINDOW = 13, 14, 15, 16, 17


@dataclass(frozen=True)
class AssemblyConfig:
    """Flow-assembly parameters (the part of the extract options that shapes flows)."""

    packets: int = 20
    min_packets: int = 1
    idle_timeout: float = 120.0
    include_empty: bool = True


@dataclass
class AssemblyStats:
    """Counts from assembling one capture; merged across files by addition."""

    packets_used: int = 0
    packets_skipped: Counter[str] = field(default_factory=Counter)
    flows_total: int = 0
    flows_dropped: Counter[str] = field(default_factory=Counter)
    backwards_timestamps: int = 0


Record = tuple[int, float, bytes, int]


def assemble(
    records: Iterable[Record],
    decode: Callable[[int, bytes, int], tuple | str],
    config: AssemblyConfig,
    stats: AssemblyStats,
) -> list[list]:
    """Decode and assemble `records` into finished flow states, ordered by start time.

    Flows shorter than `config.min_packets` (counting the packets `include_empty` admits) are dropped
    here, so that a file's result holds only what the table can use; their count is in `stats`.
    """
    n_keep = config.packets
    timeout = config.idle_timeout
    include_empty = config.include_empty
    active: dict[tuple, list] = {}
    done: list[list] = []
    skipped = stats.packets_skipped
    used = 0
    backwards = 0
    seq = 0
    next_sweep = None
    sweep_every = max(timeout / 2.0, 1.0)

    for linktype, ts, data, wirelen in records:
        d = decode(linktype, data, wirelen)
        if type(d) is str:
            skipped[d] += 1
            continue
        used += 1
        ver, proto, src, sport, dst, dport, payload, flags, window = d
        a, b = (src, sport), (dst, dport)
        key = (proto, a, b) if a <= b else (proto, b, a)
        flow = active.get(key)
        if flow is not None and ts - flow[LAST] > timeout:
            done.append(flow)
            flow = None
        if flow is None:
            flow = [ts, ts, src, sport, dst, dport, ver, proto, 0, 0, 0, ts, seq, [], [], [], [], []]
            seq += 1
            active[key] = flow
        gap = ts - flow[LAST]
        if gap < 0:
            backwards += 1
        else:
            flow[LAST] = ts
        flow[TOTAL] += 1
        flow[BYTES] += payload
        if payload or include_empty:
            flow[ELIGIBLE] += 1
            pl = flow[PAYLOAD]
            if len(pl) < n_keep:
                iat = ts - flow[LAST_KEPT] if pl else 0.0
                pl.append(payload)
                flow[DIRECTION].append(0 if src == flow[SRC] and sport == flow[SPORT] else 1)
                flow[IAT].append(iat if iat > 0.0 else 0.0)
                flow[FLAGS].append(flags)
                flow[WINDOW].append(window)
                if ts > flow[LAST_KEPT]:
                    flow[LAST_KEPT] = ts
        if next_sweep is None:
            next_sweep = ts + sweep_every
        elif ts > next_sweep:
            next_sweep = ts + sweep_every
            _sweep(active, done, ts - timeout)

    done.extend(active.values())
    stats.packets_used += used
    stats.backwards_timestamps += backwards
    stats.flows_total += len(done)
    done.sort(key=lambda f: (f[FIRST], f[SEQ]))
    for i, flow in enumerate(done):
        flow[SEQ] = i  # the flow's index in its capture, stable whatever min_packets/labels drop
    kept = [f for f in done if f[ELIGIBLE] >= config.min_packets and f[PAYLOAD]]
    if len(kept) < len(done):
        no_payload = sum(1 for f in done if not f[PAYLOAD])
        if no_payload:
            stats.flows_dropped["no_payload_packets"] += no_payload
        short = len(done) - len(kept) - no_payload
        if short:
            stats.flows_dropped["min_packets"] += short
    return kept


def _sweep(active: dict[tuple, list], done: list[list], horizon: float) -> None:
    """Move flows idle since before `horizon` from `active` to `done` (they can take no more packets)."""
    stale = [k for k, f in active.items() if f[LAST] < horizon]
    for k in stale:
        done.append(active.pop(k))
