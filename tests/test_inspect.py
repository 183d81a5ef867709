"""`inspect_path`: summaries of flow tables and captures, and their rich rendering."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from netsynth.errors import InputError
from netsynth.export import export_pcap
from netsynth.flows import FlowTable
from netsynth.inspect import inspect_path, render_inspection, stats


def small_table() -> FlowTable:
    n_packets = np.array([2, 3, 1, 4], np.int16)
    width = 4
    mask = np.arange(width)[None, :] < n_packets[:, None]
    payload = np.where(mask, np.array([[10, 20, 30, 40]] * 4), 0)
    iat = np.where(mask, np.array([[0, 0.5, 1.0, 2.0]] * 4), 0)
    table = FlowTable.build(label=["cam", "cam", "plug", "hub"], n_packets=n_packets, payload_len=payload,
                            direction=np.zeros((4, width)), iat=iat, protocol=np.array([6, 6, 17, 6]),
                            origin="synthetic:markov")
    table.metadata["netsynth.producer"] = json.dumps({"generator": "markov", "model_hash": "abc"})
    return table


def render(summary: dict) -> str:
    console = Console(record=True, width=140)
    render_inspection(summary, console)
    return console.export_text()


def test_flow_table_summary(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    small_table().write(path)
    s = inspect_path(path)
    assert s["kind"] == "flow table" and s["flows"] == 4 and s["max_packets"] == 4
    assert s["classes"] == {"cam": 2, "hub": 1, "plug": 1}
    assert s["protocols"] == {"TCP": 3, "UDP": 1} and s["ip_versions"] == {"IPv4": 4}
    assert s["n_packets"]["min"] == 1 and s["n_packets"]["max"] == 4 and s["n_packets"]["median"] == 2.5
    assert s["payload_len"]["min"] == 10 and s["payload_len"]["max"] == 40
    assert s["iat"]["min"] == 0.5 and s["iat"]["max"] == 2.0  # first IATs (always 0) left out
    assert s["producer"] == {"generator": "markov", "model_hash": "abc"}
    assert s["metadata"]["netsynth.schema_version"] == "1"
    assert ["payload_len", "fixed_size_list<element: int32>[4]"] in s["schema"]
    assert s["origins"] == {"synthetic:markov": 4} and s["time_span"] is None
    text = render(s)
    for word in ("flows per class", "cam", "payload bytes", "IAT", "schema", "producer.model_hash", "abc"):
        assert word in text
    json.dumps(s)  # JSON-ready for scripts


def test_capture_summary_of_export(tmp_path: Path) -> None:
    table = small_table()
    out = tmp_path / "x.pcapng"
    summary = export_pcap(table, out, format="pcapng")
    s = inspect_path(out)
    assert s["kind"] == "capture" and s["format"] == "pcapng"
    assert s["packets"] == summary.packets == 10 and s["bytes"] == summary.bytes
    assert s["link_types"] == {"Ethernet (1)": 10}
    assert s["flows"] == 4 and s["flow_protocols"] == {"TCP": 3, "UDP": 1}
    expected_end = max(summary.last_time - summary.first_time, 0)
    assert s["duration"] == pytest.approx(expected_end, abs=1e-6)
    text = render(s)
    assert "capture (pcapng)" in text and "Ethernet" in text
    json.dumps(s)


def test_real_capture(shared_data: Path) -> None:
    path = min((shared_data / "iot-sentinel" / "Aria").glob("*.pcap"))
    s = inspect_path(path)
    assert s["kind"] == "capture" and s["format"] == "pcap" and s["packets"] > 0 and s["flows"] > 0
    assert s["duration"] > 0 and s["time_span"][0].startswith("20")
    assert "Ethernet (1)" in s["link_types"]
    assert "packets" in render(s)


def test_table_folder(tmp_path: Path) -> None:
    folder = tmp_path / "parts"
    folder.mkdir()
    small_table().write(folder / "part-0.parquet")
    small_table().write(folder / "part-1.parquet")
    assert inspect_path(folder)["flows"] == 8


def test_bad_inputs_name_the_file(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a capture")
    with pytest.raises(InputError, match=r"notes\.txt"):
        inspect_path(text)
    with pytest.raises(InputError, match=r"nothing\.pcap"):
        inspect_path(tmp_path / "nothing.pcap")
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 then garbage")
    with pytest.raises(InputError, match=r"broken\.parquet"):
        inspect_path(broken)


def test_stats_empty_and_values() -> None:
    assert stats(np.array([])) is None
    s = stats(np.arange(101))
    assert (s["min"], s["median"], s["p95"], s["max"]) == (0, 50, 95, 100)
