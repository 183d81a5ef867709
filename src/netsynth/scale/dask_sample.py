"""`sample_sharded()`: many synthetic flows as fixed-size shards, each a task with its own seed.

Why the shard, not the worker, owns the randomness: shard `i` always draws from
`SeedSequence(seed).spawn(...)[i]` (built directly as `SeedSequence(seed, spawn_key=(i,))`) and always
holds the same class counts, so the flows depend only on (model, request, seed, shard_size) — never on
how many workers there are or in which order shards finish. Per-class counts are fixed up front with
the model's own `class_targets`, so the total per class is exactly what an unsharded `sample()` gives
(the flows themselves differ from an unsharded call, which draws one stream for everything).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from netsynth.errors import InputError
from netsynth.scale._dask import connect, part_name, prepare_out_dir, progress_bar

DEFAULT_SHARD_SIZE = 10_000


@dataclass(frozen=True)
class Shard:
    """One task: flows `offset .. offset+total-1` of the request, as exact per-class counts."""

    index: int
    offset: int
    counts: tuple[tuple[str, int], ...]

    @property
    def total(self) -> int:
        return sum(k for _, k in self.counts)


@dataclass
class SampleSummary:
    """What was written: shards done/failed, flows, wall seconds, flows per second."""

    out_dir: str
    shards_done: int
    shards_failed: dict[int, str]
    flows: int
    seconds: float

    @property
    def flows_per_second(self) -> float:
        return self.flows / self.seconds if self.seconds > 0 else 0.0


def plan_shards(targets: Mapping[str, int], shard_size: int) -> list[Shard]:
    """Cut the per-class targets, in order, into shards of `shard_size` flows (the last may be smaller)."""
    if shard_size < 1:
        raise InputError(f"shard_size must be >= 1, not {shard_size}")
    shards: list[Shard] = []
    current: list[tuple[str, int]] = []
    filled = offset = 0
    for label, count in targets.items():
        left = int(count)
        while left > 0:
            take = min(left, shard_size - filled)
            current.append((label, take))
            filled += take
            left -= take
            if filled == shard_size:
                shards.append(Shard(len(shards), offset, tuple(current)))
                offset += filled
                current, filled = [], 0
    if current:
        shards.append(Shard(len(shards), offset, tuple(current)))
    return shards


_LOCAL = threading.local()


def _model(model_dir: str, device: str) -> Any:
    """The model, loaded once per worker thread (threads of one worker do not share a torch module)."""
    from netsynth.models import load_generator

    stamp = os.stat(Path(model_dir) / "model.json").st_mtime_ns
    key = (os.path.abspath(model_dir), stamp, device)
    cache = getattr(_LOCAL, "models", None)
    if cache is None or key not in cache:
        _LOCAL.models = cache = {key: load_generator(model_dir, device=device)}
    return cache[key]


def sample_shard(model_dir: str, shard: Shard, seed: int, part: str, device: str = "cpu") -> int:
    """Sample one shard with its own seed and write it to `part` atomically; returns its row count."""
    model = _model(model_dir, device)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(shard.index,)))
    table = model.sample(dict(shard.counts), random_state=rng)
    table.flow_id = np.array([f"{model.name}:{shard.offset + i}" for i in range(len(table))], dtype=object)
    table.write(part)
    return len(table)


def sample_sharded(
    model_dir: str | os.PathLike,
    n: int | Mapping[str, int],
    out_dir: str | os.PathLike,
    *,
    seed: int = 0,
    shard_size: int = DEFAULT_SHARD_SIZE,
    scheduler: Any = None,
    device: str = "cpu",
    retries: int = 2,
    progress: bool = False,
    processes: bool = True,
) -> SampleSummary:
    """Sample `n` flows (training proportions) or `{class: n}` into `out_dir`, one part file per shard.

    `scheduler`: None runs the shards here, one after another; "local:N", "dask://HOST:PORT" or a
    `distributed.Client` runs them as Dask tasks (retried `retries` times). Workers load the model from
    `model_dir` themselves, so that path must be readable on every worker. Same seed and shard_size →
    the same flows for any scheduler and any number of workers. A shard that still fails is reported
    in `shards_failed` and raises InputError after the others finished (no partial table is silent).
    """
    from netsynth.models.base import class_targets, read_model_json

    doc = read_model_json(model_dir)
    targets = class_targets(n, {str(k): int(v) for k, v in doc["class_counts"].items()})
    if sum(targets.values()) < 1:
        raise InputError("sample counts must be positive")
    shards = plan_shards(targets, shard_size)
    out = prepare_out_dir(out_dir)
    parts = [str(out / part_name(s.index, len(shards))) for s in shards]
    start = time.perf_counter()
    if scheduler is None:
        rows = {s.index: sample_shard(str(model_dir), s, seed, p, device) for s, p in zip(shards, parts, strict=True)}
        failed: dict[int, str] = {}
    else:
        rows, failed = _run_dask(str(model_dir), shards, parts, seed, device, scheduler, retries, progress, processes)
    summary = SampleSummary(str(out), len(rows), failed, sum(rows.values()), time.perf_counter() - start)
    if failed:
        first = next(iter(failed.items()))
        raise InputError(f"{len(failed)} of {len(shards)} shard(s) failed after {retries} retries "
                         f"(shard {first[0]}: {first[1]}); the others are in {out}")
    return summary


def _run_dask(model_dir: str, shards: list[Shard], parts: list[str], seed: int, device: str, scheduler: Any,
              retries: int, progress: bool, processes: bool) -> tuple[dict[int, int], dict[int, str]]:
    """Shards as Dask tasks; (rows per shard done, reason per shard failed)."""
    rows: dict[int, int] = {}
    failed: dict[int, str] = {}
    with connect(scheduler, processes=processes) as client:
        import distributed

        futures = [client.submit(sample_shard, model_dir, s, seed, p, device, retries=retries, pure=False,
                                 key=f"netsynth-sample-{s.index}-{os.getpid()}-{id(shards)}")
                   for s, p in zip(shards, parts, strict=True)]
        index = {f.key: s.index for f, s in zip(futures, shards, strict=True)}
        bar = progress_bar(progress, len(shards), "sampling shards (dask)")
        try:
            for fut in distributed.as_completed(futures):
                exc = fut.exception()
                if exc is None:
                    rows[index[fut.key]] = fut.result()
                else:
                    failed[index[fut.key]] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                if bar is not None:
                    bar.advance(bar.task)
        finally:
            if bar is not None:
                bar.stop()
            for fut in futures:
                fut.release()
    return rows, dict(sorted(failed.items()))
