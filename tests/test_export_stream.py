"""Streamed export: the same bytes whatever the batch size or layout on disk, packets in time order across
batch boundaries, unsorted start times, folders of parts, bounded reads, and clean failures.

The reference for "the same bytes" is the in-memory table exported in one batch (the whole-table path);
every streamed variant — Parquet file with small row groups, folder of parts, tiny batches — must match
it byte for byte. Timestamps are checked against times computed here from the table itself.
"""

from __future__ import annotations

import itertools
import struct
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from netsynth.cli import app
from netsynth.errors import InputError
from netsynth.export import ExportOptions, export_pcap
from netsynth.export import draws as D
from netsynth.export.order import StartLayout, is_ascending
from netsynth.export.source import ParquetSource
from netsynth.flows import FlowTable
from netsynth.flows.schema import ACK, PSH, SYN
from test_export import assert_same_flows, crafted, reextract


# ---------------------------------------------------------------------------------------------- helpers
def pcap_times_us(path: Path) -> list[int]:
    """Integer µs timestamps of every record of a classic pcap, read with struct (no float rounding)."""
    data = path.read_bytes()
    out, off = [], 24
    while off < len(data):
        sec, usec, incl, _ = struct.unpack_from("<IIII", data, off)
        out.append(sec * 1_000_000 + usec)
        off += 16 + incl
    return out


def expected_times_us(table: FlowTable) -> list[int]:
    """Every packet's timestamp from the table (start + cumulative IATs), sorted: what the file must hold."""
    start_ns = np.round(table.start_time * 1e6).astype(np.int64) * 1000
    iat_ns = np.round(table.iat.astype(np.float64) * 1e9).astype(np.int64)
    times = np.cumsum(iat_ns, axis=1) + start_ns[:, None]
    return sorted((times[table.mask] // 1000).tolist())


def long_flows(n: int = 300, seed: int = 1, *, ascending: bool) -> FlowTable:
    """TCP flows lasting seconds (IATs ~0.5 s) that start ~10 ms apart: hundreds overlap at any time,
    so every batch boundary has many flows still open across it."""
    rng = np.random.default_rng(seed)
    width = 16
    npk = rng.integers(4, width + 1, n).astype(np.int16)
    mask = np.arange(width)[None, :] < npk[:, None]
    d = rng.integers(0, 2, (n, width)).astype(np.int8)
    fl = np.full((n, width), PSH | ACK, np.uint8)
    pl = rng.integers(1, 1400, (n, width)).astype(np.int32)
    d[:, 0], d[:, 1], fl[:, 0], fl[:, 1], pl[:, :2] = 0, 1, SYN, SYN | ACK, 0
    iat = rng.exponential(0.5, (n, width)).astype(np.float32)
    iat[:, 0] = 0
    starts = 1.7e9 + np.sort(rng.uniform(0, 3.0, n))
    if not ascending:
        starts = rng.permutation(starts)
    return FlowTable.build(label=np.array(["x", "y"])[np.arange(n) % 2], n_packets=npk,
                           payload_len=np.where(mask, pl, 0), direction=np.where(mask, d, 0),
                           iat=np.where(mask, iat, 0), tcp_flags=np.where(mask, fl, 0), start_time=starts)


def write_parts(table: FlowTable, folder: Path, cuts: list[int], row_group_size: int = 64) -> Path:
    """The table as a folder of part files, split at the given rows."""
    folder.mkdir()
    bounds = [0, *cuts, len(table)]
    for i, (a, b) in enumerate(itertools.pairwise(bounds)):
        table.take(np.arange(a, b)).write(folder / f"part-{i:05d}.parquet", row_group_size=row_group_size)
    return folder


def export_bytes(src: FlowTable | Path, out: Path, **kw: object) -> bytes:
    export_pcap(src, out, **kw)
    return out.read_bytes()


# ---------------------------------------------------------------------------------------------- same bytes
@pytest.mark.parametrize("ascending", [True, False])
def test_same_bytes_any_batch_size_file_or_folder(tmp_path: Path, ascending: bool) -> None:
    """In memory in one batch == Parquet with 7-row groups at batch sizes 1, 5, 64 == a folder of parts."""
    table = long_flows(120, ascending=ascending)
    ref = export_bytes(table, tmp_path / "ref.pcap", batch_size=10**6, payload="random", seed=4)
    table.write(tmp_path / "t.parquet", row_group_size=7)
    folder = write_parts(table, tmp_path / "parts", [13, 60, 61], row_group_size=9)
    variants = [(tmp_path / "t.parquet", 1), (tmp_path / "t.parquet", 5), (tmp_path / "t.parquet", 64),
                (folder, 4), (folder, 1000), (table, np.int64(3))]
    for i, (src, size) in enumerate(variants):
        got = export_bytes(src, tmp_path / f"v{i}.pcap", batch_size=size, payload="random", seed=4)
        assert got == ref, (src, size)
    assert export_bytes(table, tmp_path / "other.pcap", payload="random", seed=5) != ref


def test_same_bytes_laid_out_starts_and_no_start_column(tmp_path: Path) -> None:
    """Without start times (Poisson layout) the running sum is carried across batches; a file that lacks
    the start_time column altogether gives the same capture."""
    table = crafted(90)
    ref = export_bytes(table, tmp_path / "ref.pcapng", format="pcapng", flows_per_second=50)
    arrow = table.to_arrow()
    pq.write_table(arrow.drop_columns(["start_time"]), tmp_path / "nostart.parquet", row_group_size=11)
    for size in (1, 8, 33):
        got = export_bytes(tmp_path / "nostart.parquet", tmp_path / f"n{size}.pcapng", format="pcapng",
                           flows_per_second=50, batch_size=size)
        assert got == ref, size


def test_layout_and_draws_do_not_depend_on_chunking() -> None:
    """StartLayout over uneven chunks equals one call; draws.raw matches a plain-Python SplitMix64."""
    opts = ExportOptions(flows_per_second=7.0)
    key = D.stream_key(3)
    start = np.where(np.arange(50) % 4 == 1, 1.7e9, np.nan)
    whole = StartLayout(opts, key)(0, start)
    layout, parts = StartLayout(opts, key), []
    for a, b in ((0, 1), (1, 2), (2, 17), (17, 50)):
        parts.append(layout(a, start[a:b]))
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    laid = whole[np.isnan(start)]
    assert laid[0] == 1767225600 * 10**9 and np.all(np.diff(laid) >= 0)

    def splitmix(state: int, n: int) -> int:  # the reference: output number n of SplitMix64
        z = (state + n * 0x9E3779B97F4A7C15) % 2**64
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) % 2**64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) % 2**64
        return z ^ (z >> 31)

    rows = np.array([0, 1, 2, 10**6, 2**40])
    got = D.raw(key, rows, D.SERVER_HOST).tolist()
    assert got == [splitmix(int(key), int(r) * D.FIELDS + D.SERVER_HOST + 1) for r in rows]
    assert len(set(D.raw(key, np.arange(1000), D.ISN).tolist())) == 1000


# ---------------------------------------------------------------------------------------------- order
@pytest.mark.parametrize("ascending", [True, False])
def test_time_order_across_batch_boundaries(tmp_path: Path, ascending: bool) -> None:
    """Hundreds of flows open across every boundary of 16-flow batches: the file's timestamps are exactly
    the table's packet times, sorted, and extraction gives every flow back."""
    table = long_flows(300, ascending=ascending)
    table.write(tmp_path / "t.parquet", row_group_size=50)
    source = ParquetSource(tmp_path / "t.parquet")
    assert is_ascending(source, ExportOptions(), D.stream_key(0)) is ascending
    out = tmp_path / "o.pcap"
    summary = export_pcap(tmp_path / "t.parquet", out, batch_size=16)
    assert summary.packets == int(table.n_packets.sum()) and summary.flows == 300
    got = pcap_times_us(out)
    assert got == expected_times_us(table)
    assert_same_flows(table, reextract(out, packets=table.max_packets))


def test_unsorted_real_style_concatenation(tmp_path: Path) -> None:
    """Two 'captures' concatenated (each ascending, together not): a folder whose second part starts
    earlier than the first ends."""
    a, b = long_flows(80, seed=2, ascending=True), long_flows(80, seed=3, ascending=True)
    b.start_time = b.start_time - 1.0
    table = FlowTable.concat([a, b])
    folder = write_parts(table, tmp_path / "parts", [80], row_group_size=16)
    out = tmp_path / "o.pcap"
    export_pcap(folder, out, batch_size=10)
    assert pcap_times_us(out) == expected_times_us(table)
    assert out.read_bytes() == export_bytes(table, tmp_path / "ref.pcap", batch_size=10**6)


def test_reads_at_most_a_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows are decoded into FlowTables at most `batch_size` (sorted) or one row group (unsorted) at a
    time: the table is never loaded whole."""
    calls: list[int] = []
    real = FlowTable.from_arrow.__func__  # type: ignore[attr-defined]

    def counting(cls: type, table: pa.Table, source: str = "flow table") -> FlowTable:
        calls.append(table.num_rows)
        return real(cls, table, source)

    monkeypatch.setattr(FlowTable, "from_arrow", classmethod(counting))
    for ascending in (True, False):
        long_flows(200, ascending=ascending).write(tmp_path / f"{ascending}.parquet", row_group_size=30)
        calls.clear()
        summary = export_pcap(tmp_path / f"{ascending}.parquet", tmp_path / f"{ascending}.pcap", batch_size=25)
        assert summary.flows == 200 and sum(calls) >= 200
        assert max(calls) <= 25, (ascending, max(calls))


def test_parquet_reader_holds_no_row_groups_already_read(tmp_path: Path) -> None:
    """pyarrow holds about one batch, never the file: with pre-buffering on, the reader keeps the buffers
    of every row group it has read (a small file is even buffered whole up front) until it is closed."""
    path = tmp_path / "t.parquet"
    long_flows(12000, ascending=True).write(path, row_group_size=200)
    source = ParquetSource(path)
    allocated = []
    for _offset, table in source.batches(100):
        allocated.append(pa.total_allocated_bytes())
        del table
    assert len(allocated) == 120
    assert max(allocated) < path.stat().st_size / 4, (max(allocated), path.stat().st_size)


# ---------------------------------------------------------------------------------------------- errors
def test_bad_part_named_and_nothing_written(tmp_path: Path) -> None:
    table = crafted(30)
    folder = write_parts(table, tmp_path / "parts", [10, 20])
    (folder / "part-00001.parquet").write_text("not parquet")
    out = tmp_path / "o.pcap"
    with pytest.raises(InputError, match=r"part-00001\.parquet"):
        export_pcap(folder, out)
    assert not out.exists()
    other = write_parts(crafted(10).truncate(5), tmp_path / "mixed", [])
    table.write(other / "part-00009.parquet")
    with pytest.raises(InputError, match="different packet counts"):
        export_pcap(other, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mixed", "parts"]


def test_bad_rows_late_in_stream_leave_no_output(tmp_path: Path) -> None:
    """A part whose rows break the contract is found only when its batch is read, after packets were
    written: the error names the part and the capture (and its temporary file) is gone."""
    good, bad = crafted(40), crafted(10, seed=1)
    folder = write_parts(good, tmp_path / "parts", [])
    arrow = bad.to_arrow()
    direction = pa.FixedSizeListArray.from_arrays(pa.array(np.full(10 * bad.max_packets, 5, np.int8)),
                                                  bad.max_packets)
    arrow = arrow.set_column(arrow.schema.get_field_index("direction"), "direction", direction)
    pq.write_table(arrow, folder / "part-00001.parquet")
    out = tmp_path / "o.pcap"
    out.write_bytes(b"old")
    with pytest.raises(InputError, match=r"part-00001\.parquet"):
        export_pcap(folder, out, batch_size=8)
    assert out.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.pcap", "parts"]


@pytest.mark.parametrize("size", [0, -1, 2.5, True, "8"])
def test_bad_batch_size(tmp_path: Path, size: object) -> None:
    with pytest.raises(InputError, match="--batch-size"):
        export_pcap(crafted(3), tmp_path / "x.pcap", batch_size=size)
    assert not (tmp_path / "x.pcap").exists()


def test_cli_batch_size(tmp_path: Path) -> None:
    runner = CliRunner()
    table = long_flows(60, ascending=False)
    table.write(tmp_path / "t.parquet", row_group_size=8)
    r = runner.invoke(app, ["export-pcap", str(tmp_path / "t.parquet"), "-o", str(tmp_path / "a.pcap"),
                            "--batch-size", "7"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "a.pcap").read_bytes() == export_bytes(table, tmp_path / "b.pcap")
    r = runner.invoke(app, ["export-pcap", str(tmp_path / "t.parquet"), "-o", str(tmp_path / "c.pcap"),
                            "--batch-size", "0"])
    assert r.exit_code == 2 and "--batch-size" in r.output and not (tmp_path / "c.pcap").exists()
    assert len(r.output.strip().splitlines()) == 1


def test_model_server_ports_follow_the_flow_protocol() -> None:
    """A class that used 53/udp and 443/tcp must not give a TCP flow port 53 (malformed DNS in Wireshark)."""
    from netsynth.export.endpoints import draw_server_ports
    from netsynth.models.base import endpoint_stats

    flows = FlowTable.build(label=["c"] * 6, n_packets=[1] * 6, payload_len=np.ones((6, 1), np.int32),
                            direction=np.zeros((6, 1), np.int8), iat=np.zeros((6, 1), np.float32),
                            protocol=np.array([6, 6, 6, 17, 17, 17]), dst_port=[443, 443, 8443, 53, 53, 5353])
    stats = endpoint_stats(flows)
    assert stats["c"]["dst_port_by_protocol"] == {"6": pytest.approx({"443": 2 / 3, "8443": 1 / 3}),
                                                  "17": pytest.approx({"53": 2 / 3, "5353": 1 / 3})}
    protos = np.array([6] * 500 + [17] * 500)
    ports = draw_server_ports(np.array(["c"] * 1000), protos, np.random.default_rng(0).random(1000), stats, None)
    assert set(ports[protos == 6].tolist()) == {443, 8443}
    assert set(ports[protos == 17].tolist()) == {53, 5353}
    # a model saved before per-protocol ports keeps its pooled distribution
    old = {"c": {"dst_port": stats["c"]["dst_port"]}}
    assert set(draw_server_ports(np.array(["c"] * 200), np.full(200, 6), np.linspace(0, 0.99, 200), old,
                                 None).tolist()) <= {443, 8443, 53, 5353}
