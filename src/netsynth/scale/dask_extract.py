"""`extract_dask()`: every capture file is a Dask task that writes its own part file.

Why workers write parts instead of returning flows: the driver then only ever holds small per-file
summaries, so memory on the driver does not grow with the captures. That is possible without
re-implementing anything because a file's flow ids (`<capture>:<i>`) and labels depend on that file
alone: the worker runs the extraction code's own `extract_file` and `_Run.label` (the single-process
merge step), and the driver merges the counts with `_Run.finish`. Part `i` is input file `i`, so reading
the folder in sorted order (`FlowTable.read`) gives exactly the rows, order and ids of `extract()`.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netsynth.errors import InputError
from netsynth.extract import biflows as B
from netsynth.extract.pipeline import CaptureInput, ExtractResult, _empty_table, _Run, extract_file
from netsynth.flows import FlowTable
from netsynth.scale._dask import connect, part_name, prepare_out_dir, progress_bar

DEFAULT_TASK_BYTES = 8 << 20  # capture bytes per task: small files are grouped, big ones run alone


@dataclass
class PartResult:
    """What a worker sends back for one file: counts only (its flows are already in `part`)."""

    capture: str
    path: str
    part: str | None  # file written, None when no flow of this capture was kept
    rows: int
    packets_read: int
    stats: B.AssemblyStats
    warnings: list[str]
    matched: bool
    per_class: dict[str, int] = field(default_factory=dict)


def _label_file(run: _Run, item: CaptureInput) -> tuple[list[FlowTable], PartResult] | InputError:
    """Extract and label one capture with the single-process code (`extract_file`, `_Run.label`)."""
    try:
        res = extract_file(item, run.config, fast=run.fast, ndpi=run.ndpi)
    except InputError as exc:
        return exc
    local = dataclasses.replace(run, stats=B.AssemblyStats(), matched=set(), warnings=[])
    tables = local.label(res)  # counts unlabelled drops in local.stats
    res.stats.add(local.stats)
    counts: Counter[str] = Counter()
    for t in tables:
        counts.update(t.label.astype(str).tolist())
    rows = sum(len(t) for t in tables)
    return tables, PartResult(item.capture, str(item.path), None, rows, res.packets_read, res.stats,
                              list(res.warnings), bool(local.matched), dict(counts))


def extract_part(run: _Run, items: Sequence[CaptureInput], part: str) -> list[PartResult | InputError]:
    """Extract consecutive captures and write all their kept flows, in order, to `part` atomically.

    A user-caused failure (an unreadable file) is returned in that file's place, not raised: it is not
    worth retrying and must reach the summary. Anything else raises, so that Dask retries the task.
    """
    outcomes: list[PartResult | InputError] = []
    tables: list[FlowTable] = []
    for item in items:
        got = _label_file(run, item)
        if isinstance(got, InputError):
            outcomes.append(got)
            continue
        tables.extend(got[0])
        outcomes.append(got[1])
    if any(len(t) for t in tables):
        table = FlowTable.concat(tables)
        table.metadata.update(run.metadata())
        table.write(part)  # validates, then temp name + rename
        for res in outcomes:
            if isinstance(res, PartResult) and res.rows:
                res.part = part
    return outcomes


def group_files(items: Sequence[CaptureInput], task_bytes: int) -> list[list[CaptureInput]]:
    """Consecutive files grouped until a group holds `task_bytes` of capture (a big file is alone).

    Why: a task and a part file cost milliseconds each (scheduling, Parquet footer, rename on a shared
    file system); for folders of small captures that overhead would exceed the extraction itself.
    """
    groups: list[list[CaptureInput]] = []
    current: list[CaptureInput] = []
    size = 0
    for item in items:
        current.append(item)
        size += _size(item.path)
        if size >= task_bytes:
            groups.append(current)
            current, size = [], 0
    if current:
        groups.append(current)
    return groups


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0  # reported by the task that tries to read it


def extract_dask(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    scheduler: Any = "local:2",
    retries: int = 2,
    task_bytes: int = DEFAULT_TASK_BYTES,
    require_flows: bool = True,
    processes: bool = True,
    **options: Any,
) -> ExtractResult:
    """Extract captures on a Dask cluster into `out_dir`, a folder of Parquet part files.

    Consecutive files are grouped into tasks of about `task_bytes` of capture (1 = one task per file);
    each task writes one part, named by task index, so the folder read in name order is `extract()`'s
    table row for row.

    `options` are `extract()`'s (labels, packets, min_packets, ...; `jobs` is ignored: the cluster
    decides the parallelism). A task that raises is retried `retries` times; a file that still fails,
    or cannot be read, is counted in `summary.files_failed` with its reason — never dropped silently.
    `strict` makes any failed file an InputError (after the others finished). Paths must be readable
    under the same name on every worker (a shared file system). The result's table is empty: read
    `out_dir` with `FlowTable.read`.
    """
    options = {k: v for k, v in options.items() if k != "jobs"}
    run = _Run.make(paths, {**options, "paths": paths})
    created = not Path(out_dir).exists()
    out = prepare_out_dir(out_dir)
    outcomes = _run_tasks(run, group_files(run.items, task_bytes), out, scheduler, retries, processes)
    written, per_class = _merge(run, outcomes)
    if run.strict and run.failed:
        path, reason = next(iter(run.failed.items()))
        raise InputError(f"{path}: {reason} ({len(run.failed)} file(s) failed; parts of the others are in {out})")
    if run.summary.files_ok == 0:
        path, reason = next(iter(run.failed.items()))
        raise InputError(f"no readable capture among {len(run.items)} file(s); {path}: {reason}")
    per_class = dict(sorted(per_class.items(), key=lambda kv: (-kv[1], kv[0])))
    summary = run.finish(written, per_class)
    if not written and created and not any(out.iterdir()):
        out.rmdir()  # "nothing written" must leave nothing behind, not an empty dataset folder
    if not written and require_flows:
        raise InputError("no flows left after labelling and filtering (see the summary); nothing written")
    return ExtractResult(_empty_table(run), summary, run.warnings)


def _run_tasks(run: _Run, groups: list[list[CaptureInput]], out: Path, scheduler: Any, retries: int,
               processes: bool) -> list[Any]:
    """Submit one task per group; return, per input file in order, a PartResult, an InputError or the
    exception that failed its task after the retries."""
    n = len(groups)
    shipped = dataclasses.replace(run, items=[], progress=False)  # small: the label source and options
    with connect(scheduler, processes=processes) as client:
        import distributed

        run_f = client.scatter(shipped, broadcast=True, hash=False)
        futures = [client.submit(extract_part, run_f, group, str(out / part_name(i, n)), retries=retries,
                                 pure=False, key=f"netsynth-extract-{i}-{os.getpid()}-{id(run)}")
                   for i, group in enumerate(groups)]
        index = {f.key: i for i, f in enumerate(futures)}
        per_group: list[Any] = [None] * n
        bar = progress_bar(run.progress, len(run.items), "extracting captures (dask)")
        try:
            for fut in distributed.as_completed(futures):
                i = index[fut.key]
                exc = fut.exception()
                per_group[i] = [exc] * len(groups[i]) if exc is not None else fut.result()
                if bar is not None:
                    bar.advance(bar.task, len(groups[i]))
        finally:
            if bar is not None:
                bar.stop()
            for fut in futures:
                fut.release()
    return [res for group in per_group for res in group]


def _merge(run: _Run, outcomes: list[Any]) -> tuple[int, Counter[str]]:
    """Fold per-file outcomes into the run's summary in input order, as `_Run.results` does."""
    written = 0
    per_class: Counter[str] = Counter()
    for item, res in zip(run.items, outcomes, strict=True):
        if not isinstance(res, PartResult):
            reason = _reason(item, res)
            run.failed[str(item.path)] = reason
            run.warnings.append(f"{item.path}: skipped, {reason}")
            continue
        run.summary.files_ok += 1
        run.summary.packets_read += res.packets_read
        run.stats.add(res.stats)
        run.warnings.extend(f"{item.path}: {w}" for w in res.warnings)
        if res.matched:
            run.matched.add(res.capture)
        written += res.rows
        per_class.update(res.per_class)
    return written, per_class


def _reason(item: CaptureInput, exc: BaseException) -> str:
    msg = str(exc)
    if isinstance(exc, InputError):
        return msg[len(str(item.path)) + 2:] if msg.startswith(f"{item.path}: ") else msg
    return f"task failed after retries: {type(exc).__name__}: {msg.splitlines()[0] if msg else ''}".rstrip(": ")
