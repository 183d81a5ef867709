"""Flows in start-time order, a batch at a time, without holding the table.

Packets must be in timestamp order in the file, and the merge in pcap.py can write a packet only once
no unread flow can start before it, so flows must be read in start-time order (ties: table row order).

- Each flow's start is the table's `start_time`, or, where it has none, a Poisson layout: the first
  such flow at `start_time` (the option), each next one an exponential gap (mean 1/`flows_per_second`,
  drawn per flow from draws.py and rounded to the microsecond) later. The layout is an integer running
  sum carried across batches, so it does not depend on how rows are batched.
- A first pass reads only the start_time column, streaming, and checks that starts never decrease.
  That is the common case (synthetic tables have no start times; extraction of one capture writes
  flows in opening order), and then flows are read in file order: memory is O(batch).
- Otherwise a second pass of the start_time column builds the order: a stable argsort of all starts
  (int64 ns) — about 20 bytes per flow while sorting, 12 bytes per flow kept (sorted starts and int32
  row numbers) for the rest of the export — and each batch of rows in that order is gathered from the
  row groups that hold them. That costs reading time (a row group is re-read for every batch that
  needs one of its rows: at worst, random order, the file is read once per batch), not memory.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from netsynth.export import draws as D
from netsynth.export.options import ExportOptions, start_epoch
from netsynth.export.source import FlowSource
from netsynth.flows import FlowTable

Batch = tuple[np.ndarray, FlowTable, np.ndarray]  # (global rows, their flows, their start ns)


class StartLayout:
    """Start times in integer ns (µs-aligned) for consecutive rows; call on every row in row order."""

    def __init__(self, opts: ExportOptions, key: np.uint64) -> None:
        self.key = key
        self.mean_gap = 1.0 / float(opts.flows_per_second)
        self.last_us: int | None = None  # start of the last laid-out flow
        self.first_us = round(start_epoch(opts.start_time) * 1e6)

    def __call__(self, offset: int, start_s: np.ndarray) -> np.ndarray:
        """The ns start of each of the rows offset, offset + 1, ... given their table start seconds."""
        us = np.round(np.nan_to_num(start_s, nan=0.0) * 1e6).astype(np.int64)
        missing = np.flatnonzero(np.isnan(start_s))
        if len(missing):
            gaps = np.round(D.exponential(self.key, missing + offset, D.START_GAP, self.mean_gap) * 1e6)
            gaps = gaps.astype(np.int64)
            if self.last_us is None:
                gaps[0], self.last_us = 0, self.first_us
            laid = self.last_us + np.cumsum(gaps)
            us[missing] = laid
            self.last_us = int(laid[-1])
        return us * 1000


def is_ascending(source: FlowSource, opts: ExportOptions, key: np.uint64) -> bool:
    """True when start times never decrease in row order (streaming: reads only start_time)."""
    layout, last = StartLayout(opts, key), None
    for offset, start_s in source.start_times():
        ns = layout(offset, start_s)
        if not len(ns):
            continue
        if (last is not None and ns[0] < last) or np.any(ns[1:] < ns[:-1]):
            return False
        last = int(ns[-1])
    return True


def sort_order(source: FlowSource, opts: ExportOptions, key: np.uint64) -> tuple[np.ndarray, np.ndarray]:
    """(rows in stable start-time order, their sorted start ns) — the O(flows) part, 12 B per flow."""
    starts = np.empty(source.n, dtype=np.int64)
    layout = StartLayout(opts, key)
    for offset, start_s in source.start_times():
        starts[offset:offset + len(start_s)] = layout(offset, start_s)
    order = np.argsort(starts, kind="stable")
    starts.sort(kind="stable")  # in place: the same values as starts[order], without a third array
    return (order.astype(np.int32) if source.n < 2**31 else order), starts


def batches_in_start_order(source: FlowSource, opts: ExportOptions, key: np.uint64) -> Iterator[Batch]:
    """Every flow once, in stable start-time order, `opts.batch_size` flows at a time."""
    size = int(opts.batch_size)
    if is_ascending(source, opts, key):
        layout = StartLayout(opts, key)
        for offset, table in source.batches(size):
            yield np.arange(offset, offset + len(table), dtype=np.int64), table, layout(offset, table.start_time)
        return
    order, starts = sort_order(source, opts, key)
    for b in range(0, len(order), size):
        rows = order[b:b + size].astype(np.int64)
        yield rows, source.rows(rows), starts[b:b + size]
