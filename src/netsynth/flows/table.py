"""`FlowTable`: the flow table held as NumPy columns, read from and written to Parquet.

Every stage works on NumPy arrays (models and metrics want matrices, not Arrow lists), so the table
keeps one array per column: per-packet columns are (n_flows, N) matrices, string columns are object
arrays with None for null, nullable integers use -1 and nullable floats NaN for null. Conversion to and
from Arrow happens only at the file boundary, where the schema is enforced and validated.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from netsynth.errors import InputError
from netsynth.flows import schema as S
from netsynth.utils.io import atomic_path

_INT_NULL = -1
_PACKET_DTYPES = {
    "payload_len": np.int32,
    "direction": np.int8,
    "iat": np.float32,
    "tcp_flags": np.uint8,
    "tcp_window": np.uint16,
}


@dataclass
class FlowTable:
    """A set of bidirectional flows, column by column.

    Required: `label`, `n_packets`, `payload_len`, `direction`; everything else has a default so that a
    generator can build a table from what it models. Use `FlowTable.build(...)` to get defaults filled.
    """

    label: np.ndarray
    n_packets: np.ndarray
    payload_len: np.ndarray
    direction: np.ndarray
    iat: np.ndarray
    tcp_flags: np.ndarray
    tcp_window: np.ndarray
    flow_id: np.ndarray
    origin: np.ndarray
    capture: np.ndarray
    ip_version: np.ndarray
    protocol: np.ndarray
    src_ip: np.ndarray
    dst_ip: np.ndarray
    src_port: np.ndarray  # int32, -1 = null
    dst_port: np.ndarray  # int32, -1 = null
    start_time: np.ndarray  # float64 seconds since the epoch, NaN = null
    duration: np.ndarray  # float64 seconds, NaN = null
    packets_total: np.ndarray
    bytes_total: np.ndarray
    metadata: dict[str, str] = field(default_factory=dict)
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    # ------------------------------------------------------------------ construction
    @classmethod
    def build(
        cls,
        *,
        label: Sequence[str] | np.ndarray,
        n_packets: np.ndarray,
        payload_len: np.ndarray,
        direction: np.ndarray,
        iat: np.ndarray | None = None,
        tcp_flags: np.ndarray | None = None,
        tcp_window: np.ndarray | None = None,
        origin: str | np.ndarray = "real",
        flow_id: np.ndarray | None = None,
        protocol: int | np.ndarray = 6,
        ip_version: int | np.ndarray = 4,
        metadata: Mapping[str, str] | None = None,
        **columns: np.ndarray,
    ) -> FlowTable:
        """Build a table from arrays, filling defaults and zeroing padding after `n_packets`."""
        pl = np.asarray(payload_len, dtype=np.int32)
        if pl.ndim != 2:
            raise InputError("payload_len must be a 2-D (flows x packets) array")
        n, width = pl.shape
        origin_arr = np.full(n, origin, dtype=object) if isinstance(origin, str) else np.asarray(origin, object)
        if flow_id is None:
            prefix = origin_arr[0] if n and isinstance(origin, str) else "flow"
            flow_id = np.array([f"{prefix}:{i}" for i in range(n)], dtype=object)

        def per_packet(arr: np.ndarray | None, name: str) -> np.ndarray:
            if arr is None:
                return np.zeros((n, width), dtype=_PACKET_DTYPES[name])
            return np.asarray(arr, dtype=_PACKET_DTYPES[name]).reshape(n, width)

        def per_flow(arr: int | np.ndarray, dtype: type) -> np.ndarray:
            return np.broadcast_to(np.asarray(arr, dtype=dtype), (n,)).copy()

        kw = dict(
            label=np.asarray(label, dtype=object),
            n_packets=np.asarray(n_packets, dtype=np.int16),
            payload_len=pl,
            direction=per_packet(direction, "direction"),
            iat=per_packet(iat, "iat"),
            tcp_flags=per_packet(tcp_flags, "tcp_flags"),
            tcp_window=per_packet(tcp_window, "tcp_window"),
            flow_id=np.asarray(flow_id, dtype=object),
            origin=origin_arr,
            capture=np.full(n, None, dtype=object),
            ip_version=per_flow(ip_version, np.uint8),
            protocol=per_flow(protocol, np.uint8),
            src_ip=np.full(n, None, dtype=object),
            dst_ip=np.full(n, None, dtype=object),
            src_port=np.full(n, _INT_NULL, dtype=np.int32),
            dst_port=np.full(n, _INT_NULL, dtype=np.int32),
            start_time=np.full(n, np.nan),
            duration=np.full(n, np.nan),
            packets_total=None,
            bytes_total=None,
            metadata=dict(metadata or {}),
        )
        for name, value in columns.items():
            if name not in kw:
                raise InputError(f"unknown flow-table column {name!r}")
            kw[name] = value
        table = cls(**kw)
        table._zero_padding()
        if table.packets_total is None:
            table.packets_total = table.n_packets.astype(np.int64)
        else:
            table.packets_total = np.asarray(table.packets_total, dtype=np.int64)
        if table.bytes_total is None:
            table.bytes_total = table.payload_len.sum(axis=1).astype(np.int64)
        else:
            table.bytes_total = np.asarray(table.bytes_total, dtype=np.int64)
        if np.isnan(table.duration).all():
            table.duration = table.iat.astype(np.float64).sum(axis=1)
        return table

    def _zero_padding(self) -> None:
        mask = self.mask
        for name in _PACKET_DTYPES:
            getattr(self, name)[~mask] = 0

    # ------------------------------------------------------------------ basic views
    def __len__(self) -> int:
        return int(self.payload_len.shape[0])

    @property
    def max_packets(self) -> int:
        """N, the number of per-packet slots."""
        return int(self.payload_len.shape[1])

    @property
    def mask(self) -> np.ndarray:
        """Boolean (flows x N) matrix, True where a packet is kept."""
        return np.arange(self.max_packets)[None, :] < self.n_packets.astype(np.int64)[:, None]

    @property
    def classes(self) -> list[str]:
        """Sorted distinct labels."""
        return sorted({str(v) for v in self.label})

    def class_counts(self) -> dict[str, int]:
        """Flows per class, largest first."""
        values, counts = np.unique(self.label.astype(str), return_counts=True)
        order = np.argsort(-counts, kind="stable")
        return {str(values[i]): int(counts[i]) for i in order}

    def take(self, index: np.ndarray | Sequence[int]) -> FlowTable:
        """Rows `index` (integer positions or a boolean mask) as a new table."""
        idx = np.asarray(index)
        kw = {f.name: getattr(self, f.name)[idx] for f in fields(self) if f.name not in ("metadata", "extra")}
        return FlowTable(**kw, metadata=dict(self.metadata), extra={k: v[idx] for k, v in self.extra.items()})

    def truncate(self, max_packets: int) -> FlowTable:
        """Keep only the first `max_packets` slots (n_packets is capped accordingly)."""
        k = min(max_packets, self.max_packets)
        out = replace(self, metadata=dict(self.metadata), extra=dict(self.extra))
        for name in _PACKET_DTYPES:
            setattr(out, name, getattr(self, name)[:, :k].copy())
        out.n_packets = np.minimum(self.n_packets, k).astype(np.int16)
        return out

    @staticmethod
    def concat(tables: Iterable[FlowTable]) -> FlowTable:
        """Stack tables with the same N; metadata is taken from the first."""
        tabs = [t for t in tables]
        if not tabs:
            raise InputError("cannot concatenate zero flow tables")
        widths = {t.max_packets for t in tabs}
        if len(widths) != 1:
            raise InputError(f"cannot concatenate flow tables with different packet counts {sorted(widths)}")
        kw = {
            f.name: np.concatenate([getattr(t, f.name) for t in tabs])
            for f in fields(FlowTable)
            if f.name not in ("metadata", "extra")
        }
        common = set.intersection(*(set(t.extra) for t in tabs))
        extra = {k: np.concatenate([t.extra[k] for t in tabs]) for k in sorted(common)}
        return FlowTable(**kw, metadata=dict(tabs[0].metadata), extra=extra)

    # ------------------------------------------------------------------ validation
    def validate(self, source: str = "flow table") -> None:
        """Raise InputError naming the first column that breaks the contract."""
        n, width = self.payload_len.shape
        for name in _PACKET_DTYPES:
            if getattr(self, name).shape != (n, width):
                raise InputError(f"{source}: column {name!r} has shape {getattr(self, name).shape}, want {(n, width)}")
        if width < 1:
            raise InputError(f"{source}: per-packet columns are empty")
        if n and (self.n_packets.min() < 1 or self.n_packets.max() > width):
            raise InputError(f"{source}: column 'n_packets' outside [1, {width}]")
        mask = self.mask
        if np.any(self.payload_len < 0) or np.any(self.payload_len > S.MAX_PAYLOAD_REAL):
            raise InputError(f"{source}: column 'payload_len' outside [0, {S.MAX_PAYLOAD_REAL}]")
        if not np.isin(self.direction, (0, 1)).all():
            raise InputError(f"{source}: column 'direction' has values other than 0 and 1")
        if not np.isfinite(self.iat).all() or np.any(self.iat < 0):
            raise InputError(f"{source}: column 'iat' has negative or non-finite values")
        for name in _PACKET_DTYPES:
            if np.any(getattr(self, name)[~mask] != 0):
                raise InputError(f"{source}: column {name!r} is not 0 after n_packets")
        if any(v is None or str(v) == "" for v in self.label):
            raise InputError(f"{source}: column 'label' has empty values")

    # ------------------------------------------------------------------ Arrow / Parquet
    def to_arrow(self) -> pa.Table:
        """Convert to an Arrow table with the contract's schema and metadata."""
        width = self.max_packets
        meta = {k.encode(): v.encode() for k, v in self.metadata.items()}
        schema = S.arrow_schema(width, meta)

        def nullable_int(a: np.ndarray, typ: pa.DataType) -> pa.Array:
            return pa.array(np.where(a < 0, 0, a), type=typ, mask=a < 0)

        start_us = np.where(np.isnan(self.start_time), 0, np.round(self.start_time * 1e6)).astype(np.int64)
        cols: dict[str, pa.Array] = {
            "flow_id": pa.array(self.flow_id.astype(str), pa.string()),
            "label": pa.array(self.label.astype(str), pa.string()).dictionary_encode(),
            "origin": pa.array(self.origin.astype(str), pa.string()),
            "capture": pa.array(list(self.capture), pa.string()),
            "ip_version": pa.array(self.ip_version, pa.uint8()),
            "protocol": pa.array(self.protocol, pa.uint8()),
            "src_ip": pa.array(list(self.src_ip), pa.string()),
            "dst_ip": pa.array(list(self.dst_ip), pa.string()),
            "src_port": nullable_int(self.src_port, pa.uint16()),
            "dst_port": nullable_int(self.dst_port, pa.uint16()),
            "start_time": pa.array(start_us, pa.timestamp("us", tz="UTC"), mask=np.isnan(self.start_time)),
            "duration": pa.array(self.duration, pa.float64(), mask=np.isnan(self.duration)),
            "packets_total": pa.array(self.packets_total, pa.int64()),
            "bytes_total": pa.array(self.bytes_total, pa.int64()),
            "n_packets": pa.array(self.n_packets, pa.int16()),
        }
        for name, typ in S.PACKET_COLUMNS.items():
            flat = pa.array(np.ascontiguousarray(getattr(self, name)).reshape(-1), typ)
            cols[name] = pa.FixedSizeListArray.from_arrays(flat, width)
        arrays = [cols[f.name].cast(f.type) if cols[f.name].type != f.type else cols[f.name] for f in schema]
        table = pa.Table.from_arrays(arrays, schema=schema)
        for name, values in self.extra.items():
            table = table.append_column(name, pa.array(list(values)))
        return table

    @classmethod
    def from_arrow(cls, table: pa.Table, source: str = "flow table") -> FlowTable:
        """Convert an Arrow table (from Parquet) back, checking columns and types."""
        names = set(table.column_names)
        missing = [c for c in S.REQUIRED if c not in names]
        if missing:
            raise InputError(f"{source}: not a flow table, missing column(s) {', '.join(missing)}")
        n = table.num_rows
        raw_meta = table.schema.metadata or {}
        metadata = {k.decode(): v.decode() for k, v in raw_meta.items() if k.startswith(b"netsynth.")}

        def packet_matrix(name: str) -> np.ndarray | None:
            if name not in names:
                return None
            col = table.column(name).combine_chunks()
            if not pa.types.is_fixed_size_list(col.type):
                raise InputError(f"{source}: column {name!r} must be a fixed-size list, found {col.type}")
            width = col.type.list_size
            values = col.flatten().to_numpy(zero_copy_only=False)
            if len(values) != n * width:
                raise InputError(f"{source}: column {name!r} has null entries")
            return np.array(values.reshape(n, width), dtype=_PACKET_DTYPES[name])

        def flow_col(name: str, kind: str) -> np.ndarray | None:
            if name not in names:
                return None
            col = table.column(name)
            if kind == "str":
                if pa.types.is_dictionary(col.type):
                    col = col.cast(pa.string())
                return np.array(col.to_pylist(), dtype=object)
            if kind == "nint":
                arr = col.fill_null(_INT_NULL if not pa.types.is_unsigned_integer(col.type) else 0)
                out = arr.to_numpy().astype(np.int32)
                nulls = col.is_null().to_numpy(zero_copy_only=False)
                out[nulls] = _INT_NULL
                return out
            if kind == "time":
                us = col.cast(pa.int64()).to_numpy(zero_copy_only=False).astype(np.float64)
                return us / 1e6
            if kind == "float":
                return col.to_numpy(zero_copy_only=False).astype(np.float64)
            return np.array(col.to_numpy(zero_copy_only=False))

        try:
            columns = {k: v for k, v in {
                "iat": packet_matrix("iat"),
                "tcp_flags": packet_matrix("tcp_flags"),
                "tcp_window": packet_matrix("tcp_window"),
                "flow_id": flow_col("flow_id", "str"),
                "capture": flow_col("capture", "str"),
                "src_ip": flow_col("src_ip", "str"),
                "dst_ip": flow_col("dst_ip", "str"),
                "src_port": flow_col("src_port", "nint"),
                "dst_port": flow_col("dst_port", "nint"),
                "start_time": flow_col("start_time", "time"),
                "duration": flow_col("duration", "float"),
                "packets_total": flow_col("packets_total", "raw"),
                "bytes_total": flow_col("bytes_total", "raw"),
            }.items() if v is not None}
            origin = flow_col("origin", "str")
            proto = flow_col("protocol", "raw")
            ipv = flow_col("ip_version", "raw")
            payload = packet_matrix("payload_len")
            direction = packet_matrix("direction")
            label = flow_col("label", "str")
            n_packets = flow_col("n_packets", "raw")
        except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError, TypeError) as exc:
            raise InputError(f"{source}: unreadable column ({exc})") from None
        assert payload is not None and direction is not None
        known = set(S.FLOW_COLUMNS) | set(S.PACKET_COLUMNS)
        extra = {c: np.array(table.column(c).to_pylist(), dtype=object) for c in table.column_names if c not in known}
        raw_n = np.asarray(n_packets)
        if raw_n.size and (raw_n.min() < 1 or raw_n.max() > payload.shape[1]):
            raise InputError(f"{source}: column 'n_packets' outside [1, {payload.shape[1]}]")
        for name, arr in (("label", label), ("payload_len", payload), ("direction", direction)):
            if arr is not None and len(arr) != n:
                raise InputError(f"{source}: column {name!r} has the wrong length")
        mask = np.arange(payload.shape[1])[None, :] < raw_n.astype(np.int64)[:, None]
        if np.any(payload[~mask] != 0) or np.any(direction[~mask] != 0):
            raise InputError(f"{source}: per-packet columns are not 0 after n_packets")
        table_out = cls.build(
            label=label,
            n_packets=raw_n,
            payload_len=payload,
            direction=direction,
            origin=origin if origin is not None else "real",
            protocol=proto if proto is not None else 6,
            ip_version=ipv if ipv is not None else 4,
            metadata=metadata,
            **columns,
        )
        table_out.extra = extra
        table_out.validate(source)
        return table_out

    @classmethod
    def read(cls, path: str | os.PathLike) -> FlowTable:
        """Read a flow table from a Parquet file (or a folder of Parquet part files)."""
        p = Path(path)
        if not p.exists():
            raise InputError(f"{p}: no such file")
        try:
            if p.is_dir():
                parts = sorted(p.glob("*.parquet"))
                if not parts:
                    raise InputError(f"{p}: folder holds no .parquet part files")
                tables = [cls.from_arrow(pq.read_table(part), str(part)) for part in parts]
                return cls.concat(tables)
            arrow = pq.read_table(p)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(f"{p}: not a readable Parquet flow table ({str(exc).splitlines()[0]})") from None
        return cls.from_arrow(arrow, str(p))

    def write(self, path: str | os.PathLike, *, row_group_size: int = 65536) -> None:
        """Validate and write atomically as Parquet."""
        self.validate(str(path))
        table = self.to_arrow()
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp, row_group_size=row_group_size, compression="zstd")

    def producer(self) -> dict:
        """The `netsynth.producer` metadata, parsed (empty dict if absent)."""
        raw = self.metadata.get("netsynth.producer")
        try:
            return json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            return {"raw": raw}


def read_flows(path: str | os.PathLike) -> FlowTable:
    """Read and validate a flow table (Parquet file or folder of part files)."""
    return FlowTable.read(path)


def write_flows(table: FlowTable, path: str | os.PathLike) -> None:
    """Validate and write a flow table atomically."""
    table.write(path)
