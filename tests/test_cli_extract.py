"""CLI: the new extract options, import-flows and export-flows; user errors are one line, exit 2."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from captures import eth_frames, frame, icmp_packet, tcp_conversation, write_pcap
from netsynth.cli import app
from netsynth.flows import FlowTable

runner = CliRunner()


def _caps(tmp_path: Path) -> Path:
    d = tmp_path / "caps"
    d.mkdir()
    for i in range(3):
        frames = eth_frames(tcp_conversation(t0=10.0 * i))
        frames.append((10.0 * i + 5, frame(icmp_packet("10.0.0.1", "10.0.0.2", 8, i, 32))))
        write_pcap(d / f"c{i}.pcap", frames)
    return d


def test_extract_options_end_to_end(tmp_path: Path) -> None:
    caps = _caps(tmp_path)
    out = tmp_path / "f.parquet"
    args = ["extract", str(caps), "--label-from", "stem", "-o", str(out), "-q", "--no-ndpi-app", "--jobs", "2",
            "--protocols", "icmp", "--initiator", "syn", "--tcp-end", "--active-timeout", "60", "--exclude-empty",
            "--exclude-retransmissions"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    t = FlowTable.read(out)
    assert sorted(t.protocol.tolist()) == [1, 1, 1, 6, 6, 6]
    assert t.n_packets[t.protocol == 6].tolist() == [2, 2, 2]  # --exclude-empty: the two payload packets
    producer = t.producer()
    assert producer["tcp_end"] and producer["initiator"] == "syn" and producer["protocols"] == [1, 58]


def test_extract_bad_option_is_one_line(tmp_path: Path) -> None:
    caps = _caps(tmp_path)
    for extra in (["--initiator", "lowest"], ["--protocols", "bogus"], ["--active-timeout", "-1"]):
        r = runner.invoke(app, ["extract", str(caps), "--label-from", "stem", "-o", str(tmp_path / "x.parquet"),
                                "-q", "--no-ndpi-app", *extra])
        assert r.exit_code == 2, (extra, r.output)
        assert not (tmp_path / "x.parquet").exists()


def test_import_and_export_flows(tmp_path: Path) -> None:
    caps = _caps(tmp_path)
    flows = tmp_path / "f.parquet"
    assert runner.invoke(app, ["extract", str(caps), "--label-from", "stem", "-o", str(flows), "-q",
                               "--no-ndpi-app"]).exit_code == 0
    ppi = tmp_path / "ppi.parquet"
    r = runner.invoke(app, ["export-flows", str(flows), "-o", str(ppi), "--format", "ppi"])
    assert r.exit_code == 0, r.output
    back = tmp_path / "back.parquet"
    r = runner.invoke(app, ["import-flows", str(ppi), "-o", str(back)])
    assert r.exit_code == 0, r.output
    a, b = FlowTable.read(flows), FlowTable.read(back)
    assert b.payload_len[:, :20].tolist() == a.payload_len.tolist() and b.label.tolist() == a.label.tolist()
    r = runner.invoke(app, ["import-flows", str(tmp_path / "nope.json"), "-o", str(back)])
    assert r.exit_code == 2 and "no such file" in r.output
