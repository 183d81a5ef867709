"""Flow table → replayable pcap/pcapng: every kept packet, in global timestamp order, streamed to disk.

Flows are admitted in start-time order into a heap keyed by each active flow's next packet time; the
heap pops the globally earliest packet, which is built and written at once. Only active flows are held,
and no packet bytes are kept after writing, so memory is bounded by the number of concurrently active
flows (plus O(flows) small per-flow draws), not by the size of the file. The output is written to a
temporary name and renamed into place only when complete.

Randomness, all from `options.seed`: initial sequence numbers, client ports, pool addresses, IPv6 flow
labels, server ports (per class) and start-time gaps are drawn up front as vectors in a fixed order
from one generator; random payload bytes come from a second generator in file order. The same table
and options therefore always give the same bytes.
"""

from __future__ import annotations

import heapq
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import netsynth
from netsynth.errors import InputError
from netsynth.export import endpoints as E
from netsynth.export.options import ExportOptions, ExportSummary, start_epoch
from netsynth.export.packets import CLOSE_GAP_NS, FlowPackets, close_packets, make_endpoints, max_payload, zeros
from netsynth.export.writers import PcapngWriter, PcapWriter
from netsynth.flows import FlowTable
from netsynth.utils.io import atomic_path


def export_pcap(table_or_path: FlowTable | str | os.PathLike, out_path: str | os.PathLike,
                options: ExportOptions | None = None, **overrides: Any) -> ExportSummary:
    """Write the packets of a flow table to `out_path` as pcap or pcapng and return what was written.

    `options` defaults to `ExportOptions()`; keyword `overrides` (the same names: format, clients,
    servers, clients6, servers6, model, server_ports, flows_per_second, start_time, payload, seed,
    close_tcp, ts_resolution) replace single fields, None meaning "keep the default".
    """
    opts = (options or ExportOptions()).with_overrides(**overrides)
    opts.validate()
    table = _load(table_or_path)
    endpoints, json_hash = E.model_endpoints(opts.model)
    plan = _Plan(table, opts, endpoints)
    summary = ExportSummary(path=str(out_path), format=opts.format,
                            model_hash=_model_hash(table) or json_hash)
    with atomic_path(out_path) as tmp:
        writer = _open_writer(tmp, opts, table, summary.model_hash)
        try:
            _merge(plan, writer, summary, opts)
        finally:
            writer.close()
    return summary


def _load(table_or_path: FlowTable | str | os.PathLike) -> FlowTable:
    """The flow table itself, or read from a path (InputError naming the file if it is not one)."""
    if isinstance(table_or_path, FlowTable):
        table_or_path.validate("flow table")
        return table_or_path
    if isinstance(table_or_path, str | os.PathLike):
        return FlowTable.read(table_or_path)
    raise InputError(f"export: expected a flow table or a path, got {type(table_or_path).__name__}")


def _model_hash(table: FlowTable) -> str | None:
    """The generator's model hash from the table's `netsynth.producer` metadata, if any."""
    producer = table.producer()
    for key in ("model_hash", "model_sha256", "hash"):
        if isinstance(producer.get(key), str):
            return producer[key]
    return None


def _open_writer(tmp: Path, opts: ExportOptions, table: FlowTable, model_hash: str | None
                 ) -> PcapWriter | PcapngWriter:
    if opts.format == "pcap":
        return PcapWriter(tmp)
    producer = table.producer()
    parts = [f"Synthetic traffic written by netsynth {netsynth.__version__} export-pcap",
             f"payload={opts.payload}", f"seed={opts.seed}"]
    if producer.get("generator"):
        parts.append(f"generator={producer['generator']}")
    parts.append(f"model_hash={model_hash or 'none'}")
    if producer:
        parts.append(f"producer={json.dumps(producer, sort_keys=True)}")
    return PcapngWriter(tmp, comment="; ".join(parts), application=f"netsynth {netsynth.__version__}",
                        ts_resolution=opts.ts_resolution)


class _Plan:
    """Per-flow draws made once, up front, in a fixed order (see the module docstring)."""

    def __init__(self, table: FlowTable, opts: ExportOptions, endpoints: dict) -> None:
        n = len(table)
        self.table = table
        self.opts = opts
        self.pools = E.Pools(opts)
        rng = np.random.default_rng(opts.seed)
        self.isn = rng.integers(0, 2**32, size=(n, 2), dtype=np.uint64)
        self.client_port = rng.integers(E.EPHEMERAL_PORTS[0], E.EPHEMERAL_PORTS[1] + 1, size=n)
        version = table.ip_version.astype(np.int64)
        self.client_off = np.zeros(n, dtype=np.int64)
        self.server_off = np.zeros(n, dtype=np.int64)
        for v in (4, 6):
            rows = np.flatnonzero(version == v)
            self.client_off[rows] = self.pools[(v, False)].draw(rng, len(rows))
            self.server_off[rows] = self.pools[(v, True)].draw(rng, len(rows))
        self.flow_label = rng.integers(1, 2**20, size=n)
        self.server_port = E.draw_server_ports(table.label, table.protocol, rng, endpoints, opts.server_ports)
        self.start_ns = self._starts(rng)
        self.order = np.argsort(self.start_ns, kind="stable")

    def _starts(self, rng: np.random.Generator) -> np.ndarray:
        """Start times in integer ns (µs-aligned): the table's, else Poisson arrivals from start_time."""
        start = self.table.start_time.astype(np.float64)
        missing = np.isnan(start)
        gaps = rng.exponential(1.0 / float(self.opts.flows_per_second), size=int(missing.sum()))
        if len(gaps):
            gaps[0] = 0.0
            start = start.copy()
            start[missing] = start_epoch(self.opts.start_time) + np.cumsum(gaps)
        return np.round(start * 1e6).astype(np.int64) * 1000

    def skip_reason(self, i: int) -> str | None:
        """Why flow i cannot be written as TCP/UDP over IPv4/IPv6, or None."""
        proto, version = int(self.table.protocol[i]), int(self.table.ip_version[i])
        if proto not in (6, 17):
            return f"protocol {proto}"
        if version not in (4, 6):
            return f"ip_version {version}"
        return None

    def flow(self, i: int, summary: ExportSummary) -> FlowPackets:
        """The packets of flow i, with close_tcp additions counted in `summary`."""
        t = self.table
        version, proto, n = int(t.ip_version[i]), int(t.protocol[i]), int(t.n_packets[i])
        cpool, spool = self.pools[(version, False)], self.pools[(version, True)]
        client_ip = E.table_address(t.src_ip[i], version, cpool) or cpool.packed(self.client_off[i])
        server_ip = E.table_address(t.dst_ip[i], version, spool) or spool.packed(self.server_off[i])
        cport = int(t.src_port[i]) if t.src_port[i] >= 0 else int(self.client_port[i])
        sport = int(t.dst_port[i]) if t.dst_port[i] >= 0 else int(self.server_port[i])
        iat_ns = np.round(t.iat[i, :n].astype(np.float64) * 1e9).astype(np.int64)
        times = (int(self.start_ns[i]) + np.cumsum(iat_ns)).tolist()
        dirs = t.direction[i, :n].astype(int).tolist()
        flags = t.tcp_flags[i, :n].astype(int).tolist() if proto == 6 else [0] * n
        windows = t.tcp_window[i, :n].astype(int).tolist()
        lens = t.payload_len[i, :n].astype(int).tolist()
        cap = max_payload(version, proto)
        if max(lens) > cap:
            summary.clipped_packets += sum(x > cap for x in lens)
            lens = [min(x, cap) for x in lens]
        if proto == 6 and self.opts.close_tcp:
            for d, f in close_packets(dirs, flags):
                times.append(times[-1] + CLOSE_GAP_NS)
                dirs.append(d)
                flags.append(f)
                windows.append(0)
                lens.append(0)
                summary.added_packets += 1
        return FlowPackets(version=version, proto=proto, ends=make_endpoints(client_ip, cport, server_ip, sport),
                           times=times, dirs=dirs, lens=lens, flags=flags, windows=windows,
                           seq=[int(x) for x in self.isn[i]], flow_label=int(self.flow_label[i]))


def _payload_source(opts: ExportOptions) -> Callable[[int], bytes]:
    """n payload bytes: zeros, or bytes from a seeded generator separate from the endpoint draws."""
    if opts.payload == "zeros":
        return zeros
    rng = np.random.default_rng([opts.seed, 1])
    return rng.bytes


def _merge(plan: _Plan, writer: PcapWriter | PcapngWriter, summary: ExportSummary, opts: ExportOptions) -> None:
    """Write all packets in global timestamp order (ties: earlier-admitted flow first)."""
    payload_of, zero = _payload_source(opts), opts.payload == "zeros"
    ip_ids: dict[bytes, int] = {}
    heap: list[tuple[int, int, FlowPackets]] = []
    order, starts = plan.order, plan.start_ns
    i, n = 0, len(order)
    while i < n or heap:
        if i < n and (not heap or starts[order[i]] <= heap[0][0]):
            row = int(order[i])
            i += 1
            reason = plan.skip_reason(row)
            if reason:
                summary.skipped[reason] = summary.skipped.get(reason, 0) + 1
                continue
            flow = plan.flow(row, summary)
            summary.flows += 1
            heapq.heappush(heap, (flow.times[0], i, flow))
            continue
        ts, seq, flow = heapq.heappop(heap)
        frame = flow.emit(ip_ids, payload_of, zero)
        writer.write(ts, frame)
        summary.packets += 1
        summary.bytes += len(frame)
        summary.payload_bytes += flow.lens[flow.idx - 1]
        if summary.first_time is None:
            summary.first_time = ts / 1e9
        summary.last_time = ts / 1e9
        nxt = flow.next_time
        if nxt is not None:
            heapq.heappush(heap, (nxt, seq, flow))
