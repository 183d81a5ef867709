"""Export: flow table → pcap/pcapng, checked by re-extraction, by dpkt and by tshark.

Every property is checked by something other than the code that wrote it: netsynth's own extractor
(round trip), dpkt parsing plus a textbook checksum loop (headers, checksums, seq/ack, IP IDs) and,
where installed, tshark with checksum validation on.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import struct
import subprocess
from collections import defaultdict
from pathlib import Path

import dpkt
import numpy as np
import pytest

from netsynth.errors import InputError
from netsynth.export import ExportOptions, export_pcap
from netsynth.export.packets import FlowPackets, close_packets
from netsynth.extract import extract
from netsynth.flows import FlowTable
from netsynth.flows.schema import ACK, FIN, PSH, RST, SYN

N = 12


# ---------------------------------------------------------------------------------------------- tables
def crafted(n: int = 60, seed: int = 0) -> FlowTable:
    """TCP flows (complete with FIN exchange, or truncated mid-stream) and UDP flows, IPv4 and IPv6.

    Data packets always carry payload, so a correct exporter gives tshark nothing to flag (no
    duplicate ACKs, no window problems).
    """
    rng = np.random.default_rng(seed)
    pl = np.zeros((n, N), np.int32)
    d = np.zeros((n, N), np.int8)
    fl = np.zeros((n, N), np.uint8)
    iat = np.zeros((n, N), np.float32)
    npk = np.zeros(n, np.int16)
    proto = np.where(np.arange(n) % 3 == 2, 17, 6).astype(np.uint8)
    ipv = np.where(np.arange(n) % 4 == 3, 6, 4).astype(np.uint8)
    for i in range(n):
        if proto[i] == 6:
            data = int(rng.integers(1, 6))
            dirs = [0, 1, 0, *rng.integers(0, 2, data).tolist()]
            flags = [SYN, SYN | ACK, ACK] + [PSH | ACK] * data
            lens = [0, 0, 0, *rng.integers(1, 1461, data).tolist()]
            if i % 2 == 0:  # complete: FIN/ACK both ways and the last ACK
                dirs += [0, 1, 0]
                flags += [FIN | ACK, FIN | ACK, ACK]
                lens += [0, 0, 0]
        else:
            k = int(rng.integers(1, N + 1))
            dirs = [0, *rng.integers(0, 2, k - 1).tolist()]
            flags = [0] * k
            lens = rng.integers(0, 1200, k).tolist()
        k = len(dirs)
        npk[i] = k
        d[i, :k], fl[i, :k], pl[i, :k] = dirs, flags, lens
        iat[i, 1:k] = rng.exponential(0.02, k - 1)
    labels = np.array(["alpha", "beta", "gamma"])[np.arange(n) % 3 // 1 % 3]
    return FlowTable.build(label=labels, n_packets=npk, payload_len=pl, direction=d, iat=iat, tcp_flags=fl,
                           protocol=proto, ip_version=ipv, origin="synthetic:test")


@pytest.fixture(scope="module")
def real_table(shared_data: Path) -> FlowTable:
    """The first capture of every iot-sentinel device folder (~800 real flows, TCP/UDP, v4 and v6)."""
    folders = sorted(p for p in (shared_data / "iot-sentinel").iterdir() if p.is_dir())
    files = [min(f.glob("*.pcap")) for f in folders if any(f.glob("*.pcap"))]
    table = extract(files, packets=20, label_from="stem").table
    assert len(table) > 100
    return table


# ---------------------------------------------------------------------------------------------- reading
def frames(path: Path) -> list[tuple[float, bytes]]:
    """(timestamp, frame bytes) of every record, read with dpkt."""
    with open(path, "rb") as fh:
        return [(ts, bytes(buf)) for ts, buf in dpkt.pcap.UniversalReader(fh)]


def parsed(path: Path) -> list[dict]:
    """Each frame decoded by dpkt into the fields the checks below need."""
    out = []
    for ts, buf in frames(path):
        eth = dpkt.ethernet.Ethernet(buf)
        ip = eth.data
        l4 = ip.data
        v6 = isinstance(ip, dpkt.ip6.IP6)
        rec = {"ts": ts, "raw": buf, "eth": eth, "v": 6 if v6 else 4, "ip": ip, "l4": l4,
               "src": bytes(ip.src), "dst": bytes(ip.dst), "proto": ip.nxt if v6 else ip.p,
               "sport": l4.sport, "dport": l4.dport, "plen": len(l4.data)}
        if isinstance(l4, dpkt.tcp.TCP):
            rec.update(seq=l4.seq, ack=l4.ack, flags=l4.flags, win=l4.win)
        out.append(rec)
    return out


def by_flow(recs: list[dict]) -> dict[tuple, list[dict]]:
    """Packets grouped by unordered 5-tuple, in file order."""
    flows: dict[tuple, list[dict]] = defaultdict(list)
    for r in recs:
        a, b = (r["src"], r["sport"]), (r["dst"], r["dport"])
        flows[(r["proto"], *sorted([a, b]))].append(r)
    return flows


def textbook_sum(data: bytes) -> int:
    """RFC 1071 one's-complement sum, word by word (independent of the exporter's big-int trick)."""
    if len(data) % 2:
        data += b"\0"
    s = 0
    for (w,) in struct.iter_unpack("!H", data):
        s += w
        s = (s & 0xFFFF) + (s >> 16)
    return s


def reextract(path: Path, packets: int = N) -> FlowTable:
    return extract([path], packets=packets, label_from="stem").table


def assert_same_flows(orig: FlowTable, back: FlowTable, *, check_endpoints: bool = False) -> None:
    """Same packets per flow: flows matched by start time (and 5-tuple when the table has one)."""
    assert len(back) == len(orig)
    if check_endpoints:
        key_o = np.lexsort((orig.dst_port, orig.src_port, orig.src_ip.astype(str), orig.start_time))
        key_b = np.lexsort((back.dst_port, back.src_port, back.src_ip.astype(str), back.start_time))
    else:
        key_o, key_b = np.argsort(orig.start_time, kind="stable"), np.argsort(back.start_time, kind="stable")
    o, b = orig.take(key_o), back.take(key_b)
    np.testing.assert_array_equal(b.n_packets, o.n_packets)
    np.testing.assert_array_equal(b.payload_len, o.payload_len)
    np.testing.assert_array_equal(b.direction, o.direction)
    np.testing.assert_array_equal(b.tcp_flags, o.tcp_flags)
    np.testing.assert_array_equal(b.protocol, o.protocol)
    np.testing.assert_array_equal(b.ip_version, o.ip_version)
    # Timestamps are whole microseconds in the file; float32 IATs add their own rounding.
    tol = 1.5e-6 + np.abs(o.iat) * 2.0**-22
    assert np.all(np.abs(b.iat - o.iat) <= tol)
    if check_endpoints:
        np.testing.assert_array_equal(b.src_ip, o.src_ip)
        np.testing.assert_array_equal(b.dst_ip, o.dst_ip)
        np.testing.assert_array_equal(b.src_port, o.src_port)
        np.testing.assert_array_equal(b.dst_port, o.dst_port)
        np.testing.assert_allclose(b.start_time, o.start_time, atol=1e-6, rtol=0)
        nz = o.mask & (o.tcp_window > 0)
        np.testing.assert_array_equal(b.tcp_window[nz], o.tcp_window[nz])


# ---------------------------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_round_trip_crafted(tmp_path: Path, fmt: str) -> None:
    table = crafted()
    out = tmp_path / f"x.{fmt}"
    summary = export_pcap(table, out, format=fmt)
    assert summary.flows == len(table) and summary.packets == int(table.n_packets.sum())
    assert summary.added_packets == 0 and summary.skipped_flows == 0
    back = reextract(out)
    assert len(np.unique(back.start_time)) == len(back)  # matching by start time is unambiguous
    assert_same_flows(table, back)


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_round_trip_real(tmp_path: Path, real_table: FlowTable, fmt: str) -> None:
    """Real flows keep their addresses, ports, start times and windows as well as their packets."""
    out = tmp_path / f"real.{fmt}"
    summary = export_pcap(real_table, out, format=fmt)
    assert summary.flows == len(real_table)
    assert_same_flows(real_table, reextract(out, packets=20), check_endpoints=True)


def test_round_trip_model_samples(tmp_path: Path, real_table: FlowTable) -> None:
    """Synthetic flows sampled from a fitted cheap baseline survive export + extraction unchanged."""
    models = pytest.importorskip("netsynth.models")
    try:
        gen = models.get_generator("markov")(random_state=0)
    except (InputError, KeyError, ValueError):
        pytest.skip("markov baseline not registered yet")
    sample = gen.fit(real_table).sample(200, random_state=0)
    out = tmp_path / "synth.pcapng"
    summary = export_pcap(sample, out, format="pcapng", seed=3)
    assert summary.flows == len(sample)
    back = reextract(out, packets=sample.max_packets)
    flipped = sample.direction[:, 0] == 1  # the extractor calls the first sender the initiator
    sample.direction[flipped] = np.where(sample.mask[flipped], 1 - sample.direction[flipped], 0)
    assert_same_flows(sample, back)


# ---------------------------------------------------------------------------------------------- tshark
_TRANSPORT_ONLY = {"frame", "eth", "ethertype", "ip", "ipv6", "tcp", "udp", "data"}
PI_WARN = 0x00600000


@pytest.fixture(scope="module")
def tshark_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A HOME whose Wireshark profile disables every dissector above TCP/UDP.

    Zero or random payloads are not valid DNS/TLS/…; application dissectors would call them malformed,
    which says nothing about the frames we build. The check is on Ethernet/IP/TCP/UDP only.
    """
    if not shutil.which("tshark"):
        pytest.skip("tshark not installed")
    listing = subprocess.run(["tshark", "-G", "protocols"], capture_output=True, text=True, check=True).stdout
    names = [line.split("\t")[2] for line in listing.splitlines() if line.count("\t") >= 2]
    home = tmp_path_factory.mktemp("wshome")
    conf = home / ".config" / "wireshark"
    conf.mkdir(parents=True)
    (conf / "disabled_protos").write_text("\n".join(n for n in names if n not in _TRANSPORT_ONLY) + "\n")
    return home


def tshark_fields(path: Path, home: Path | None, *fields: str) -> list[list[str]]:
    env = {"PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": str(home or Path.home())}
    cmd = ["tshark", "-n", "-r", str(path), "-o", "tcp.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE",
           "-o", "ip.check_checksum:TRUE", "-T", "fields", "-E", "separator=\t"]
    for f in fields:
        cmd += ["-e", f]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 0, run.stderr
    return [line.split("\t") for line in run.stdout.splitlines()]


@pytest.mark.parametrize(("fmt", "payload"), [("pcap", "zeros"), ("pcapng", "random")])
def test_tshark_clean(tmp_path: Path, tshark_home: Path, fmt: str, payload: str) -> None:
    """No malformed frames, every checksum good, no TCP analysis warnings on complete flows."""
    table = crafted()
    out = tmp_path / f"t.{fmt}"
    summary = export_pcap(table, out, format=fmt, payload=payload, close_tcp=True)
    rows = tshark_fields(out, tshark_home, "frame.number", "_ws.expert.message", "_ws.expert.severity",
                         "ip.checksum.status", "tcp.checksum.status", "udp.checksum.status", "tcp.analysis.flags",
                         "_ws.malformed")
    assert len(rows) == summary.packets == int(table.n_packets.sum()) + summary.added_packets
    for num, msg, sev, ipc, tcpc, udpc, flags, malformed in rows:
        assert "malformed" not in msg.lower() and not malformed, (num, msg)
        assert "checksum" not in msg.lower(), (num, msg)
        assert all(int(s) < PI_WARN for s in sev.split(",") if s), (num, msg)
        assert ipc in ("", "1") and (tcpc or udpc) == "1", (num, ipc, tcpc, udpc)  # 1 = good
        assert not flags, (num, msg)


def test_tshark_full_dissection_real(tmp_path: Path, real_table: FlowTable) -> None:
    """With every dissector on, real flows exported give no checksum or framing complaints."""
    if not shutil.which("tshark"):
        pytest.skip("tshark not installed")
    out = tmp_path / "real.pcapng"
    export_pcap(real_table, out, format="pcapng")
    rows = tshark_fields(out, None, "frame.number", "_ws.expert.message", "ip.checksum.status",
                         "tcp.checksum.status", "udp.checksum.status", "tcp.analysis.flags")
    assert len(rows) == int(real_table.n_packets.sum())
    for num, msg, ipc, tcpc, udpc, _flags in rows:
        assert "checksum" not in msg.lower(), (num, msg)
        assert ipc in ("", "1") and (tcpc or udpc) == "1", (num, ipc, tcpc, udpc)
        for bad in ("previous segment not captured", "acked unseen segment", "Bogus"):
            assert bad.lower() not in msg.lower(), (num, msg)


# ---------------------------------------------------------------------------------------------- headers
@pytest.mark.parametrize("payload", ["zeros", "random"])
def test_checksums_and_lengths_independent(tmp_path: Path, payload: str) -> None:
    """IPv4 header and TCP/UDP checksums (IPv4 and IPv6 pseudo-headers) recomputed word by word."""
    out = tmp_path / "c.pcap"
    export_pcap(crafted(), out, payload=payload, close_tcp=True)
    recs = parsed(out)
    assert {r["v"] for r in recs} == {4, 6} and {r["proto"] for r in recs} == {6, 17}
    payload_bytes = b"".join(bytes(r["l4"].data) for r in recs)
    assert payload_bytes and (payload_bytes.count(0) == len(payload_bytes)) == (payload == "zeros")
    for r in recs:
        ip, l4raw = r["ip"], bytes(r["raw"][14 + (40 if r["v"] == 6 else 20):])
        if r["v"] == 4:
            hdr = r["raw"][14:34]
            assert textbook_sum(hdr) == 0xFFFF
            assert ip.len == len(r["raw"]) - 14 and ip.df and ip.hl == 5
            pseudo = r["src"] + r["dst"] + struct.pack("!BBH", 0, r["proto"], len(l4raw))
        else:
            assert ip.plen == len(l4raw)
            pseudo = r["src"] + r["dst"] + struct.pack("!IxxxB", len(l4raw), r["proto"])
        assert textbook_sum(pseudo + l4raw) == 0xFFFF
        if r["proto"] == 17:
            assert r["l4"].ulen == len(l4raw) and r["l4"].sum != 0


def test_seq_ack_consistent(tmp_path: Path) -> None:
    """seq = ISN + bytes sent + SYN/FIN so far; ACK acknowledges everything the peer sent."""
    out = tmp_path / "s.pcap"
    export_pcap(crafted(), out, close_tcp=True)
    tcp_flows = [p for k, p in by_flow(parsed(out)).items() if k[0] == 6]
    assert tcp_flows
    isns = set()
    for pkts in tcp_flows:
        first = pkts[0]
        init = (first["src"], first["sport"])
        nxt: dict[int, int] = {}
        for p in pkts:
            d = 0 if (p["src"], p["sport"]) == init else 1
            if d not in nxt:
                nxt[d] = p["seq"]
                isns.add(p["seq"])
            assert p["seq"] == nxt[d]
            if p["flags"] & dpkt.tcp.TH_ACK:
                assert p["ack"] == nxt[1 - d]
            else:
                assert p["ack"] == 0
            nxt[d] = (nxt[d] + p["plen"] + bool(p["flags"] & SYN) + bool(p["flags"] & FIN)) % 2**32
            assert p["win"] == 64240
    assert len(isns) == 2 * len(tcp_flows)  # random ISNs, one per direction


def test_deterministic_and_seeded(tmp_path: Path) -> None:
    t = crafted(20)
    export_pcap(t, tmp_path / "a.pcap", seed=5, payload="random")
    export_pcap(t, tmp_path / "b.pcap", seed=5, payload="random")
    export_pcap(t, tmp_path / "c.pcap", seed=6, payload="random")
    a, b, c = ((tmp_path / f"{x}.pcap").read_bytes() for x in "abc")
    assert a == b and a != c


def test_hosts_look_real(tmp_path: Path) -> None:
    """IP IDs +1 per packet of a host; TTL 64 for clients, 64/128 per server; MACs fixed per IP."""
    out = tmp_path / "h.pcap"
    export_pcap(crafted(120), out, clients="10.9.0.0/30", clients6="fd00::/126")  # few hosts, many packets
    recs = parsed(out)
    last_id: dict[bytes, int] = {}
    macs: dict[bytes, bytes] = {}
    ttl: dict[bytes, int] = {}
    clients = {ipaddress.ip_address(r["src"]) for r in recs} & set(ipaddress.ip_network("10.9.0.0/30"))
    assert len(clients) == 2  # pool hosts only (network/broadcast addresses skipped)
    for r in recs:
        src = r["src"]
        macs.setdefault(src, r["eth"].src)
        assert macs[src] == r["eth"].src
        assert r["eth"].src[0] & 0x02 and not r["eth"].src[0] & 0x01  # locally administered unicast
        hop = r["ip"].hlim if r["v"] == 6 else r["ip"].ttl
        ttl.setdefault(src, hop)
        assert ttl[src] == hop
        if r["v"] == 4:
            if src in last_id:
                assert r["ip"].id == (last_id[src] + 1) % 65536
            last_id[src] = r["ip"].id
    client_ips = {r["src"] for r in recs if ipaddress.ip_address(r["src"]) in ipaddress.ip_network("10.9.0.0/30")}
    assert {ttl[ip] for ip in client_ips} == {64}
    assert set(ttl.values()) <= {64, 128}


# ---------------------------------------------------------------------------------------------- endpoints
def test_pools_and_default_ports(tmp_path: Path) -> None:
    table = crafted(80)
    out = tmp_path / "p.pcap"
    export_pcap(table, out, clients="192.168.7.0/24", servers="198.51.100.0/28", clients6="fd12::/120",
                servers6="2001:db8:1::/120")
    nets = {"c4": ipaddress.ip_network("192.168.7.0/24"), "s4": ipaddress.ip_network("198.51.100.0/28"),
            "c6": ipaddress.ip_network("fd12::/120"), "s6": ipaddress.ip_network("2001:db8:1::/120")}
    for pkts in by_flow(parsed(out)).values():
        p = pkts[0]
        c, s = ipaddress.ip_address(p["src"]), ipaddress.ip_address(p["dst"])
        v = "4" if p["v"] == 4 else "6"
        assert c in nets["c" + v] and s in nets["s" + v]
        assert 32768 <= p["sport"] <= 60999
        assert p["dport"] == (443 if p["proto"] == 6 else 53)


def test_server_ports_option(tmp_path: Path) -> None:
    table = crafted(30)
    export_pcap(table, tmp_path / "i.pcap", server_ports=8080)
    assert {p[0]["dport"] for p in by_flow(parsed(tmp_path / "i.pcap")).values()} == {8080}
    export_pcap(table, tmp_path / "d.pcap", server_ports={"alpha": 8443})
    back = in_table_order(reextract(tmp_path / "d.pcap"))
    want = np.where(table.label == "alpha", 8443, np.where(table.protocol == 6, 443, 53))
    np.testing.assert_array_equal(back.dst_port, want)


def in_table_order(back: FlowTable) -> FlowTable:
    """Re-extracted flows of a table without start times: laid out in table order, so sort by start."""
    return back.take(np.argsort(back.start_time, kind="stable"))


def write_model(folder: Path, endpoints: dict | None) -> Path:
    folder.mkdir()
    doc = {"name": "markov", "model_hash": "feedface" * 8}
    if endpoints is not None:
        doc["endpoints"] = endpoints
    (folder / "model.json").write_text(json.dumps(doc))
    return folder


def test_server_ports_from_model_endpoints(tmp_path: Path) -> None:
    table = crafted(300)
    model = write_model(tmp_path / "m", {"alpha": {"protocol": {"6": 1.0}, "ip_version": {"4": 1.0},
                                                   "dst_port": {"8883": 0.75, "1883": 0.25}},
                                         "beta": {"dst_port": {}}})
    out = tmp_path / "m.pcapng"
    summary = export_pcap(table, out, model=model, format="pcapng")
    assert summary.model_hash == "feedface" * 8  # the table has no producer: the model's hash is used
    ports = in_table_order(reextract(out)).dst_port
    alpha = table.label == "alpha"
    assert set(ports[alpha].tolist()) == {8883, 1883}
    assert 0.6 < np.mean(ports[alpha] == 8883) < 0.9
    other = ~alpha
    np.testing.assert_array_equal(ports[other], np.where(table.protocol[other] == 6, 443, 53))
    # model.json without "endpoints" is fine (fallback); a missing model folder is a user error
    export_pcap(table, tmp_path / "n.pcap", model=write_model(tmp_path / "m2", None))
    with pytest.raises(InputError, match="m3"):
        export_pcap(table, tmp_path / "x.pcap", model=tmp_path / "m3")


def test_table_endpoints_and_pseudonyms(tmp_path: Path) -> None:
    """Addresses, ports and start times from the table win; pseudonyms map to fixed pool addresses."""
    table = crafted(6)
    table.ip_version[:] = 4
    table.src_ip = np.array(["192.0.2.10", "192.0.2.10", "host-a", "host-a", None, "2001:db8::1"], object)
    table.dst_ip = np.array(["198.51.100.1"] * 6, object)
    table.src_port = np.array([40000, 40001, 40002, 40003, -1, 40005], np.int32)
    table.dst_port = np.array([8000, 8001, 8002, 8003, 8004, 8005], np.int32)
    table.start_time = 1.7e9 + np.arange(6) * 0.5
    out = tmp_path / "e.pcap"
    export_pcap(table, out, clients="10.1.0.0/16")
    back = reextract(out)
    assert back.start_time[0] == pytest.approx(1.7e9, abs=1e-6)
    np.testing.assert_array_equal(back.dst_port, table.dst_port)
    assert list(back.src_ip[:2]) == ["192.0.2.10"] * 2
    assert back.src_ip[2] == back.src_ip[3] and ipaddress.ip_address(back.src_ip[2]) in ipaddress.ip_network(
        "10.1.0.0/16")
    assert ipaddress.ip_address(back.src_ip[5]).version == 4  # a v6 address on a v4 row is a pseudonym
    assert 32768 <= back.src_port[4] <= 60999


# ---------------------------------------------------------------------------------------------- close_tcp
def test_close_tcp_adds_counted_packets(tmp_path: Path) -> None:
    table = crafted(40)
    plain = export_pcap(table, tmp_path / "p.pcap")
    closed = export_pcap(table, tmp_path / "c.pcap", close_tcp=True)
    assert plain.added_packets == 0 and plain.packets == int(table.n_packets.sum())
    truncated_tcp = int(((table.protocol == 6) & (np.arange(40) % 2 == 1)).sum())
    assert closed.added_packets == 3 * truncated_tcp  # FIN/ACK, FIN/ACK, ACK per open flow
    assert closed.packets == plain.packets + closed.added_packets == len(frames(tmp_path / "c.pcap"))
    back = reextract(tmp_path / "c.pcap", packets=N + 3)
    for i in np.flatnonzero(back.protocol == 6):
        k = back.n_packets[i]
        assert list(back.tcp_flags[i, k - 3:k]) == [FIN | ACK, FIN | ACK, ACK]


def test_close_packets_rules() -> None:
    assert close_packets([0, 1, 0], [SYN, SYN | ACK, ACK]) == [(0, FIN | ACK), (1, FIN | ACK), (0, ACK)]
    assert close_packets([0, 1], [SYN, RST | ACK]) == []
    assert close_packets([0], [SYN]) == []  # never answered: no connection to close
    assert close_packets([0, 1, 1], [SYN, SYN | ACK, FIN | ACK]) == [(0, FIN | ACK), (1, ACK)]
    assert close_packets([0, 1, 0, 1], [SYN, SYN | ACK, FIN | ACK, FIN | ACK]) == [(0, ACK)]
    assert close_packets([0, 1, 0, 1, 0], [SYN, SYN | ACK, FIN | ACK, FIN | ACK, ACK]) == []


# ---------------------------------------------------------------------------------------------- formats
def pcapng_blocks(path: Path) -> list[tuple[int, bytes]]:
    data = path.read_bytes()
    out, off = [], 0
    while off < len(data):
        btype, total = struct.unpack_from("<II", data, off)
        out.append((btype, data[off + 8: off + total - 4]))
        off += total
    return out


def pcapng_options(body: bytes) -> dict[int, bytes]:
    opts, off = {}, 0
    while off + 4 <= len(body):
        code, length = struct.unpack_from("<HH", body, off)
        if code == 0:
            break
        opts[code] = body[off + 4: off + 4 + length]
        off += 4 + length + (-length % 4)
    return opts


@pytest.mark.parametrize("resolution", [6, 9])
def test_pcapng_comment_and_resolution(tmp_path: Path, resolution: int) -> None:
    table = crafted(10)
    table.metadata["netsynth.producer"] = json.dumps({"generator": "markov", "model_hash": "abc123"})
    out = tmp_path / "g.pcapng"
    export_pcap(table, out, format="pcapng", ts_resolution=resolution)
    blocks = pcapng_blocks(out)
    assert blocks[0][0] == 0x0A0D0D0A and blocks[1][0] == 1
    assert {b[0] for b in blocks[2:]} == {6}
    comment = pcapng_options(blocks[0][1][16:])[1].decode()
    assert "netsynth" in comment and "model_hash=abc123" in comment and "generator=markov" in comment
    assert pcapng_options(blocks[1][1][8:])[9] == bytes([resolution])
    # timestamps in file units: the first packet is at 2026-01-01T00:00:00Z exactly
    hi, lo = struct.unpack_from("<II", blocks[2][1], 4)
    assert (hi << 32 | lo) == 1767225600 * 10**resolution


def test_pcap_header_and_time_order(tmp_path: Path) -> None:
    out = tmp_path / "o.pcap"
    summary = export_pcap(crafted(200), out, flows_per_second=100, start_time="2025-06-01T12:00:00+02:00")
    magic, major, minor, _, _, _snap, link = struct.unpack_from("<IHHiIII", out.read_bytes())
    assert (magic, major, minor, link) == (0xA1B2C3D4, 2, 4, 1)
    ts = [t for t, _ in frames(out)]
    assert ts == sorted(ts)  # global timestamp order (tcpreplay needs it)
    assert ts[0] == pytest.approx(1748772000.0)
    assert summary.first_time == pytest.approx(1748772000.0)
    back = reextract(out)
    gaps = np.diff(np.sort(back.start_time))
    assert 0.007 < gaps.mean() < 0.013  # Poisson arrivals at 100 flows/s


def test_skips_other_protocols_and_clips(tmp_path: Path) -> None:
    table = crafted(9)
    table.protocol[0] = 1  # ICMP: not exportable as TCP/UDP
    table.protocol[1] = 132
    i = 4  # a TCP flow: make its first data packet too large for IPv4's length field
    assert table.protocol[i] == 6 and table.ip_version[i] == 4
    table.payload_len[i, 3] = 65535
    summary = export_pcap(table, tmp_path / "s.pcap")
    assert summary.skipped == {"protocol 1": 1, "protocol 132": 1} and summary.flows == 7
    assert summary.clipped_packets == 1
    sizes = [len(f) for _, f in frames(tmp_path / "s.pcap")]
    assert max(sizes) == 14 + 65535


# ---------------------------------------------------------------------------------------------- errors
def test_bad_input_names_the_file(tmp_path: Path) -> None:
    bogus = tmp_path / "notatable.parquet"
    bogus.write_text("hello")
    with pytest.raises(InputError, match=r"notatable\.parquet"):
        export_pcap(bogus, tmp_path / "x.pcap")
    with pytest.raises(InputError, match=r"missing\.parquet"):
        export_pcap(tmp_path / "missing.parquet", tmp_path / "x.pcap")
    assert not (tmp_path / "x.pcap").exists()


@pytest.mark.parametrize(("option", "value"), [("format", "pcapx"), ("clients", "10.0.0.0/33"),
                                               ("clients", "fd00::/64"), ("servers6", "203.0.113.0/24"),
                                               ("flows_per_second", 0), ("payload", "real"),
                                               ("start_time", "yesterday"), ("server_ports", 70000),
                                               ("ts_resolution", 3)])
def test_bad_options(tmp_path: Path, option: str, value: object) -> None:
    with pytest.raises(InputError):
        export_pcap(crafted(3), tmp_path / "x.pcap", **{option: value})
    with pytest.raises(InputError, match="unknown option"):
        ExportOptions.from_kwargs(colour="red")


def test_atomic_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure mid-export leaves neither a partial file nor a temporary one; an old file survives."""
    out = tmp_path / "a.pcap"
    out.write_bytes(b"old")
    real_emit = FlowPackets.emit
    calls = {"n": 0}

    def failing(self: FlowPackets, *args: object) -> bytes:
        calls["n"] += 1
        if calls["n"] > 50:
            raise RuntimeError("disk on fire")
        return real_emit(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(FlowPackets, "emit", failing)
    with pytest.raises(RuntimeError):
        export_pcap(crafted(), out)
    assert out.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pcap"]


def test_accepts_path_and_options_object(tmp_path: Path) -> None:
    table = crafted(10)
    table.write(tmp_path / "t.parquet")
    opts = ExportOptions(format="pcapng", seed=9)
    s1 = export_pcap(tmp_path / "t.parquet", tmp_path / "a.pcapng", opts)
    s2 = export_pcap(table, tmp_path / "b.pcapng", opts, seed=None)  # None keeps the option's value
    assert s1.packets == s2.packets
    assert (tmp_path / "a.pcapng").read_bytes() == (tmp_path / "b.pcapng").read_bytes()
    assert s1.to_dict()["first_time"] == "2026-01-01T00:00:00Z"


def test_rst_and_unknown_flags_pass_through(tmp_path: Path) -> None:
    table = crafted(3)
    table.tcp_flags[0, 3] = RST | ACK
    export_pcap(table, tmp_path / "r.pcap")
    back = reextract(tmp_path / "r.pcap")
    assert RST | ACK in back.tcp_flags[np.argsort(back.start_time)][0]
