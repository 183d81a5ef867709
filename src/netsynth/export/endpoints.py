"""Who talks to whom: addresses, ports, MACs and TTLs for exported flows.

Synthetic tables usually carry no addresses, and real ones may carry pseudonyms, so every endpoint
comes from the table when it is a usable address and from a configurable pool otherwise. Everything
here is deterministic from the seed and the flow's index in the table (pool draws) or from the address
itself (MAC, TTL, first IP ID): the same host always looks the same across flows and runs, as a real
host would.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from netsynth.errors import InputError
from netsynth.export import draws as D
from netsynth.export.options import DEFAULT_SERVER_PORTS, ExportOptions, parse_pool

EPHEMERAL_PORTS = (32768, 60999)  # Linux's default ip_local_port_range
CLIENT_TTL = 64  # Linux/macOS/Android/iOS initial TTL
SERVER_TTLS = (64, 64, 64, 128)  # servers: mostly Unix-like (64), a quarter Windows (128)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _digest(data: bytes, person: bytes, size: int = 8) -> bytes:
    return hashlib.blake2b(data, digest_size=size, person=person).digest()


def mac_for(ip: bytes) -> bytes:
    """The MAC a frame to/from this IP carries: a locally administered unicast MAC (02:xx:..) derived
    from the IP, so each host keeps one MAC; broadcast and multicast IPs get their standard group MACs
    (ff:ff:ff:ff:ff:ff, 01:00:5e + 23 bits, 33:33 + 32 bits) as real stacks send them."""
    if ip == b"\xff\xff\xff\xff":
        return b"\xff" * 6
    if len(ip) == 4 and 224 <= ip[0] <= 239:
        return b"\x01\x00\x5e" + bytes([ip[1] & 0x7F]) + ip[2:]
    if len(ip) == 16 and ip[0] == 0xFF:
        return b"\x33\x33" + ip[12:]
    return b"\x02" + _digest(ip, b"netsynth-mac", 5)


def server_ttl(ip: bytes) -> int:
    """Initial TTL of a server, fixed per address: 64 (Unix-like) or 128 (Windows)."""
    return SERVER_TTLS[_digest(ip, b"netsynth-ttl", 1)[0] % len(SERVER_TTLS)]


def first_ip_id(ip: bytes) -> int:
    """A host's first IPv4 ID: random-looking per host, then incremented per packet it sends."""
    return int.from_bytes(_digest(ip, b"netsynth-ipid", 2), "big")


class Pool:
    """Host addresses of one CIDR network: random draws for missing addresses, hashes for pseudonyms."""

    def __init__(self, network: Network) -> None:
        self.network = network
        size = network.num_addresses
        # Skip the network and broadcast addresses where the network has room for hosts; cap IPv6 draws
        # at 2**62 so NumPy's int64 can hold them (a /64 still has more hosts than any capture needs).
        self.low, self.high = (1, size - 1) if size > 2 else (0, size)
        self.high = min(self.high, self.low + 2**62)
        self.base = int(network.network_address)

    def draw(self, key: np.uint64, rows: np.ndarray, field: int) -> np.ndarray:
        """A random host offset (int64) inside the pool per global flow index (export/draws.py)."""
        return D.integers(key, rows, field, self.low, self.high)

    def packed(self, offset: int) -> bytes:
        """The address at `offset` in network byte order."""
        return ipaddress.ip_address(self.base + int(offset)).packed

    def pseudonym(self, text: str) -> bytes:
        """A fixed pool address for a string that is not an address (pseudonymised tables)."""
        span = self.high - self.low
        return self.packed(self.low + int.from_bytes(_digest(text.encode(), b"netsynth-pseud"), "big") % span)


def table_address(value: object, version: int, pool: Pool) -> bytes | None:
    """The table's address if it is one of the flow's IP version; a pool stand-in for pseudonyms."""
    if value is None:
        return None
    text = str(value)
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return pool.pseudonym(text)
    return addr.packed if addr.version == version else pool.pseudonym(text)


class Pools:
    """The four address pools of the options, keyed by (ip_version, is_server)."""

    def __init__(self, options: ExportOptions) -> None:
        self.by_key = {
            (4, False): Pool(parse_pool(options.clients, 4, "clients")),
            (4, True): Pool(parse_pool(options.servers, 4, "servers")),
            (6, False): Pool(parse_pool(options.clients6, 6, "clients6")),
            (6, True): Pool(parse_pool(options.servers6, 6, "servers6")),
        }

    def __getitem__(self, key: tuple[int, bool]) -> Pool:
        return self.by_key[key]


# ---------------------------------------------------------------------------------------------- ports
def model_endpoints(model: str | Path | None) -> tuple[dict[str, dict], str | None]:
    """The "endpoints" statistics and "model_hash" of a model folder's model.json (both optional).

    The key is optional because older or third-party models may not record endpoint statistics; the
    folder itself must exist, since naming a model that is not there is a user mistake.
    """
    if model is None:
        return {}, None
    path = Path(model)
    doc_path = path / "model.json" if path.is_dir() else path
    try:
        doc = json.loads(doc_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: not a model folder (no model.json)") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{doc_path}: unreadable model.json ({exc})") from None
    if not isinstance(doc, dict):
        raise InputError(f"{doc_path}: model.json is not a JSON object")
    endpoints = doc.get("endpoints") or {}
    return (endpoints if isinstance(endpoints, dict) else {}), doc.get("model_hash")


def _port_distribution(stats: object, protocol: int | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """(ports, probabilities) of one class's server ports for `protocol`, or None if unusable.

    Models record ports per protocol ("dst_port_by_protocol"); a model saved before that has only the
    class's pooled "dst_port", used as it is.
    """
    if not isinstance(stats, dict):
        return None
    by_proto = stats.get("dst_port_by_protocol")
    if isinstance(by_proto, dict) and protocol is not None:
        dist = by_proto.get(str(int(protocol)))
    else:
        dist = stats.get("dst_port")
    if not isinstance(dist, dict) or not dist:
        return None
    try:
        ports = np.array([int(p) for p in dist], dtype=np.int64)
        probs = np.array([float(v) for v in dist.values()], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    keep = (ports > 0) & (ports < 65536) & (probs > 0)
    if not keep.any():
        return None
    return ports[keep], probs[keep] / probs[keep].sum()


def draw_server_ports(labels: np.ndarray, protocols: np.ndarray, uniforms: np.ndarray,
                      endpoints: Mapping[str, object],
                      server_ports: int | Mapping[str, int] | None) -> np.ndarray:
    """A server port per flow: the class's model distribution, else `server_ports`, else 443/53.

    `uniforms` holds one [0, 1) draw per flow (see export/draws.py), mapped through the class's
    cumulative port distribution, so a flow's port depends only on its own draw, never on which other
    flows share its batch.
    """
    out = np.where(protocols == 17, DEFAULT_SERVER_PORTS[17], DEFAULT_SERVER_PORTS[6]).astype(np.int64)
    if isinstance(server_ports, int):
        out[:] = server_ports
    labels = labels.astype(str)
    for cls in sorted(set(labels.tolist())):
        for proto in sorted(set(protocols[labels == cls].tolist())):
            rows = np.flatnonzero((labels == cls) & (protocols == proto))
            dist = _port_distribution(endpoints.get(cls), proto)
            if dist is not None:
                cdf = np.cumsum(dist[1])
                pick = np.searchsorted(cdf, uniforms[rows] * cdf[-1], side="right")
                out[rows] = dist[0][np.minimum(pick, len(dist[0]) - 1)]
            elif isinstance(server_ports, Mapping) and cls in server_ports:
                out[rows] = int(server_ports[cls])
    return out
