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
_IPV6 = struct.Struct("!IHBB16s16s")
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


@dataclass(slots=True)
class FlowPackets:
    """The remaining packets of one flow; `emit()` builds the next frame and advances TCP state.

    Frames are built when they are written, not when the flow is admitted, so that each host's IPv4 ID
    increases in the order its packets appear in the file, as it would on the wire. Everything constant
    within a flow (Ethernet header, the checksum sums of addresses, ports, protocol and TTL) is summed
    once per direction in `__post_init__`; per packet only lengths, IDs, seq/ack, flags, window and
    payload are added, and each header is packed once with its final checksum.
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
    eth: tuple[bytes, bytes] = (b"", b"")
    l4_base: tuple[int, int] = (0, 0)
    ip_base: tuple[int, int] = (0, 0)
    ip6_word: int = 0

    def __post_init__(self) -> None:
        a, b = self.ends
        addr_sum = ones_sum(a.ip + b.ip)  # both directions: the pseudo-header holds both addresses
        self.eth = tuple(dst.mac + src.mac + ETHERTYPE[self.version] for src, dst in ((a, b), (b, a)))
        self.l4_base = tuple(addr_sum + self.proto + src.port + dst.port for src, dst in ((a, b), (b, a)))
        # IPv4 constant words: version/IHL 0x4500, DF 0x4000, TTL/protocol, addresses
        self.ip_base = tuple(0x4500 + 0x4000 + (src.ttl << 8 | self.proto) + addr_sum for src in (a, b))
        self.ip6_word = (6 << 28) | (self.flow_label & 0xFFFFF)

    @property
    def next_time(self) -> int | None:
        """Timestamp of the next packet, or None when the flow is done."""
        return self.times[self.idx] if self.idx < len(self.times) else None

    def emit(self, ip_ids: dict[bytes, int], payload_of: Callable[[int], bytes], zero: bool) -> bytes:
        """The next frame; `payload_of(n)` gives n payload bytes, `zero` says they are all zero."""
        k = self.idx
        self.idx = k + 1
        d = self.dirs[k]
        src, dst = self.ends[d], self.ends[1 - d]
        plen = self.lens[k]
        payload = payload_of(plen)
        total = self.l4_base[d] + (0 if zero else ones_sum(payload))
        if self.proto == 6:
            l4_len = 20 + plen
            f = self.flags[k]
            seq = self.seq[d]
            ack = self.seq[1 - d] if f & ACK else 0
            self.seq[d] = (seq + plen + (1 if f & SYN else 0) + (1 if f & FIN else 0)) & 0xFFFFFFFF
            win = self.windows[k] or DEFAULT_WINDOW
            total += l4_len + (seq >> 16) + (seq & 0xFFFF) + (ack >> 16) + (ack & 0xFFFF) + (0x5000 | f) + win
            l4 = _TCP.pack(src.port, dst.port, seq, ack, 0x50, f, win, finish(total), 0)
        else:
            l4_len = 8 + plen
            # a computed UDP checksum of 0 goes on the wire as 0xFFFF (RFC 768)
            l4 = _UDP.pack(src.port, dst.port, l4_len, finish(total + 2 * l4_len) or 0xFFFF)
        if self.version == 4:
            ip_id = ip_ids.get(src.ip)
            if ip_id is None:
                ip_id = first_ip_id(src.ip)
            ip_ids[src.ip] = (ip_id + 1) & 0xFFFF
            length = 20 + l4_len
            csum = finish(self.ip_base[d] + length + ip_id)
            ip = _IPV4.pack(0x45, 0, length, ip_id, 0x4000, src.ttl, self.proto, csum, src.ip, dst.ip)
        else:
            ip = _IPV6.pack(self.ip6_word, l4_len, self.proto, src.ttl, src.ip, dst.ip)
        return b"".join((self.eth[d], ip, l4, payload))


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
