"""The flow table contract: one row per bidirectional flow, fixed units, validated on every read.

Units are fixed here (bytes, seconds, raw TCP flag bits) so that no stage has to guess; codecs undo
their own scaling. `n_packets` is the only source of truth for a flow's kept length: values after it
are padding and are always 0.
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = "1"
DEFAULT_MAX_PACKETS = 20

# TCP flag bits as on the wire (RFC 9293 plus ECE/CWR).
FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80

# Largest transport payload of one packet on a 1500-byte MTU, per (ip_version, protocol): the bound
# every generator's output is clipped to. Real captures can exceed it (jumbo frames, GRO/TSO offload
# on the capturing host), so the schema only requires payload_len >= 0 and < 65536.
MTU = 1500
IP_HEADER = {4: 20, 6: 40}
L4_HEADER = {6: 20, 17: 8}
MAX_PAYLOAD_REAL = 65535

META_SCHEMA_VERSION = b"netsynth.schema_version"
META_MAX_PACKETS = b"netsynth.max_packets"
META_PRODUCER = b"netsynth.producer"
META_LABEL_SOURCE = b"netsynth.label_source"

# Per-packet columns (fixed_size_list of length N) and their Arrow value types.
PACKET_COLUMNS: dict[str, pa.DataType] = {
    "payload_len": pa.int32(),
    "direction": pa.int8(),
    "iat": pa.float32(),
    "tcp_flags": pa.uint8(),
    "tcp_window": pa.uint16(),
}

# Per-flow columns and their Arrow types; `nullable` ones may be missing for synthetic flows.
FLOW_COLUMNS: dict[str, pa.DataType] = {
    "flow_id": pa.string(),
    "label": pa.dictionary(pa.int32(), pa.string()),
    "origin": pa.string(),
    "capture": pa.string(),
    "ip_version": pa.uint8(),
    "protocol": pa.uint8(),
    "src_ip": pa.string(),
    "dst_ip": pa.string(),
    "src_port": pa.uint16(),
    "dst_port": pa.uint16(),
    "start_time": pa.timestamp("us", tz="UTC"),
    "duration": pa.float64(),
    "packets_total": pa.int64(),
    "bytes_total": pa.int64(),
    "n_packets": pa.int16(),
}
NULLABLE = frozenset({"capture", "src_ip", "dst_ip", "src_port", "dst_port", "start_time", "duration"})
REQUIRED = ("label", "n_packets", "payload_len", "direction")


def max_payload(ip_version: int, protocol: int) -> int:
    """Largest payload a generator may emit for one packet: MTU minus IP and transport headers."""
    return MTU - IP_HEADER.get(int(ip_version), 20) - L4_HEADER.get(int(protocol), 8)


def arrow_schema(max_packets: int, metadata: dict[bytes, bytes] | None = None) -> pa.Schema:
    """The Arrow schema of a flow table whose per-packet columns hold `max_packets` entries."""
    fields = [pa.field(name, typ, nullable=name in NULLABLE) for name, typ in FLOW_COLUMNS.items()]
    fields += [
        pa.field(name, pa.list_(typ, max_packets), nullable=False) for name, typ in PACKET_COLUMNS.items()
    ]
    meta = {META_SCHEMA_VERSION: SCHEMA_VERSION.encode(), META_MAX_PACKETS: str(max_packets).encode()}
    meta.update(metadata or {})
    return pa.schema(fields, metadata=meta)
