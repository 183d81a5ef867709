"""Flow table → replayable pcap/pcapng: every kept packet, in global timestamp order, streamed to disk.

Flows are read a batch at a time in start-time order (order.py) and admitted into a heap keyed by each
active flow's next packet time; the heap pops the globally earliest packet, which is built and written
at once, and a flow is admitted just before the first packet that could follow its start. Memory is
therefore bounded by the batch (`batch_size` flows read, prepared in chunks of 4,096) plus the flows
concurrently active in the heap, plus the IPv4 ID counter of each host seen (bounded by the address
pools and the table's distinct addresses) — not by the number of flows or the size of the file. When
the table's start times are not ascending, ordering costs 12 bytes per flow on top (order.py). The
output is written to a temporary name and renamed into place only when complete.

Randomness, all from `options.seed`: initial sequence numbers, client ports, pool addresses, IPv6 flow
labels, server ports (per class) and start-time gaps are counter-based draws keyed by (seed, the flow's
row in the table) (draws.py), so they do not depend on the batch size or the reading order; random
payload bytes come from a seeded generator in file order. The same table and options therefore always
give the same bytes, whatever `batch_size`, and whether the table is given in memory, as one Parquet
file (any row-group size) or as a folder of part files.
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
from netsynth.export import draws as D
from netsynth.export import endpoints as E
from netsynth.export.options import ExportOptions, ExportSummary
from netsynth.export.order import Batch, batches_in_start_order
from netsynth.export.packets import CLOSE_GAP_NS, FlowPackets, close_packets, make_endpoints, max_payload, zeros
from netsynth.export.source import FlowSource, open_source
from netsynth.export.writers import PcapngWriter, PcapWriter
from netsynth.flows import FlowTable
from netsynth.utils.io import atomic_path

PREPARE = 4096  # flows turned into per-packet Python lists together: NumPy work per chunk, bounded memory


def export_pcap(table_or_path: FlowTable | str | os.PathLike, out_path: str | os.PathLike,
                options: ExportOptions | None = None, **overrides: Any) -> ExportSummary:
    """Write the packets of a flow table to `out_path` as pcap or pcapng and return what was written.

    `table_or_path` is a FlowTable, a Parquet file or a folder of Parquet part files; files are read a
    batch at a time. `options` defaults to `ExportOptions()`; keyword `overrides` (the same names:
    format, clients, servers, clients6, servers6, model, server_ports, flows_per_second, start_time,
    payload, seed, close_tcp, ts_resolution, batch_size) replace single fields, None meaning "keep the
    default".
    """
    opts = (options or ExportOptions()).with_overrides(**overrides)
    opts.validate()
    _check_output(table_or_path, out_path)
    source = open_source(table_or_path)
    endpoints, json_hash = E.model_endpoints(opts.model)
    plan = _Plan(source, opts, endpoints)
    summary = ExportSummary(path=str(out_path), format=opts.format,
                            model_hash=_model_hash(source) or json_hash)
    with atomic_path(out_path) as tmp:
        writer = _open_writer(tmp, opts, source, summary.model_hash)
        try:
            _merge(plan, writer, summary, opts)
        finally:
            writer.close()
    return summary


def _check_output(source: object, out_path: str | os.PathLike) -> None:
    """The output must not be the input (the rename would replace the table with its own packets) nor an
    existing folder (the error would name the temporary file, not the user's `-o`)."""
    out = Path(out_path)
    if out.is_dir():
        raise InputError(f"{out}: is a folder; give the capture file to write")
    if isinstance(source, (str, os.PathLike)) and out.exists() and Path(source).resolve() == out.resolve():
        raise InputError(f"{out}: the output is the input table; choose another output file")


def _model_hash(source: FlowSource) -> str | None:
    """The generator's model hash from the table's `netsynth.producer` metadata, if any."""
    producer = source.producer()
    for key in ("model_hash", "model_sha256", "hash"):
        if isinstance(producer.get(key), str):
            return producer[key]
    return None


def _open_writer(tmp: Path, opts: ExportOptions, source: FlowSource, model_hash: str | None
                 ) -> PcapWriter | PcapngWriter:
    if opts.format == "pcap":
        return PcapWriter(tmp)
    producer = source.producer()
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
    """Flows in start order, with their per-flow draws, turned into packet lists a chunk at a time."""

    def __init__(self, source: FlowSource, opts: ExportOptions, endpoints: dict) -> None:
        self.source = source
        self.opts = opts
        self.endpoints = endpoints
        self.pools = E.Pools(opts)
        self.key = D.stream_key(opts.seed)

    def admitted(self, summary: ExportSummary) -> Iterator[tuple[int, FlowPackets | str]]:
        """(start ns, flow or skip reason) in start-time order, prepared one chunk of rows at a time."""
        for batch in batches_in_start_order(self.source, self.opts, self.key):
            for b in range(0, len(batch[0]), PREPARE):
                rows, table, start_ns = _chunk(batch, b)
                yield from zip(start_ns.tolist(), self._prepare(rows, table, start_ns, summary), strict=True)

    def _draws(self, rows: np.ndarray, table: FlowTable) -> dict[str, list]:
        """Every random choice of these flows, from (seed, row) alone (draws.py), as plain lists."""
        k = self.key
        isn = D.raw(k, rows, D.ISN)
        version = table.ip_version.astype(np.int64)
        v6 = version == 6
        client_off = np.where(v6, self.pools[(6, False)].draw(k, rows, D.CLIENT_HOST),
                              self.pools[(4, False)].draw(k, rows, D.CLIENT_HOST))
        server_off = np.where(v6, self.pools[(6, True)].draw(k, rows, D.SERVER_HOST),
                              self.pools[(4, True)].draw(k, rows, D.SERVER_HOST))
        server_port = E.draw_server_ports(table.label, table.protocol, D.uniform(k, rows, D.SERVER_PORT),
                                          self.endpoints, self.opts.server_ports)
        return {"isn": np.stack([isn >> np.uint64(32), isn & np.uint64(0xFFFFFFFF)], axis=1).tolist(),
                "client_port": D.integers(k, rows, D.CLIENT_PORT, E.EPHEMERAL_PORTS[0],
                                          E.EPHEMERAL_PORTS[1] + 1).tolist(),
                "server_port": server_port.tolist(), "client_off": client_off.tolist(),
                "server_off": server_off.tolist(),
                "flow_label": D.integers(k, rows, D.FLOW_LABEL, 1, 2**20).tolist()}

    def _prepare(self, rows: np.ndarray, t: FlowTable, start_ns: np.ndarray,
                 summary: ExportSummary) -> list[FlowPackets | str]:
        """The packets of a chunk of flows: NumPy per chunk, then plain lists per flow."""
        iat_ns = np.round(t.iat.astype(np.float64) * 1e9).astype(np.int64)
        times = (np.cumsum(iat_ns, axis=1) + start_ns[:, None]).tolist()
        cols = {name: getattr(t, name).tolist() for name in (
            "n_packets", "ip_version", "protocol", "direction", "tcp_flags", "tcp_window", "payload_len",
            "src_ip", "dst_ip", "src_port", "dst_port")}
        draws = self._draws(rows, t)
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


def _chunk(batch: Batch, b: int) -> Batch:
    """Rows b .. b + PREPARE of a batch (the batch itself when it is no larger than one chunk)."""
    rows, table, start_ns = batch
    sl = slice(b, b + PREPARE)
    if b == 0 and len(rows) <= PREPARE:
        return rows, table, start_ns
    return rows[sl], table.take(np.arange(len(rows))[sl]), start_ns[sl]


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
