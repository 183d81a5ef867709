"""Where flow labels come from: a labels CSV (capture- or flow-level) or the capture's path.

Every flow needs a class (the table's `label` is required and models are class-conditioned), so a
label source is mandatory: a constant "unknown" label would silently produce a useless training set.

The CSV has `capture,label` and, for flow-level rows, also `protocol,ip_a,port_a,ip_b,port_b` (the pair
is unordered, protocol is a name such as `TCP`/`UDP` as in ndpi-tests/labels.csv, or an IANA number).
Extra columns (e.g. `application`) are ignored. A flow-level row wins over a capture-level row of the
same capture. `capture` is the path relative to the folder given to extraction, or the bare file name
when that name is unique among the captures read.
"""

from __future__ import annotations

import csv
import ipaddress
import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from netsynth.errors import InputError

_PROTOCOLS = {"tcp": 6, "udp": 17}
_FLOW_COLUMNS = ("protocol", "ip_a", "port_a", "ip_b", "port_b")
LABEL_FROM = ("parent", "stem", "ndpi")

Endpoint = tuple[bytes, int]


def _endpoints(ip: str, port: str, where: str) -> list[Endpoint]:
    """The endpoint(s) a CSV cell pair names: one, or several for nDPI's ambiguous IPv6 text."""
    try:
        p = int(port)
        return [(ipaddress.ip_address(ip.strip()).packed, p)]
    except ValueError:
        candidates = _ndpi_ipv6(ip) if port.strip().isdigit() else []
        if not candidates:
            raise InputError(f"{where}: bad endpoint {ip!r}:{port!r}") from None
        return [(c, int(port)) for c in candidates]


def _ndpi_ipv6(ip: str) -> list[bytes]:
    """Every address nDPI's malformed IPv6 text with several '::' can stand for.

    nDPI's formatter compresses *each* run of zero groups (e.g. `2600:1901::7a0b::`), so the text is
    ambiguous; we accept all ways of filling each '::' with one or more zero groups (a handful).
    Three rows of ndpi-tests/labels.csv need this.
    """
    pieces = [p.split(":") if p else [] for p in ip.strip().split("::")]
    gaps = len(pieces) - 1
    free = 8 - sum(len(p) for p in pieces)
    if gaps < 2 or free < gaps:
        return []
    out = []
    for fill in itertools.product(range(1, free + 1), repeat=gaps):
        if sum(fill) != free:
            continue
        groups = list(pieces[0])
        for zeros, piece in zip(fill, pieces[1:], strict=True):
            groups += ["0"] * zeros + piece
        try:
            out.append(ipaddress.IPv6Address(":".join(groups)).packed)
        except ValueError:
            return []
    return out


def _protocol(value: str, where: str) -> int:
    v = value.strip().lower()
    if v in _PROTOCOLS:
        return _PROTOCOLS[v]
    if v.isdigit():
        return int(v)
    raise InputError(f"{where}: unknown protocol {value!r} (use TCP, UDP or a number)")


def flow_key(proto: int, a: Endpoint, b: Endpoint) -> tuple[int, Endpoint, Endpoint]:
    """The unordered-pair key the assembler also uses, so both sides agree on endpoint order."""
    return (proto, a, b) if a <= b else (proto, b, a)


@dataclass
class LabelSource:
    """Resolves a flow's label from its capture name and endpoints; `None` means unlabelled."""

    description: str
    by_capture: dict[str, str] = field(default_factory=dict)
    by_flow: dict[str, dict[tuple, str]] = field(default_factory=dict)
    label_from: str | None = None
    conflicts: int = 0
    _alias: dict[str, str] = field(default_factory=dict)

    def bind(self, captures: Sequence[str]) -> None:
        """Let bare file names in the CSV match captures whose base name is unique among `captures`."""
        names: dict[str, list[str]] = {}
        for c in captures:
            names.setdefault(PurePosixPath(c).name, []).append(c)
        self._alias = {c: PurePosixPath(c).name for cs in names.values() if len(cs) == 1 for c in cs}

    def _lookup_name(self, capture: str, table: dict) -> str | None:
        if capture in table:
            return capture
        alias = self._alias.get(capture)
        return alias if alias is not None and alias in table else None

    def for_capture(self, capture: str, path: str | None = None) -> tuple[str | None, dict[tuple, str] | None]:
        """(capture-level label or None, flow-level labels of this capture or None).

        With `label_from="parent"`, a capture named directly on the command line has no folder in its
        `capture` name; its real folder (`path`) names it then, as a user pointing at
        `Aria/Setup-A-1-STA.pcap` expects.
        """
        if self.label_from == "parent":
            parent = PurePosixPath(capture).parent.name
            if not parent and path is not None:
                parent = Path(path).resolve().parent.name
            return (parent or None, None)
        if self.label_from == "stem":
            return (_stem(capture), None)
        if self.label_from == "ndpi":  # labels come per flow from nDPI (see extract.ndpi)
            return (None, None)
        name = self._lookup_name(capture, self.by_capture)
        fname = self._lookup_name(capture, self.by_flow)
        return (self.by_capture[name] if name else None, self.by_flow[fname] if fname else None)

    def captures_named(self) -> set[str]:
        """Capture names the CSV mentions (to warn about rows that matched nothing)."""
        return set(self.by_capture) | set(self.by_flow)


def _stem(capture: str) -> str:
    name = PurePosixPath(capture).name
    for ext in (".gz", ".zst", ".xz"):
        if name.endswith(ext):
            name = name[: -len(ext)]
    for ext in (".pcapng", ".pcap", ".cap"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return PurePosixPath(name).stem


def label_source(labels: str | os.PathLike | None, label_from: str | None) -> LabelSource:
    """Build the label source from the `labels=` / `label_from=` options (exactly one is required)."""
    if labels is not None and label_from is not None:
        raise InputError("give either labels (--labels FILE.csv) or label_from (--label-from), not both")
    if label_from is not None:
        if label_from not in LABEL_FROM:
            raise InputError(f"label_from must be one of {', '.join(LABEL_FROM)}, not {label_from!r}")
        return LabelSource(description=f"label_from:{label_from}", label_from=label_from)
    if labels is None:
        raise InputError(
            "no label source: pass labels=FILE.csv (--labels) with capture,label[,protocol,ip_a,port_a,"
            "ip_b,port_b] columns, or label_from='parent'|'stem' (--label-from) to label by folder or file name"
        )
    return read_labels(labels)


def read_labels(path: str | os.PathLike) -> LabelSource:
    """Parse a labels CSV; errors name the file and line."""
    src = LabelSource(description=f"labels:{os.fspath(path)}")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            cols = [c.strip() for c in (reader.fieldnames or [])]
            if "capture" not in cols or "label" not in cols:
                raise InputError(f"{path}: labels CSV needs 'capture' and 'label' columns, found {cols}")
            reader.fieldnames = cols
            flow_level = all(c in cols for c in _FLOW_COLUMNS)
            for lineno, row in enumerate(reader, start=2):
                _add_row(src, row, flow_level, f"{path}:{lineno}")
    except OSError as exc:
        raise InputError(f"{path}: cannot read labels ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: not a readable CSV ({exc})") from None
    return src


def _add_row(src: LabelSource, row: dict[str, str | None], flow_level: bool, where: str) -> None:
    capture = (row.get("capture") or "").strip()
    label = (row.get("label") or "").strip()
    if not capture or not label:
        return
    capture = PurePosixPath(capture.replace("\\", "/")).as_posix()
    if flow_level and (row.get("protocol") or "").strip():
        proto = _protocol(row["protocol"] or "", where)
        flows = src.by_flow.setdefault(capture, {})
        for a in _endpoints(row["ip_a"] or "", row["port_a"] or "", where):
            for b in _endpoints(row["ip_b"] or "", row["port_b"] or "", where):
                key = flow_key(proto, a, b)
                if flows.setdefault(key, label) != label:
                    src.conflicts += 1  # first row wins; a warning reports how many disagreed
    else:
        src.by_capture[capture] = label
