"""Where an export reads its flows: a Parquet file, a folder of part files, or a table in memory.

The exporter never needs the whole table: it reads the `start_time` column alone to decide the order,
then full rows a batch at a time — in file order (`batches`) when start times ascend, or for any set
of rows (`rows`) when they do not. Only the columns the packets need are read (not flow ids, captures
or totals). A Parquet source reads row groups with pyarrow (`ParquetFile.iter_batches` /
`read_row_group`), so its memory is one batch plus pyarrow's buffer of the row group being decoded.
Every read error is an `InputError` naming the part file, raised before or during the export; the
output is written under a temporary name, so a late error still leaves no partial capture.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from netsynth.errors import InputError
from netsynth.flows import FlowTable
from netsynth.flows.schema import REQUIRED

# The columns a packet needs; the rest of a flow table (ids, captures, totals) is never read.
EXPORT_COLUMNS = ("label", "n_packets", "payload_len", "direction", "iat", "tcp_flags", "tcp_window",
                  "ip_version", "protocol", "src_ip", "dst_ip", "src_port", "dst_port", "start_time")
_ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, OSError)


class FlowSource(ABC):
    """Rows of a flow table by global index (row order; a folder's parts in sorted name order)."""

    n: int
    metadata: dict[str, str]

    @abstractmethod
    def start_times(self) -> Iterator[tuple[int, np.ndarray]]:
        """(offset, start seconds as float64, NaN = none) for consecutive runs of rows, in row order."""

    @abstractmethod
    def batches(self, size: int) -> Iterator[tuple[int, FlowTable]]:
        """(offset, table) of consecutive rows, at most `size` per table, in row order."""

    @abstractmethod
    def rows(self, rows: np.ndarray) -> FlowTable:
        """The given global rows, in the given order."""

    def producer(self) -> dict:
        """The `netsynth.producer` metadata, parsed (empty dict if absent or not JSON)."""
        raw = self.metadata.get("netsynth.producer")
        try:
            doc = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            return {"raw": raw}
        return doc if isinstance(doc, dict) else {"raw": raw}


class TableSource(FlowSource):
    """A table already in memory (library callers): batches are slices of it."""

    def __init__(self, table: FlowTable) -> None:
        table.validate("flow table")
        self.table = table
        self.n = len(table)
        self.metadata = dict(table.metadata)

    def start_times(self) -> Iterator[tuple[int, np.ndarray]]:
        yield 0, self.table.start_time.astype(np.float64)

    def batches(self, size: int) -> Iterator[tuple[int, FlowTable]]:
        for offset in range(0, self.n, size):
            yield offset, self.table.take(np.arange(offset, min(offset + size, self.n)))

    def rows(self, rows: np.ndarray) -> FlowTable:
        return self.table.take(rows)


class ParquetSource(FlowSource):
    """A Parquet flow table (file or folder of part files), read a row group or a batch at a time."""

    def __init__(self, path: str | os.PathLike) -> None:
        p = Path(path)
        if not p.exists():
            raise InputError(f"{p}: no such file")
        self.parts = sorted(p.glob("*.parquet")) if p.is_dir() else [p]
        if not self.parts:
            raise InputError(f"{p}: folder holds no .parquet part files")
        self.files = [self._open(part) for part in self.parts]
        self.columns = [[c for c in EXPORT_COLUMNS if c in f.schema_arrow.names] for f in self.files]
        self._check_widths()
        # One unit per row group: (file index, row group, first global row), for random access.
        units = [(i, g) for i, f in enumerate(self.files) for g in range(f.metadata.num_row_groups)]
        sizes = [self.files[i].metadata.row_group(g).num_rows for i, g in units]
        self.units = units
        self.unit_start = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
        self.n = int(self.unit_start[-1])
        raw = self.files[0].schema_arrow.metadata or {}
        self.metadata = {k.decode(): v.decode() for k, v in raw.items() if k.startswith(b"netsynth.")}

    @staticmethod
    def _open(part: Path) -> pq.ParquetFile:
        """Open one part and check it has the required columns."""
        try:
            # pre_buffer=False: with pre-buffering, pyarrow keeps the buffers of every row group read so
            # far until the file is closed — memory growing with the file (~28 B per flow measured).
            f = pq.ParquetFile(part, pre_buffer=False)
        except _ARROW_ERRORS as exc:
            raise InputError(f"{part}: not a readable Parquet flow table ({str(exc).splitlines()[0]})") from None
        missing = [c for c in REQUIRED if c not in f.schema_arrow.names]
        if missing:
            raise InputError(f"{part}: not a flow table, missing column(s) {', '.join(missing)}")
        return f

    def _check_widths(self) -> None:
        """All parts must have the same packet slots N, as `FlowTable.read` requires of a folder."""
        widths = []
        for part, f in zip(self.parts, self.files, strict=True):
            typ = f.schema_arrow.field("payload_len").type
            if not pa.types.is_fixed_size_list(typ):
                raise InputError(f"{part}: column 'payload_len' must be a fixed-size list, found {typ}")
            widths.append(typ.list_size)
        if len(set(widths)) > 1:
            raise InputError(f"{self.parts[0].parent}: part files have different packet counts {sorted(set(widths))}")

    def _unit(self, u: int, columns: list[str] | None = None) -> pa.Table:
        i, g = self.units[u]
        try:
            return self.files[i].read_row_group(g, columns=columns or self.columns[i])
        except _ARROW_ERRORS as exc:
            raise InputError(f"{self.parts[i]}: unreadable row group {g} ({str(exc).splitlines()[0]})") from None

    def start_times(self) -> Iterator[tuple[int, np.ndarray]]:
        for u, (i, _g) in enumerate(self.units):
            offset, size = int(self.unit_start[u]), int(self.unit_start[u + 1] - self.unit_start[u])
            if "start_time" not in self.columns[i]:
                yield offset, np.full(size, np.nan)
                continue
            col = self._unit(u, ["start_time"]).column(0)
            try:
                us = col.cast(pa.int64()).to_numpy(zero_copy_only=False).astype(np.float64)
            except _ARROW_ERRORS as exc:
                raise InputError(f"{self.parts[i]}: unreadable column 'start_time' ({exc})") from None
            yield offset, us / 1e6  # as FlowTable.from_arrow converts it: the same floats either way

    def batches(self, size: int) -> Iterator[tuple[int, FlowTable]]:
        offset = 0
        for part, f, cols in zip(self.parts, self.files, self.columns, strict=True):
            try:
                for batch in f.iter_batches(batch_size=size, columns=cols):
                    table = FlowTable.from_arrow(pa.Table.from_batches([batch]), str(part))
                    yield offset, table
                    offset += len(table)
            except _ARROW_ERRORS as exc:
                raise InputError(f"{part}: unreadable ({str(exc).splitlines()[0]})") from None

    def rows(self, rows: np.ndarray) -> FlowTable:
        """Rows from whichever row groups hold them: each needed row group is read once per call."""
        unit_of = np.searchsorted(self.unit_start, rows, side="right") - 1
        grouped = np.argsort(unit_of, kind="stable")
        pieces = []
        for u in np.unique(unit_of).tolist():
            local = rows[unit_of == u] - self.unit_start[u]
            part = self.parts[self.units[u][0]]
            pieces.append(FlowTable.from_arrow(self._unit(u).take(pa.array(local)), str(part)))
        return FlowTable.concat(pieces).take(np.argsort(grouped, kind="stable"))


def open_source(table_or_path: FlowTable | str | os.PathLike) -> FlowSource:
    """The source for what `export_pcap` was given (InputError naming the file if it is not a table)."""
    if isinstance(table_or_path, FlowTable):
        return TableSource(table_or_path)
    if isinstance(table_or_path, str | os.PathLike):
        return ParquetSource(table_or_path)
    raise InputError(f"export: expected a flow table or a path, got {type(table_or_path).__name__}")
