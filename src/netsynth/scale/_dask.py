"""Scheduler strings → a dask.distributed Client, and the small helpers both Dask stages share."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from netsynth.errors import InputError

INSTALL_HINT = "dask is not installed: pip install 'netsynth[scale]' (dask[distributed])"


def require_distributed() -> Any:
    """Import dask.distributed or raise the one-line InputError a user can act on."""
    try:
        import distributed
    except ImportError:
        raise InputError(INSTALL_HINT) from None
    return distributed


@contextlib.contextmanager
def connect(scheduler: Any, *, processes: bool = True) -> Iterator[Any]:
    """Yield a Client for `scheduler`; a LocalCluster made here is always closed again.

    `scheduler`: "local:N" (a LocalCluster of N single-threaded workers, processes by default since
    extraction and sampling hold the GIL), "dask://HOST:PORT" or "tcp://HOST:PORT" (an existing
    scheduler; nothing is started or stopped), or an existing `distributed.Client` (used as is).
    """
    distributed = require_distributed()
    if isinstance(scheduler, distributed.Client):
        yield scheduler
        return
    if not isinstance(scheduler, str):
        raise InputError(f"scheduler must be 'local:N' or 'dask://HOST:PORT', not {scheduler!r}")
    m = re.fullmatch(r"local:(\d+)", scheduler)
    if m:
        n = int(m.group(1))
        if n < 1:
            raise InputError("local:N needs N >= 1 workers")
        loopback = {"host": "127.0.0.1"} if processes else {}  # threads talk in-process (inproc://)
        import dask

        # non-daemonic worker processes: nDPI annotation (nfstream) starts processes of its own
        with dask.config.set({"distributed.worker.daemon": False}):
            cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=processes,
                                               dashboard_address="127.0.0.1:0", silence_logs=40, **loopback)
        try:
            client = distributed.Client(cluster)
            try:
                yield client
            finally:
                client.close()
        finally:
            cluster.close()
        return
    m = re.fullmatch(r"(?:dask|tcp)://([^:/]+):(\d+)", scheduler)
    if not m:
        raise InputError(f"scheduler must be 'local:N' or 'dask://HOST:PORT', not {scheduler!r}")
    try:
        client = distributed.Client(f"tcp://{m.group(1)}:{m.group(2)}", timeout="20s")
    except OSError as exc:
        raise InputError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
    try:
        yield client
    finally:
        client.close()


def prepare_out_dir(out_dir: str | os.PathLike) -> Path:
    """Create the dataset folder; refuse one that already holds part files (they would be read as one
    table with the new ones, silently mixing two runs)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder (a Parquet dataset is a folder of part files)")
    if out.is_dir() and any(out.glob("*.parquet")):
        raise InputError(f"{out}: already holds .parquet part files; remove them or choose another folder")
    out.mkdir(parents=True, exist_ok=True)
    return out


def part_name(index: int, total: int) -> str:
    """`part-000042.parquet`: zero-padded so that sorted names are task order (how FlowTable.read reads)."""
    width = max(6, len(str(max(total - 1, 0))))
    return f"part-{index:0{width}d}.parquet"


def progress_bar(enabled: bool, total: int, description: str) -> Any:
    """A rich progress bar on stderr (or None): advanced as Dask futures complete."""
    if not enabled:
        return None
    import sys

    from rich.console import Console
    from rich.progress import Progress

    bar = Progress(console=Console(file=sys.stderr), transient=True)
    bar.start()
    bar.task = bar.add_task(description, total=total)  # type: ignore[attr-defined]
    return bar
