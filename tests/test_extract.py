"""extract(): crafted captures with known contents → exact flow-table values."""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from captures import (
    ACK,
    LINK_ETHERNET,
    LINK_IPV4,
    LINK_NULL,
    LINK_RAW,
    LINK_SLL,
    LINK_SLL2,
    PSH,
    SYN,
    Pkt,
    eth_frames,
    frame,
    ip_packet,
    ipv6_with_ext,
    pcapng_epb,
    pcapng_idb,
    pcapng_pb,
    pcapng_shb,
    pcapng_spb,
    tcp_conversation,
    write_pcap,
    write_pcapng,
)
from netsynth.errors import InputError
from netsynth.extract import ExtractResult, ExtractSummary, extract
from netsynth.flows import FlowTable

CONV_PAYLOAD = [0, 0, 0, 120, 1448, 0]
CONV_DIR = [0, 1, 0, 0, 1, 0]
CONV_FLAGS = [SYN, SYN | ACK, ACK, PSH | ACK, ACK, 0x11]
CONV_WINDOW = [64240, 65160, 502, 502, 509, 502]
CONV_IAT = [0, 0.010, 0.001, 0.009, 0.030, 0.001]


def run(path: Path | list[Path], **kw: object) -> ExtractResult:
    kw.setdefault("label_from", "stem")
    return extract(path if isinstance(path, list) else [path], **kw)  # type: ignore[arg-type]


def assert_conversation(t: FlowTable, i: int = 0) -> None:
    k = int(t.n_packets[i])
    assert k == 6
    assert t.payload_len[i, :k].tolist() == CONV_PAYLOAD
    assert t.direction[i, :k].tolist() == CONV_DIR
    assert t.tcp_flags[i, :k].tolist() == CONV_FLAGS
    assert t.tcp_window[i, :k].tolist() == CONV_WINDOW
    np.testing.assert_allclose(t.iat[i, :k], CONV_IAT, atol=2e-6)
    assert t.packets_total[i] == 6 and t.bytes_total[i] == 1568
    assert t.duration[i] == pytest.approx(0.051, abs=2e-6)


def test_ethernet_tcp_exact_values(tmp_path: Path) -> None:
    p = write_pcap(tmp_path / "a.pcap", eth_frames(tcp_conversation()))
    res = run(p)
    t = res.table
    assert len(t) == 1
    assert_conversation(t)
    assert (t.src_ip[0], t.src_port[0], t.dst_ip[0], t.dst_port[0]) == ("10.0.0.1", 40000, "10.0.0.2", 80)
    assert t.label[0] == "a" and t.capture[0] == "a.pcap" and t.flow_id[0] == "a.pcap:0"
    assert t.start_time[0] == pytest.approx(1000.0)
    assert json.loads(t.metadata["netsynth.producer"])["packets"] == 20
    assert t.metadata["netsynth.label_source"] == "label_from:stem"
    assert res.summary.packets_read == 6 and res.summary.packets_used == 6
    t.validate()


def test_table_round_trips_through_parquet(tmp_path: Path) -> None:
    p = write_pcap(tmp_path / "a.pcap", eth_frames(tcp_conversation()))
    t = run(p).table
    t.write(tmp_path / "f.parquet")
    back = FlowTable.read(tmp_path / "f.parquet")
    assert back.payload_len.tolist() == t.payload_len.tolist()
    assert back.src_ip[0] == "10.0.0.1" and back.label[0] == "a"


@pytest.mark.parametrize("vlan", [(5,), (100, 200)])
def test_vlan_and_qinq(tmp_path: Path, vlan: tuple[int, ...]) -> None:
    p = write_pcap(tmp_path / "v.pcap", eth_frames(tcp_conversation(), vlan=vlan))
    assert_conversation(run(p).table)


@pytest.mark.parametrize("link", [LINK_RAW, LINK_SLL, LINK_SLL2, LINK_NULL, LINK_IPV4, 12])
def test_link_layers(tmp_path: Path, link: int) -> None:
    frames = [(p.ts, frame(ip_packet(p), LINK_RAW if link == 12 else link)) for p in tcp_conversation()]
    p = write_pcap(tmp_path / "l.pcap", frames, link=link)
    assert_conversation(run(p).table)


def test_ipv6_with_extension_headers_udp(tmp_path: Path) -> None:
    a, b = "[2001:db8::1]:5353", "[2001:db8::2]:53"
    pkts = [Pkt(1.0, a, b, 33, proto="udp"), Pkt(1.5, b, a, 200, proto="udp"), Pkt(1.75, a, b, 0, proto="udp")]
    frames = [(p.ts, frame(ipv6_with_ext(p))) for p in pkts]
    t = run(write_pcap(tmp_path / "six.pcap", frames)).table
    assert t.ip_version[0] == 6 and t.protocol[0] == 17 and t.src_ip[0] == "2001:db8::1"
    assert t.payload_len[0, :3].tolist() == [33, 200, 0]
    assert t.direction[0, :3].tolist() == [0, 1, 0]
    assert t.tcp_window[0, :3].tolist() == [0, 0, 0]
    np.testing.assert_allclose(t.iat[0, :3], [0, 0.5, 0.25])


def test_ip_and_tcp_options_are_not_payload(tmp_path: Path) -> None:
    pkts = [Pkt(1.0, "1.1.1.1:1", "2.2.2.2:2", 10, tcp_options=12, ip_options=8)]
    t = run(write_pcap(tmp_path / "o.pcap", eth_frames(pkts))).table
    assert t.payload_len[0, 0] == 10


def test_idle_timeout_splits_flow(tmp_path: Path) -> None:
    a, b = "10.0.0.1:5000", "10.0.0.2:53"
    pkts = [Pkt(0.0, a, b, 10, "udp"), Pkt(100.0, b, a, 20, "udp"), Pkt(221.0, b, a, 30, "udp"),
            Pkt(222.0, a, b, 40, "udp")]
    t = run(write_pcap(tmp_path / "t.pcap", eth_frames(pkts))).table
    assert len(t) == 2
    assert t.payload_len[0, :2].tolist() == [10, 20] and t.direction[0, :2].tolist() == [0, 1]
    # the second flow's initiator is the sender of its first packet (b)
    assert t.src_ip[1] == "10.0.0.2" and t.direction[1, :2].tolist() == [0, 1]
    assert t.flow_id.tolist() == ["t.pcap:0", "t.pcap:1"]
    assert len(run(write_pcap(tmp_path / "t.pcap", eth_frames(pkts)), idle_timeout=500).table) == 1


def test_snaplen_truncated_packets_keep_true_length(tmp_path: Path) -> None:
    p = write_pcap(tmp_path / "s.pcap", eth_frames(tcp_conversation()), snaplen=60)
    assert_conversation(run(p).table)


def test_ethernet_padding_ignored(tmp_path: Path) -> None:
    pkts = [Pkt(1.0, "1.1.1.1:1", "2.2.2.2:2", 0), Pkt(1.1, "2.2.2.2:2", "1.1.1.1:1", 2, "tcp")]
    udp = [Pkt(2.0, "1.1.1.1:7", "2.2.2.2:7", 1, "udp")]
    t = run(write_pcap(tmp_path / "p.pcap", eth_frames(pkts + udp, pad_to=60))).table
    assert t.payload_len[0, :2].tolist() == [0, 2]
    assert t.payload_len[1, 0] == 1


def test_nanosecond_and_big_endian_pcap(tmp_path: Path) -> None:
    pkts = [Pkt(5.000000001, "1.1.1.1:1", "2.2.2.2:2", 1, "udp"), Pkt(5.000000501, "2.2.2.2:2", "1.1.1.1:1", 2, "udp")]
    t = run(write_pcap(tmp_path / "n.pcap", eth_frames(pkts), nanos=True)).table
    assert t.iat[0, 1] == pytest.approx(5e-7, rel=1e-3)
    t2 = run(write_pcap(tmp_path / "b.pcap", eth_frames(tcp_conversation()), big_endian=True)).table
    assert_conversation(t2)


def test_pcapng_two_interfaces_and_block_kinds(tmp_path: Path) -> None:
    conv = tcp_conversation(t0=10.0)
    blocks = [pcapng_shb(), pcapng_idb(LINK_ETHERNET), pcapng_idb(LINK_RAW, tsresol=9),
              _custom_block()]
    for i, p in enumerate(conv):  # alternate interfaces: µs Ethernet and ns raw IP
        if i % 2 == 0:
            blocks.append(pcapng_epb(0, round(p.ts * 1e6), frame(ip_packet(p))))
        else:
            blocks.append(pcapng_epb(1, round(p.ts * 1e9), ip_packet(p)))
    udp = Pkt(20.0, "3.3.3.3:3", "4.4.4.4:4", 7, "udp")
    blocks += [pcapng_pb(0, 20_000_000, frame(ip_packet(udp))), pcapng_spb(frame(ip_packet(udp)))]
    res = run(write_pcapng(tmp_path / "x.pcapng", blocks))
    t = res.table
    assert len(t) == 2
    assert_conversation(t, 0)
    assert t.payload_len[1, :2].tolist() == [7, 7]  # obsolete PB + simple packet block (no timestamp)
    assert res.summary.timestamps_backwards == 1


def test_pcapng_binary_tsresol(tmp_path: Path) -> None:
    p = Pkt(0, "1.1.1.1:1", "2.2.2.2:2", 3, "udp")
    blocks = [pcapng_shb(), pcapng_idb(LINK_RAW, tsresol=0x80 | 10),
              pcapng_epb(0, 1024 * 3, ip_packet(p)), pcapng_epb(0, 1024 * 3 + 512, ip_packet(p))]
    t = run(write_pcapng(tmp_path / "r.pcapng", blocks)).table
    assert t.start_time[0] == pytest.approx(3.0) and t.iat[0, 1] == pytest.approx(0.5)


def _custom_block() -> bytes:
    body = b"skipme!!"
    return struct.pack("<II", 0x00000BAD, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))


def test_gzip_compressed(tmp_path: Path) -> None:
    raw = write_pcap(tmp_path / "g.pcap", eth_frames(tcp_conversation()))
    gz = tmp_path / "g.pcap.gz"
    gz.write_bytes(gzip.compress(raw.read_bytes()))
    raw.unlink()
    t = run(gz).table
    assert_conversation(t)
    assert t.label[0] == "g"


def test_truncated_last_record_keeps_earlier_packets(tmp_path: Path) -> None:
    p = write_pcap(tmp_path / "cut.pcap", eth_frames(tcp_conversation()))
    p.write_bytes(p.read_bytes()[:-10])
    res = run(p)
    assert res.table.n_packets[0] == 5
    assert len(res.warnings) == 1 and "cut.pcap" in res.warnings[0] and "5 packets" in res.warnings[0]


def test_absurd_record_length(tmp_path: Path) -> None:
    p = write_pcap(tmp_path / "big.pcap", eth_frames(tcp_conversation()))
    data = bytearray(p.read_bytes())
    data += struct.pack("<IIII", 1, 0, 2_000_000_000, 2_000_000_000) + b"\x00" * 64
    p.write_bytes(bytes(data))
    res = run(p)
    assert res.table.n_packets[0] == 6
    assert "absurd record length 2000000000 after 6 packets" in res.warnings[0]


@pytest.mark.parametrize("content", [b"", b"hello, this is not a capture\n", b"\xd4\xc3\xb2\xa1\x02\x00"])
def test_bad_single_file_is_input_error_naming_it(tmp_path: Path, content: bytes) -> None:
    p = tmp_path / "bad.pcap"
    p.write_bytes(content)
    with pytest.raises(InputError, match=r"bad\.pcap"):
        run(p)


def test_bad_file_among_several_is_skipped_and_reported(tmp_path: Path) -> None:
    good = write_pcap(tmp_path / "good.pcap", eth_frames(tcp_conversation()))
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"garbage" * 10)
    res = run([good, bad])
    assert len(res.table) == 1
    assert res.summary.files_ok == 1 and list(res.summary.files_failed) == [str(bad)]
    assert any(w.startswith(str(bad)) for w in res.warnings)
    with pytest.raises(InputError, match=r"bad\.pcap"):
        run([good, bad], strict=True)
    with pytest.raises(InputError, match="no readable capture"):
        run([bad, bad])


def test_folder_walk_skips_non_captures_quietly(tmp_path: Path) -> None:
    (tmp_path / "dev" / "sub").mkdir(parents=True)
    write_pcap(tmp_path / "dev" / "sub" / "one.pcap", eth_frames(tcp_conversation()))
    write_pcap(tmp_path / "dev" / "two.cap", eth_frames(tcp_conversation(t0=5)))
    (tmp_path / "dev" / "README").write_text("not a capture")
    res = extract([tmp_path], label_from="parent")
    assert res.table.capture.tolist() == ["dev/sub/one.pcap", "dev/two.cap"]
    assert res.table.label.tolist() == ["sub", "dev"]
    assert res.warnings == []


def test_label_from_parent_of_a_file_named_directly(tmp_path: Path) -> None:
    # Bug fixed: a file given on the command line has no folder in its `capture` name, so every flow
    # was dropped as unlabelled; its real folder must name it.
    (tmp_path / "Aria").mkdir()
    p = write_pcap(tmp_path / "Aria" / "Setup-A-1-STA.pcap", eth_frames(tcp_conversation()))
    res = extract([p], label_from="parent")
    assert res.table.label.tolist() == ["Aria"]
    assert res.table.capture.tolist() == ["Setup-A-1-STA.pcap"]


def test_unsupported_link_type_reported_once(tmp_path: Path) -> None:
    p = write_pcap(tmp_path / "u.pcap", eth_frames(tcp_conversation()), link=147)
    res = run([p, write_pcap(tmp_path / "ok.pcap", eth_frames(tcp_conversation()))])
    msgs = [w for w in res.warnings if "u.pcap" in w]
    assert msgs == [f"{p}: unsupported link type 147 (USER0); 6 packets skipped"]  # number and name


def test_non_first_fragment_and_icmp_skipped(tmp_path: Path) -> None:
    ip = bytearray(ip_packet(Pkt(1.0, "1.1.1.1:1", "2.2.2.2:2", 8, "udp")))
    ip[6:8] = struct.pack("!H", 100)  # fragment offset 100*8
    icmp = bytearray(ip_packet(Pkt(1.0, "1.1.1.1:1", "2.2.2.2:2", 8, "udp")))
    icmp[9] = 1
    ok = ip_packet(Pkt(1.0, "1.1.1.1:1", "2.2.2.2:2", 8, "udp"))
    res = run(write_pcap(tmp_path / "f.pcap", [(1.0, frame(bytes(ip))), (1.1, frame(bytes(icmp))), (1.2, frame(ok))]))
    assert res.summary.packets_skipped == {"ip_fragment_orphan": 1, "icmp": 1}  # first fragment never seen
    assert len(res.table) == 1


def test_malformed_lengths_counted(tmp_path: Path) -> None:
    bad_ihl = bytearray(ip_packet(Pkt(1.0, "1.1.1.1:1", "2.2.2.2:2", 8)))
    bad_ihl[0] = 0x43
    bad_udp = bytearray(ip_packet(Pkt(1.0, "1.1.1.1:1", "2.2.2.2:2", 8, "udp")))
    bad_udp[24:26] = struct.pack("!H", 500)
    ok = ip_packet(Pkt(1.0, "1.1.1.1:1", "2.2.2.2:2", 8, "udp"))
    res = run(write_pcap(tmp_path / "m.pcap", [(1.0, frame(bytes(bad_ihl))), (1.0, frame(bytes(bad_udp))),
                                                (1.0, frame(ok))]))
    assert res.summary.packets_skipped == {"bad_ihl": 1, "bad_udp_length": 1}


def test_min_packets_and_include_empty(tmp_path: Path) -> None:
    pkts = [*tcp_conversation(), Pkt(2000.0, "9.9.9.9:9", "8.8.8.8:53", 5, "udp")]
    p = write_pcap(tmp_path / "m.pcap", eth_frames(pkts))
    res = run(p, min_packets=2)
    assert len(res.table) == 1 and res.summary.flows_dropped == {"min_packets": 1}
    t = run(p, include_empty=False).table
    assert t.payload_len[0, :2].tolist() == [120, 1448] and int(t.n_packets[0]) == 2
    np.testing.assert_allclose(t.iat[0, :2], [0, 0.030], atol=2e-6)
    assert t.packets_total[0] == 6
    assert run(p, packets=3).table.payload_len.shape == (2, 3)


def test_capture_and_flow_level_labels(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    write_pcap(tmp_path / "d" / "a.pcap", eth_frames(tcp_conversation()))
    pkts = [*tcp_conversation(), Pkt(1.0, "[2001:db8::1]:1", "[2001:db8::2]:2", 1, "udp")]
    write_pcap(tmp_path / "d" / "b.pcap", eth_frames(pkts))
    write_pcap(tmp_path / "d" / "c.pcap", eth_frames(tcp_conversation()))
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "capture,protocol,ip_a,port_a,ip_b,port_b,label,application\n"
        "a.pcap,,,,,,Web,\n"  # capture-level row by bare file name
        "b.pcap,UDP,2001:db8::2,2,2001:db8::1,1,DNS,x\n"  # reversed pair
        "b.pcap,TCP,10.0.0.2,80,10.0.0.1,40000,HTTP,y\n"
    )
    res = extract([tmp_path / "d"], labels=labels)
    t = res.table
    assert dict(zip(t.flow_id.tolist(), t.label.tolist(), strict=True)) == {
        "a.pcap:0": "Web", "b.pcap:0": "HTTP", "b.pcap:1": "DNS"}  # ids in the order flows open in the file
    assert res.summary.flows_dropped == {"unlabelled": 1}
    assert res.summary.flows_per_class == {"DNS": 1, "HTTP": 1, "Web": 1}
    assert t.metadata["netsynth.label_source"] == f"labels:{labels}"


def test_label_source_required_and_checked(tmp_path: Path) -> None:
    p = write_pcap(tmp_path / "a.pcap", eth_frames(tcp_conversation()))
    with pytest.raises(InputError, match="no label source"):
        extract([p])
    with pytest.raises(InputError, match="label_from"):
        extract([p], label_from="bogus")
    bad = tmp_path / "l.csv"
    bad.write_text("file,klass\n")
    with pytest.raises(InputError, match="capture"):
        extract([p], labels=bad)
    with pytest.raises(InputError, match="no such file"):
        extract([tmp_path / "missing.pcap"], label_from="stem")


def test_summary_to_dict_and_render(tmp_path: Path) -> None:
    from rich.console import Console

    res = run(write_pcap(tmp_path / "a.pcap", eth_frames(tcp_conversation())))
    assert isinstance(res.summary, ExtractSummary)
    d = res.summary.to_dict()
    json.dumps(d)
    assert d["flows_kept"] == 1 and d["flows_per_class"] == {"a": 1}
    console = Console(record=True, width=100)
    res.summary.render(console)
    assert "flows kept" in console.export_text()


def test_zstd_compressed_and_progress(tmp_path: Path) -> None:
    zstandard = pytest.importorskip("zstandard")
    raw = write_pcap(tmp_path / "z.pcap", eth_frames(tcp_conversation())).read_bytes()
    z = tmp_path / "z.pcap.zst"
    z.write_bytes(zstandard.ZstdCompressor().compress(raw))
    assert_conversation(run(z, progress=True).table)
