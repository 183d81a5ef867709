"""Capture file writers: classic pcap (µs) and pcapng (SHB comment, IDB with if_tsresol, EPBs).

Written by hand with `struct` because both formats are a few fixed headers, and because we need what
dpkt's writers do not offer together: nanosecond pcapng timestamps from integer nanoseconds (no float
rounding), an SHB comment, and one buffered file handle that streams records to disk.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

LINKTYPE_ETHERNET = 1
SNAPLEN = 262144  # libpcap's maximum; frames are never truncated
BUFFER = 1 << 20

_PCAP_HEADER = struct.Struct("<IHHiIII")
_PCAP_RECORD = struct.Struct("<IIII")
_EPB_HEAD = struct.Struct("<IIIIIII")


def _pad4(data: bytes) -> bytes:
    return data + b"\x00" * (-len(data) % 4)


def _option(code: int, value: bytes) -> bytes:
    """One pcapng option: code, length, value padded to 32 bits."""
    return struct.pack("<HH", code, len(value)) + _pad4(value)


def _block(block_type: int, body: bytes) -> bytes:
    """A pcapng block: type, total length, body, total length again."""
    total = 12 + len(body)
    return struct.pack("<II", block_type, total) + body + struct.pack("<I", total)


class PcapWriter:
    """Classic libpcap file, little-endian, microsecond timestamps, LINKTYPE_ETHERNET."""

    def __init__(self, path: Path) -> None:
        self._fh: BinaryIO = open(path, "wb", buffering=BUFFER)  # noqa: SIM115 - closed by close()
        self._fh.write(_PCAP_HEADER.pack(0xA1B2C3D4, 2, 4, 0, 0, SNAPLEN, LINKTYPE_ETHERNET))

    def write(self, ts_ns: int, frame: bytes) -> None:
        """Append one frame; the timestamp is truncated to the microsecond."""
        us = ts_ns // 1000
        self._fh.write(_PCAP_RECORD.pack(us // 1_000_000, us % 1_000_000, len(frame), len(frame)))
        self._fh.write(frame)

    def close(self) -> None:
        """Flush and close the file."""
        self._fh.close()


class PcapngWriter:
    """pcapng with one Section Header Block (comment, application) and one Ethernet interface."""

    def __init__(self, path: Path, *, comment: str, application: str, ts_resolution: int = 9) -> None:
        self._fh: BinaryIO = open(path, "wb", buffering=BUFFER)  # noqa: SIM115 - closed by close()
        self._div = 1 if ts_resolution == 9 else 1000
        shb_opts = _option(1, comment.encode()) + _option(4, application.encode()) + _option(0, b"")
        shb = struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1) + shb_opts
        self._fh.write(_block(0x0A0D0D0A, shb))
        idb_opts = (_option(2, b"netsynth0") + _option(9, bytes([ts_resolution]))
                    + _option(0, b""))
        self._fh.write(_block(0x00000001, struct.pack("<HHI", LINKTYPE_ETHERNET, 0, SNAPLEN) + idb_opts))

    def write(self, ts_ns: int, frame: bytes) -> None:
        """Append one Enhanced Packet Block on interface 0."""
        ts = ts_ns // self._div
        pad = -len(frame) % 4
        total = 32 + len(frame) + pad
        self._fh.write(_EPB_HEAD.pack(6, total, 0, ts >> 32, ts & 0xFFFFFFFF, len(frame), len(frame)))
        self._fh.write(frame)
        self._fh.write(b"\x00" * pad + struct.pack("<I", total))

    def close(self) -> None:
        """Flush and close the file."""
        self._fh.close()
