"""Options and summary of `export_pcap`, with the validation every option gets before any work starts.

Options are a frozen keyword-only dataclass so that the CLI, tests and library callers share one set of
names and defaults; `ExportOptions.from_kwargs` is what the CLI calls with its parsed flags. Everything
is checked up front (bad CIDR, unknown format, non-positive rate) so that a user mistake is an
`InputError` before a single byte is written, never a half-finished capture.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from netsynth.errors import InputError

FORMATS = ("pcap", "pcapng")
PAYLOADS = ("zeros", "random")
DEFAULT_START = "2026-01-01T00:00:00Z"
# Server port used when neither the table, the model's endpoint statistics nor `server_ports` give
# one: HTTPS for TCP, DNS for UDP — the most common server ports of each protocol in real captures.
DEFAULT_SERVER_PORTS = {6: 443, 17: 53}
# Flows read per batch: ~0.7 KB each in memory at N = 20 (NumPy columns and label/address strings),
# so ~11 MiB per batch; large enough that per-batch Parquet and NumPy overheads are negligible.
DEFAULT_BATCH_SIZE = 16384


@dataclass(frozen=True, kw_only=True)
class ExportOptions:
    """How a flow table becomes packets. Defaults give a deterministic, replayable IPv4/IPv6 capture.

    - `format`: "pcap" (microsecond timestamps) or "pcapng" (SHB comment, `ts_resolution` digits).
    - `clients`, `servers`, `clients6`, `servers6`: address pools (CIDR) for flows whose table row has
      no usable address; v6 pools are used for rows with ip_version 6.
    - `model`: a model folder whose model.json "endpoints" gives per-class server-port distributions.
    - `server_ports`: fallback server port, one int for all classes or {class: port}; classes it does
      not cover get 443 (TCP) / 53 (UDP).
    - `flows_per_second`, `start_time`: layout of flows without a start time — the first at
      `start_time`, then gaps drawn from an exponential distribution of mean 1/rate (Poisson arrivals).
    - `payload`: "zeros" or "random" (seeded bytes); never real data.
    - `seed`: drives every random choice (ISNs, ports, addresses, gaps, payload bytes).
    - `close_tcp`: append the FIN/ACK exchange a truncated TCP flow lacks (counted as added packets).
    - `ts_resolution`: pcapng timestamp digits, 9 (ns) or 6 (µs); pcap is always µs.
    - `batch_size`: flows read from the table at a time; bounds memory, never changes the output bytes
      (every per-flow draw is a function of the seed and the flow's row, see export/draws.py).
    """

    format: str = "pcap"
    clients: str = "10.0.0.0/16"
    servers: str = "203.0.113.0/24"
    clients6: str = "fd00::/64"
    servers6: str = "2001:db8::/64"
    model: str | Path | None = None
    server_ports: int | Mapping[str, int] | None = None
    flows_per_second: float = 10.0
    start_time: str | float | datetime = DEFAULT_START
    payload: str = "zeros"
    seed: int = 0
    close_tcp: bool = False
    ts_resolution: int = 9
    batch_size: int = DEFAULT_BATCH_SIZE

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> ExportOptions:
        """Build from keyword arguments, dropping None values (unset CLI flags) and naming unknown ones."""
        return cls().with_overrides(**kwargs)

    def with_overrides(self, **kwargs: Any) -> ExportOptions:
        """A copy with the given fields replaced; None values keep the current value."""
        valid = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(kwargs) - valid)
        if unknown:
            raise InputError(f"export: unknown option(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}")
        return dataclasses.replace(self, **{k: v for k, v in kwargs.items() if v is not None})

    def validate(self) -> None:
        """Raise InputError for the first option that cannot work."""
        if self.format not in FORMATS:
            raise InputError(f"export: --format must be one of {', '.join(FORMATS)}, not {self.format!r}")
        if self.payload not in PAYLOADS:
            raise InputError(f"export: --payload must be one of {', '.join(PAYLOADS)}, not {self.payload!r}")
        if self.ts_resolution not in (6, 9):
            raise InputError(f"export: ts_resolution must be 6 or 9, not {self.ts_resolution!r}")
        whole = isinstance(self.batch_size, numbers.Integral) and not isinstance(self.batch_size, bool)
        if not whole or self.batch_size < 1:
            raise InputError(f"export: --batch-size must be a positive whole number, not {self.batch_size!r}")
        rate = float(self.flows_per_second)
        if not math.isfinite(rate) or rate <= 0:
            raise InputError(f"export: --flows-per-second must be a positive number, not {self.flows_per_second!r}")
        for name, version in (("clients", 4), ("servers", 4), ("clients6", 6), ("servers6", 6)):
            parse_pool(getattr(self, name), version, name)
        start_epoch(self.start_time)
        if isinstance(self.server_ports, int) and not 0 < self.server_ports < 65536:
            raise InputError(f"export: server port {self.server_ports} outside 1..65535")
        if isinstance(self.server_ports, Mapping):
            for cls_name, port in self.server_ports.items():
                if not 0 < int(port) < 65536:
                    raise InputError(f"export: server port {port} for class {cls_name!r} outside 1..65535")


def parse_pool(cidr: str, version: int, name: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """The network of an address pool option, checked to be of the IP version it is used for."""
    try:
        net = ipaddress.ip_network(str(cidr), strict=False)
    except ValueError:
        raise InputError(f"export: --{name} {cidr!r} is not a CIDR network (e.g. 10.0.0.0/16)") from None
    if net.version != version:
        raise InputError(f"export: --{name} {cidr!r} must be an IPv{version} network")
    return net


def start_epoch(value: str | float | datetime) -> float:
    """Epoch seconds of the `start_time` option (ISO 8601 text, epoch number or datetime; naive = UTC)."""
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise InputError(f"export: --start-time {value!r} is not an ISO 8601 time "
                             "(e.g. 2026-01-01T00:00:00Z)") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


@dataclass
class ExportSummary:
    """What was written: counts a user checks against the flow table, and where the file went.

    `packets` includes `added_packets` (close_tcp); `bytes` counts whole frames as written;
    `skipped` maps a reason to a number of flows left out; `clipped_packets` counts payloads shortened
    because IP's 16-bit length field cannot carry them.
    """

    path: str
    format: str
    flows: int = 0
    packets: int = 0
    bytes: int = 0
    payload_bytes: int = 0
    added_packets: int = 0
    clipped_packets: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    first_time: float | None = None
    last_time: float | None = None
    model_hash: str | None = None

    @property
    def skipped_flows(self) -> int:
        """Flows not written, all reasons together."""
        return sum(self.skipped.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (times as ISO text) for logs and the CLI."""
        out = dataclasses.asdict(self)
        out["skipped_flows"] = self.skipped_flows
        for key in ("first_time", "last_time"):
            if out[key] is not None:
                out[key] = datetime.fromtimestamp(out[key], UTC).isoformat().replace("+00:00", "Z")
        return out
