"""nDPI application names and categories for our flows, via nfstream's bundled nDPI (optional extra).

nfstream re-reads the capture with its own libpcap-based engine; its flows are joined to ours by
protocol + unordered endpoints, then by the nearest start time (within the idle timeout, since the two
engines may cut a long 5-tuple into flows at slightly different packets). A flow of ours with no
nfstream counterpart gets no name (and, with `label_from="ndpi"`, no label: it is dropped as
unlabelled). nfstream is imported only here, so the core never needs it (`pip install netsynth[ndpi]`).
"""

from __future__ import annotations

import importlib.util
import os
import socket
from collections import defaultdict

import numpy as np

from netsynth.errors import InputError
from netsynth.extract import biflows as B


def available() -> bool:
    """Whether nfstream (and so nDPI) can be imported, without importing it."""
    return importlib.util.find_spec("nfstream") is not None


def require() -> None:
    """Raise a one-line InputError if the nDPI extra is missing."""
    if not available():
        raise InputError("nDPI labels need the optional nfstream extra: pip install 'netsynth[ndpi]'")


def _ip(raw: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)


def ndpi_flows(path: str | os.PathLike, config: B.AssemblyConfig) -> dict[tuple, list[tuple[float, str, str]]]:
    """nfstream's flows of one capture: key → [(first seen in s, application, category)]."""
    require()
    from nfstream import NFStreamer

    streamer = NFStreamer(
        source=os.fspath(path), decode_tunnels=True, idle_timeout=int(max(1, config.idle_timeout)),
        active_timeout=10**9 if config.active_timeout is None else int(max(1, config.active_timeout)),
        statistical_analysis=False, splt_analysis=0, n_dissections=20, n_meters=1,
    )
    out: dict[tuple, list[tuple[float, str, str]]] = defaultdict(list)
    try:
        for f in streamer:
            a, b = (f.src_ip, int(f.src_port)), (f.dst_ip, int(f.dst_port))
            key = (int(f.protocol), *sorted((a, b)))
            out[key].append((f.bidirectional_first_seen_ms / 1000.0, str(f.application_name),
                             str(f.application_category_name)))
    except Exception as exc:  # nfstream raises plain exceptions for captures libpcap rejects
        raise InputError(f"{path}: nDPI (nfstream) could not read it ({exc})") from None
    return out


def annotate(
    path: str | os.PathLike, batches: list[B.Batch], config: B.AssemblyConfig, warnings: list[str]
) -> list[np.ndarray]:
    """Per batch, an (n, 2) object array of (nDPI application, category) or None where unmatched."""
    try:
        theirs = ndpi_flows(path, config)
    except InputError as exc:
        warnings.append(str(exc).split(": ", 1)[-1])
        theirs = {}
    out = []
    tol = config.idle_timeout
    for batch in batches:
        names = np.full((len(batch["seq"]), 2), None, dtype=object)
        for i in range(len(batch["seq"])):
            proto = int(batch["proto"][i])
            ports = (int(batch["sport"][i]), int(batch["dport"][i])) if proto in (6, 17) else (0, 0)
            a, b = (_ip(batch["src"][i]), ports[0]), (_ip(batch["dst"][i]), ports[1])
            cands = theirs.get((proto, *sorted((a, b))))
            if not cands:
                continue
            start = float(batch["first"][i])
            best = min(cands, key=lambda c: abs(c[0] - start))
            if abs(best[0] - start) <= tol:
                names[i] = best[1:]
        out.append(names)
    return out
