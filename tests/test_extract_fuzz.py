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
    ip_packet,
    ipv4_fragments,
    ipv6_with_ext,
    pcapng_epb,
    pcapng_idb,
    pcapng_pb,
    pcapng_shb,
    pcapng_spb,
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
    return [pcap, ng, _pcapng_multi()]


def _pcapng_multi() -> bytes:
    """Two sections, interfaces of different link types and resolutions, every packet block kind, a
    custom block and fragments: the pcapng paths damage can hit."""
    conv = tcp_conversation(t0=3.0)
    blocks = [pcapng_shb(), pcapng_idb(1), pcapng_idb(101, tsresol=0x80 | 20)]
    blocks += [pcapng_epb(i % 2, int(p.ts * (1e6 if i % 2 == 0 else 2**20)),
                          frame(ip_packet(p)) if i % 2 == 0 else ip_packet(p)) for i, p in enumerate(conv)]
    blocks += [b"\xad\x0b\x00\x00\x10\x00\x00\x00skip\x10\x00\x00\x00"]
    frags = ipv4_fragments(Pkt(4.0, "1.1.1.1:1", "2.2.2.2:2", 2000, "udp"), [1480])
    blocks += [pcapng_shb(), pcapng_idb(1, snaplen=64), pcapng_spb(frame(frags[0])), pcapng_spb(frame(frags[1])),
               pcapng_pb(0, 5_000_000, frame(ip_packet(Pkt(5.0, "2.2.2.2:2", "1.1.1.1:1", 9, "udp"))))]
    return b"".join(blocks)


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


def _extract_both(data: bytes) -> None:
    """The vectorised and the scalar path agree on damaged input too (same table, same warnings)."""
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "x.pcap"
        p.write_bytes(data)
        try:
            fast = extract([p], label_from="stem")
        except InputError as exc:
            try:
                extract([p], label_from="stem", fast=False)
            except InputError as exc2:
                assert str(exc) == str(exc2)
                return
            raise AssertionError("only the fast path failed") from exc
        slow = extract([p], label_from="stem", fast=False)
        assert fast.table.to_arrow().equals(slow.table.to_arrow())
        assert fast.warnings == slow.warnings and fast.summary.packets_skipped == slow.summary.packets_skipped


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(VALID), st.data())
def test_fast_and_scalar_paths_agree_on_damage(base: bytes, data: st.DataObject) -> None:
    cut = data.draw(st.integers(len(base) // 2, len(base)))
    buf = bytearray(base[:cut])
    for _ in range(data.draw(st.integers(0, 4))):
        buf[data.draw(st.integers(0, len(buf) - 1))] = data.draw(st.integers(0, 255))
    _extract_both(bytes(buf))


def test_fuzz_crash_zstd_frame_too_large() -> None:
    # Found by benchmarks/fuzz_reader.py: zstd magic + a frame header asking for too much window memory
    # escaped as zstandard.ZstdError; now a one-line InputError (or the packets before the damage).
    data = (Path(__file__).parent / "fixtures" / "fuzz-zstd-huge-frame.bin").read_bytes()
    _check(data)
    _extract_both(data)
