"""Vectorised decoding and assembly: the same flows as the scalar path, at a fraction of the cost.

CPython spends microseconds per packet on `struct` calls, tuples and dict lookups. Here a chunk of
records is decoded at once: the link, IP and transport headers of every packet are gathered into
(n, k) byte arrays (three gathers: link header, IP header at its offset, transport header at its
offset) and the fixed-offset fields of the common cases (Ethernet with at most one 802.1Q tag, raw IP;
IPv4 without fragmentation, IPv6 without extension headers; TCP/UDP with consistent lengths) are read
for all packets with NumPy. Everything else (QinQ, MPLS, SLL, tunnels, fragments, IPv6 extension
headers, malformed packets, kept non-TCP/UDP protocols) goes through the scalar `decode`, one packet at
a time, and is merged back, so the result is identical by construction of the fallback; tests check
it on crafted and real captures.

Assembly is vectorised per chunk too: packets are sorted by flow key (stably, so file order holds
within a key), idle-timeout splits found with array comparisons, and totals, kept-prefix selection and
inter-arrival times computed for all flow pieces at once; Python then runs once per flow piece (not
per packet) to merge pieces into the assembler's flow lists. A chunk where the vectorised semantics
would not be exact — fragments, an active timeout reached — is handed to the scalar assembler instead
(same state, same result). Timestamps going backwards inside a key are handled here: gaps are taken
against a running maximum for the affected keys, and their kept IATs computed as the scalar path does.
`tcp_end` and retransmission exclusion need per-packet state and always use the scalar assembler.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from netsynth.extract import biflows as B
from netsynth.extract.packets import CaptureReader, decode


@dataclass
class Chunk:
    """A chunk of records as arrays: link type, time, data offset/length in `buf`, wire length."""

    buf: bytes | bytearray
    linktype: np.ndarray
    ts: np.ndarray
    doff: np.ndarray
    cap: np.ndarray
    wirelen: np.ndarray

    def records(self) -> list[B.Record]:
        """The same records as `CaptureReader` iteration yields (for the scalar fallback)."""
        buf = self.buf
        return [(lt, ts, bytes(buf[o : o + c]), w) for lt, ts, o, c, w in zip(
            self.linktype.tolist(), self.ts.tolist(), self.doff.tolist(), self.cap.tolist(),
            self.wirelen.tolist(), strict=True)]


def _raw_chunk(buf: bytes | bytearray, offs: list[int], bo: str, unit: float, linktype: int) -> Chunk:
    arr = np.frombuffer(buf, np.uint8)
    o = np.asarray(offs, np.int64)
    hdr = arr[o[:, None] + np.arange(16)].view(np.dtype(bo + "u4")).reshape(-1, 4)
    ts = hdr[:, 0].astype(np.float64) + hdr[:, 1].astype(np.float64) * unit
    cap = hdr[:, 2].astype(np.int64)
    return Chunk(buf, np.full(len(o), linktype, np.int64), ts, o + 16, cap, hdr[:, 3].astype(np.int64))


def _record_chunk(records: list[B.Record]) -> Chunk:
    lens = np.fromiter((len(r[2]) for r in records), np.int64, len(records))
    doff = np.zeros(len(records), np.int64)
    np.cumsum(lens[:-1], out=doff[1:])
    return Chunk(
        b"".join(r[2] for r in records),
        np.fromiter((r[0] for r in records), np.int64, len(records)),
        np.fromiter((r[1] for r in records), np.float64, len(records)),
        doff, lens, np.fromiter((r[3] for r in records), np.int64, len(records)),
    )


def chunks(reader: CaptureReader, n: int) -> Iterator[tuple[Chunk, bool]]:
    """The reader's records as (piece, ends a chunk of `n` records). Pieces follow the raw reader's
    blocks for uncompressed pcap (no copying to build `n`-record buffers) and are cut at every n-th
    record, where the assembler sweeps: the same sweep points as the scalar path, hence the same flows."""
    if reader.raw_ok:
        bo, unit, linktype, _limit = reader._pcap_params
        count = 0
        for buf, offs in reader.raw_chunks():
            while offs:
                take = n - count
                head, offs = offs[:take], offs[take:]
                count += len(head)
                yield _raw_chunk(buf, head, bo, unit, linktype), count == n
                if count == n:
                    count = 0
        return
    it = iter(reader)
    while True:
        recs = list(itertools.islice(it, n))
        if not recs:
            return
        yield _record_chunk(recs), True


def assemble_chunks(reader: CaptureReader, asm: B.Assembler, n: int) -> Iterator[list[list]] | None:
    """Feed the reader to `asm` chunk by chunk; yields each chunk's finished flows. None: use scalar."""
    if not asm.config.vectorisable:
        return None

    def run() -> Iterator[list[list]]:
        pieces: list[Chunk] = []
        for ch, ends in chunks(reader, n):
            pieces.append(ch)
            if ends:
                feed_pieces(asm, pieces)
                pieces = []
                yield asm.end_chunk()
        if pieces:
            feed_pieces(asm, pieces)

    return run()


# ------------------------------------------------------------------------------------------ decoding
@dataclass
class Decoded:
    """Per-packet decoded columns for the packets that are flow packets (file order)."""

    index: np.ndarray  # position in the chunk
    ver: np.ndarray
    proto: np.ndarray
    shi: np.ndarray
    slo: np.ndarray
    sport: np.ndarray
    dhi: np.ndarray
    dlo: np.ndarray
    dport: np.ndarray
    payload: np.ndarray
    flags: np.ndarray
    window: np.ndarray


def _gather(arr: np.ndarray, start: np.ndarray, width: int, short: np.ndarray) -> np.ndarray:
    """(n, width) bytes of `arr` from each `start`, copied row by row from a strided view (no index
    matrix). Rows whose window would run past the buffer are marked in `short` (the caller sends them
    to the scalar decoder) and hold garbage."""
    limit = len(arr) - width
    past = start > limit
    if past.any():
        short |= past
        start = np.where(past, 0, start)
    if limit < 0:
        return np.zeros((len(start), width), np.uint8)
    return np.lib.stride_tricks.sliding_window_view(arr, width)[start]


def decode_chunk(ch: Chunk, keep: frozenset[int], stats: B.AssemblyStats) -> Decoded | None:
    """Vectorised decode of the common cases, scalar for the rest; None if a fragment needs the
    scalar assembler. Skip reasons are counted into `stats` only when a result is returned."""
    arr = np.frombuffer(ch.buf, np.uint8)
    lt, cap, doff = ch.linktype, ch.cap, ch.doff
    short = np.zeros(len(doff), bool)
    h = _gather(arr, doff, 18, short).astype(np.int64)
    eth = lt == 1
    et = (h[:, 12] << 8) | h[:, 13]
    vlan = eth & (et == 0x8100)
    etype = np.where(vlan, (h[:, 16] << 8) | h[:, 17], et)
    l3 = np.where(eth, np.where(vlan, 18, 14), 0)
    g3 = _gather(arr, doff + l3, 40, short)
    n3 = g3[:, :10].astype(np.int64)
    rawip = np.isin(lt, (12, 14, 101))
    vn = n3[:, 0] >> 4
    is4 = ((eth & (etype == 0x0800)) | rawip | (lt == 228)) & (vn == 4)
    is6 = ((eth & (etype == 0x86DD)) | rawip | (lt == 229)) & (vn == 6)
    ihl = (n3[:, 0] & 15) * 4
    total = (n3[:, 2] << 8) | n3[:, 3]
    frag = (n3[:, 6] << 8) | n3[:, 7]
    ok4 = is4 & (ihl >= 20) & (total != 0) & (total >= ihl) & ((frag & 0x3FFF) == 0)
    plen = (n3[:, 4] << 8) | n3[:, 5]
    ok6 = is6 & (plen != 0)
    proto = np.where(is4, n3[:, 9], n3[:, 6])
    ok = (ok4 | ok6) & ((proto == 6) | (proto == 17))
    l4 = np.where(is4, l3 + ihl, l3 + 40)
    length = np.where(is4, total - ihl, plen)
    g4 = _gather(arr, doff + l4, 16, short).astype(np.int64)
    tcp = proto == 6
    hl = (g4[:, 12] >> 4) * 4
    ulen = (g4[:, 4] << 8) | g4[:, 5]
    tcp_ok = (hl >= 20) & (hl <= length) & (cap >= l4 + 16)
    ok &= np.where(tcp, tcp_ok, (ulen >= 8) & (ulen <= length) & (cap >= l4 + 8))
    ok &= ~short
    ver = np.where(is4, 4, 6).astype(np.uint8)
    a4 = np.ascontiguousarray(g3[:, 12:20]).view(">u4").astype(np.uint64)
    a6 = np.ascontiguousarray(g3[:, 8:40]).view(">u8").astype(np.uint64)
    zero = np.uint64(0)
    shi = np.where(is4, a4[:, 0], a6[:, 0])
    slo = np.where(is4, zero, a6[:, 1])
    dhi = np.where(is4, a4[:, 1], a6[:, 2])
    dlo = np.where(is4, zero, a6[:, 3])
    sport = (g4[:, 0] << 8) | g4[:, 1]
    dport = (g4[:, 2] << 8) | g4[:, 3]
    payload = np.where(tcp, length - hl, ulen - 8)
    flags = np.where(tcp, g4[:, 13], 0)
    window = np.where(tcp, (g4[:, 14] << 8) | g4[:, 15], 0)

    slow = np.flatnonzero(~ok)
    skipped: dict[str, int] = {}
    used = ok.copy()
    buf = ch.buf
    ltl, wl = lt, ch.wirelen
    for i in slow.tolist():
        o = int(doff[i])
        d = decode(int(ltl[i]), bytes(buf[o : o + int(cap[i])]), int(wl[i]), keep)
        if type(d) is str:
            skipped[d] = skipped.get(d, 0) + 1
            continue
        if len(d) == 3 or d[10] is not None:
            return None  # fragments: the scalar assembler keeps the datagram table
        v, p, src, sp, dst, dp, pay, fl, win = d[:9]
        used[i] = True
        ver[i], proto[i], sport[i], dport[i], payload[i], flags[i], window[i] = v, p, sp, dp, pay, fl, win
        shi[i], slo[i] = _addr(src)
        dhi[i], dlo[i] = _addr(dst)
    stats.packets_skipped.update(skipped)
    sel = np.flatnonzero(used)
    return Decoded(sel, ver[sel], proto[sel].astype(np.int64), shi[sel], slo[sel], sport[sel], dhi[sel], dlo[sel],
                   dport[sel], payload[sel].astype(np.int64), flags[sel].astype(np.int64),
                   window[sel].astype(np.int64))


def _addr(raw: bytes) -> tuple[int, int]:
    if len(raw) == 4:
        return int.from_bytes(raw, "big"), 0
    return int.from_bytes(raw[:8], "big"), int.from_bytes(raw[8:], "big")


def _bytes(ver: int, hi: int, lo: int) -> bytes:
    return hi.to_bytes(4, "big") if ver == 4 else hi.to_bytes(8, "big") + lo.to_bytes(8, "big")


# ------------------------------------------------------------------------------------------ assembly
def feed_chunk(asm: B.Assembler, ch: Chunk) -> None:
    """Assemble one chunk into `asm`, vectorised when exact, else with the scalar assembler."""
    feed_pieces(asm, [ch])


def feed_pieces(asm: B.Assembler, pieces: list[Chunk]) -> None:
    """Assemble the pieces of one chunk together (decoded piece by piece, assembled at once: the
    Python work is per flow and chunk, so fewer, larger chunks cost less), or with the scalar one."""
    pieces = [ch for ch in pieces if len(ch.ts)]
    if not pieces:
        return
    probe = B.AssemblyStats()
    decs = []
    for ch in pieces:
        d = decode_chunk(ch, asm.config.protocols, probe)
        if d is None:
            break
        decs.append(d)
    else:
        d = decs[0] if len(decs) == 1 else _concat(decs, [len(ch.ts) for ch in pieces])
        ts = pieces[0].ts if len(pieces) == 1 else np.concatenate([ch.ts for ch in pieces])
        if _vector_assemble(asm, ts, float(ts.max()), d):
            asm.stats.packets_skipped.update(probe.packets_skipped)
            return
    for ch in pieces:
        asm.feed(ch.records(), decode)


def _concat(decs: list[Decoded], sizes: list[int]) -> Decoded:
    starts = np.cumsum([0, *sizes[:-1]])
    cols = {f: np.concatenate([getattr(d, f) for d in decs]) for f in Decoded.__dataclass_fields__ if f != "index"}
    index = np.concatenate([d.index + s for d, s in zip(decs, starts, strict=True)])
    return Decoded(index=index, **cols)


def _vector_assemble(asm: B.Assembler, ts_all: np.ndarray, tmax: float, d: Decoded) -> bool:
    """Vectorised assembly of decoded packets (`d.index` into the chunk's `ts_all`); False (nothing
    changed) if the chunk needs the scalar assembler."""
    cfg = asm.config
    m = len(d.index)
    if m == 0:
        asm.max_ts = tmax if asm.max_ts is None else max(asm.max_ts, tmax)
        return True
    ts = ts_all[d.index]
    src_first = (d.shi < d.dhi) | ((d.shi == d.dhi) & ((d.slo < d.dlo) | ((d.slo == d.dlo) & (d.sport <= d.dport))))
    sf = src_first
    ahi, alo, ap = np.where(sf, d.shi, d.dhi), np.where(sf, d.slo, d.dlo), np.where(sf, d.sport, d.dport)
    bhi, blo, bp = np.where(sf, d.dhi, d.shi), np.where(sf, d.dlo, d.slo), np.where(sf, d.dport, d.sport)
    order = np.lexsort((bp, blo, bhi, ap, alo, ahi, d.ver, d.proto))
    keys = [x[order] for x in (d.proto, d.ver, ahi, alo, ap, bhi, blo, bp)]
    seg = np.ones(m, bool)
    for k in keys:
        seg[1:] &= k[1:] == k[:-1]
    seg = ~seg  # True where a new key starts
    seg[0] = True
    ts_s = ts[order]
    seg_starts = np.flatnonzero(seg)
    seg_ends = np.append(seg_starts[1:], m)
    # --- carried flows (from earlier chunks) of each key
    kl = [k[seg_starts].tolist() for k in keys]
    active = asm.active
    group_keys, carried = [], []
    for proto, ver, a1, a2, a3, b1, b2, b3 in zip(*kl, strict=True):
        key = (proto, (_bytes(ver, a1, a2), a3), (_bytes(ver, b1, b2), b3))
        group_keys.append(key)
        carried.append(active.get(key))
    # --- gaps against the latest time seen in the flow (a running maximum where time goes backwards)
    prev = np.empty(m)
    prev[0] = 0.0
    prev[1:] = ts_s[:-1]
    segid = np.cumsum(seg) - 1
    back_in = np.flatnonzero((ts_s[1:] < ts_s[:-1]) & ~seg[1:]) + 1
    flagged = set(segid[back_in].tolist())
    starts_l = ts_s[seg_starts].tolist()
    backwards = len(back_in)
    for gi, flow in enumerate(carried):
        if flow is not None and starts_l[gi] < flow[LAST_]:
            flagged.add(gi)
    for gi in flagged:
        s0, e0 = int(seg_starts[gi]), int(seg_ends[gi])
        run = np.maximum.accumulate(ts_s[s0 : e0 - 1]) if e0 - s0 > 1 else ts_s[s0:s0]
        flow = carried[gi]
        if flow is not None:
            run = np.maximum(run, flow[LAST_])
        prev[s0 + 1 : e0] = run
    gap = ts_s - prev
    if flagged:
        backwards = int(np.count_nonzero((gap < 0) & ~seg))
        backwards += sum(1 for gi, f in enumerate(carried) if f is not None and starts_l[gi] < f[LAST_])
    new = seg | (gap > cfg.idle_timeout)
    ps = np.flatnonzero(new)
    pe = np.append(ps[1:], m)
    first_ts = ts_s[ps]
    last_ts = np.maximum.reduceat(ts_s, ps) if flagged else ts_s[pe - 1]
    if cfg.active_timeout is not None and np.any(last_ts - first_ts > cfg.active_timeout):
        return False
    seg_of_piece = segid[ps]
    first_piece = seg[ps]
    ts_first_l = first_ts.tolist()
    if cfg.active_timeout is not None:
        for gi, flow in enumerate(carried):
            if flow is not None and starts_l[gi] - flow[LAST_] <= cfg.idle_timeout:
                pi = int(np.searchsorted(ps, seg_starts[gi]))
                if float(last_ts[pi]) - flow[B.FIRST] > cfg.active_timeout:
                    return False
    # --- per-piece numbers and the kept prefix, for all pieces at once
    pay_s = d.payload[order]
    side = src_first[order]
    flags_s = d.flags[order]
    elig = np.ones(m, bool) if cfg.include_empty else pay_s > 0
    cnt = (pe - ps).tolist()
    nbytes = np.add.reduceat(pay_s, ps).tolist()
    ecum = np.cumsum(elig)
    before = ecum[ps] - elig[ps]
    n_elig = (ecum[pe - 1] - before).tolist()
    pid = np.cumsum(new) - 1
    rank = ecum - 1 - before[pid]
    kept = elig & (rank < cfg.packets)
    kp = np.flatnonzero(kept)
    ks, ke = np.searchsorted(kp, ps).tolist(), np.searchsorted(kp, pe).tolist()
    piece_side = side[ps]
    kp_dir = (side[kp] != piece_side[pid[kp]]).astype(np.int64)
    kp_ts = ts_s[kp]
    kp_iat = np.zeros(len(kp))
    if len(kp) > 1:
        kp_iat[1:] = kp_ts[1:] - kp_ts[:-1]
    kp_iat[np.searchsorted(kp, ps[np.asarray(ke) > np.asarray(ks)])] = 0.0  # first kept of each piece
    kp_iat = np.where(kp_iat > 0.0, kp_iat, 0.0)
    L_pay, L_dir, L_iat = pay_s[kp].tolist(), kp_dir.tolist(), kp_iat.tolist()
    L_flags, L_win, L_ts = flags_s[kp].tolist(), d.window[order][kp].tolist(), kp_ts.tolist()
    want_syn = cfg.initiator != "first"
    if want_syn:
        syn = (flags_s & B.SYN) != 0
        pos = np.where(syn, np.arange(m), m)
        fs = np.minimum.reduceat(pos, ps)
        has_syn = (fs < pe).tolist()
        fsc = np.minimum(fs, m - 1)
        syn_dir = (side[fsc] != piece_side).astype(np.int64).tolist()
        syn_ack = ((flags_s[fsc] & B.ACK) != 0).tolist()
    # --- merge pieces into flow lists (Python once per piece)
    orig_first = d.index[order][ps].tolist()
    side_l = piece_side.tolist()
    last_l = last_ts.tolist()
    first_piece_l = first_piece.tolist()
    seg_of_piece_l = seg_of_piece.tolist()
    n_keep = cfg.packets
    done = asm.done
    created: list[tuple[int, list]] = []
    for p in range(len(ps)):
        gi = seg_of_piece_l[p]
        key = group_keys[gi]
        flow = carried[gi] if first_piece_l[p] else None
        t0 = ts_first_l[p]
        a, bb = key[1], key[2]
        if flow is not None and t0 - flow[LAST_] > cfg.idle_timeout:
            done.append(flow)
            flow = None
        k0, k1 = ks[p], ke[p]
        if flow is None:
            if not first_piece_l[p]:
                done.append(active[key])
            src, dst = (a, bb) if side_l[p] else (bb, a)
            flow = B.new_flow(t0, src[0], src[1], dst[0], dst[1], 4 if len(src[0]) == 4 else 6, key[0], 0)
            active[key] = flow
            created.append((orig_first[p], flow))
            flow[B.PAYLOAD] = L_pay[k0:k1]
            flow[B.DIRECTION] = L_dir[k0:k1]
            flow[B.FLAGS] = L_flags[k0:k1]
            flow[B.WINDOW] = L_win[k0:k1]
            if gi in flagged:  # IATs from the latest kept time, as the scalar assembler does
                flow[B.IAT], flow[B.LAST_KEPT] = _kept_iats(L_ts[k0:k1], t0, False)
            else:
                flow[B.IAT] = L_iat[k0:k1]
                if k1 > k0:
                    flow[B.LAST_KEPT] = L_ts[k1 - 1]
            flip = False
        else:
            pl = flow[B.PAYLOAD]
            flip = ((flow[B.SRC], flow[B.SPORT]) == a) != side_l[p]
            room = n_keep - len(pl)
            if room > 0 and k1 > k0:
                k1 = min(k1, k0 + room)
                iats, flow[B.LAST_KEPT] = _kept_iats(L_ts[k0:k1], flow[B.LAST_KEPT], bool(pl))
                pl.extend(L_pay[k0:k1])
                flow[B.DIRECTION].extend([1 - x for x in L_dir[k0:k1]] if flip else L_dir[k0:k1])
                flow[B.IAT].extend(iats)
                flow[B.FLAGS].extend(L_flags[k0:k1])
                flow[B.WINDOW].extend(L_win[k0:k1])
        if last_l[p] > flow[LAST_] or flow[B.TOTAL] == 0:
            flow[LAST_] = last_l[p]
        flow[B.TOTAL] += cnt[p]
        flow[B.BYTES] += nbytes[p]
        flow[B.ELIGIBLE] += n_elig[p]
        if want_syn and flow[B.SYN_SIDE] is None and has_syn[p]:
            dd = syn_dir[p] ^ flip
            flow[B.SYN_SIDE] = 1 - dd if syn_ack[p] else dd
    created.sort(key=lambda x: x[0])
    for i, (_o, flow) in enumerate(created):
        flow[B.SEQ] = asm.seq + i
    asm.seq += len(created)
    asm.stats.packets_used += m
    asm.stats.backwards_timestamps += backwards
    asm.max_ts = tmax if asm.max_ts is None else max(asm.max_ts, tmax)
    return True


def _kept_iats(times: list[float], last_kept: float, had: bool) -> tuple[list[float], float]:
    """IATs of kept packets as the scalar assembler computes them: from the latest kept time (the
    flow's first time before any), 0 for a flow's first kept packet, clamped at 0."""
    out = []
    for t in times:
        if had:
            x = t - last_kept
            out.append(x if x > 0.0 else 0.0)
        else:
            out.append(0.0)
            had = True
        if t > last_kept:
            last_kept = t
    return out, last_kept


LAST_ = B.LAST
