"""flows.interop: crafted files of each foreign layout → exact flows; export/import round trips."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from captures import eth_frames, tcp_conversation, write_pcap
from netsynth.errors import InputError
from netsynth.extract import extract
from netsynth.flows import FlowTable
from netsynth.flows.interop import export_flows, import_flows


def _table(tmp_path: Path) -> FlowTable:
    p = write_pcap(tmp_path / "a.pcap", eth_frames(tcp_conversation() + tcp_conversation(t0=2000.0,
                                                                                          client="10.0.0.3:5")))
    return extract([p], label_from="stem").table


def test_csv_round_trip_is_exact(tmp_path: Path) -> None:
    t = _table(tmp_path)
    export_flows(t, tmp_path / "f.csv")
    back = import_flows(tmp_path / "f.csv")  # format guessed from the columns
    for col in ("payload_len", "direction", "iat", "tcp_flags", "tcp_window", "n_packets", "packets_total",
                "bytes_total", "src_port", "dst_port", "protocol", "ip_version", "start_time", "duration"):
        np.testing.assert_array_equal(getattr(back, col), getattr(t, col), err_msg=col)
    for col in ("label", "flow_id", "capture", "src_ip", "dst_ip", "origin"):
        assert getattr(back, col).tolist() == getattr(t, col).tolist(), col


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".npz"])
def test_ppi_round_trip(tmp_path: Path, suffix: str) -> None:
    t = _table(tmp_path)
    out = tmp_path / f"ppi{suffix}"
    export_flows(t, out, format="ppi")
    back = import_flows(out, format="ppi")
    assert back.max_packets == 30 and back.n_packets.tolist() == t.n_packets.tolist()
    k = t.max_packets
    np.testing.assert_array_equal(back.payload_len[:, :k], t.payload_len)
    np.testing.assert_array_equal(back.direction[:, :k], t.direction)
    np.testing.assert_array_equal(back.tcp_flags[:, :k], t.tcp_flags)
    np.testing.assert_allclose(back.iat[:, :k], np.round(t.iat * 1000) / 1000, atol=1e-6)  # whole ms
    assert back.label.tolist() == t.label.tolist() and back.src_ip.tolist() == t.src_ip.tolist()
    assert back.packets_total.tolist() == t.packets_total.tolist()


def test_cesnet_ppi_crafted(tmp_path: Path) -> None:
    # Two flows as cesnet-datazoo gives them: IPT ms, DIR ±1, SIZE, zero padding, push-flag row.
    ppi1 = [[0, 12, 30, 0], [1, -1, 1, 0], [517, 1460, 80, 0], [1, 0, 1, 0]]
    ppi2 = [[0, 5, 0, 0], [-1, 1, 0, 0], [100, 200, 0, 0]]
    path = tmp_path / "tls22.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["ID", "SRC_IP", "DST_IP", "SRC_PORT", "DST_PORT", "PROTOCOL", "PACKETS", "PACKETS_REV",
                    "DURATION", "PPI", "APP", "CATEGORY"])
        w.writerow([7, "10.1.1.1", "1.1.1.1", 50000, 443, 6, 10, 12, 1.5, json.dumps(ppi1), "google-www", "Search"])
        w.writerow([8, "10.1.1.2", "2.2.2.2", 50001, 443, 17, 2, 1, 0.01, json.dumps(ppi2), "youtube", "Video"])
    t = import_flows(path)
    assert t.n_packets.tolist() == [3, 2] and t.max_packets == 30
    assert t.payload_len[0, :3].tolist() == [517, 1460, 80] and t.direction[0, :3].tolist() == [0, 1, 0]
    np.testing.assert_allclose(t.iat[0, :3], [0, 0.012, 0.030])
    assert t.tcp_flags[0, :3].tolist() == [0x08, 0, 0x08]
    assert t.direction[1, :2].tolist() == [1, 0] and t.tcp_flags[1, :2].tolist() == [0, 0]
    assert t.label.tolist() == ["google-www", "youtube"] and t.packets_total.tolist() == [22, 3]
    assert t.flow_id.tolist() == ["7", "8"] and t.protocol.tolist() == [6, 17] and t.duration[0] == 1.5
    assert import_flows(path, label_column="CATEGORY").label.tolist() == ["Search", "Video"]
    np.savez(tmp_path / "x.npz", PPI=np.array([ppi1[:3], ppi2]), APP=np.array(["a", "b"]))
    assert import_flows(tmp_path / "x.npz").payload_len[1, :2].tolist() == [100, 200]


def test_mirage_json_crafted(tmp_path: Path) -> None:
    flow = {
        "packet_data": {"src_port": [40000, 443, 40000], "dst_port": [443, 40000, 443], "packet_dir": [0, 1, 0],
                        "L4_payload_bytes": [0, 1400, 35], "iat": [0, 0.25, 0.5], "TCP_win_size": [65535, 300, 301],
                        "TCP_flags": ["S", "SA", "PA"], "timestamp": [1556000000.5, 1556000000.75, 1556000001.25]},
        "flow_metadata": {"BF_label": "com.facebook.katana", "BF_labeling_type": "exact", "BF_num_packets": 9,
                          "BF_L4_payload_bytes": 4000, "BF_duration": 3.5},
        "flow_features": {"packet_length_biflow_min": 40.0},
    }
    other = {"packet_data": {"L4_payload_bytes": [10], "iat": [0], "packet_dir": [1]},
             "flow_metadata": {"BF_label": "com.other.app"}}
    d = tmp_path / "mirage" / "dev1"
    d.mkdir(parents=True)
    (d / "1556_com.facebook.katana_run1.json").write_text(json.dumps(
        {"10.0.0.1,40000,31.13.1.1,443,6": flow, "10.0.0.1,5353,224.0.0.251,5353,17": other}))
    t = import_flows(tmp_path / "mirage")
    assert t.label.tolist() == ["com.facebook.katana", "com.other.app"]
    assert t.payload_len[0, :3].tolist() == [0, 1400, 35] and t.direction[0, :3].tolist() == [0, 1, 0]
    np.testing.assert_allclose(t.iat[0, :3], [0, 0.25, 0.5])
    assert t.tcp_flags[0, :3].tolist() == [0x02, 0x12, 0x18] and t.tcp_window[0, :3].tolist() == [65535, 300, 301]
    assert (t.src_ip[0], t.src_port[0], t.dst_port[0], t.protocol[0]) == ("10.0.0.1", 40000, 443, 6)
    assert t.packets_total[0] == 9 and t.bytes_total[0] == 4000 and t.duration[0] == 3.5
    assert t.start_time[0] == pytest.approx(1556000000.5) and t.capture[0] == "dev1/1556_com.facebook.katana_run1.json"
    assert t.direction[1, 0] == 1 and t.extra["labeling_type"].tolist() == ["exact", None]
    assert import_flows(tmp_path / "mirage", mirage_label="android").label.tolist() == [
        "com.facebook.katana", "background"]
    acks_out = import_flows(tmp_path / "mirage", exclude_empty=True, min_packets=2)  # tcbench's filtering
    assert len(acks_out) == 1 and acks_out.payload_len[0, :2].tolist() == [1400, 35]
    np.testing.assert_allclose(acks_out.iat[0, :2], [0, 0.5])
    assert acks_out.tcp_flags[0, :2].tolist() == [0x12, 0x18] and acks_out.packets_total[0] == 9


def test_nfstream_csv_crafted_with_padding(tmp_path: Path) -> None:
    path = tmp_path / "nf.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "src_ip", "src_port", "dst_ip", "dst_port", "protocol", "ip_version",
                    "bidirectional_first_seen_ms", "bidirectional_duration_ms", "bidirectional_packets",
                    "splt_direction", "splt_ps", "splt_piat_ms", "application_name", "application_category_name"])
        w.writerow([0, "10.0.0.1", 40000, "10.0.0.2", 80, 6, 4, 1000000, 51, 6, "[0, 1, 0, -1]",
                    "[40, 1488, 160, -1]", "[0, 10, 40, -1]", "HTTP", "Web"])
        w.writerow([1, "10.0.0.1", 5353, "224.0.0.251", 5353, 17, 4, 1000100, 0, 1, "[0, -1, -1, -1]",
                    "[120, -1, -1, -1]", "[0, -1, -1, -1]", "MDNS", "Network"])
    t = import_flows(path, nfstream_size="ip")
    assert t.n_packets.tolist() == [3, 1] and t.label.tolist() == ["HTTP", "MDNS"]
    assert t.payload_len[0, :3].tolist() == [0, 1448, 120] and t.payload_len[1, 0] == 92
    np.testing.assert_allclose(t.iat[0, :3], [0, 0.010, 0.040])
    assert t.start_time[0] == 1000.0 and t.duration[0] == pytest.approx(0.051) and t.packets_total[0] == 6
    assert import_flows(path, label_column="application_category_name").label.tolist() == ["Web", "Network"]
    assert import_flows(path).payload_len[0, 1] == 1434  # nfstream's default: link-layer sizes
    assert import_flows(path, nfstream_size="payload").payload_len[0, 1] == 1488


def test_nfstream_real_output_matches_extract(tmp_path: Path) -> None:
    nfstream = pytest.importorskip("nfstream")
    t = _table(tmp_path)
    nfstream.NFStreamer(source=str(tmp_path / "a.pcap"), splt_analysis=20, n_meters=1).to_csv(str(tmp_path / "n.csv"))
    back = import_flows(tmp_path / "n.csv")
    order = np.argsort(back.start_time)
    k = back.max_packets
    np.testing.assert_array_equal(back.payload_len[order], t.payload_len[:, :k])
    np.testing.assert_array_equal(back.direction[order], t.direction[:, :k])


def test_errors_are_one_line_input_errors(tmp_path: Path) -> None:
    bad = tmp_path / "x.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="cannot tell"):
        import_flows(bad)
    with pytest.raises(InputError, match="no such file"):
        import_flows(tmp_path / "missing.json")
    with pytest.raises(InputError, match="unknown flow format"):
        import_flows(bad, format="pcap")
    (tmp_path / "m.json").write_text("[1, 2]")
    with pytest.raises(InputError, match="connection ids"):
        import_flows(tmp_path / "m.json")
    with pytest.raises(InputError, match="export format"):
        export_flows(_table(tmp_path), tmp_path / "o.x", format="json")
