"""Flow tables from and to the per-flow layouts users already have (no capture needed).

Formats (`format=`):

* ``"ppi"`` — the CESNET DataZoo per-packet-information layout (CESNET-TLS22, -QUIC22, -TLS-Year22):
  a ``PPI`` cell per flow holding ``[[IPT ms...], [DIR ±1...], [SIZE...]]`` (+ an optional 4th row of
  TCP flags) for up to 30 packets, zero-padded, or separate ``PPI_IPT``/``PPI_DIR``/``PPI_SIZE``/
  (``PPI_FLAGS`` | ``PPI_PUSH``) columns; plus a class column (``APP``, ``CATEGORY`` or ``label_column``)
  and flow statistics (``PACKETS``/``PACKETS_REV``, ``DURATION``, ``TIME_FIRST``, ``SRC_IP``... as in
  cesnet-datazoo's dataframes). Parquet, CSV (cells as JSON text) or NumPy ``.npz`` (a ``PPI`` array of
  shape (n, 3|4, L) and 1-D arrays named like the columns). DIR +1 (client→server) becomes direction 0,
  IPT ms becomes seconds, SIZE is the transport payload. A 0/1 4th row (DataZoo's push flag) becomes PSH.
* ``"mirage"`` — MIRAGE-2019 / MIRAGE-2022 per-biflow JSON: one file maps ``"src_ip,src_port,dst_ip,
  dst_port,proto"`` to ``{"packet_data": {"L4_payload_bytes", "iat", "packet_dir", "TCP_win_size",
  "TCP_flags", ...}, "flow_metadata": {"BF_label", "BF_labeling_type", "BF_num_packets",
  "BF_L4_payload_bytes", "BF_duration", ...}}`` (keys matched case-insensitively, as tcbench flattens
  them). A folder is walked for ``*.json``. ``mirage_label="bf_label"`` (default) labels by
  ``BF_label``; ``"android"`` applies tcbench's rule: the app in the file name (``<ts>_<app>_...json``)
  if ``BF_label`` agrees (and MIRAGE-2022's ``BF_activity`` is not "Unknown"), else ``background``.
  ``iat`` is in seconds and ``packet_dir`` 0 is upstream (the device's side), as MIRAGE writes them.
* ``"nfstream"`` — nfstream's CSV (``NFStreamer(..., splt_analysis=N).to_csv()``): ``splt_direction``,
  ``splt_ps``, ``splt_piat_ms`` lists padded with -1 (padding dropped). nfstream's sizes follow its
  ``accounting_mode``: 0 (default) link-layer bytes, 1 IP, 2 transport, 3 payload; ``nfstream_size=``
  "link" (default), "ip", "transport" or "payload" says which, and the minimal headers are subtracted
  (Ethernet 14, IP 20/40, TCP 20 / UDP 8 bytes): exact unless frames carry VLAN tags or IP/TCP options,
  so run nfstream with ``accounting_mode=3`` for exact payload lengths.
  ``label_column`` defaults to ``application_name``.
* ``"csv"`` — netsynth's own flat CSV (`export_flows(..., format="csv")`): one row per flow, per-packet
  columns as JSON lists trimmed to ``n_packets``. Round-trips exactly.

Only `netsynth.errors` and the flow-table contract are imported: this module stays inside `flows/`.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import os
from collections.abc import Callable, Sequence
from datetime import UTC
from pathlib import Path
from typing import Any

import numpy as np

from netsynth.errors import InputError
from netsynth.flows import schema as S
from netsynth.flows.table import FlowTable
from netsynth.utils.io import atomic_path

FORMATS = ("ppi", "mirage", "nfstream", "csv")
PPI_PACKETS = 30
_FLAG_LETTERS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10, "U": 0x20, "E": 0x40, "C": 0x80, "W": 0x80}


# ----------------------------------------------------------------------------------------- common
class _Rows:
    """Accumulates imported flows as Python lists, then builds one FlowTable."""

    def __init__(self, width: int | None, min_packets: int = 1, exclude_empty: bool = False) -> None:
        self.width = width
        self.min_packets = min_packets
        self.exclude_empty = exclude_empty
        self.seq: dict[str, list[list]] = {k: [] for k in ("payload", "direction", "iat", "flags", "window")}
        self.cols: dict[str, list] = {k: [] for k in (
            "label", "flow_id", "capture", "src_ip", "dst_ip", "src_port", "dst_port", "protocol", "ip_version",
            "start_time", "duration", "packets_total", "bytes_total")}
        self.extra: dict[str, list] = {}
        self.dropped = 0

    def add(self, payload: list[int], direction: list[int], iat: list[float], flags: list[int] | None = None,
            window: list[int] | None = None, extra: dict[str, Any] | None = None, **cols: Any) -> None:
        """One flow; flows with fewer than `min_packets` packets (after `exclude_empty` drops the
        zero-payload ones, as tcbench and CESNET do) are counted and skipped."""
        if self.exclude_empty:
            keep = [i for i, x in enumerate(payload) if x > 0]
            payload, direction = [payload[i] for i in keep], [direction[i] for i in keep]
            times = list(itertools.accumulate(iat))  # IATs between the packets that remain
            kt = [times[i] for i in keep]
            iat = [0.0] + [b - a for a, b in itertools.pairwise(kt)] if kt else []
            flags = [flags[i] for i in keep] if flags is not None else None
            window = [window[i] for i in keep] if window is not None else None
        if len(payload) < max(1, self.min_packets):
            self.dropped += 1
            return
        n = len(payload)
        self.seq["payload"].append(payload)
        self.seq["direction"].append(direction)
        self.seq["iat"].append(iat)
        self.seq["flags"].append(flags if flags is not None else [0] * n)
        self.seq["window"].append(window if window is not None else [0] * n)
        for k in self.cols:
            self.cols[k].append(cols.get(k))
        for k, v in (extra or {}).items():
            self.extra.setdefault(k, [None] * (len(self.cols["label"]) - 1)).append(v)
        for v in self.extra.values():
            if len(v) < len(self.cols["label"]):
                v.append(None)

    def table(self, source: str, fmt: str) -> FlowTable:
        n = len(self.cols["label"])
        if n == 0:
            raise InputError(f"{source}: no flow with at least one packet")
        width = self.width or max(len(p) for p in self.seq["payload"])
        dtypes = {"payload": np.int32, "direction": np.int8, "iat": np.float32, "flags": np.uint8, "window": np.uint16}
        mats = {k: np.zeros((n, width), dt) for k, dt in dtypes.items()}
        n_packets = np.zeros(n, np.int16)
        for i in range(n):
            k = min(width, len(self.seq["payload"][i]))
            n_packets[i] = k
            for name, mat in mats.items():
                mat[i, :k] = self.seq[name][i][:k]
        if np.any(mats["payload"] < 0) or np.any(mats["payload"] > S.MAX_PAYLOAD_REAL):
            raise InputError(f"{source}: packet sizes outside [0, {S.MAX_PAYLOAD_REAL}]")
        mats["iat"] = np.where(np.isfinite(mats["iat"]) & (mats["iat"] > 0), mats["iat"], 0).astype(np.float32)
        c = self.cols
        kw: dict[str, Any] = {}
        if any(v is not None for v in c["flow_id"]):
            kw["flow_id"] = np.array([v if v is not None else f"{fmt}:{i}" for i, v in enumerate(c["flow_id"])],
                                     dtype=object)
        for name in ("capture", "src_ip", "dst_ip"):
            kw[name] = np.array([None if v is None else str(v) for v in c[name]], dtype=object)
        for name in ("src_port", "dst_port"):
            kw[name] = np.array([-1 if v is None else int(v) for v in c[name]], dtype=np.int32)
        for name in ("start_time", "duration"):
            kw[name] = np.array([np.nan if v is None else float(v) for v in c[name]], dtype=np.float64)
        kept_bytes = mats["payload"].sum(axis=1, dtype=np.int64)
        for name, floor in (("packets_total", n_packets.astype(np.int64)), ("bytes_total", kept_bytes)):
            given = np.array([-1 if v is None else int(v) for v in c[name]], dtype=np.int64)
            kw[name] = np.maximum(given, floor)  # missing (or smaller than what is kept): what is kept
        table = FlowTable.build(
            label=np.array([str(v) for v in c["label"]], dtype=object), n_packets=n_packets,
            payload_len=mats["payload"], direction=mats["direction"], iat=mats["iat"],
            tcp_flags=mats["flags"], tcp_window=mats["window"], origin="real",
            protocol=np.array([6 if v is None else int(v) for v in c["protocol"]], np.uint8),
            ip_version=np.array([_ipver(c["src_ip"][i], c["ip_version"][i]) for i in range(n)], np.uint8),
            metadata={"netsynth.producer": json.dumps({"tool": "netsynth.flows.interop", "format": fmt,
                                                        "source": source, "dropped_empty": self.dropped})},
            **kw,
        )
        table.extra = {k: np.array(v, dtype=object) for k, v in self.extra.items()}
        if any(v is None for v in c["label"]):
            raise InputError(f"{source}: some flows have no class label")
        table.validate(source)
        return table


def _ipver(ip: Any, given: Any) -> int:
    if given is not None:
        return int(given)
    return 6 if isinstance(ip, str) and ":" in ip else 4


def _num(v: Any) -> Any:
    """A cell as a number or None (CSV gives strings, Parquet numbers, NaN means missing)."""
    if v is None or v == "":
        return None
    if isinstance(v, str):
        try:
            f = float(v)
        except ValueError:
            return None
        return int(f) if f.is_integer() else f
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def _seq(v: Any, where: str) -> list:
    """A list cell: a list/array, or JSON text as CSV writers leave it."""
    if v is None:
        return []
    if isinstance(v, str):
        try:
            v = json.loads(v)
        except json.JSONDecodeError:
            raise InputError(f"{where}: cannot parse list cell {v[:40]!r}") from None
    return list(v.tolist() if hasattr(v, "tolist") else v)


def _read_table(path: Path) -> tuple[list[str], Callable[[str], list]]:
    """Column names and a column getter for a Parquet or CSV file (values as Python objects)."""
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            tab = pq.read_table(path)
            return tab.column_names, lambda c: tab.column(c).to_pylist()
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: cannot read ({exc})") from None
    except Exception as exc:  # pyarrow raises its own ArrowInvalid for a damaged Parquet file
        raise InputError(f"{path}: not a readable Parquet file ({str(exc).splitlines()[0]})") from None
    names = list(rows[0].keys()) if rows else []
    return names, lambda c: [r.get(c) for r in rows]


def _find(names: Sequence[str], *candidates: str) -> str | None:
    lower = {n.lower(): n for n in names}
    for c in candidates:
        if c and c.lower() in lower:
            return lower[c.lower()]
    return None


# -------------------------------------------------------------------------------------------- PPI
def _import_ppi(path: Path, width: int | None, label_column: str | None, rows: _Rows) -> FlowTable:
    if path.suffix.lower() == ".npz":
        names, get = _read_npz(path)
    else:
        names, get = _read_table(path)
    lab = _find(names, label_column or "", "APP", "CATEGORY", "LABEL")
    if lab is None:
        raise InputError(f"{path}: no class column (looked for {label_column or 'APP, CATEGORY, label'})")
    ppi_col = _find(names, "PPI")
    split = [_find(names, f"PPI_{k}") for k in ("IPT", "DIR", "SIZE")]
    if ppi_col is None and None in split:
        raise InputError(f"{path}: no PPI column (nor PPI_IPT, PPI_DIR, PPI_SIZE columns)")
    flag_col = _find(names, "PPI_FLAGS", "PPI_PUSH")
    n = len(get(lab))
    ppis = get(ppi_col) if ppi_col else None
    parts = [get(c) for c in split] if ppi_col is None else None
    flags_part = get(flag_col) if ppi_col is None and flag_col else None
    stat = {k: (get(c) if (c := _find(names, k)) else [None] * n) for k in (
        "PACKETS", "PACKETS_REV", "DURATION", "TIME_FIRST", "SRC_IP", "DST_IP", "SRC_PORT", "DST_PORT",
        "PROTOCOL", "ID")}
    rows.width = width or PPI_PACKETS
    labels = get(lab)
    for i in range(n):
        where = f"{path}: row {i + 1}"
        if ppis is not None:
            m = _seq(ppis[i], where)
            if len(m) < 3:
                raise InputError(f"{where}: PPI needs rows IPT, DIR, SIZE, found {len(m)}")
            ipt, dirs, size = (list(r) for r in m[:3])
            fl = list(m[3]) if len(m) > 3 else None
        else:
            assert parts is not None
            ipt, dirs, size = (_seq(p[i], where) for p in parts)
            fl = _seq(flags_part[i], where) if flags_part is not None else None
        keep = [j for j, d in enumerate(dirs) if d and int(d) != 0]  # DIR 0 is padding
        if fl is not None and all(int(fl[j]) in (0, 1) for j in keep):
            fl = [0x08 * int(x) for x in fl]  # DataZoo's push-flag row
        packets = _num(stat["PACKETS"][i])
        rev = _num(stat["PACKETS_REV"][i])
        rows.add(
            [int(size[j]) for j in keep], [0 if int(dirs[j]) > 0 else 1 for j in keep],
            [float(ipt[j]) / 1000.0 if k else 0.0 for k, j in enumerate(keep)],
            [int(fl[j]) for j in keep] if fl is not None else None,
            label=labels[i], flow_id=None if stat["ID"][i] in (None, "") else str(stat["ID"][i]),
            src_ip=stat["SRC_IP"][i], dst_ip=stat["DST_IP"][i], src_port=_num(stat["SRC_PORT"][i]),
            dst_port=_num(stat["DST_PORT"][i]), protocol=_num(stat["PROTOCOL"][i]),
            start_time=_time(stat["TIME_FIRST"][i]), duration=_num(stat["DURATION"][i]),
            packets_total=None if packets is None else packets + (rev or 0),
        )
    return rows.table(str(path), "ppi")


def _time(v: Any) -> float | None:
    """TIME_FIRST as epoch seconds: a number, a datetime, or ISO text."""
    if v is None or v == "":
        return None
    if hasattr(v, "timestamp"):
        return float(v.timestamp())
    num = _num(v)
    if num is not None:
        return float(num)
    from datetime import datetime

    try:
        dt = datetime.fromisoformat(str(v))
    except ValueError:
        return None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def _read_npz(path: Path) -> tuple[list[str], Callable[[str], list]]:
    try:
        data = dict(np.load(path, allow_pickle=False))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable .npz ({exc})") from None
    return list(data), lambda c: list(data[c])


# ----------------------------------------------------------------------------------------- MIRAGE
def _import_mirage(path: Path, mirage_label: str, rows: _Rows) -> FlowTable:
    if mirage_label not in ("bf_label", "android"):
        raise InputError(f"mirage_label must be 'bf_label' or 'android', not {mirage_label!r}")
    files = sorted(path.rglob("*.json")) if path.is_dir() else [path]
    if not files:
        raise InputError(f"{path}: no .json files")
    for f in files:
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"{f}: not a readable MIRAGE JSON file ({exc})") from None
        if not isinstance(data, dict):
            raise InputError(f"{f}: a MIRAGE file maps connection ids to flows; found {type(data).__name__}")
        parts = f.name.split("_")
        android = parts[1] if len(parts) > 2 and "None" not in f.name else "None"
        capture = f.relative_to(path).as_posix() if path.is_dir() else f.name
        for conn, flow in data.items():
            _mirage_flow(rows, f, capture, conn, flow, android, mirage_label)
    return rows.table(str(path), "mirage")


def _lower(d: Any) -> dict[str, Any]:
    return {str(k).lower(): v for k, v in d.items()} if isinstance(d, dict) else {}


def _mirage_flow(rows: _Rows, f: Path, capture: str, conn: str, flow: Any, android: str, rule: str) -> None:
    where = f"{f}: flow {conn}"
    flow = _lower(flow)
    pd_, meta = _lower(flow.get("packet_data")), _lower(flow.get("flow_metadata"))
    sizes = pd_.get("l4_payload_bytes")
    if sizes is None:
        raise InputError(f"{where}: no packet_data.L4_payload_bytes")
    n = len(sizes)
    dirs = pd_.get("packet_dir") or [0] * n
    iat = pd_.get("iat") or [0.0] * n
    win = pd_.get("tcp_win_size")
    flags = pd_.get("tcp_flags")
    label = meta.get("bf_label")
    if rule == "android":
        ok = android == label and str(meta.get("bf_activity", "")) != "Unknown"
        label = android if ok else "background"
    if label is None:
        raise InputError(f"{where}: no flow_metadata.BF_label")
    ends = (conn.split(",") + [None] * 5)[:5]
    proto = _num(ends[4])
    ts = pd_.get("timestamp")
    rows.add(
        [int(x) for x in sizes], [1 if int(x) else 0 for x in dirs],
        [0.0] + [float(x) for x in iat[1:n]] if n else [],
        [_flags(x) for x in flags] if flags is not None else None,
        [int(x) & 0xFFFF for x in win] if win is not None else None,
        label=label, capture=capture, flow_id=f"{capture}:{conn}", src_ip=ends[0], src_port=_num(ends[1]),
        dst_ip=ends[2], dst_port=_num(ends[3]), protocol=proto if isinstance(proto, int) else _PROTO.get(
            str(ends[4]).lower()), start_time=float(ts[0]) if ts else None,
        duration=_num(meta.get("bf_duration")), packets_total=_num(meta.get("bf_num_packets")),
        bytes_total=_num(meta.get("bf_l4_payload_bytes")),
        extra={"labeling_type": meta.get("bf_labeling_type")} if "bf_labeling_type" in meta else None,
    )


_PROTO = {"tcp": 6, "udp": 17}
_NF_SIZES = ("link", "ip", "transport", "payload")  # nfstream's accounting_mode 0, 1, 2, 3


def _flags(v: Any) -> int:
    """TCP flags from an integer, "0x18", "24", or letters ("PA", "-A--S-")."""
    if isinstance(v, int | float):
        return int(v) & 0xFF
    s = str(v).strip()
    if s.lower().startswith("0x"):
        return int(s, 16) & 0xFF
    if s.isdigit():
        return int(s) & 0xFF
    return sum(bit for ch, bit in _FLAG_LETTERS.items() if ch in s.upper() and ch != "W") | (
        0x80 if "W" in s.upper() else 0)


# --------------------------------------------------------------------------------------- nfstream
def _import_nfstream(path: Path, label_column: str | None, size: str, rows: _Rows) -> FlowTable:
    if size not in _NF_SIZES:
        raise InputError(f"nfstream_size must be one of {', '.join(_NF_SIZES)}, not {size!r}")
    names, get = _read_table(path)
    need = ("splt_direction", "splt_ps", "splt_piat_ms")
    missing = [c for c in need if _find(names, c) is None]
    if missing:
        raise InputError(f"{path}: not an nfstream CSV with SPLT columns (missing {', '.join(missing)}); "
                         "run NFStreamer(..., splt_analysis=N)")
    lab = _find(names, label_column or "application_name")
    if lab is None:
        raise InputError(f"{path}: no class column {label_column or 'application_name'!r}")
    col = {c: get(_find(names, c)) if _find(names, c) else None for c in (
        *need, "src_ip", "dst_ip", "src_port", "dst_port", "protocol", "ip_version", "id",
        "bidirectional_first_seen_ms", "bidirectional_duration_ms", "bidirectional_packets", "application_name")}
    labels = get(lab)
    for i in range(len(labels)):
        where = f"{path}: row {i + 1}"
        d = _seq(col["splt_direction"][i], where)
        ps = _seq(col["splt_ps"][i], where)
        piat = _seq(col["splt_piat_ms"][i], where)
        keep = [j for j, x in enumerate(d) if int(x) != -1]
        proto = _num(col["protocol"][i]) if col["protocol"] else None
        ver = _num(col["ip_version"][i]) if col["ip_version"] else None
        l4 = 20 if proto == 6 else 8
        hdr = {"payload": 0, "transport": l4, "ip": (40 if ver == 6 else 20) + l4}.get(size)
        hdr = (54 if ver == 6 else 34) + l4 if hdr is None else hdr  # "link": Ethernet + IP + transport
        first = _num(col["bidirectional_first_seen_ms"][i]) if col["bidirectional_first_seen_ms"] else None
        dur = _num(col["bidirectional_duration_ms"][i]) if col["bidirectional_duration_ms"] else None

        def cell(name: str, i: int = i) -> Any:
            return col[name][i] if col[name] is not None else None

        rows.add(
            [max(0, int(ps[j]) - hdr) for j in keep], [int(d[j]) for j in keep],
            [float(piat[j]) / 1000.0 if k else 0.0 for k, j in enumerate(keep)],
            label=labels[i], flow_id=None if cell("id") is None else f"nfstream:{cell('id')}",
            src_ip=cell("src_ip"), dst_ip=cell("dst_ip"), src_port=_num(cell("src_port")),
            dst_port=_num(cell("dst_port")), protocol=proto, ip_version=ver,
            start_time=None if first is None else first / 1000.0, duration=None if dur is None else dur / 1000.0,
            packets_total=_num(cell("bidirectional_packets")),
            extra={"ndpi_app": cell("application_name")} if col["application_name"] is not None else None,
        )
    return rows.table(str(path), "nfstream")


# -------------------------------------------------------------------------------------- ours (CSV)
_CSV_FLOW = ("flow_id", "label", "origin", "capture", "ip_version", "protocol", "src_ip", "dst_ip", "src_port",
             "dst_port", "start_time", "duration", "packets_total", "bytes_total", "n_packets", "max_packets")
_CSV_PACKET = ("payload_len", "direction", "iat", "tcp_flags", "tcp_window")


def _import_csv(path: Path, width: int | None) -> FlowTable:
    names, get = _read_table(path)
    missing = [c for c in ("label", "n_packets", "payload_len", "direction") if c not in names]
    if missing:
        raise InputError(f"{path}: not a netsynth flow CSV (missing {', '.join(missing)})")
    n = len(get("label"))
    seqs = {c: [_seq(v, f"{path}: column {c}") for v in get(c)] if c in names else None for c in _CSV_PACKET}
    n_packets = np.array([int(v) for v in get("n_packets")], np.int16)
    given = [_num(v) for v in get("max_packets")] if "max_packets" in names else []
    w = width or (int(given[0]) if given and given[0] else int(n_packets.max(initial=1)))
    mats = {}
    for c, dt in zip(_CSV_PACKET, (np.int32, np.int8, np.float32, np.uint8, np.uint16), strict=True):
        m = np.zeros((n, w), dt)
        for i, v in enumerate(seqs[c] or []):
            k = min(w, len(v))
            m[i, :k] = v[:k]
        mats[c] = m

    kw: dict[str, Any] = {}
    for c in ("flow_id", "capture", "src_ip", "dst_ip"):
        if c in names:
            kw[c] = np.array([None if v in (None, "") else str(v) for v in get(c)], dtype=object)
    for c in ("src_port", "dst_port"):
        if c in names:
            kw[c] = np.array([-1 if _num(v) is None else int(_num(v)) for v in get(c)], np.int32)
    for c in ("start_time", "duration"):
        if c in names:
            kw[c] = np.array([np.nan if _num(v) is None else float(_num(v)) for v in get(c)], np.float64)
    for c in ("packets_total", "bytes_total"):
        if c in names:
            kw[c] = np.array([int(_num(v)) for v in get(c)], np.int64)
    table = FlowTable.build(
        label=np.array([str(v) for v in get("label")], dtype=object), n_packets=np.minimum(n_packets, w),
        payload_len=mats["payload_len"], direction=mats["direction"], iat=mats["iat"], tcp_flags=mats["tcp_flags"],
        tcp_window=mats["tcp_window"],
        origin=np.array([str(v) for v in get("origin")], dtype=object) if "origin" in names else "real",
        protocol=np.array([int(_num(v)) for v in get("protocol")], np.uint8) if "protocol" in names else 6,
        ip_version=np.array([int(_num(v)) for v in get("ip_version")], np.uint8) if "ip_version" in names else 4,
        **kw,
    )
    table.validate(str(path))
    return table


# ------------------------------------------------------------------------------------------------ API
def import_flows(
    path: str | os.PathLike,
    format: str | None = None,
    *,
    packets: int | None = None,
    label_column: str | None = None,
    mirage_label: str = "bf_label",
    nfstream_size: str = "link",
    min_packets: int = 1,
    exclude_empty: bool = False,
) -> FlowTable:
    """Read flows in another tool's layout into a FlowTable (see the module docstring for formats).

    `packets` sets N (default: 30 for PPI, the longest flow otherwise); longer sequences are cut.
    `exclude_empty` drops zero-payload packets (tcbench's "remove ACKs"; IATs are re-summed between
    the packets that remain) and `min_packets` then drops shorter flows (tcbench's MIRAGE filter is 10).
    `format=None` guesses from the file: .json/folder → mirage, .npz → ppi, else by the columns.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file or folder")
    if packets is not None and not 1 <= packets <= 10000:
        raise InputError(f"packets must be between 1 and 10000, not {packets}")
    fmt = format or _guess(p)
    rows = _Rows(packets, min_packets, exclude_empty)
    if fmt == "ppi":
        return _import_ppi(p, packets, label_column, rows)
    if fmt == "mirage":
        return _import_mirage(p, mirage_label, rows)
    if fmt == "nfstream":
        return _import_nfstream(p, label_column, nfstream_size, rows)
    if fmt == "csv":
        if min_packets > 1 or exclude_empty:
            raise InputError("min_packets / exclude_empty apply to foreign layouts; a netsynth CSV is read as is")
        return _import_csv(p, packets)
    raise InputError(f"unknown flow format {fmt!r} (use one of {', '.join(FORMATS)})")


def _guess(p: Path) -> str:
    if p.is_dir() or p.suffix.lower() == ".json":
        return "mirage"
    if p.suffix.lower() == ".npz":
        return "ppi"
    names, _get = _read_table(p)
    if _find(names, "splt_ps"):
        return "nfstream"
    if _find(names, "PPI") or _find(names, "PPI_SIZE"):
        return "ppi"
    if "payload_len" in names:
        return "csv"
    raise InputError(f"{p}: cannot tell the flow format from its columns; pass format= ({', '.join(FORMATS)})")


def export_flows(table: FlowTable, path: str | os.PathLike, format: str = "csv",
                 *, ppi_packets: int = PPI_PACKETS) -> None:
    """Write `table` as netsynth CSV (`format="csv"`) or in the CESNET PPI layout (`"ppi"`: Parquet,
    CSV or .npz by the file's extension; IPT rounded to whole ms as CESNET stores it). Atomic."""
    table.validate(str(path))
    p = Path(path)
    if format == "csv":
        _export_csv(table, p)
    elif format == "ppi":
        _export_ppi(table, p, ppi_packets)
    else:
        raise InputError(f"export format must be 'csv' or 'ppi', not {format!r}")


def _export_csv(t: FlowTable, p: Path) -> None:
    cols = _flow_cells(t)
    with atomic_path(p) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow([*_CSV_FLOW, *_CSV_PACKET])
        for i in range(len(t)):
            k = int(t.n_packets[i])
            seqs = [json.dumps(getattr(t, c)[i, :k].tolist(), separators=(",", ":")) for c in _CSV_PACKET]
            w.writerow([cols[c][i] for c in _CSV_FLOW] + seqs)


def _flow_cells(t: FlowTable) -> dict[str, list]:
    def opt(a: np.ndarray, null: Any) -> list:
        return ["" if (v is None or (isinstance(v, float) and math.isnan(v)) or v == null) else v for v in a.tolist()]

    return {
        "flow_id": t.flow_id.tolist(), "label": t.label.tolist(), "origin": t.origin.tolist(),
        "capture": opt(t.capture, None), "ip_version": t.ip_version.tolist(), "protocol": t.protocol.tolist(),
        "src_ip": opt(t.src_ip, None), "dst_ip": opt(t.dst_ip, None), "src_port": opt(t.src_port, -1),
        "dst_port": opt(t.dst_port, -1), "start_time": [repr(v) if not math.isnan(v) else "" for v in
                                                         t.start_time.tolist()],
        "duration": [repr(v) if not math.isnan(v) else "" for v in t.duration.tolist()],
        "packets_total": t.packets_total.tolist(), "bytes_total": t.bytes_total.tolist(),
        "n_packets": t.n_packets.tolist(), "max_packets": [t.max_packets] * len(t),
    }


def _export_ppi(t: FlowTable, p: Path, width: int) -> None:
    n = len(t)
    k = np.minimum(t.n_packets.astype(np.int64), width)
    ppi = np.zeros((n, 4, width), np.int64)
    w = min(width, t.max_packets)
    mask = np.arange(w)[None, :] < k[:, None]
    ppi[:, 0, :w] = np.where(mask, np.rint(t.iat[:, :w].astype(np.float64) * 1000.0), 0)
    ppi[:, 1, :w] = np.where(mask, 1 - 2 * t.direction[:, :w].astype(np.int64), 0)
    ppi[:, 2, :w] = np.where(mask, t.payload_len[:, :w], 0)
    ppi[:, 3, :w] = np.where(mask, t.tcp_flags[:, :w], 0)
    cells = _flow_cells(t)
    stats = {
        "ID": cells["flow_id"], "APP": cells["label"], "PPI_LEN": k.tolist(), "SRC_IP": cells["src_ip"],
        "DST_IP": cells["dst_ip"], "SRC_PORT": cells["src_port"], "DST_PORT": cells["dst_port"],
        "PROTOCOL": cells["protocol"], "PACKETS": cells["packets_total"], "DURATION": t.duration.tolist(),
        "TIME_FIRST": t.start_time.tolist(),
    }
    suffix = p.suffix.lower()
    with atomic_path(p) as tmp:
        if suffix == ".npz":
            arrays = {k2: np.asarray([("" if v is None else v) for v in v2]) for k2, v2 in stats.items()}
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, PPI=ppi, **arrays)
        elif suffix in (".parquet", ".pq"):
            import pyarrow as pa
            import pyarrow.parquet as pq

            data = {k2: pa.array([None if v == "" else v for v in v2]) for k2, v2 in stats.items()}
            data["PPI"] = pa.array(ppi.tolist(), pa.list_(pa.list_(pa.int64())))
            pq.write_table(pa.table(data), tmp, compression="zstd")
        else:
            with open(tmp, "w", newline="", encoding="utf-8") as fh:
                wr = csv.writer(fh)
                wr.writerow([*stats, "PPI"])
                for i in range(n):
                    wr.writerow([stats[c][i] for c in stats] + [json.dumps(ppi[i].tolist(), separators=(",", ":"))])
