"""Capture files → packet records → decoded TCP/UDP packet summaries.

Two layers, both plain `struct` on `bytes`, because dpkt/scapy objects cost tens of microseconds per
packet and their readers either trust record lengths (a corrupt 2 GB length allocates 2 GB) or raise on
a truncated last record, losing the packets before it:

* `CaptureReader` streams records of one pcap or pcapng file (any byte order, µs/ns, pcapng interfaces
  with their own link type and time resolution), gzip/zstd transparently. Damage after the file header
  ends the stream with a one-line warning; damage in the header is an `InputError`.
* `decode()` turns one record into a tuple `(ip_version, protocol, src, sport, dst, dport, payload,
  flags, window)` or a skip reason (a `str`). Payload lengths come from IP/TCP/UDP length fields, never
  from the captured byte count, so snaplen truncation and Ethernet padding do not change them.
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from netsynth.errors import InputError

# ---------------------------------------------------------------------------------------------- files
PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

# libpcap's own ceiling for one record; anything above is corruption, not a packet (we never
# allocate more than this for one record, whatever the file claims).
MAX_RECORD = 256 * 1024
MAX_BLOCK = 16 * 1024 * 1024  # pcapng blocks may carry large option/name-resolution payloads


def _stream_errors() -> tuple[type[BaseException], ...]:
    """What a damaged (possibly compressed) stream raises while being read: never a crash for us."""
    errors: tuple[type[BaseException], ...] = (OSError, EOFError, zlib.error)
    try:
        import zstandard
    except ImportError:
        return errors
    return (*errors, zstandard.ZstdError)


STREAM_ERRORS = _stream_errors()


def _open_raw(path: Path) -> BinaryIO:
    """Open `path`, transparently decompressing gzip or zstd (sniffed, not guessed from the name)."""
    try:
        fh: BinaryIO = open(path, "rb")  # noqa: SIM115 - returned to the caller, who closes it
    except OSError as exc:
        raise InputError(f"{path}: cannot open ({exc.strerror or exc})") from None
    head = fh.read(4)
    fh.seek(0)
    if head[:2] == GZIP_MAGIC:
        return gzip.GzipFile(fileobj=fh, mode="rb")  # type: ignore[return-value]
    if head == ZSTD_MAGIC:
        try:
            import zstandard
        except ImportError:
            fh.close()
            raise InputError(f"{path}: zstd-compressed; install 'zstandard' to read it") from None
        return zstandard.ZstdDecompressor().stream_reader(fh, closefd=True)  # type: ignore[return-value]
    return io.BufferedReader(fh, buffer_size=1 << 20)  # type: ignore[arg-type]


def sniff(path: str | os.PathLike) -> bool:
    """True if `path` starts like a pcap or pcapng file (after decompression); never raises."""
    try:
        with _open_raw(Path(path)) as fh:
            head = fh.read(4)
    except (InputError, *STREAM_ERRORS):
        return False
    return head in PCAP_MAGICS or head == PCAPNG_MAGIC


class CaptureReader:
    """Stream the records of one capture file as `(linktype, ts, data, wirelen)` tuples.

    `warnings` collects one-line messages (without the file name) about damage after the header, and
    `unsupported` is filled by the caller. `packets` counts records yielded so far. Use as a context
    manager so the file is closed even if the consumer stops early.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.warnings: list[str] = []
        self.packets = 0
        self._fh = _open_raw(self.path)
        try:
            head = self._fh.read(4)
        except STREAM_ERRORS as exc:
            self._fh.close()
            raise InputError(f"{self.path}: unreadable ({exc})") from None
        if not head:
            self._fh.close()
            raise InputError(f"{self.path}: empty file, not a capture")
        if head in PCAP_MAGICS:
            self.format = "pcap"
            self._records = self._pcap(head)
        elif head == PCAPNG_MAGIC:
            self.format = "pcapng"
            self._records = self._pcapng(head)
        else:
            self._fh.close()
            raise InputError(f"{self.path}: not a pcap or pcapng capture (magic {head.hex()})")
        # Parse the file header now so that header damage is an InputError from the constructor: each
        # record generator yields one sentinel once its header is parsed.
        try:
            next(self._records, None)
        except STREAM_ERRORS as exc:
            self._fh.close()
            raise InputError(f"{self.path}: unreadable capture header ({exc})") from None

    def __enter__(self) -> CaptureReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the underlying file."""
        self._fh.close()

    def __iter__(self) -> Iterator[tuple[int, float, bytes, int]]:
        """The packet records; damage in a compressed stream ends them with a warning."""
        try:
            yield from self._records
        except STREAM_ERRORS as exc:
            self.warnings.append(f"compressed stream damaged after {self.packets} packets ({exc})")

    @property
    def raw_ok(self) -> bool:
        """Whether `raw_chunks` can read this file: uncompressed classic pcap (a damaged compressed
        stream would lose a whole block, where the per-record reader keeps every packet before it)."""
        return self.format == "pcap" and isinstance(self._fh, io.BufferedReader)

    def raw_chunks(self, block: int = 1 << 22) -> Iterator[tuple[bytearray, list[int]]]:
        """Uncompressed pcap only: `(buffer, record offsets)` per block of about `block` bytes.

        Same records, counts and warnings as iterating, without a Python object per record: the caller
        decodes headers and packets from the buffer with NumPy. Each buffer is one read plus the part
        of a record the previous block cut (so every byte is copied once). Do not mix with iteration.
        """
        bo, _unit, _lt, limit = self._pcap_params
        u32 = struct.Struct(bo + "I").unpack_from
        readinto = self._fh.readinto
        carry = b""
        while True:
            buf = bytearray(len(carry) + block)  # a fresh buffer per block: earlier pieces may still be in use
            buf[: len(carry)] = carry
            with memoryview(buf) as view:
                got = readinto(view[len(carry) :])  # straight into place: no concatenation copy
            more = got > 0
            end = len(carry) + got
            del buf[end:]
            offs: list[int] = []
            pos = _chain4(u32, buf, 0, end, limit, 1 << 40, offs)
            app = offs.append
            while True:  # one record at a time: exact checks, and whatever _chain4 left
                if pos + 16 > end:
                    break
                incl = u32(buf, pos + 8)[0]
                if incl > limit:
                    self.warnings.append(f"absurd record length {incl} after {self.packets + len(offs)} packets; "
                                         "rest of file ignored")
                    more = False
                    end = pos  # nothing after this is read
                    break
                nxt = pos + 16 + incl
                if nxt > end:
                    break
                app(pos)
                pos = _chain4(u32, buf, nxt, end, limit, 1 << 40, offs) if len(offs) % 64 == 0 else nxt
            if offs:
                self.packets += len(offs)
                yield buf, offs
            if not more:
                left = end - pos
                if 0 < left < 16:
                    self.warnings.append(f"truncated record header after {self.packets} packets")
                elif left >= 16:
                    self.warnings.append(f"truncated last record after {self.packets} packets")
                return
            carry = bytes(buf[pos:])

    # ------------------------------------------------------------------ pcap
    def _header_error(self, what: str) -> InputError:
        self._fh.close()
        return InputError(f"{self.path}: {what}")

    def _pcap(self, magic: bytes) -> Iterator[tuple[int, float, bytes, int]]:
        bo, unit = PCAP_MAGICS[magic]
        try:
            rest = self._fh.read(20)
        except STREAM_ERRORS as exc:
            raise self._header_error(f"unreadable pcap header ({exc})") from None
        if len(rest) < 20:
            raise self._header_error("cut inside the pcap file header (24 bytes)")
        _vmaj, _vmin, _zone, _sig, snaplen, network = struct.unpack(bo + "HHiIII", rest)
        linktype = network & 0xFFFF  # the upper bits may carry FCS-length information
        limit = max(MAX_RECORD, min(snaplen, MAX_BLOCK))
        self._pcap_params = (bo, unit, linktype, limit)
        read = self._fh.read
        rec = struct.Struct(bo + "IIII").unpack
        yield (-1, 0.0, b"", 0)  # header parsed: the sentinel `__init__` consumes
        while True:
            hdr = read(16)
            if len(hdr) < 16:
                if hdr:
                    self.warnings.append(f"truncated record header after {self.packets} packets")
                return
            sec, frac, incl, orig = rec(hdr)
            if incl > limit:
                self.warnings.append(
                    f"absurd record length {incl} after {self.packets} packets; rest of file ignored"
                )
                return
            data = read(incl)
            if len(data) < incl:
                self.warnings.append(f"truncated last record after {self.packets} packets")
                return
            self.packets += 1
            yield (linktype, sec + frac * unit, data, orig)

    # ------------------------------------------------------------------ pcapng
    def _pcapng(self, magic: bytes) -> Iterator[tuple[int, float, bytes, int]]:
        read = self._fh.read
        bo = "<"
        ifaces: list[tuple[int, float, float, int]] = []  # (linktype, seconds per tick, offset, snaplen)
        btype_raw = magic
        first = True
        bad_iface = False
        while True:
            if btype_raw is None:
                btype_raw = read(4)
                if not btype_raw:
                    return
            if btype_raw == PCAPNG_MAGIC:
                head = read(8)
                if len(head) < 8:
                    if first:
                        raise self._header_error("cut inside the pcapng section header")
                    self.warnings.append(f"truncated section header after {self.packets} packets")
                    return
                bom = head[4:]
                if bom == b"\x4d\x3c\x2b\x1a":
                    bo = "<"
                elif bom == b"\x1a\x2b\x3c\x4d":
                    bo = ">"
                elif first:
                    raise self._header_error("pcapng section header with a bad byte-order magic")
                else:
                    self.warnings.append(f"bad section header after {self.packets} packets")
                    return
                (blen,) = struct.unpack(bo + "I", head[:4])
                if blen < 28 or blen > MAX_BLOCK:
                    if first:
                        raise self._header_error(f"pcapng section header with bad length {blen}")
                    self.warnings.append(f"bad section header length {blen} after {self.packets} packets")
                    return
                body = read(blen - 12)
                if len(body) < blen - 12:
                    if first:
                        raise self._header_error("cut inside the pcapng section header")
                    self.warnings.append(f"truncated section header after {self.packets} packets")
                    return
                ifaces = []
                if first:
                    first = False
                    yield (-1, 0.0, b"", 0)
                btype_raw = None
                continue
            lenb = read(4)
            if len(lenb) < 4:
                self.warnings.append(f"truncated block header after {self.packets} packets")
                return
            btype = struct.unpack(bo + "I", btype_raw)[0]
            (blen,) = struct.unpack(bo + "I", lenb)
            btype_raw = None
            if blen < 12 or blen > MAX_BLOCK:
                self.warnings.append(f"absurd block length {blen} after {self.packets} packets; rest ignored")
                return
            body = read(blen - 8)
            if len(body) < blen - 8:
                self.warnings.append(f"truncated last block after {self.packets} packets")
                return
            body = body[:-4]  # trailing copy of the block length
            if btype == 1:  # interface description
                ifaces.append(_parse_idb(body, bo))
                continue
            if btype == 6 and len(body) >= 20:  # enhanced packet
                iface, hi, lo, cap, orig = struct.unpack_from(bo + "IIIII", body)
                data = body[20 : 20 + cap]
            elif btype == 3 and len(body) >= 4:  # simple packet: interface 0, no timestamp
                iface, hi, lo = 0, 0, 0
                (orig,) = struct.unpack_from(bo + "I", body)
                snap = ifaces[0][3] if ifaces else 0
                cap = min(orig, len(body) - 4, snap or orig)
                data = body[4 : 4 + cap]
            elif btype == 2 and len(body) >= 20:  # obsolete packet block
                iface, _drops, hi, lo, cap, orig = struct.unpack_from(bo + "HHIIII", body)
                data = body[20 : 20 + cap]
            else:
                continue
            if iface >= len(ifaces):
                if not bad_iface:
                    self.warnings.append(f"packet for undeclared interface {iface}; such packets skipped")
                    bad_iface = True
                continue
            linktype, tick, offset, _snap = ifaces[iface]
            self.packets += 1
            yield (linktype, ((hi << 32) | lo) * tick + offset, data, orig)


def _chain4(u32: Callable, buf: bytearray, pos: int, end: int, limit: int, want: int, offs: list[int]) -> int:
    """Follow the pcap record chain four records per iteration (the Python loop overhead per record is
    most of the cost); stops early, conservatively, at anything unusual — the caller's exact
    one-record loop then decides. Returns the position after the records appended to `offs`."""
    ext = offs.extend
    for _ in range(want // 4):
        try:
            i1 = u32(buf, pos + 8)[0]
            p1 = pos + 16 + i1
            i2 = u32(buf, p1 + 8)[0]
            p2 = p1 + 16 + i2
            i3 = u32(buf, p2 + 8)[0]
            p3 = p2 + 16 + i3
            i4 = u32(buf, p3 + 8)[0]
        except struct.error:  # ran past the buffer's end
            break
        p4 = p3 + 16 + i4
        if p4 > end or (i1 | i2 | i3 | i4) > limit:
            break
        ext((pos, p1, p2, p3))
        pos = p4
    return pos


def _parse_idb(body: bytes, bo: str) -> tuple[int, float, float, int]:
    """(linktype, seconds per timestamp tick, time offset, snaplen) from an interface block."""
    if len(body) < 8:
        return (-2, 1e-6, 0.0, 0)
    linktype, _res, snaplen = struct.unpack_from(bo + "HHI", body)
    tick, offset = 1e-6, 0.0
    pos = 8
    while pos + 4 <= len(body):
        code, olen = struct.unpack_from(bo + "HH", body, pos)
        pos += 4
        if code == 0:
            break
        value = body[pos : pos + olen]
        if code == 9 and olen >= 1:  # if_tsresol: 10^-v, or 2^-v if the high bit is set
            v = value[0]
            tick = 2.0 ** -(v & 0x7F) if v & 0x80 else 10.0**-v
        elif code == 14 and olen >= 8:  # if_tsoffset: seconds added to every timestamp
            offset = float(struct.unpack_from(bo + "q", value)[0])
        pos += (olen + 3) & ~3
    return (linktype, tick, offset, snaplen)


# -------------------------------------------------------------------------------------------- decoding
# Decoded packet: (ip_version, protocol, src, sport, dst, dport, payload_len, tcp_flags, tcp_window,
# tcp_seq, frag) where `frag` is None, or for the first fragment of a fragmented datagram the key
# (ip_version, src, dst, ip_protocol, ip_id) its later fragments carry. A later fragment decodes to the
# 3-tuple `("frag", key, length)`: the assembler attributes it to the datagram's flow (as if reassembled)
# instead of counting it as a new, port-less flow.
Decoded = tuple[int, int, bytes, int, bytes, int, int, int, int, int, tuple | None]
FragKey = tuple[int, bytes, bytes, int, int]

_U16 = struct.Struct("!H").unpack_from
_U32 = struct.Struct("!I").unpack_from
_TCP = struct.Struct("!HHIIBBH").unpack_from  # sport dport seq ack offset flags window
_UDP = struct.Struct("!HHH").unpack_from
_IP4 = struct.Struct("!BBHHHBB").unpack_from  # ver/ihl tos total id frag ttl proto
ETH_IP4, ETH_IP6 = 0x0800, 0x86DD
_VLAN = frozenset({0x8100, 0x88A8, 0x9100, 0x9200})
_MPLS = frozenset({0x8847, 0x8848})
_PPP_IP = {0x0021: ETH_IP4, 0x0057: ETH_IP6}
_IP6_EXT = frozenset({0, 43, 60})  # hop-by-hop, routing, destination options: (len+1)*8 bytes
_NULL_FAMILY = {2: ETH_IP4, 24: ETH_IP6, 28: ETH_IP6, 30: ETH_IP6, 10: ETH_IP6}
SUPPORTED_LINKTYPES = frozenset({0, 1, 9, 12, 14, 101, 104, 108, 113, 228, 229, 276})
# Names (tcpdump.org's LINKTYPE_ list) for the link types users meet that we do not decode, so the
# warning says what the capture is, not just a number.
LINKTYPE_NAMES = {
    6: "IEEE802_5", 8: "SLIP", 10: "FDDI", 50: "PPP_HDLC", 51: "PPP_ETHER", 105: "IEEE802_11", 107: "FRELAY",
    119: "IEEE802_11_PRISM", 127: "IEEE802_11_RADIOTAP", 143: "DOCSIS", 163: "IEEE802_11_AVS", 166: "PPP_PPPD",
    187: "BLUETOOTH_HCI_H4", 189: "USB_LINUX", 192: "PPI", 195: "IEEE802_15_4_WITHFCS", 197: "ERF",
    201: "BLUETOOTH_HCI_H4_WITH_PHDR", 220: "USB_LINUX_MMAPPED", 226: "IPNET", 227: "CAN_SOCKETCAN",
    230: "IEEE802_15_4_NOFCS", 239: "NFLOG", 240: "NETANALYZER", 249: "USBPCAP", 251: "BLUETOOTH_LE_LL",
    252: "WIRESHARK_UPPER_PDU", 253: "NETLINK", 254: "BLUETOOTH_LINUX_MONITOR", 256: "BLUETOOTH_LE_LL_WITH_PHDR",
    **{n: f"USER{n - 147}" for n in range(147, 163)},
}

# Protocols other than TCP/UDP that `protocols=` can keep as flows, by name (IANA numbers also work).
PROTOCOL_NAMES = {"icmp": 1, "igmp": 2, "gre": 47, "esp": 50, "ah": 51, "icmpv6": 58, "sctp": 132}
_SKIP_NAME = {v: k for k, v in PROTOCOL_NAMES.items()}
_ICMP_ECHO = {1: frozenset({0, 8}), 58: frozenset({128, 129})}
NO_PROTOCOLS: frozenset[int] = frozenset()


def parse_protocols(spec: str | Iterable[str | int] | None) -> frozenset[int]:
    """`"icmp,esp,132"` → IANA numbers to keep as flows; `icmp` means ICMP and ICMPv6 (users mean both)."""
    if spec is None:
        return NO_PROTOCOLS
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out: set[int] = set()
    for raw in items:
        item = str(raw).strip().lower()
        if not item:
            continue
        if item.isdigit() and 0 <= int(item) <= 255:
            out.add(int(item))
        elif item in PROTOCOL_NAMES:
            out.add(PROTOCOL_NAMES[item])
            if item == "icmp":
                out.add(58)
        else:
            names = ", ".join(PROTOCOL_NAMES)
            raise InputError(f"unknown protocol {raw!r} for protocols (use {names} or an IANA number)")
    if out & {6, 17}:
        raise InputError("protocols lists the extra protocols to keep; TCP and UDP are always kept")
    if out & {4, 41}:
        raise InputError("protocols 4 and 41 are IP-in-IP tunnels: their inner packets are already the flows")
    return frozenset(out)


def _ether(data: bytes, off: int) -> tuple[int, int]:
    """Skip an Ethernet header and its VLAN/QinQ/MPLS/PPPoE shims → (ethertype, offset of L3)."""
    if len(data) < off + 14:
        return (-1, off)
    etype = _U16(data, off + 12)[0]
    off += 14
    while etype in _VLAN and len(data) >= off + 4:
        etype = _U16(data, off + 2)[0]
        off += 4
    if etype in _MPLS:
        while len(data) >= off + 4:
            bottom = data[off + 2] & 1
            off += 4
            if bottom:
                break
        return (_by_version(data, off), off)
    if etype == 0x8864 and len(data) >= off + 8:  # PPPoE session: 6-byte header + PPP protocol
        return (_PPP_IP.get(_U16(data, off + 6)[0], -2), off + 8)
    return (etype, off)


def _by_version(data: bytes, off: int) -> int:
    """Ethertype from the IP version nibble, for link layers that carry bare IP."""
    if len(data) <= off:
        return -1
    v = data[off] >> 4
    return ETH_IP4 if v == 4 else ETH_IP6 if v == 6 else -2


def link_layer(linktype: int, data: bytes) -> tuple[int, int]:
    """(ethertype, L3 offset) for one frame; ethertype -1 = frame too short, -2 = not IP."""
    if linktype == 1:
        return _ether(data, 0)
    if linktype in (12, 14, 101):
        return (_by_version(data, 0), 0)
    if linktype == 228:
        return (ETH_IP4, 0)
    if linktype == 229:
        return (ETH_IP6, 0)
    if linktype == 113:  # Linux cooked v1: protocol at 14, header 16
        if len(data) < 16:
            return (-1, 0)
        return (_U16(data, 14)[0], 16)
    if linktype == 276:  # Linux cooked v2: protocol at 0, header 20
        if len(data) < 20:
            return (-1, 0)
        return (_U16(data, 0)[0], 20)
    if linktype in (0, 108):  # BSD loopback: 4-byte address family, host (0) or network (108) order
        if len(data) < 4:
            return (-1, 0)
        fam = _U32(data, 0)[0]
        if linktype == 0 and fam > 0xFFFF:
            fam = int.from_bytes(data[:4], "little")
        return (_NULL_FAMILY.get(fam, -2), 4)
    if linktype == 9:  # PPP: optional ff 03, then a 2-byte protocol
        off = 2 if data[:2] == b"\xff\x03" else 0
        if len(data) < off + 2:
            return (-1, 0)
        return (_PPP_IP.get(_U16(data, off)[0], -2), off + 2)
    if linktype == 104:  # Cisco HDLC: address, control, ethertype
        if len(data) < 4:
            return (-1, 0)
        return (_U16(data, 2)[0], 4)
    return (-3, 0)


def decode(linktype: int, data: bytes, wirelen: int, keep: frozenset[int] = NO_PROTOCOLS) -> Decoded | tuple | str:
    """Decode one frame into a packet summary (see `Decoded`), or return why it was skipped.

    `keep` names the IANA protocols besides TCP/UDP to turn into flows (`parse_protocols`).
    """
    if linktype == 1 and data[12:14] == b"\x08\x00":  # fast path: untagged Ethernet + IPv4
        return _ipv4(data, 14, wirelen, 0, keep)
    etype, off = _ether(data, 0) if linktype == 1 else link_layer(linktype, data)
    if etype == ETH_IP4:
        return _ipv4(data, off, wirelen, 0, keep)
    if etype == ETH_IP6:
        return _ipv6(data, off, wirelen, 0, keep)
    if etype == -1:
        return "truncated_link"
    if etype == -3:
        return "unsupported_linktype"
    return "non_ip"


def _ipv4(data: bytes, off: int, wirelen: int, depth: int, keep: frozenset[int]) -> Decoded | tuple | str:
    if len(data) < off + 20:
        return "truncated_ip"
    vihl, _tos, total, ipid, frag, _ttl, proto = _IP4(data, off)
    if vihl >> 4 != 4:
        return "bad_ip_version"
    ihl = (vihl & 15) * 4
    if ihl < 20:
        return "bad_ihl"
    if total == 0:  # TSO/GSO on the capturing host: the IP length is unset; the frame's true length is it
        total = wirelen - off
    if total < ihl:
        return "bad_ip_length"
    src = data[off + 12 : off + 16]
    dst = data[off + 16 : off + 20]
    fkey = None
    if frag & 0x3FFF:  # a fragment: offset != 0 is a later one, MF with offset 0 the first
        fkey = (4, src, dst, proto, ipid)
        if frag & 0x1FFF:
            return ("frag", fkey, total - ihl)
    if len(data) < off + ihl:
        return "truncated_ip"
    return _transport(data, off + ihl, total - ihl, proto, 4, src, dst, wirelen, depth, fkey, keep)


def _ipv6(data: bytes, off: int, wirelen: int, depth: int, keep: frozenset[int]) -> Decoded | tuple | str:
    if len(data) < off + 40:
        return "truncated_ip"
    if data[off] >> 4 != 6:
        return "bad_ip_version"
    plen = _U16(data, off + 4)[0]
    if plen == 0:  # jumbogram or offload: fall back to the frame's true length
        plen = wirelen - off - 40
    nxt = data[off + 6]
    src = data[off + 8 : off + 24]
    dst = data[off + 24 : off + 40]
    pos = off + 40
    end = pos + plen
    fkey = None
    while nxt in _IP6_EXT or nxt == 44 or nxt == 51:
        if len(data) < pos + 8:
            return "truncated_ip"
        if nxt == 44:  # fragment header: next header, reserved, offset|M, identification
            fo = _U16(data, pos + 2)[0]
            fkey = (6, src, dst, data[pos], _U32(data, pos + 4)[0])
            if fo & 0xFFF8:
                return ("frag", fkey, end - pos - 8) if end >= pos + 8 else "bad_ip_length"
            if not fo & 1:
                fkey = None  # an atomic fragment (offset 0, no more): a whole datagram
            size = 8
        elif nxt == 51:  # authentication header: (len + 2) * 4
            size = (data[pos + 1] + 2) * 4
        else:
            size = (data[pos + 1] + 1) * 8
        nxt = data[pos]
        pos += size
        if pos > end:
            return "bad_ip_length"
    return _transport(data, pos, end - pos, nxt, 6, src, dst, wirelen, depth, fkey, keep)


def _transport(
    data: bytes, off: int, length: int, proto: int, ver: int, src: bytes, dst: bytes,
    wirelen: int, depth: int, fkey: FragKey | None, keep: frozenset[int],
) -> Decoded | tuple | str:
    """Transport header at `off`; `length` is the L4 length the IP header declares.

    `fkey` is set for the first fragment of a datagram, whose UDP length may exceed this fragment.
    """
    if proto == 6:
        if len(data) < off + 16:  # flags and window are within the first 16 bytes
            return "truncated_l4"
        sport, dport, seq, _ack, doff, flags, window = _TCP(data, off)
        hl = (doff >> 4) * 4
        if hl < 20:
            return "bad_tcp_offset"
        if hl > length:
            return "bad_tcp_length"
        return (ver, 6, src, sport, dst, dport, length - hl, flags, window, seq, fkey)
    if proto == 17:
        if len(data) < off + 8:
            return "truncated_l4"
        sport, dport, ulen = _UDP(data, off)
        if ulen < 8 or (ulen > length and fkey is None):
            if ulen == 0 and length >= 8:  # UDP over IPv6 jumbograms; use the IP length
                ulen = length
            else:
                return "bad_udp_length"
        return (ver, 17, src, sport, dst, dport, ulen - 8, 0, 0, 0, fkey)
    if proto in (4, 41) and depth < 2 and fkey is None:  # IP-in-IP / 6in4: the inner packet is the flow
        if proto == 4:
            return _ipv4(data, off, wirelen, depth + 1, keep)
        return _ipv6(data, off, wirelen, depth + 1, keep)
    if proto in keep:
        return _other(data, off, length, proto, ver, src, dst, fkey)
    return _SKIP_NAME.get(proto, "other_transport")


def _other(
    data: bytes, off: int, length: int, proto: int, ver: int, src: bytes, dst: bytes, fkey: FragKey | None
) -> Decoded | str:
    """A kept non-TCP/UDP packet. The flow key's "ports" are ICMP echo identifiers (so each ping is
    its own flow), the ESP SPI (one flow per security association), or 0 (addresses + protocol); the
    table shows ports 0 for all of them. Payload = bytes after the ICMP (8), ESP (8) or SCTP (12)
    common header; the whole IP payload for the rest.
    """
    hdr = 8 if proto in (1, 58, 50) else 12 if proto == 132 else 0
    if length < hdr:
        return "bad_l4_length"
    if len(data) < off + hdr:
        return "truncated_l4"
    ident = 0
    if proto in _ICMP_ECHO and data[off] in _ICMP_ECHO[proto]:
        ident = _U16(data, off + 4)[0]
    elif proto == 50:
        ident = _U32(data, off)[0]
    return (ver, proto, src, ident, dst, ident, length - hdr, 0, 0, 0, fkey)
