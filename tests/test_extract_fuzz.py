"""Damaged input never escapes as anything but InputError (or a result with warnings)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from captures import (
    Pkt,
    eth_frames,
    frame,
    ipv6_with_ext,
    pcapng_epb,
    pcapng_idb,
    pcapng_shb,
    tcp_conversation,
    write_pcap,
)
from netsynth.errors import InputError
from netsynth.extract import extract


def _valid_captures() -> list[bytes]:
    with tempfile.TemporaryDirectory() as d:
        pcap = write_pcap(Path(d) / "a.pcap", eth_frames(tcp_conversation(), vlan=(3,))).read_bytes()
    six = ipv6_with_ext(Pkt(1.0, "[::1]:1", "[::2]:2", 5, "udp"))
    ng = pcapng_shb() + pcapng_idb(1, tsresol=9) + b"".join(
        pcapng_epb(0, int(p.ts * 1e9), frame(six)) for p in tcp_conversation())
    return [pcap, ng]


VALID = _valid_captures()


def _check(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "x.pcap"
        p.write_bytes(data)
        try:
            res = extract([p], label_from="stem")
        except InputError as exc:
            assert "x.pcap" in str(exc) and "\n" not in str(exc)
            return
        res.table.validate()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_random_bytes(data: bytes) -> None:
    _check(data)


@settings(max_examples=80, deadline=None)
@given(st.sampled_from(VALID), st.data())
def test_truncated_or_corrupted_valid_captures(base: bytes, data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, len(base)))
    buf = bytearray(base[:cut])
    for _ in range(data.draw(st.integers(0, 3))):
        if buf:
            buf[data.draw(st.integers(0, len(buf) - 1))] = data.draw(st.integers(0, 255))
    _check(bytes(buf))
