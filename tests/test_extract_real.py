"""extract() on the real benchmark captures: counts must match TASKS.md (±2 %)."""

from __future__ import annotations

from pathlib import Path

import pytest

from netsynth.extract import extract

IOT_EXPECTED = {
    "HueSwitch": 3306, "HueBridge": 1881, "D-LinkHomeHub": 421, "WeMoLink": 376, "D-LinkSwitch": 283,
    "D-LinkWaterSensor": 272, "D-LinkSiren": 267, "D-LinkSensor": 267, "WeMoInsightSwitch": 249,
    "WeMoSwitch": 184, "D-LinkCam": 182, "EdimaxPlug1101W": 153, "EdimaxPlug2101W": 137,
    "D-LinkDoorSensor": 111, "EdnetGateway": 86, "D-LinkDayCam": 60,
}
# Measured 2,081 (+0.4 %) since IP fragments join their datagram (2,089 before).
# Per class all within 2 % except VPN 181 vs 173 and SocialNetwork 93 vs 89.
# Three of the extra flows come from decapsulating 6in4 (IP protocol 41) in 6in4tunnel.pcap, which the
# labels (nDPI's verdicts on the inner flows) do name; the rest sit in captures with long-lived UDP
# tunnels (ipsec_isakmp_esp, softether) whose 5-tuples the 120 s idle timeout splits into several
# flows. Every kept flow has >= 5 packets in nDPI's own .out too, so the difference is in how the
# reference reader split/merged same-tuple flows, which we cannot see; we follow TASKS.md's rule.
NDPI_EXPECTED_TOTAL = 2073


def test_iot_type16_class_counts(shared_data: Path) -> None:
    root = shared_data / "iot-sentinel"
    res = extract([root], packets=20, min_packets=5, labels=root / "labels.csv")
    counts = res.summary.flows_per_class
    assert set(counts) == set(IOT_EXPECTED)
    for label, want in IOT_EXPECTED.items():
        assert abs(counts[label] - want) <= 0.02 * want, (label, counts[label], want)
    assert abs(len(res.table) - 8235) <= 0.02 * 8235
    assert res.summary.files_failed == {}
    res.table.validate()


def test_ndpi_cat14_total(shared_data: Path) -> None:
    root = shared_data / "ndpi-tests"
    res = extract([root / "pcap"], packets=20, min_packets=5, labels=root / "labels.csv")
    assert len(res.summary.flows_per_class) == 14
    assert abs(len(res.table) - NDPI_EXPECTED_TOTAL) <= 0.02 * NDPI_EXPECTED_TOTAL
    assert res.table.capture.tolist() == sorted(res.table.capture.tolist())
    res.table.validate()


def test_fast_path_equals_scalar_path_on_real_captures(shared_data: Path) -> None:
    root = shared_data / "ndpi-tests" / "pcap"
    files = sorted(root.glob("*.pcap*"))[::6]  # a spread of link types, tunnels, fragments, IPv6
    kw = {"packets": 20, "label_from": "stem", "initiator": "port"}
    fast, slow = extract(files, **kw), extract(files, fast=False, **kw)
    assert fast.table.to_arrow().equals(slow.table.to_arrow())
    assert fast.summary.packets_skipped == slow.summary.packets_skipped and fast.warnings == slow.warnings


def test_ndpi_labels_and_app_column(shared_data: Path) -> None:
    pytest.importorskip("nfstream")
    cap = shared_data / "ndpi-tests" / "pcap" / "1kxun.pcap"
    res = extract([cap], label_from="ndpi")
    t = res.table
    assert len(t) > 100 and "ndpi_app" in t.extra
    assert {"Web", "Network"} <= set(t.label.tolist())
    assert dict(zip(t.extra["ndpi_app"].tolist(), t.label.tolist(), strict=True))["LLMNR"] == "Network"
    labelled = extract([cap], label_from="stem", ndpi_app=True).table
    assert labelled.extra["ndpi_app"].tolist().count(None) < 0.05 * len(labelled)
