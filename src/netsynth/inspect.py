"""`netsynth inspect FILE`: what is in a flow table or a capture, before spending time on it.

One function returns a plain JSON-ready dict (so scripts and tests can use it) and another renders it
with rich. The file kind is sniffed from its first bytes, not guessed from its name: Parquet files
start with "PAR1", captures with a pcap/pcapng magic (plain or compressed, via the extractor's sniffer).
Capture flows are counted with netsynth's own extractor, so `inspect` and `extract` always agree.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from netsynth.errors import InputError
from netsynth.flows import FlowTable

PROTOCOLS = {6: "TCP", 17: "UDP", 1: "ICMP", 58: "ICMPv6"}
LINKTYPES = {0: "BSD loopback", 1: "Ethernet", 9: "PPP", 12: "Raw IP", 14: "Raw IP", 101: "Raw IP",
             104: "Cisco HDLC", 105: "802.11", 108: "OpenBSD loopback", 113: "Linux cooked (SLL)",
             127: "802.11 radiotap", 228: "Raw IPv4", 229: "Raw IPv6", 276: "Linux cooked (SLL2)"}


def inspect_path(path: str | os.PathLike) -> dict[str, Any]:
    """Summarise a flow table (Parquet file or folder of parts) or a capture (pcap/pcapng)."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if p.is_dir() or _head(p) == b"PAR1":
        return inspect_table(p)
    from netsynth.extract.packets import sniff

    if sniff(p):
        return inspect_capture(p)
    raise InputError(f"{p}: neither a flow table (Parquet) nor a capture (pcap/pcapng)")


def _head(path: Path) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(4)
    except OSError as exc:
        raise InputError(f"{path}: cannot open ({exc.strerror or exc})") from None


# ---------------------------------------------------------------------------------------------- tables
def stats(values: np.ndarray) -> dict[str, float] | None:
    """min / median / p95 / max / mean of a 1-D array, or None when it is empty."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        return None
    q = np.percentile(v, [0, 50, 95, 100])
    return {"min": float(q[0]), "median": float(q[1]), "p95": float(q[2]), "max": float(q[3]),
            "mean": float(v.mean())}


def _names(codes: np.ndarray, names: dict[int, str]) -> dict[str, int]:
    counts = Counter(int(c) for c in codes)
    return {names.get(k, str(k)): n for k, n in counts.most_common()}


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def inspect_table(path: Path) -> dict[str, Any]:
    """Flows, classes, per-packet distributions, protocols, schema and producer metadata of a table."""
    table = FlowTable.read(path)
    mask = table.mask
    later = mask.copy()
    later[:, 0] = False  # the first IAT of a flow is 0 by definition: leave it out of the summary
    schema_file = path if path.is_file() else sorted(path.glob("*.parquet"))[0]
    schema = pq.read_schema(schema_file)
    start = table.start_time[~np.isnan(table.start_time)]
    meta = dict(table.metadata)
    producer = table.producer()
    meta.pop("netsynth.producer", None)
    return {
        "kind": "flow table",
        "path": str(path),
        "flows": len(table),
        "max_packets": table.max_packets,
        "classes": table.class_counts(),
        "origins": dict(Counter(str(o) for o in table.origin).most_common()),
        "protocols": _names(table.protocol, PROTOCOLS),
        "ip_versions": _names(table.ip_version, {4: "IPv4", 6: "IPv6"}),
        "n_packets": stats(table.n_packets),
        "payload_len": stats(table.payload_len[mask]),
        "iat": stats(table.iat[later]),
        "with_addresses": int(sum(v is not None for v in table.src_ip)),
        "time_span": [_iso(start.min()), _iso(start.max())] if start.size else None,
        "schema": [[f.name, str(f.type)] for f in schema],
        "metadata": meta,
        "producer": producer,
    }


# ---------------------------------------------------------------------------------------------- captures
def inspect_capture(path: Path) -> dict[str, Any]:
    """Packets, bytes, duration, link types and the flows netsynth's extractor finds in a capture."""
    from netsynth.extract.packets import CaptureReader

    packets = wire_bytes = 0
    first = last = None
    links: Counter[int] = Counter()
    with CaptureReader(path) as reader:
        fmt = reader.format
        for linktype, ts, _data, wirelen in reader:
            packets += 1
            wire_bytes += wirelen
            links[linktype] += 1
            first = ts if first is None else min(first, ts)
            last = ts if last is None else max(last, ts)
        warnings = list(reader.warnings)
    out: dict[str, Any] = {
        "kind": "capture",
        "path": str(path),
        "format": fmt,
        "packets": packets,
        "bytes": wire_bytes,
        "duration": float(last - first) if packets else 0.0,
        "time_span": [_iso(first), _iso(last)] if packets else None,
        "link_types": {f"{LINKTYPES.get(k, 'unknown')} ({k})": n for k, n in links.most_common()},
        "warnings": warnings,
    }
    out.update(_capture_flows(path))
    return out


def _capture_flows(path: Path) -> dict[str, Any]:
    """Flow counts from `netsynth.extract` (every flow kept: min_packets=1, default idle timeout)."""
    from netsynth.extract import extract

    try:
        result = extract([path], min_packets=1, label_from="stem")
    except InputError as exc:
        return {"flows": None, "flows_error": str(exc)}
    t = result.table
    return {
        "flows": len(t),
        "flow_protocols": _names(t.protocol, PROTOCOLS),
        "flow_ip_versions": _names(t.ip_version, {4: "IPv4", 6: "IPv6"}),
        "flow_n_packets": stats(t.packets_total),
        "packets_skipped": dict(result.summary.packets_skipped),
        "flows_method": "netsynth.extract (idle timeout 120 s, first 20 packets per flow)",
    }


# ---------------------------------------------------------------------------------------------- render
def _fmt(value: float | None) -> str:
    """Numbers for people: integers with separators, others to 6 digits; a missing value as '-'."""
    if value is None:
        return "-"
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:.6g}"


def _kv_table(title: str, rows: dict[str, Any]) -> Any:
    from rich.table import Table

    t = Table(title=title, show_header=False, title_justify="left")
    t.add_column("key", style="bold")
    t.add_column("value")
    for k, v in rows.items():
        t.add_row(k, v if isinstance(v, str) else json.dumps(v) if isinstance(v, dict | list) else _fmt(v))
    return t


def _dist_table(summary: dict[str, Any], keys: dict[str, str]) -> Any:
    from rich.table import Table

    t = Table(title="distributions", title_justify="left")
    for col in ("", "min", "median", "p95", "max"):
        t.add_column(col, justify="left" if not col else "right")
    for key, label in keys.items():
        s = summary.get(key)
        if s:
            t.add_row(label, *(_fmt(s[c]) for c in ("min", "median", "p95", "max")))
    return t


def _counts_table(title: str, counts: dict[str, int]) -> Any:
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    t.add_column("value")
    t.add_column("flows", justify="right")
    for k, n in counts.items():
        t.add_row(str(k), f"{n:,}")
    return t


def render_inspection(summary: dict[str, Any], console: Any) -> None:
    """Print an `inspect_path` summary as rich tables on `console` (a rich.console.Console)."""
    if summary["kind"] == "flow table":
        _render_table(summary, console)
    else:
        _render_capture(summary, console)


def _render_table(s: dict[str, Any], console: Any) -> None:
    overview = {"file": s["path"], "kind": "flow table", "flows": s["flows"], "max packets (N)": s["max_packets"],
                "protocols": s["protocols"], "IP versions": s["ip_versions"], "origins": s["origins"],
                "flows with addresses": s["with_addresses"]}
    if s["time_span"]:
        overview["time span"] = " → ".join(s["time_span"])
    console.print(_kv_table("flow table", overview))
    console.print(_counts_table("flows per class", s["classes"]))
    console.print(_dist_table(s, {"n_packets": "packets per flow", "payload_len": "payload bytes",
                                  "iat": "IAT (s)"}))
    from rich.table import Table

    schema = Table(title="schema", title_justify="left")
    schema.add_column("column")
    schema.add_column("type")
    for name, typ in s["schema"]:
        schema.add_row(name, typ)
    console.print(schema)
    meta = {**s["metadata"], **{f"producer.{k}": v for k, v in s["producer"].items()}}
    if meta:
        console.print(_kv_table("metadata", meta))


def _render_capture(s: dict[str, Any], console: Any) -> None:
    overview = {"file": s["path"], "kind": f"capture ({s['format']})", "packets": s["packets"],
                "bytes": s["bytes"], "duration (s)": s["duration"], "link types": s["link_types"]}
    if s["time_span"]:
        overview["time span"] = " → ".join(s["time_span"])
    if s.get("flows") is not None:
        overview["flows"] = s["flows"]
        overview["flow protocols"] = s["flow_protocols"]
        overview["flow IP versions"] = s["flow_ip_versions"]
        if s["packets_skipped"]:
            overview["packets skipped"] = s["packets_skipped"]
        overview["flows counted by"] = s["flows_method"]
    elif s.get("flows_error"):
        overview["flows"] = s["flows_error"]
    console.print(_kv_table("capture", overview))
    if s.get("flow_n_packets"):
        console.print(_dist_table({"flow_n_packets": s["flow_n_packets"]}, {"flow_n_packets": "packets per flow"}))
    for w in s["warnings"]:
        console.print(f"[yellow]warning[/yellow] {w}")
