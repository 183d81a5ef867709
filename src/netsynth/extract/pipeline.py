"""`extract()`: capture files or folders → one labelled flow table plus an honest summary.

Each capture is an independent task: `extract_file()` is a pure function of (path, capture name,
assembly config) returning a picklable `FileResult`, and everything global (labels, ordering, flow ids,
the table) happens in the merge. A later `--jobs`/Dask option only has to map `extract_file` in
parallel and feed the results, in input order, to `merge()`.

Choices recorded here because they change numbers:
* `bytes_total` counts transport payload bytes (the unit of `payload_len`, and what
  `FlowTable.build` derives when it is absent), not IP or frame bytes;
* `flow_id` is `<capture>:<i>` with i the flow's position among *all* flows of that capture ordered by
  start time, so an id names the same flow whatever `min_packets` or the labels drop;
* rows are ordered by capture (input order, folders walked in sorted order), then flow start.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from netsynth.errors import InputError
from netsynth.extract import biflows as B
from netsynth.extract.labels import LabelSource, flow_key, label_source
from netsynth.extract.packets import SUPPORTED_LINKTYPES, CaptureReader, decode, sniff
from netsynth.flows import FlowTable


# ---------------------------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class CaptureInput:
    """One file to read and the name its flows carry in the `capture` column."""

    path: Path
    capture: str
    explicit: bool  # named on the command line (errors reported) vs found in a folder walk


def discover(paths: Sequence[str | os.PathLike]) -> list[CaptureInput]:
    """Expand folders recursively (sorted by relative path) into capture files, sniffing magic numbers.

    Files found in a folder that are not captures (README, labels.csv, MAC lists) are skipped quietly;
    a file named explicitly is always attempted, so that a wrong file is reported, not ignored.
    """
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    out: list[CaptureInput] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = [Path(root) / name for root, _dirs, files in os.walk(p) for name in files]
            for rel, f in sorted((f.relative_to(p).as_posix(), f) for f in found):
                if f.is_file() and sniff(f):
                    out.append(CaptureInput(f, rel, explicit=False))
        elif p.exists():
            out.append(CaptureInput(p, p.name, explicit=True))
        else:
            raise InputError(f"{p}: no such file or folder")
    return out


# ------------------------------------------------------------------------------------------ per file
@dataclass
class FileResult:
    """What one capture yields: finished flows (biflows state lists) and its counts."""

    capture: str
    path: str
    flows: list[list]
    packets_read: int
    stats: B.AssemblyStats
    warnings: list[str]


def extract_file(item: CaptureInput, config: B.AssemblyConfig) -> FileResult:
    """Read and assemble one capture. Raises InputError only for an unreadable file header."""
    stats = B.AssemblyStats()
    with CaptureReader(item.path) as reader:
        flows = B.assemble(reader, decode, config, stats)
        warnings = list(reader.warnings)
        packets = reader.packets
    if stats.packets_skipped.get("unsupported_linktype"):
        warnings.append(_unsupported_message(item.path, stats))
    return FileResult(item.capture, str(item.path), flows, packets, stats, warnings)


def _unsupported_message(path: Path, stats: B.AssemblyStats) -> str:
    """Name the unsupported link type(s) once per file (re-read cheaply: only the headers matter)."""
    types: set[int] = set()
    try:
        with CaptureReader(path) as reader:
            for linktype, _ts, _data, _len in reader:
                if linktype not in SUPPORTED_LINKTYPES:
                    types.add(linktype)
    except InputError:
        pass
    names = ", ".join(str(t) for t in sorted(types)) or "?"
    n = stats.packets_skipped["unsupported_linktype"]
    return f"unsupported link type {names}; {n} packets skipped"


# ---------------------------------------------------------------------------------------------- summary
@dataclass
class ExtractSummary:
    """What happened, in numbers: files, packets by fate, flows by fate, flows per class."""

    files_ok: int = 0
    files_failed: dict[str, str] = field(default_factory=dict)  # path -> one-line reason
    packets_read: int = 0
    packets_used: int = 0
    packets_skipped: dict[str, int] = field(default_factory=dict)
    timestamps_backwards: int = 0  # packets earlier than their flow's previous one (IAT clamped to 0)
    flows_total: int = 0
    flows_kept: int = 0
    flows_dropped: dict[str, int] = field(default_factory=dict)
    flows_per_class: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def packets_per_second(self) -> float:
        """Packets read per second of wall time (0 if not timed)."""
        return self.packets_read / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dictionary."""
        d = asdict(self)
        d["packets_per_second"] = round(self.packets_per_second, 1)
        return d

    def render(self, console: Any) -> None:
        """Print the summary as rich tables on `console` (a rich.console.Console)."""
        from rich.table import Table

        t = Table(title="extract", show_header=False)
        t.add_row("files read", f"{self.files_ok}")
        t.add_row("files failed", f"{len(self.files_failed)}")
        t.add_row("packets read", f"{self.packets_read:,}")
        t.add_row("packets used (TCP/UDP)", f"{self.packets_used:,}")
        for reason, n in sorted(self.packets_skipped.items(), key=lambda kv: -kv[1]):
            t.add_row(f"  skipped: {reason}", f"{n:,}")
        if self.timestamps_backwards:
            t.add_row("timestamps going backwards", f"{self.timestamps_backwards:,} (IAT clamped to 0)")
        t.add_row("flows assembled", f"{self.flows_total:,}")
        for reason, n in sorted(self.flows_dropped.items(), key=lambda kv: -kv[1]):
            t.add_row(f"  dropped: {reason}", f"{n:,}")
        t.add_row("flows kept", f"{self.flows_kept:,}")
        if self.seconds:
            t.add_row("time", f"{self.seconds:.1f} s ({self.packets_per_second:,.0f} packets/s)")
        console.print(t)
        if self.flows_per_class:
            c = Table(title="flows per class")
            c.add_column("label")
            c.add_column("flows", justify="right")
            for label, n in self.flows_per_class.items():
                c.add_row(label, f"{n:,}")
            console.print(c)
        for path, reason in self.files_failed.items():
            console.print(f"[red]failed[/red] {path}: {reason}")


@dataclass
class ExtractResult:
    """The flow table, the summary, and one-line warnings `"FILE: message"`."""

    table: FlowTable
    summary: ExtractSummary
    warnings: list[str]


# ------------------------------------------------------------------------------------------------ API
def extract(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    packets: int = 20,
    min_packets: int = 1,
    idle_timeout: float = 120.0,
    labels: str | os.PathLike | None = None,
    label_from: str | None = None,
    include_empty: bool = True,
    strict: bool = False,
    progress: bool = False,
) -> ExtractResult:
    """Read captures (files or folders) into one labelled flow table.

    A label source is required (`labels` CSV or `label_from` = "parent"/"stem"). With several files, one
    that cannot be read is skipped and reported (or, with `strict`, raises InputError); if none can be
    read, InputError. `include_empty=False` keeps only packets with payload in the per-packet columns.
    """
    import time

    _check_options(packets, min_packets, idle_timeout)
    source = label_source(labels, label_from)
    items = discover(paths)
    if not items:
        raise InputError(f"no capture files found in {', '.join(map(str, _as_list(paths)))}")
    config = B.AssemblyConfig(packets, min_packets, float(idle_timeout), include_empty)
    start = time.perf_counter()
    results, failed, warnings = _run_files(items, config, strict=strict, progress=progress)
    if not results:
        first = next(iter(failed.items()))
        raise InputError(f"no readable capture among {len(items)} file(s); {first[0]}: {first[1]}")
    table, summary = merge(results, source, config, warnings)
    summary.files_failed = failed
    summary.seconds = time.perf_counter() - start
    table.metadata["netsynth.producer"] = json.dumps(_producer(paths, config, source), sort_keys=True)
    table.metadata["netsynth.label_source"] = source.description
    return ExtractResult(table, summary, warnings)


def _as_list(paths: Any) -> list:
    return [paths] if isinstance(paths, str | os.PathLike) else list(paths)


def _check_options(packets: int, min_packets: int, idle_timeout: float) -> None:
    if not 1 <= packets <= 10000:
        raise InputError(f"packets must be between 1 and 10000, not {packets}")
    if min_packets < 1:
        raise InputError(f"min_packets must be at least 1, not {min_packets}")
    if not idle_timeout > 0:
        raise InputError(f"idle_timeout must be positive, not {idle_timeout}")


def _run_files(
    items: list[CaptureInput], config: B.AssemblyConfig, *, strict: bool, progress: bool
) -> tuple[list[FileResult], dict[str, str], list[str]]:
    """Map `extract_file` over the inputs in order (the seam for a parallel `--jobs` later)."""
    results: list[FileResult] = []
    failed: dict[str, str] = {}
    warnings: list[str] = []
    bar = _progress(len(items)) if progress else None
    try:
        for item in items:
            try:
                res = extract_file(item, config)
            except InputError as exc:
                if strict or len(items) == 1:
                    raise
                msg = str(exc)
                reason = msg[len(str(item.path)) + 2 :] if msg.startswith(f"{item.path}: ") else msg
                failed[str(item.path)] = reason
                warnings.append(f"{item.path}: skipped, {reason}")
            else:
                results.append(res)
                warnings.extend(f"{item.path}: {w}" for w in res.warnings)
            if bar is not None:
                bar[0].advance(bar[1])
    finally:
        if bar is not None:
            bar[0].stop()
    return results, failed, warnings


def _progress(total: int) -> tuple[Any, Any]:
    from rich.console import Console
    from rich.progress import Progress

    p = Progress(console=Console(file=sys.stderr), transient=True)
    task = p.add_task("reading captures", total=total)
    p.start()
    return p, task


# ----------------------------------------------------------------------------------------------- merge
def merge(
    results: Sequence[FileResult], source: LabelSource, config: B.AssemblyConfig, warnings: list[str]
) -> tuple[FlowTable, ExtractSummary]:
    """Label, order and stack per-file results into one table and summary (input order is kept)."""
    source.bind([r.capture for r in results])
    summary = ExtractSummary(files_ok=len(results))
    skipped: Counter[str] = Counter()
    dropped: Counter[str] = Counter()
    rows: list[tuple[list, str, str]] = []
    matched: set[str] = set()
    for r in results:
        summary.packets_read += r.packets_read
        summary.packets_used += r.stats.packets_used
        summary.flows_total += r.stats.flows_total
        summary.timestamps_backwards += r.stats.backwards_timestamps
        skipped.update(r.stats.packets_skipped)
        dropped.update(r.stats.flows_dropped)
        cap_label, flow_labels = source.for_capture(r.capture, r.path)
        if cap_label is not None or flow_labels is not None:
            matched.add(r.capture)
        for f in r.flows:
            label = None
            if flow_labels is not None:
                label = flow_labels.get(flow_key(f[B.PROTO], (f[B.SRC], f[B.SPORT]), (f[B.DST], f[B.DPORT])))
            if label is None:
                label = cap_label
            if label is None:
                dropped["unlabelled"] += 1
                continue
            rows.append((f, label, r.capture))
    if source.label_from is None and not matched:
        warnings.append(f"{source.description}: no capture name in the labels file matches a capture read")
    if source.conflicts:
        warnings.append(f"{source.description}: {source.conflicts} flow rows contradict an earlier row (first kept)")
    summary.packets_skipped = dict(skipped.most_common())
    summary.flows_dropped = dict(dropped.most_common())
    table = _to_table(rows, config.packets)
    summary.flows_kept = len(table)
    summary.flows_per_class = table.class_counts() if len(table) else {}
    return table, summary


def _ip(raw: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)


def _to_table(rows: list[tuple[list, str, str]], width: int) -> FlowTable:
    """Flow state lists → FlowTable columns."""
    n = len(rows)
    mats = {
        B.PAYLOAD: np.zeros((n, width), np.int32),
        B.DIRECTION: np.zeros((n, width), np.int8),
        B.IAT: np.zeros((n, width), np.float32),
        B.FLAGS: np.zeros((n, width), np.uint8),
        B.WINDOW: np.zeros((n, width), np.uint16),
    }
    n_packets = np.zeros(n, np.int16)
    for i, (f, _label, _cap) in enumerate(rows):
        k = len(f[B.PAYLOAD])
        n_packets[i] = k
        for col, mat in mats.items():
            mat[i, :k] = f[col]

    def col(idx: int, dtype: type) -> np.ndarray:
        return np.array([f[idx] for f, _, _ in rows], dtype=dtype)

    return FlowTable.build(
        label=np.array([lab for _, lab, _ in rows], dtype=object),
        n_packets=n_packets,
        payload_len=mats[B.PAYLOAD],
        direction=mats[B.DIRECTION],
        iat=mats[B.IAT],
        tcp_flags=mats[B.FLAGS],
        tcp_window=mats[B.WINDOW],
        origin="real",
        flow_id=np.array([f"{cap}:{f[B.SEQ]}" for f, _, cap in rows], dtype=object),
        protocol=col(B.PROTO, np.uint8) if n else np.zeros(0, np.uint8),
        ip_version=col(B.VER, np.uint8) if n else np.zeros(0, np.uint8),
        capture=np.array([cap for _, _, cap in rows], dtype=object),
        src_ip=np.array([_ip(f[B.SRC]) for f, _, _ in rows], dtype=object),
        dst_ip=np.array([_ip(f[B.DST]) for f, _, _ in rows], dtype=object),
        src_port=col(B.SPORT, np.int32) if n else np.zeros(0, np.int32),
        dst_port=col(B.DPORT, np.int32) if n else np.zeros(0, np.int32),
        start_time=col(B.FIRST, np.float64) if n else np.zeros(0),
        duration=np.array([f[B.LAST] - f[B.FIRST] for f, _, _ in rows], dtype=np.float64),
        packets_total=col(B.TOTAL, np.int64) if n else np.zeros(0, np.int64),
        bytes_total=col(B.BYTES, np.int64) if n else np.zeros(0, np.int64),
    )


def _producer(paths: Any, config: B.AssemblyConfig, source: LabelSource) -> dict[str, Any]:
    from netsynth import __version__

    return {
        "tool": "netsynth.extract",
        "version": __version__,
        "inputs": [os.fspath(p) for p in _as_list(paths)],
        "packets": config.packets,
        "min_packets": config.min_packets,
        "idle_timeout": config.idle_timeout,
        "include_empty": config.include_empty,
        "label_source": source.description,
        "bytes_total": "transport payload bytes",
    }
