"""The flow-table contract: build, validate, Parquet round trip, errors that name the column."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from netsynth.errors import InputError
from netsynth.flows import FlowTable


def small_table() -> FlowTable:
    return FlowTable.build(
        label=["web", "dns", "web"],
        n_packets=np.array([2, 1, 4]),
        payload_len=np.array([[517, 1400, 9, 9], [33, 0, 0, 0], [0, 0, 100, 5]]),
        direction=np.array([[0, 1, 1, 1], [0, 0, 0, 0], [0, 1, 0, 1]]),
        iat=np.array([[0, 0.25, 3, 3], [0, 0, 0, 0], [0, 0.001, 0.5, 2.0]]),
        tcp_flags=np.array([[2, 18, 16, 16], [0, 0, 0, 0], [2, 18, 16, 24]]),
        protocol=np.array([6, 17, 6]),
        capture=np.array(["a.pcap", "b.pcap", None], dtype=object),
        src_port=np.array([40000, 5353, -1]),
        start_time=np.array([1.5e9, np.nan, 1.6e9 + 0.123456]),
    )


def test_build_zeroes_padding_and_fills_totals() -> None:
    t = small_table()
    assert t.payload_len[0].tolist() == [517, 1400, 0, 0]
    assert t.tcp_flags[1].tolist() == [0, 0, 0, 0]
    assert t.bytes_total.tolist() == [1917, 33, 105]
    assert t.packets_total.tolist() == [2, 1, 4]
    assert t.duration[2] == pytest.approx(2.501, abs=1e-6)
    assert t.class_counts() == {"web": 2, "dns": 1}


def test_parquet_round_trip_keeps_every_column(tmp_path) -> None:
    t = small_table()
    t.metadata["netsynth.producer"] = '{"by": "test"}'
    path = tmp_path / "flows.parquet"
    t.write(path)
    u = FlowTable.read(path)
    for name in ("payload_len", "direction", "tcp_flags", "tcp_window", "n_packets", "protocol"):
        np.testing.assert_array_equal(getattr(u, name), getattr(t, name))
    np.testing.assert_allclose(u.iat, t.iat)
    assert u.label.tolist() == ["web", "dns", "web"]
    assert u.capture.tolist() == ["a.pcap", "b.pcap", None]
    assert u.src_port.tolist() == [40000, 5353, -1]
    assert u.start_time[0] == 1.5e9 and np.isnan(u.start_time[1])
    assert u.start_time[2] == pytest.approx(1.6e9 + 0.123456, abs=1e-6)
    assert u.producer() == {"by": "test"}
    schema = pq.read_schema(path)
    assert schema.field("payload_len").type == pa.list_(pa.int32(), 4)
    assert schema.metadata[b"netsynth.max_packets"] == b"4"


def test_write_is_atomic_and_rejects_invalid(tmp_path) -> None:
    t = small_table()
    t.direction[0, 0] = 2
    path = tmp_path / "bad.parquet"
    with pytest.raises(InputError, match="direction"):
        t.write(path)
    assert list(tmp_path.iterdir()) == []


def test_read_names_file_and_problem(tmp_path) -> None:
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"not parquet at all")
    with pytest.raises(InputError, match=r"junk\.parquet"):
        FlowTable.read(junk)
    other = tmp_path / "other.parquet"
    pq.write_table(pa.table({"x": [1, 2]}), other)
    with pytest.raises(InputError, match="missing column"):
        FlowTable.read(other)
    with pytest.raises(InputError, match="no such file"):
        FlowTable.read(tmp_path / "absent.parquet")


def test_read_rejects_nonzero_padding(tmp_path) -> None:
    t = small_table()
    arrow = t.to_arrow()
    n = arrow.column("n_packets").to_numpy().copy()
    n[0] = 1  # now payload_len[0, 1] = 1400 sits in the padding
    arrow = arrow.set_column(arrow.column_names.index("n_packets"), "n_packets", pa.array(n, pa.int16()))
    path = tmp_path / "pad.parquet"
    pq.write_table(arrow, path)
    with pytest.raises(InputError, match="after n_packets"):
        FlowTable.read(path)


def test_take_concat_truncate() -> None:
    t = small_table()
    both = FlowTable.concat([t.take([0]), t.take(np.array([False, True, True]))])
    assert both.label.tolist() == ["web", "dns", "web"]
    short = t.truncate(2)
    assert short.max_packets == 2 and short.n_packets.tolist() == [2, 1, 2]
    assert short.payload_len[2].tolist() == [0, 0]
    with pytest.raises(InputError, match="different packet counts"):
        FlowTable.concat([t, short])
