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
from collections.abc import Callable, Iterator
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

BATCH = 4096  # flows prepared together: NumPy work per batch, bounded memory


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

    def admitted(self, summary: ExportSummary) -> Iterator[tuple[int, FlowPackets | str]]:
        """(start ns, flow or skip reason) in start-time order, prepared one batch of rows at a time."""
        for b in range(0, len(self.order), BATCH):
            rows = self.order[b:b + BATCH]
            yield from zip(self.start_ns[rows].tolist(), self._prepare(rows, summary), strict=True)

    def _prepare(self, rows: np.ndarray, summary: ExportSummary) -> list[FlowPackets | str]:
        """The packets of a batch of flows: NumPy slicing per batch, then plain lists per flow."""
        t = self.table
        iat_ns = np.round(t.iat[rows].astype(np.float64) * 1e9).astype(np.int64)
        times = (np.cumsum(iat_ns, axis=1) + self.start_ns[rows, None]).tolist()
        cols = {name: getattr(t, name)[rows].tolist() for name in (
            "n_packets", "ip_version", "protocol", "direction", "tcp_flags", "tcp_window", "payload_len",
            "src_ip", "dst_ip", "src_port", "dst_port")}
        draws = {name: getattr(self, name)[rows].tolist() for name in (
            "isn", "client_port", "server_port", "client_off", "server_off", "flow_label")}
        out: list[FlowPackets | str] = []
        for j in range(len(rows)):
            version, proto = cols["ip_version"][j], cols["protocol"][j]
            if proto not in (6, 17):
                out.append(f"protocol {proto}")
                continue
            if version not in (4, 6):
                out.append(f"ip_version {version}")
                continue
            n = cols["n_packets"][j]
            cpool, spool = self.pools[(version, False)], self.pools[(version, True)]
            client_ip = E.table_address(cols["src_ip"][j], version, cpool) or cpool.packed(draws["client_off"][j])
            server_ip = E.table_address(cols["dst_ip"][j], version, spool) or spool.packed(draws["server_off"][j])
            cport = cols["src_port"][j] if cols["src_port"][j] >= 0 else draws["client_port"][j]
            sport = cols["dst_port"][j] if cols["dst_port"][j] >= 0 else draws["server_port"][j]
            flow = FlowPackets(version=version, proto=proto, ends=make_endpoints(client_ip, cport, server_ip, sport),
                               times=times[j][:n], dirs=cols["direction"][j][:n],
                               lens=self._clip(cols["payload_len"][j][:n], version, proto, summary),
                               flags=cols["tcp_flags"][j][:n] if proto == 6 else [0] * n,
                               windows=cols["tcp_window"][j][:n], seq=draws["isn"][j],
                               flow_label=draws["flow_label"][j])
            if proto == 6 and self.opts.close_tcp:
                summary.added_packets += _append_close(flow)
            out.append(flow)
        return out

    @staticmethod
    def _clip(lens: list[int], version: int, proto: int, summary: ExportSummary) -> list[int]:
        """Payload lengths the IP length field can carry (real tables may hold GRO super-packets)."""
        cap = max_payload(version, proto)
        if max(lens) <= cap:
            return lens
        summary.clipped_packets += sum(x > cap for x in lens)
        return [min(x, cap) for x in lens]


def _append_close(flow: FlowPackets) -> int:
    """Append the FIN/ACK exchange a TCP flow lacks (1 ms apart after its last packet); returns how many."""
    added = close_packets(flow.dirs, flow.flags)
    for d, f in added:
        flow.times.append(flow.times[-1] + CLOSE_GAP_NS)
        flow.dirs.append(d)
        flow.flags.append(f)
        flow.windows.append(0)
        flow.lens.append(0)
    return len(added)


def _payload_source(opts: ExportOptions) -> Callable[[int], bytes]:
    """n payload bytes: zeros, or bytes from a seeded generator separate from the endpoint draws."""
    if opts.payload == "zeros":
        return zeros
    return _RandomPayload(np.random.default_rng([opts.seed, 1]))


class _RandomPayload:
    """Seeded random payload bytes, cut from 1 MiB blocks: `Generator.bytes` costs microseconds per
    call, which per packet would dominate the export."""

    BLOCK = 1 << 20

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.buf = b""
        self.pos = 0

    def __call__(self, n: int) -> bytes:
        if self.pos + n > len(self.buf):
            self.buf, self.pos = self.rng.bytes(max(self.BLOCK, n)), 0
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out


def _merge(plan: _Plan, writer: PcapWriter | PcapngWriter, summary: ExportSummary, opts: ExportOptions) -> None:
    """Write all packets in global timestamp order (ties: earlier-admitted flow first)."""
    payload_of, zero = _payload_source(opts), opts.payload == "zeros"
    ip_ids: dict[bytes, int] = {}
    heap: list[tuple[int, int, FlowPackets]] = []
    source = plan.admitted(summary)
    pending = next(source, None)
    admitted = 0
    while pending is not None or heap:
        if pending is not None and (not heap or pending[0] <= heap[0][0]):
            flow = pending[1]
            pending = next(source, None)
            if isinstance(flow, str):
                summary.skipped[flow] = summary.skipped.get(flow, 0) + 1
                continue
            admitted += 1
            summary.flows += 1
            heapq.heappush(heap, (flow.times[0], admitted, flow))
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
