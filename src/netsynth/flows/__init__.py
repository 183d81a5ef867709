"""The flow-table contract shared by every stage."""

from netsynth.flows.schema import DEFAULT_MAX_PACKETS, max_payload
from netsynth.flows.table import FlowTable, read_flows, write_flows

__all__ = ["DEFAULT_MAX_PACKETS", "FlowTable", "max_payload", "read_flows", "write_flows"]
