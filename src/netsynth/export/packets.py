"""One flow's packets as Ethernet frames: headers, checksums and TCP sequence state.

Frames are built with `struct`, not dpkt objects: an export writes millions of packets, and dpkt's
per-object packing costs several times more per packet than three `struct.pack` calls, while adding
nothing we need (no options, no fragmentation). Correctness is checked independently: the tests parse
every frame with dpkt and a textbook checksum loop, and tshark verifies all checksums.

The checksum uses an identity instead of a Python loop over 16-bit words: the one's-complement sum of
big-endian words equals the data read as one big integer modulo 0xFFFF (because 2**16 ≡ 1 mod 0xFFFF),
so CPython's C big-integer code does the summing.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from netsynth.export.endpoints import CLIENT_TTL, first_ip_id, mac_for, server_ttl
from netsynth.flows.schema import ACK, FIN, RST, SYN

DEFAULT_WINDOW = 64240  # Linux's and Windows' usual initial receive window (44 MSS of 1460)
ETHERTYPE = {4: b"\x08\x00", 6: b"\x86\xdd"}
IP_HEADER = {4: 20, 6: 40}
L4_HEADER = {6: 20, 17: 8}
MAX_IP_LEN = 65535
CLOSE_GAP_NS = 1_000_000  # added FIN/ACK packets follow the last packet, 1 ms apart

_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_TCP = struct.Struct("!HHIIBBHHH")
_UDP = struct.Struct("!HHHH")


def ones_sum(data: bytes) -> int:
    """One's-complement sum of `data` as 16-bit big-endian words, reduced modulo 0xFFFF."""
    if len(data) & 1:
        data += b"\x00"
    return int.from_bytes(data, "big") % 0xFFFF


def finish(total: int) -> int:
    """The checksum field for a sum of parts; a zero residue is the non-zero sum 0xFFFF (data here is
    never all zero: pseudo-headers and IP headers always hold non-zero words)."""
    total %= 0xFFFF
    return (~(total or 0xFFFF)) & 0xFFFF


def ipv4_header(src: bytes, dst: bytes, proto: int, l4_len: int, ip_id: int, ttl: int) -> bytes:
    """A 20-byte IPv4 header with Don't Fragment set (as Linux sends) and a valid header checksum."""
    hdr = _IPV4.pack(0x45, 0, 20 + l4_len, ip_id, 0x4000, ttl, proto, 0, src, dst)
    return hdr[:10] + finish(ones_sum(hdr)).to_bytes(2, "big") + hdr[12:]


def ipv6_header(src: bytes, dst: bytes, proto: int, l4_len: int, flow_label: int, hop_limit: int) -> bytes:
    """A 40-byte IPv6 header (traffic class 0, a per-flow flow label, no extension headers)."""
    return struct.pack("!IHBB", (6 << 28) | (flow_label & 0xFFFFF), l4_len, proto, hop_limit) + src + dst


def pseudo_sum(src: bytes, dst: bytes, proto: int, l4_len: int) -> int:
    """Sum of the IPv4 or IPv6 pseudo-header that TCP and UDP checksums cover."""
    if len(src) == 4:
        return ones_sum(src + dst + struct.pack("!BBH", 0, proto, l4_len))
    return ones_sum(src + dst + struct.pack("!IxxxB", l4_len, proto))


def tcp_segment(sport: int, dport: int, seq: int, ack: int, flags: int, window: int, payload: bytes,
                psum: int, zero_payload: bool) -> bytes:
    """A TCP header without options plus payload; `psum` is the pseudo-header sum."""
    hdr = _TCP.pack(sport, dport, seq, ack, 0x50, flags, window, 0, 0)
    total = psum + ones_sum(hdr) + (0 if zero_payload else ones_sum(payload))
    return hdr[:16] + finish(total).to_bytes(2, "big") + hdr[18:] + payload


def udp_datagram(sport: int, dport: int, payload: bytes, psum: int, zero_payload: bool) -> bytes:
    """A UDP header plus payload; a computed checksum of 0 goes on the wire as 0xFFFF (RFC 768)."""
    length = 8 + len(payload)
    hdr = _UDP.pack(sport, dport, length, 0)
    csum = finish(psum + ones_sum(hdr) + (0 if zero_payload else ones_sum(payload))) or 0xFFFF
    return hdr[:6] + csum.to_bytes(2, "big") + payload


@dataclass
class Endpoint:
    """One side of a flow: address, port, MAC and TTL."""

    ip: bytes
    port: int
    ttl: int
    mac: bytes = b""

    def __post_init__(self) -> None:
        self.mac = self.mac or mac_for(self.ip)


def _link_local_multicast(ip: bytes) -> bool:
    """224.0.0.0/24 or ff02::/16: the Local Network Control Block, sent with TTL 255 (mDNS, LLMNR)."""
    return ip[:3] == b"\xe0\x00\x00" if len(ip) == 4 else ip[:2] == b"\xff\x02"


def make_endpoints(client_ip: bytes, client_port: int, server_ip: bytes, server_port: int) -> tuple[Endpoint, Endpoint]:
    """Initiator (direction 0) and responder (direction 1) endpoints with host-like TTLs."""
    client_ttl = 255 if _link_local_multicast(server_ip) else CLIENT_TTL
    return (Endpoint(client_ip, client_port, client_ttl), Endpoint(server_ip, server_port, server_ttl(server_ip)))


def close_packets(dirs: list[int], flags: list[int]) -> list[tuple[int, int]]:
    """(direction, flags) of the packets that close a TCP connection the table leaves open.

    Nothing after a RST, or when the handshake never got an answer (a lone SYN is not a connection).
    Otherwise each side that has not sent a FIN sends FIN/ACK (initiator first), and the last FIN
    gets a final ACK from the other side.
    """
    if any(f & RST for f in flags):
        return []
    if flags and flags[0] & SYN and not flags[0] & ACK and 1 not in dirs:
        return []
    fin_sent = [False, False]
    for d, f in zip(dirs, flags, strict=True):
        if f & FIN:
            fin_sent[d] = True
    out: list[tuple[int, int]] = []
    order = (0, 1) if fin_sent[0] or not fin_sent[1] else (1, 0)
    for d in order:
        if not fin_sent[d]:
            out.append((d, FIN | ACK))
    last_fin_dir = out[-1][0] if out else (dirs[-1] if flags[-1] & FIN else None)
    if last_fin_dir is not None:
        out.append((1 - last_fin_dir, ACK))
    return out


@dataclass
class FlowPackets:
    """The remaining packets of one flow; `emit()` builds the next frame and advances TCP state.

    Frames are built when they are written, not when the flow is admitted, so that each host's IPv4 ID
    increases in the order its packets appear in the file, as it would on the wire.
    """

    version: int
    proto: int
    ends: tuple[Endpoint, Endpoint]
    times: list[int]  # absolute timestamps, ns
    dirs: list[int]
    lens: list[int]
    flags: list[int]
    windows: list[int]
    seq: list[int]  # next sequence number per direction, starting at the ISNs
    flow_label: int = 0
    idx: int = 0

    @property
    def next_time(self) -> int | None:
        """Timestamp of the next packet, or None when the flow is done."""
        return self.times[self.idx] if self.idx < len(self.times) else None

    def emit(self, ip_ids: dict[bytes, int], payload_of: Callable[[int], bytes], zero: bool) -> bytes:
        """The next frame; `payload_of(n)` gives n payload bytes, `zero` says they are all zero."""
        k = self.idx
        self.idx += 1
        d = self.dirs[k]
        src, dst = self.ends[d], self.ends[1 - d]
        plen = self.lens[k]
        payload = payload_of(plen)
        l4_len = L4_HEADER[self.proto] + plen
        psum = pseudo_sum(src.ip, dst.ip, self.proto, l4_len)
        if self.proto == 6:
            f = self.flags[k]
            seq = self.seq[d]
            ack = self.seq[1 - d] if f & ACK else 0
            self.seq[d] = (seq + plen + (1 if f & SYN else 0) + (1 if f & FIN else 0)) & 0xFFFFFFFF
            l4 = tcp_segment(src.port, dst.port, seq, ack, f, self.windows[k] or DEFAULT_WINDOW, payload, psum, zero)
        else:
            l4 = udp_datagram(src.port, dst.port, payload, psum, zero)
        if self.version == 4:
            ip_id = ip_ids.get(src.ip)
            ip_id = first_ip_id(src.ip) if ip_id is None else ip_id
            ip_ids[src.ip] = (ip_id + 1) & 0xFFFF
            ip = ipv4_header(src.ip, dst.ip, self.proto, l4_len, ip_id, src.ttl)
        else:
            ip = ipv6_header(src.ip, dst.ip, self.proto, l4_len, self.flow_label, src.ttl)
        return dst.mac + src.mac + ETHERTYPE[self.version] + ip + l4


_ZERO_CACHE: dict[int, bytes] = {}


def zeros(n: int) -> bytes:
    """n zero bytes (cached: payload sizes repeat a lot)."""
    out = _ZERO_CACHE.get(n)
    if out is None:
        out = bytes(n)
        if len(_ZERO_CACHE) < 4096:
            _ZERO_CACHE[n] = out
    return out



def max_payload(version: int, proto: int) -> int:
    """The largest payload the 16-bit IP length field can describe for this IP version and transport."""
    ip_part = IP_HEADER[4] if version == 4 else 0  # IPv6's payload length excludes its own header
    return MAX_IP_LEN - ip_part - L4_HEADER[proto]
