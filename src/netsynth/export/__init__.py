"""Flow tables back to packets: replayable pcap/pcapng with consistent TCP state and valid checksums."""

from netsynth.export.options import ExportOptions, ExportSummary
from netsynth.export.pcap import export_pcap

__all__ = ["ExportOptions", "ExportSummary", "export_pcap"]
