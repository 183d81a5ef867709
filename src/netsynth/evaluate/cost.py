"""Cost of a generator, measured in the run that uses it: parameters, training seconds, sampling speed, memory.

Peak memory is the resident set size (RSS) of this process sampled every 20 ms while the work runs: Python
allocators (tracemalloc) do not see torch's buffers, and `ru_maxrss` only ever grows over the process's
life, so neither could tell two fits in one run apart. We report the peak RSS during the call and its
increase over the RSS just before it (the second is what the fit itself needed).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """Current resident set size of this process (0 where /proc is unavailable)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


@dataclass
class Measurement:
    """Wall seconds and memory of one measured block."""

    seconds: float = 0.0
    rss_before: int = 0
    rss_peak: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rss_increase(self) -> int:
        return max(0, self.rss_peak - self.rss_before)

    def as_dict(self, prefix: str) -> dict[str, float]:
        return {f"{prefix}_seconds": self.seconds, f"{prefix}_peak_rss_mb": self.rss_peak / 2**20,
                f"{prefix}_rss_increase_mb": self.rss_increase / 2**20}


@contextmanager
def measure(interval: float = 0.02) -> Iterator[Measurement]:
    """Time a block and track its peak RSS with a sampling thread."""
    m = Measurement(rss_before=rss_bytes())
    m.rss_peak = m.rss_before
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(interval):
            m.rss_peak = max(m.rss_peak, rss_bytes())

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    try:
        yield m
    finally:
        m.seconds = time.perf_counter() - t0
        stop.set()
        thread.join()
        m.rss_peak = max(m.rss_peak, rss_bytes())


def timed(fn: Callable[[], Any]) -> tuple[Any, Measurement]:
    """Run `fn()` under `measure()` and return (result, measurement)."""
    with measure() as m:
        result = fn()
    return result, m
