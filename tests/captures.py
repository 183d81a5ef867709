"""Crafted captures for tests, built at test time with `struct` (no capture files in the repository).

`Pkt` describes one packet by what the flow table should show (payload size, flags, window, time);
`frame()` wraps it in a chosen link layer, and `write_pcap` / `write_pcapng` write files with chosen byte
order, time resolution, snaplen truncation and Ethernet padding, so tests can assert exact values.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

SYN, ACK, PSH, FIN = 0x02, 0x10, 0x08, 0x01

LINK_ETHERNET, LINK_RAW, LINK_SLL, LINK_SLL2, LINK_NULL, LINK_IPV4, LINK_IPV6 = 1, 101, 113, 276, 0, 228, 229


@dataclass
class Pkt:
    """One TCP/UDP packet; `src`/`dst` are "ip:port" (IPv6 as "[ip]:port")."""

    ts: float
    src: str
    dst: str
    payload: int = 0
    proto: str = "tcp"
    flags: int = ACK
    window: int = 1000
    tcp_options: int = 0  # bytes of TCP options (multiple of 4)
    ip_options: int = 0  # bytes of IPv4 options (multiple of 4)
    seq: int = 1  # TCP sequence number


def _split(endpoint: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    host, port = endpoint.rsplit(":", 1)
    return ipaddress.ip_address(host.strip("[]")), int(port)


def ip_packet(p: Pkt) -> bytes:
    """IP + TCP/UDP header + zero payload of `p.payload` bytes."""
    sip, sport = _split(p.src)
    dip, dport = _split(p.dst)
    body = b"\x00" * p.payload
    if p.proto == "tcp":
        doff = (20 + p.tcp_options) // 4
        l4 = struct.pack("!HHIIBBHHH", sport, dport, p.seq, 1, doff << 4, p.flags, p.window, 0, 0)
        l4 += b"\x01" * p.tcp_options + body
        proto = 6
    else:
        l4 = struct.pack("!HHHH", sport, dport, 8 + p.payload, 0) + body
        proto = 17
    if sip.version == 4:
        ihl = 5 + p.ip_options // 4
        hdr = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, ihl * 4 + len(l4), 0, 0, 64, proto, 0,
                          sip.packed, dip.packed)
        return hdr + b"\x01" * p.ip_options + l4
    return struct.pack("!IHBB16s16s", 6 << 28, len(l4), proto, 64, sip.packed, dip.packed) + l4


def ipv6_with_ext(p: Pkt) -> bytes:
    """IPv6 with a hop-by-hop and a destination-options header before the transport header."""
    plain = ip_packet(p)
    proto = plain[6]
    l4 = plain[40:]
    hop = bytes([60, 0]) + b"\x01\x04\x00\x00\x00\x00"  # next = dest opts, 8 bytes
    dst = bytes([proto, 0]) + b"\x01\x04\x00\x00\x00\x00"
    payload = hop + dst + l4
    return struct.pack("!IHBB", 6 << 28, len(payload), 0, 64) + plain[8:40] + payload


def frame(ip: bytes, link: int = LINK_ETHERNET, *, vlan: Sequence[int] = (), pad_to: int = 0) -> bytes:
    """Wrap an IP packet in a link layer; `vlan` adds 802.1Q tags, `pad_to` pads the frame with junk."""
    etype = 0x0800 if ip[0] >> 4 == 4 else 0x86DD
    if link == LINK_ETHERNET:
        out = b"\x02" * 6 + b"\x04" * 6
        for i, tag in enumerate(vlan):
            out += struct.pack("!HH", 0x88A8 if i == 0 and len(vlan) > 1 else 0x8100, tag)
        out += struct.pack("!H", etype) + ip
        return out + b"\xee" * max(0, pad_to - len(out))
    if link in (LINK_RAW, LINK_IPV4, LINK_IPV6):
        return ip
    if link == LINK_SLL:
        return struct.pack("!HHH8sH", 0, 1, 6, b"\x02" * 8, etype) + ip
    if link == LINK_SLL2:
        return struct.pack("!HHIHBB8s", etype, 0, 2, 1, 0, 6, b"\x02" * 8) + ip
    if link == LINK_NULL:
        return struct.pack("<I", 2 if etype == 0x0800 else 30) + ip
    raise ValueError(link)


def write_pcap(
    path: Path, frames: Sequence[tuple[float, bytes]], *, link: int = LINK_ETHERNET, big_endian: bool = False,
    nanos: bool = False, snaplen: int = 65535,
) -> Path:
    """Classic pcap; records longer than `snaplen` are truncated with their true length kept."""
    bo = ">" if big_endian else "<"
    magic = 0xA1B23C4D if nanos else 0xA1B2C3D4
    out = bytearray(struct.pack(bo + "IHHiIII", magic, 2, 4, 0, 0, snaplen, link))
    unit = 10**9 if nanos else 10**6
    for ts, data in frames:
        sec = int(ts)
        frac = round((ts - sec) * unit)
        cap = data[:snaplen]
        out += struct.pack(bo + "IIII", sec, frac, len(cap), len(data)) + cap
    path.write_bytes(bytes(out))
    return path


def _block(btype: int, body: bytes) -> bytes:
    body += b"\x00" * (-len(body) % 4)
    n = len(body) + 12
    return struct.pack("<II", btype, n) + body + struct.pack("<I", n)


def pcapng_shb() -> bytes:
    return _block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))


def pcapng_idb(link: int, *, tsresol: int | None = None, snaplen: int = 0) -> bytes:
    opts = b""
    if tsresol is not None:
        opts = struct.pack("<HHB3x", 9, 1, tsresol) + struct.pack("<HH", 0, 0)
    return _block(1, struct.pack("<HHI", link, 0, snaplen) + opts)


def pcapng_epb(iface: int, ticks: int, data: bytes, orig: int | None = None) -> bytes:
    orig = len(data) if orig is None else orig
    return _block(6, struct.pack("<IIIII", iface, ticks >> 32, ticks & 0xFFFFFFFF, len(data), orig) + data)


def pcapng_spb(data: bytes) -> bytes:
    return _block(3, struct.pack("<I", len(data)) + data)


def pcapng_pb(iface: int, ticks: int, data: bytes) -> bytes:
    return _block(2, struct.pack("<HHIIII", iface, 0, ticks >> 32, ticks & 0xFFFFFFFF, len(data), len(data)) + data)


def write_pcapng(path: Path, blocks: Sequence[bytes]) -> Path:
    """A pcapng file: pass `pcapng_shb()`, interface blocks and packet blocks in order."""
    path.write_bytes(b"".join(blocks))
    return path


def eth_frames(pkts: Sequence[Pkt], **kw: object) -> list[tuple[float, bytes]]:
    """(ts, Ethernet frame) for each packet."""
    return [(p.ts, frame(ip_packet(p), **kw)) for p in pkts]  # type: ignore[arg-type]


def tcp_conversation(t0: float = 1000.0, client: str = "10.0.0.1:40000", server: str = "10.0.0.2:80") -> list[Pkt]:
    """A 6-packet TCP exchange with known sizes, flags, windows and gaps."""
    return [
        Pkt(t0, client, server, 0, flags=SYN, window=64240),
        Pkt(t0 + 0.010, server, client, 0, flags=SYN | ACK, window=65160),
        Pkt(t0 + 0.011, client, server, 0, flags=ACK, window=502),
        Pkt(t0 + 0.020, client, server, 120, flags=PSH | ACK, window=502),
        Pkt(t0 + 0.050, server, client, 1448, flags=ACK, window=509),
        Pkt(t0 + 0.051, client, server, 0, flags=FIN | ACK, window=502),
    ]


def ipv4_fragments(p: Pkt, sizes: Sequence[int], ipid: int = 7) -> list[bytes]:
    """Split `p`'s IPv4 payload (transport header + payload) into fragments of `sizes` bytes (multiples
    of 8 except the last, which takes the rest)."""
    whole = ip_packet(p)
    ihl = (whole[0] & 15) * 4
    hdr, body = whole[:ihl], whole[ihl:]
    out, off = [], 0
    for i, size in enumerate([*sizes, len(body) - sum(sizes)]):
        part = body[off : off + size]
        more = 0x2000 if i < len(sizes) else 0
        h = bytearray(hdr)
        h[2:4] = struct.pack("!H", ihl + len(part))
        h[4:6] = struct.pack("!H", ipid)
        h[6:8] = struct.pack("!H", more | (off // 8))
        out.append(bytes(h) + part)
        off += size
    return out


def ipv6_fragments(p: Pkt, sizes: Sequence[int], ident: int = 9) -> list[bytes]:
    """IPv6 fragments of `p` (fragment header after the fixed header), as `ipv4_fragments`."""
    whole = ip_packet(p)
    proto, body = whole[6], whole[40:]
    out, off = [], 0
    for i, size in enumerate([*sizes, len(body) - sum(sizes)]):
        part = body[off : off + size]
        more = 1 if i < len(sizes) else 0
        fh = struct.pack("!BBHI", proto, 0, off | more, ident)
        out.append(struct.pack("!IHBB", 6 << 28, 8 + len(part), 44, 64) + whole[8:40] + fh + part)
        off += size
    return out


def icmp_packet(src: str, dst: str, icmp_type: int, ident: int, payload: int) -> bytes:
    """IPv4 ICMP message (echo request 8 / reply 0 carry `ident`) with `payload` bytes after the header."""
    sip, dip = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    body = struct.pack("!BBHHH", icmp_type, 0, 0, ident, 1) + b"\x00" * payload
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 0, 0, 64, 1, 0, sip.packed, dip.packed) + body


def esp_packet(src: str, dst: str, spi: int, payload: int) -> bytes:
    """IPv4 ESP packet: SPI, sequence number, then `payload` opaque bytes."""
    sip, dip = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    body = struct.pack("!II", spi, 1) + b"\x00" * payload
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 0, 0, 64, 50, 0, sip.packed, dip.packed) + body
