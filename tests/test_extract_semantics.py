"""Flow-semantics options on crafted captures: exact expected flows for each case."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from captures import (
    ACK,
    FIN,
    PSH,
    SYN,
    Pkt,
    esp_packet,
    eth_frames,
    frame,
    icmp_packet,
    ip_packet,
    ipv4_fragments,
    ipv6_fragments,
    tcp_conversation,
    write_pcap,
)
from netsynth.errors import InputError
from netsynth.extract import extract, extract_to_parquet
from netsynth.flows import FlowTable

RST = 0x04
C, S = "10.0.0.1:40000", "10.0.0.2:80"


def run(path: Path | list[Path], **kw: object) -> FlowTable:
    kw.setdefault("label_from", "stem")
    return extract(path if isinstance(path, list) else [path], **kw).table  # type: ignore[arg-type]


def udp_stream(n: int, gap: float, t0: float = 0.0) -> list[Pkt]:
    return [Pkt(t0 + i * gap, C if i % 2 == 0 else S, S if i % 2 == 0 else C, 10 + i, "udp") for i in range(n)]


def test_active_timeout_splits_long_flows(tmp_path: Path) -> None:
    p = write_pcap(tmp_path / "a.pcap", eth_frames(udp_stream(7, 10.0)))  # 0..60 s, gaps of 10 s
    assert len(run(p)) == 1
    t = run(p, active_timeout=25)
    assert t.n_packets.tolist() == [3, 3, 1]  # 0-20 | 30-50 | 60: a packet > 25 s after the start opens a new one
    assert t.payload_len[0, :3].tolist() == [10, 11, 12] and t.payload_len[2, 0] == 16
    assert t.direction[1, :3].tolist() == [0, 1, 0] and t.src_port[1] == 80  # initiator of flow 2 = first sender
    assert t.packets_total.tolist() == [3, 3, 1] and t.duration.tolist() == [20.0, 20.0, 0.0]
    with pytest.raises(InputError, match="active_timeout"):
        run(p, active_timeout=0)


def test_tcp_end_and_port_reuse(tmp_path: Path) -> None:
    first = tcp_conversation(t0=10.0)
    first += [Pkt(10.06, S, C, 0, flags=FIN | ACK), Pkt(10.07, C, S, 0, flags=ACK)]  # close + last ACK
    second = tcp_conversation(t0=11.0)  # same 5-tuple, 1 s later
    reset = [Pkt(12.0, C, S, 0, flags=SYN), Pkt(12.01, S, C, 0, flags=RST | ACK), Pkt(12.02, C, S, 0, flags=SYN)]
    p = write_pcap(tmp_path / "e.pcap", eth_frames(first + second + reset))
    assert run(p).n_packets.tolist() == [17]  # default: one 5-tuple, one flow (nfstream)
    t = run(p, tcp_end=True)
    # flow 2 saw one FIN only, so the SYN at 12.0 still belongs to it; its RST closes it
    assert t.n_packets.tolist() == [8, 8, 1]
    assert t.tcp_flags[0, 6:8].tolist() == [FIN | ACK, ACK]  # the trailing ACK stays with the closed flow
    assert t.tcp_flags[1, 6:8].tolist() == [SYN, RST | ACK]
    assert t.flow_id.tolist() == ["e.pcap:0", "e.pcap:1", "e.pcap:2"]
    assert t.start_time.tolist() == pytest.approx([10.0, 11.0, 12.02])


def test_initiator_rules_when_capture_starts_mid_handshake(tmp_path: Path) -> None:
    pkts = [Pkt(1.0, S, C, 0, flags=SYN | ACK), Pkt(1.01, C, S, 0, flags=ACK), Pkt(1.02, C, S, 5, flags=PSH | ACK),
            Pkt(2.0, "10.0.0.9:53", "10.0.0.8:5353", 30, "udp"), Pkt(2.1, "10.0.0.8:5353", "10.0.0.9:53", 40, "udp")]
    p = write_pcap(tmp_path / "i.pcap", eth_frames(pkts))
    t = run(p)
    assert (t.src_port.tolist(), t.direction[0, :3].tolist()) == ([80, 53], [0, 1, 1])
    t = run(p, initiator="syn")  # the SYN-ACK's receiver opened the connection; UDP keeps the first sender
    assert (t.src_ip[0], t.src_port.tolist(), t.dst_port[0]) == ("10.0.0.1", [40000, 53], 80)
    assert t.direction[0, :3].tolist() == [1, 0, 0] and t.direction[1, :2].tolist() == [0, 1]
    t = run(p, initiator="port")  # and without a handshake the lower port is the server
    assert t.src_port.tolist() == [40000, 5353] and t.direction[1, :2].tolist() == [1, 0]
    with pytest.raises(InputError, match="initiator"):
        run(p, initiator="lowest")


def test_retransmissions_and_empty_packets_excluded(tmp_path: Path) -> None:
    pkts = [Pkt(1.0, C, S, 0, flags=SYN, seq=100), Pkt(1.1, S, C, 0, flags=SYN | ACK, seq=500),
            Pkt(1.2, C, S, 10, flags=PSH | ACK, seq=101), Pkt(1.3, C, S, 10, flags=PSH | ACK, seq=101),  # retrans
            Pkt(1.4, C, S, 20, flags=PSH | ACK, seq=111), Pkt(1.5, S, C, 0, flags=ACK, seq=501),
            Pkt(1.6, C, S, 5, flags=PSH | ACK, seq=106),  # inside already-sent data: retransmission
            Pkt(1.7, S, C, 7, flags=PSH | ACK, seq=0xFFFFFFFE), Pkt(1.8, S, C, 7, flags=PSH | ACK, seq=5)]  # wraps
    p = write_pcap(tmp_path / "r.pcap", eth_frames(pkts))
    t = run(p)
    assert int(t.n_packets[0]) == 9 and t.packets_total[0] == 9
    res = extract([p], label_from="stem", include_retransmissions=False, include_empty=False)
    t = res.table
    assert t.payload_len[0, : t.n_packets[0]].tolist() == [10, 20, 7, 7]
    np.testing.assert_allclose(t.iat[0, :4], [0, 0.2, 0.3, 0.1], atol=1e-6)
    assert t.packets_total[0] == 9 and t.bytes_total[0] == 59 and res.summary.tcp_retransmissions == 2
    assert run(p, include_retransmissions=False).n_packets.tolist() == [7]


def test_backwards_timestamps_kept_in_file_order(tmp_path: Path) -> None:
    pkts = [Pkt(5.0, C, S, 1, "udp"), Pkt(4.0, S, C, 2, "udp"), Pkt(6.0, C, S, 3, "udp"), Pkt(6.0, S, C, 4, "udp")]
    res = extract([write_pcap(tmp_path / "b.pcap", eth_frames(pkts))], label_from="stem")
    t = res.table
    assert t.payload_len[0, :4].tolist() == [1, 2, 3, 4]
    assert t.iat[0, :4].tolist() == [0.0, 0.0, 1.0, 0.0]  # clamped, then from the latest time seen
    assert t.start_time[0] == 5.0 and t.duration[0] == 1.0 and res.summary.timestamps_backwards == 1


def test_many_packets_totals_cover_the_whole_flow(tmp_path: Path) -> None:
    t = run(write_pcap(tmp_path / "m.pcap", eth_frames(udp_stream(50, 0.5))), packets=5)
    assert int(t.n_packets[0]) == 5 and t.packets_total[0] == 50
    assert t.bytes_total[0] == sum(10 + i for i in range(50)) and t.duration[0] == pytest.approx(24.5)


def test_ipv4_and_ipv6_fragments_join_their_datagram(tmp_path: Path) -> None:
    big = Pkt(1.0, C, S, 3000, "udp")
    v6 = Pkt(2.0, "[2001:db8::1]:5000", "[2001:db8::2]:53", 2000, "udp")
    tcp = Pkt(3.0, "10.0.0.5:1000", "10.0.0.6:2000", 2500, flags=PSH | ACK)
    frames = [(1.0, f) for f in ipv4_fragments(big, [1480, 1480])]
    frames += [(2.0, f) for f in ipv6_fragments(v6, [1448])]
    frames += [(3.0, f) for f in ipv4_fragments(tcp, [1200], ipid=99)]
    frames.append((3.5, ipv4_fragments(Pkt(3.5, C, S, 3000, "udp"), [1480], ipid=55)[1]))  # orphan
    frames.append((4.0, frame(ip_packet(Pkt(4.0, S, C, 4, "udp")))[14:]))
    p = write_pcap(tmp_path / "f.pcap", [(ts, frame(ip)) for ts, ip in frames[:-1]] + [(4.0, frame(frames[-1][1]))])
    res = extract([p], label_from="stem")
    t = res.table
    assert len(t) == 3  # no port-less flows from the later fragments
    by_port = {int(sp): i for i, sp in enumerate(t.src_port)}
    udp4 = by_port[40000]
    assert t.payload_len[udp4, :2].tolist() == [3000, 4] and t.packets_total[udp4] == 2
    assert t.payload_len[by_port[5000], 0] == 2000 and t.ip_version[by_port[5000]] == 6
    assert t.payload_len[by_port[1000], 0] == 2500 and t.bytes_total[by_port[1000]] == 2500
    assert res.summary.fragments_attributed == 4
    assert res.summary.packets_skipped == {"ip_fragment_orphan": 1}


def test_other_protocols_counted_or_kept(tmp_path: Path) -> None:
    a, b = "192.168.1.1", "192.168.1.2"
    frames = [(1.0, frame(icmp_packet(a, b, 8, 77, 56))), (1.1, frame(icmp_packet(b, a, 0, 77, 56))),
              (1.2, frame(icmp_packet(a, b, 8, 78, 56))), (1.3, frame(icmp_packet(b, a, 3, 0, 28))),
              (2.0, frame(esp_packet(a, b, 0x1234, 100))), (2.1, frame(esp_packet(b, a, 0x9999, 80))),
              (2.2, frame(esp_packet(a, b, 0x1234, 120))), *eth_frames(tcp_conversation(t0=3.0))]
    p = write_pcap(tmp_path / "o.pcap", frames)
    res = extract([p], label_from="stem")
    assert len(res.table) == 1 and res.summary.packets_skipped == {"icmp": 4, "esp": 3}
    t = run(p, protocols="icmp,esp")
    assert t.protocol.tolist() == [1, 1, 1, 50, 50, 6]
    # echo id 77 both ways | id 78 | unreachable | SPI 0x1234 | SPI 0x9999 | TCP
    assert t.n_packets.tolist() == [2, 1, 1, 2, 1, 6]
    assert t.payload_len[0, :2].tolist() == [56, 56] and t.direction[0, :2].tolist() == [0, 1]
    assert t.payload_len[3, :2].tolist() == [100, 120] and t.src_port[:5].tolist() == [0] * 5
    assert run(p, protocols=[50]).protocol.tolist() == [50, 50, 6]
    with pytest.raises(InputError, match="unknown protocol"):
        run(p, protocols="icmp,bogus")


def _mixed_captures(tmp_path: Path) -> list[Path]:
    out = []
    for i in range(4):
        pkts = tcp_conversation(t0=100.0 * i) + udp_stream(12, 30.0, t0=100.0 * i + 1)
        out.append(write_pcap(tmp_path / f"c{i}.pcap", eth_frames(pkts, vlan=(5,) if i % 2 else ())))
    return out


def _same(a: FlowTable, b: FlowTable) -> None:
    assert a.to_arrow().equals(b.to_arrow())


def test_jobs_two_gives_the_identical_table(tmp_path: Path) -> None:
    files = _mixed_captures(tmp_path)
    bad = tmp_path / "zz.pcap"
    bad.write_bytes(b"not a capture at all")
    one = extract([*files, bad], label_from="stem", idle_timeout=45)
    two = extract([*files, bad], label_from="stem", idle_timeout=45, jobs=2)
    _same(one.table, two.table)
    assert one.summary.files_failed == two.summary.files_failed == {str(bad): two.summary.files_failed[str(bad)]}
    assert one.warnings == two.warnings
    with pytest.raises(InputError, match="jobs"):
        extract(files, label_from="stem", jobs=0)


def test_streaming_writer_matches_extract(tmp_path: Path) -> None:
    files = _mixed_captures(tmp_path)
    want = extract(files, label_from="stem", idle_timeout=45, min_packets=2)
    out = tmp_path / "flows.parquet"
    res = extract_to_parquet(files, out, label_from="stem", idle_timeout=45, min_packets=2)
    got = FlowTable.read(out)
    assert got.to_arrow().equals(FlowTable.read(_written(want.table, tmp_path)).to_arrow())
    assert res.summary.flows_kept == len(want.table) and res.summary.flows_per_class == want.summary.flows_per_class
    import pyarrow.parquet as pq

    assert pq.ParquetFile(out).num_row_groups >= len(files)  # one per flow batch
    with pytest.raises(InputError, match="nothing written"):
        extract_to_parquet(files, tmp_path / "none.parquet", label_from="stem", min_packets=1000)
    assert not (tmp_path / "none.parquet").exists()


def _written(t: FlowTable, tmp_path: Path) -> Path:
    t.write(tmp_path / "want.parquet")
    return tmp_path / "want.parquet"


@pytest.mark.parametrize("opts", [{}, {"include_empty": False, "initiator": "port"}, {"active_timeout": 40.0},
                                  {"tcp_end": True, "include_retransmissions": False}])
def test_fast_path_equals_scalar_path(tmp_path: Path, opts: dict) -> None:
    files = _mixed_captures(tmp_path)
    kw = {"label_from": "stem", "idle_timeout": 45, **opts}
    _same(extract(files, **kw).table, extract(files, fast=False, **kw).table)


def test_label_from_ndpi_without_extra_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from netsynth.extract import ndpi

    monkeypatch.setattr(ndpi, "available", lambda: False)
    p = write_pcap(tmp_path / "a.pcap", eth_frames(tcp_conversation()))
    with pytest.raises(InputError, match=r"netsynth\[ndpi\]"):
        extract([p], label_from="ndpi")


@pytest.mark.parametrize("chunk", [3, 7, 64])
@pytest.mark.parametrize("opts", [{}, {"include_empty": False, "initiator": "syn"}, {"active_timeout": 50.0}])
def test_fast_equals_scalar_across_small_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int,
                                                opts: dict) -> None:
    # Tiny chunks make flows continue across chunks (carried state, sweeps); concatenating captures
    # with overlapping times and reused 5-tuples makes time go backwards inside flows, across chunks.
    from netsynth.extract import pipeline

    monkeypatch.setattr(pipeline, "CHUNK_RECORDS", chunk)
    pkts: list[Pkt] = []
    for i in range(4):
        pkts += tcp_conversation(t0=100.0 + 7 * i) + udp_stream(9, 13.0, t0=90.0 + 3 * i)
    p = write_pcap(tmp_path / "cat.pcap", eth_frames(pkts))
    kw = {"label_from": "stem", "idle_timeout": 20, **opts}
    fast, slow = extract([p], **kw), extract([p], fast=False, **kw)
    _same(fast.table, slow.table)
    assert fast.summary.timestamps_backwards == slow.summary.timestamps_backwards > 0
