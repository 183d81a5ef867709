"""`extract()`: capture files or folders → one labelled flow table plus an honest summary.

Each capture is an independent task: `extract_file()` is a pure function of (path, capture name,
assembly config) returning a picklable `FileResult`, and everything global (labels, ordering, the
table) happens when results are consumed in input order. `jobs=J` maps it over a process pool; a
distributed engine (Dask) only has to do the same and feed the results, in input order, to `_Run.label`.

Choices recorded here because they change numbers:
* `bytes_total` counts transport payload bytes (the unit of `payload_len`, and what
  `FlowTable.build` derives when it is absent), not IP or frame bytes;
* `flow_id` is `<capture>:<i>` with i the flow's position among *all* flows of that capture in the
  order they open in the file (its first packet's record), so an id names the same flow whatever
  `min_packets`, the labels, the chunking or `jobs` do (= start-time order unless timestamps go back);
* rows are ordered by capture (input order, folders walked in sorted order), then by batch (flows
  finished in each chunk of `CHUNK_RECORDS` records; one batch for files under that size), then flow
  start: a streaming writer can then emit rows as flows end, and `extract()` gives the same order.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import json
import os
import socket
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from netsynth.errors import InputError
from netsynth.extract import biflows as B
from netsynth.extract.labels import LabelSource, flow_key, label_source
from netsynth.extract.packets import LINKTYPE_NAMES, SUPPORTED_LINKTYPES, CaptureReader, decode, sniff
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
CHUNK_RECORDS = 65536  # records per assembly chunk: the unit of sweeping and of vectorised decoding


@dataclass
class FileResult:
    """What one capture yields: batches of finished flows (`biflows.Batch` columns) and its counts.

    Plain data (NumPy arrays, counters, strings), so it pickles cheaply out of a worker process.
    """

    capture: str
    path: str
    batches: list[B.Batch]
    packets_read: int
    stats: B.AssemblyStats
    warnings: list[str]
    ndpi: list[np.ndarray] | None = None  # per batch: (n, 2) object array of nDPI (app, category)

    @property
    def flows(self) -> int:
        """Flows kept (before labelling)."""
        return sum(len(b["seq"]) for b in self.batches)


class FileStream:
    """Iterate one capture's flow batches as they are finished; counts are complete once exhausted.

    This is the streaming unit: memory is the active flows plus one batch, whatever the file size.
    """

    def __init__(self, item: CaptureInput, config: B.AssemblyConfig, *, fast: bool = True) -> None:
        self.item = item
        self.config = config
        self.fast = fast
        self.stats = B.AssemblyStats()
        self.packets_read = 0
        self.warnings: list[str] = []
        self._reader = CaptureReader(item.path)  # raises InputError for a bad header, before iteration

    def __iter__(self) -> Iterator[B.Batch]:
        with _gc_paused():
            yield from self._batches()

    def _batches(self) -> Iterator[B.Batch]:
        from netsynth.extract import fast as F

        cfg = self.config
        asm = B.Assembler(cfg, self.stats)
        with self._reader as reader:
            fast = F.assemble_chunks(reader, asm, CHUNK_RECORDS) if self.fast else None
            chunks = fast if fast is not None else _scalar_chunks(reader, asm)
            for flows in chunks:
                if flows:
                    yield B.to_batch(flows, cfg.packets)
            self.warnings = list(reader.warnings)
            self.packets_read = reader.packets
        last = asm.finish()
        if last:
            yield B.to_batch(last, cfg.packets)
        if self.stats.packets_skipped.get("unsupported_linktype"):
            self.warnings.append(_unsupported_message(self.item.path, self.stats))


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while assembling: flow states are tens of thousands of
    acyclic lists, and the collector's passes over them cost more than the assembly (restored after)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _scalar_chunks(reader: CaptureReader, asm: B.Assembler) -> Iterator[list[list]]:
    """The reference path: per-record reading and decoding, same chunk boundaries as the fast path."""
    it = iter(reader)
    while True:
        chunk = list(itertools.islice(it, CHUNK_RECORDS))
        if not chunk:
            return
        asm.feed(chunk, decode)
        yield asm.end_chunk()


def extract_file(
    item: CaptureInput, config: B.AssemblyConfig, *, fast: bool = True, ndpi: bool = False
) -> FileResult:
    """Read and assemble one capture: a pure function of its arguments, so files can run anywhere.

    Raises InputError only for an unreadable file header.
    """
    stream = FileStream(item, config, fast=fast)
    batches = list(stream)
    res = FileResult(item.capture, str(item.path), batches, stream.packets_read, stream.stats, stream.warnings)
    if ndpi:
        from netsynth.extract import ndpi as N

        res.ndpi = N.annotate(item.path, batches, config, res.warnings)
    return res


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
    names = ", ".join(f"{t} ({LINKTYPE_NAMES[t]})" if t in LINKTYPE_NAMES else str(t) for t in sorted(types)) or "?"
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
    fragments_attributed: int = 0  # later IP fragments added to their datagram's packet
    tcp_retransmissions: int = 0  # counted (and left out of the per-packet columns) when excluded
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
        if self.fragments_attributed:
            t.add_row("later IP fragments (joined to their datagram)", f"{self.fragments_attributed:,}")
        if self.tcp_retransmissions:
            t.add_row("TCP retransmissions (left out)", f"{self.tcp_retransmissions:,}")
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
    active_timeout: float | None = None,
    tcp_end: bool = False,
    initiator: str = "first",
    include_retransmissions: bool = True,
    protocols: str | Sequence[str | int] | None = None,
    jobs: int = 1,
    ndpi_app: bool = False,
    fast: bool = True,
) -> ExtractResult:
    """Read captures (files or folders) into one labelled flow table.

    A label source is required (`labels` CSV or `label_from` = "parent"/"stem"/"ndpi"). With several
    files, one that cannot be read is skipped and reported (or, with `strict`, raises InputError); if
    none can be read, InputError. Flow semantics options are documented in `biflows`; `jobs` > 1 reads
    files in worker processes and gives the identical table. `ndpi_app` adds nDPI's application name
    as an `ndpi_app` column (needs the optional nfstream extra; it re-reads every capture, so it is
    opt-in here — the CLI turns it on whenever the extra is installed). None = on if installed. `fast=False`
    runs the scalar reference decoder (same result, slower; for tests).
    """
    run = _Run.make(paths, locals())
    tables: list[FlowTable] = []
    for res in run.results():
        tables.extend(run.label(res))
    table = FlowTable.concat(tables) if tables else _empty_table(run)
    if tables and run.ndpi:
        table.extra = {"ndpi_app": np.concatenate([t.extra["ndpi_app"] for t in tables])}
    table.metadata.update(run.metadata())
    return ExtractResult(table, run.finish(len(table), table.class_counts() if len(table) else {}), run.warnings)


def extract_to_parquet(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    output: str | os.PathLike,
    *,
    require_flows: bool = True,
    **options: Any,
) -> ExtractResult:
    """Like `extract()`, but write the table to `output` (Parquet) one row group per flow batch.

    Memory is bounded by the active flows of the files being read (plus one batch), not by the size of
    the captures or of the table. The file appears (atomically, renamed from a temporary name) only if
    at least one flow is written; otherwise no file, and InputError (or, with `require_flows=False`, a
    result whose summary says why). The returned result's table is empty (len 0): read `output`.
    """
    import pyarrow.parquet as pq

    from netsynth.flows import schema as S
    from netsynth.utils.io import atomic_path

    run = _Run.make(paths, {**options, "paths": paths})
    meta = {k.encode(): v.encode() for k, v in run.metadata().items()}
    schema = S.arrow_schema(run.config.packets, meta)
    if run.ndpi:
        schema = schema.append(pa_string_field("ndpi_app"))
    counts: Counter[str] = Counter()
    written = 0
    try:
        with atomic_path(output) as tmp:
            writer = pq.ParquetWriter(tmp, schema, compression="zstd")
            try:
                for res in run.results(stream=True):
                    for piece in run.label(res):
                        piece.validate(str(output))
                        arrow = piece.to_arrow().replace_schema_metadata(schema.metadata)
                        writer.write_table(arrow.cast(schema))
                        written += len(piece)
                        counts.update(piece.label.astype(str).tolist())
            finally:
                writer.close()
            if not written:
                raise _NoFlows  # leaving the block by an exception drops the temporary file
    except _NoFlows:
        if not require_flows:
            return ExtractResult(_empty_table(run), run.finish(0, {}), run.warnings)
        raise InputError("no flows left after labelling and filtering (see the summary); nothing written") from None
    per_class = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    return ExtractResult(_empty_table(run), run.finish(written, per_class), run.warnings)


class _NoFlows(Exception):
    """Raised inside the atomic write when no flow was written, so that no empty file appears."""


def pa_string_field(name: str) -> Any:
    """A nullable string Arrow field (the extra columns extraction may add)."""
    import pyarrow as pa

    return pa.field(name, pa.string(), nullable=True)


@dataclass
class _Run:
    """One extraction: checked options, inputs, label source, and the summary being accumulated."""

    paths: Any
    items: list[CaptureInput]
    config: B.AssemblyConfig
    source: LabelSource
    strict: bool
    progress: bool
    jobs: int
    ndpi: bool
    fast: bool
    warnings: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    summary: ExtractSummary = field(default_factory=ExtractSummary)
    stats: B.AssemblyStats = field(default_factory=B.AssemblyStats)
    matched: set[str] = field(default_factory=set)
    start: float = 0.0

    @classmethod
    def make(cls, paths: Any, opts: dict[str, Any]) -> _Run:
        import time

        known = {"paths", "packets", "min_packets", "idle_timeout", "labels", "label_from", "include_empty",
                 "strict", "progress", "active_timeout", "tcp_end", "initiator", "include_retransmissions",
                 "protocols", "jobs", "ndpi_app", "fast"}
        unknown = sorted(set(opts) - known)
        if unknown:
            raise InputError(f"unknown extract option(s): {', '.join(unknown)}")
        o = {"packets": 20, "min_packets": 1, "idle_timeout": 120.0, "labels": None, "label_from": None,
             "include_empty": True, "strict": False, "progress": False, "active_timeout": None, "tcp_end": False,
             "initiator": "first", "include_retransmissions": True, "protocols": None, "jobs": 1,
             "ndpi_app": False, "fast": True, **opts}
        config = _config(o)
        if not isinstance(o["jobs"], int) or o["jobs"] < 1:
            raise InputError(f"jobs must be a positive integer, not {o['jobs']!r}")
        label_from = o["label_from"]
        from netsynth.extract import ndpi as N

        if label_from == "ndpi" or o["ndpi_app"]:
            N.require()
        ndpi = N.available() if o["ndpi_app"] is None else bool(o["ndpi_app"])
        ndpi = ndpi or label_from == "ndpi"
        source = label_source(o["labels"], label_from)
        items = discover(paths)
        if not items:
            raise InputError(f"no capture files found in {', '.join(map(str, _as_list(paths)))}")
        source.bind([i.capture for i in items])
        return cls(paths, items, config, source, bool(o["strict"]), bool(o["progress"]), o["jobs"], ndpi,
                   bool(o["fast"]), start=time.perf_counter())

    def results(self, *, stream: bool = False) -> Iterator[FileResult]:
        """FileResults in input order; bad files are recorded (or raised with `strict` / a single file)."""
        bar = _progress(len(self.items)) if self.progress else None
        ok = 0
        try:
            for item, res in _map_files(self.items, self.config, self.jobs, self.fast, self.ndpi, stream):
                if bar is not None:
                    bar[0].advance(bar[1])
                if isinstance(res, InputError):
                    if self.strict or len(self.items) == 1:
                        raise res
                    msg = str(res)
                    reason = msg[len(str(item.path)) + 2 :] if msg.startswith(f"{item.path}: ") else msg
                    self.failed[str(item.path)] = reason
                    self.warnings.append(f"{item.path}: skipped, {reason}")
                    continue
                ok += 1
                yield res
                self.summary.packets_read += res.packets_read
                self.stats.add(res.stats)
                self.warnings.extend(f"{item.path}: {w}" for w in res.warnings)
        finally:
            if bar is not None:
                bar[0].stop()
        if not ok:
            first = next(iter(self.failed.items()))
            raise InputError(f"no readable capture among {len(self.items)} file(s); {first[0]}: {first[1]}")
        self.summary.files_ok = ok

    def label(self, res: FileResult) -> list[FlowTable]:
        """Label one file's batches; unlabelled flows are dropped (and counted)."""
        cap_label, flow_labels = self.source.for_capture(res.capture, res.path)
        if cap_label is not None or flow_labels is not None:
            self.matched.add(res.capture)
        out = []
        for i, batch in enumerate(res.batches):
            names = res.ndpi[i] if res.ndpi is not None else None
            labels = _batch_labels(batch, cap_label, flow_labels, names, self.source.label_from == "ndpi")
            keep = np.array([lab is not None for lab in labels], dtype=bool)
            dropped = int((~keep).sum())
            if dropped:
                self.stats.flows_dropped["unlabelled"] += dropped
            if keep.any():
                table = _to_table(batch, keep, np.array(labels, dtype=object)[keep], res.capture)
                if self.ndpi:
                    app = names[keep, 0] if names is not None else np.full(int(keep.sum()), None, object)
                    table.extra = {"ndpi_app": np.asarray(app, dtype=object)}
                out.append(table)
        return out

    def metadata(self) -> dict[str, str]:
        return {
            "netsynth.producer": json.dumps(_producer(self.paths, self.config, self.source), sort_keys=True),
            "netsynth.label_source": self.source.description,
        }

    def finish(self, kept: int, per_class: dict[str, int]) -> ExtractSummary:
        """Complete the summary once every file was read and labelled."""
        import time

        s, st = self.summary, self.stats
        if self.source.label_from is None and not self.matched:
            self.warnings.append(
                f"{self.source.description}: no capture name in the labels file matches a capture read")
        if self.source.conflicts:
            self.warnings.append(
                f"{self.source.description}: {self.source.conflicts} flow rows contradict an earlier row (first kept)")
        s.packets_used = st.packets_used
        s.packets_skipped = dict(st.packets_skipped.most_common())
        s.timestamps_backwards = st.backwards_timestamps
        s.fragments_attributed = st.fragments_attributed
        s.tcp_retransmissions = st.retransmissions
        s.flows_total = st.flows_total
        s.flows_dropped = dict(st.flows_dropped.most_common())
        s.flows_kept = kept
        s.flows_per_class = per_class
        s.files_failed = self.failed
        s.seconds = time.perf_counter() - self.start
        return s


def _config(o: dict[str, Any]) -> B.AssemblyConfig:
    """Check the flow options a user can get wrong and build the assembly config."""
    from netsynth.extract.packets import parse_protocols

    packets, min_packets, idle = o["packets"], o["min_packets"], o["idle_timeout"]
    if not 1 <= packets <= 10000:
        raise InputError(f"packets must be between 1 and 10000, not {packets}")
    if min_packets < 1:
        raise InputError(f"min_packets must be at least 1, not {min_packets}")
    if not idle > 0:
        raise InputError(f"idle_timeout must be positive, not {idle}")
    active = o["active_timeout"]
    if active is not None and not active > 0:
        raise InputError(f"active_timeout must be positive (or None for none), not {active}")
    if o["initiator"] not in B.INITIATORS:
        raise InputError(f"initiator must be one of {', '.join(B.INITIATORS)}, not {o['initiator']!r}")
    return B.AssemblyConfig(
        packets=packets, min_packets=min_packets, idle_timeout=float(idle),
        include_empty=bool(o["include_empty"]), active_timeout=None if active is None else float(active),
        tcp_end=bool(o["tcp_end"]), initiator=o["initiator"],
        include_retransmissions=bool(o["include_retransmissions"]), protocols=parse_protocols(o["protocols"]),
    )


def _as_list(paths: Any) -> list:
    return [paths] if isinstance(paths, str | os.PathLike) else list(paths)


def _safe_extract(item: CaptureInput, config: B.AssemblyConfig, fast: bool, ndpi: bool) -> FileResult | InputError:
    """`extract_file` with a user-caused failure returned, not raised (it crosses process boundaries)."""
    try:
        return extract_file(item, config, fast=fast, ndpi=ndpi)
    except InputError as exc:
        return exc


def _map_files(
    items: list[CaptureInput], config: B.AssemblyConfig, jobs: int, fast: bool, ndpi: bool, stream: bool
) -> Iterator[tuple[CaptureInput, FileResult | InputError]]:
    """(item, result) in input order. jobs > 1: a process pool with at most 2*jobs files in flight, so
    finished-but-unconsumed results stay bounded. jobs == 1 with `stream`: one batch at a time."""
    if jobs == 1 or len(items) == 1:
        for item in items:
            if stream and not ndpi:
                yield item, _streamed(item, config, fast)
            else:
                yield item, _safe_extract(item, config, fast, ndpi)
        return
    import collections
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=min(jobs, len(items))) as pool:
        pending: collections.deque = collections.deque()
        queue = iter(items)
        for item in itertools.islice(queue, 2 * jobs):
            pending.append((item, pool.submit(_safe_extract, item, config, fast, ndpi)))
        while pending:
            item, fut = pending.popleft()
            nxt = next(queue, None)
            if nxt is not None:
                pending.append((nxt, pool.submit(_safe_extract, nxt, config, fast, ndpi)))
            yield item, fut.result()


def _streamed(item: CaptureInput, config: B.AssemblyConfig, fast: bool) -> FileResult | InputError:
    try:
        stream = FileStream(item, config, fast=fast)
    except InputError as exc:
        return exc
    res = FileResult(item.capture, str(item.path), [], 0, stream.stats, stream.warnings)
    res.batches = _LazyBatches(stream, res)  # type: ignore[assignment]
    return res


class _LazyBatches:
    """Iterating it runs the file's stream; counts land on the result when it is exhausted."""

    def __init__(self, stream: FileStream, res: FileResult) -> None:
        self.stream, self.res = stream, res

    def __iter__(self) -> Iterator[B.Batch]:
        yield from self.stream
        self.res.packets_read = self.stream.packets_read
        self.res.warnings = self.stream.warnings


def _progress(total: int) -> tuple[Any, Any]:
    from rich.console import Console
    from rich.progress import Progress

    p = Progress(console=Console(file=sys.stderr), transient=True)
    task = p.add_task("reading captures", total=total)
    p.start()
    return p, task


# ----------------------------------------------------------------------------------------------- merge
def _batch_labels(
    batch: B.Batch, cap_label: str | None, flow_labels: dict | None, ndpi: np.ndarray | None, from_ndpi: bool
) -> list[str | None]:
    """Each flow's label: flow-level row, else capture-level label, else nDPI category, else None."""
    n = len(batch["seq"])
    if from_ndpi:
        return [None if ndpi is None or ndpi[i, 1] is None else str(ndpi[i, 1]) for i in range(n)]
    if flow_labels is None:
        return [cap_label] * n
    out: list[str | None] = []
    for i in range(n):
        key = flow_key(int(batch["proto"][i]), (batch["src"][i], int(batch["sport"][i])),
                       (batch["dst"][i], int(batch["dport"][i])))
        lab = flow_labels.get(key)
        out.append(cap_label if lab is None else lab)
    return out


def _ip(raw: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)


def _to_table(batch: B.Batch, keep: np.ndarray, labels: np.ndarray, capture: str) -> FlowTable:
    """Batch columns (rows `keep`) → FlowTable."""
    b = {k: v[keep] for k, v in batch.items()}
    return FlowTable.build(
        label=labels,
        n_packets=b["n_packets"],
        payload_len=b["payload"],
        direction=b["direction"],
        iat=b["iat"],
        tcp_flags=b["flags"],
        tcp_window=b["window"],
        origin="real",
        flow_id=np.array([f"{capture}:{s}" for s in b["seq"].tolist()], dtype=object),
        protocol=b["proto"],
        ip_version=b["ver"],
        capture=np.full(len(labels), capture, dtype=object),
        src_ip=np.array([_ip(x) for x in b["src"]], dtype=object),
        dst_ip=np.array([_ip(x) for x in b["dst"]], dtype=object),
        src_port=b["sport"],
        dst_port=b["dport"],
        start_time=b["first"],
        duration=b["last"] - b["first"],
        packets_total=b["total"],
        bytes_total=b["bytes"],
    )


def _empty_table(run: _Run) -> FlowTable:
    w = run.config.packets
    t = FlowTable.build(label=np.zeros(0, object), n_packets=np.zeros(0, np.int16),
                        payload_len=np.zeros((0, w), np.int32), direction=np.zeros((0, w), np.int8))
    t.metadata.update(run.metadata())
    if run.ndpi:
        t.extra = {"ndpi_app": np.zeros(0, object)}
    return t


def _producer(paths: Any, config: B.AssemblyConfig, source: LabelSource) -> dict[str, Any]:
    from netsynth import __version__

    return {
        "tool": "netsynth.extract",
        "version": __version__,
        "inputs": [os.fspath(p) for p in _as_list(paths)],
        "packets": config.packets,
        "min_packets": config.min_packets,
        "idle_timeout": config.idle_timeout,
        "active_timeout": config.active_timeout,
        "tcp_end": config.tcp_end,
        "initiator": config.initiator,
        "include_empty": config.include_empty,
        "include_retransmissions": config.include_retransmissions,
        "protocols": sorted(config.protocols),
        "label_source": source.description,
        "bytes_total": "transport payload bytes",
    }
