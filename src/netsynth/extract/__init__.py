"""Captures (pcap/pcapng, plain or compressed) → labelled bidirectional flow table.

`extract(paths, ...)` is the one entry point; see `pipeline` for the merge rules, `packets` for the
readers and decoders, `biflows` for flow semantics and `labels` for the labels CSV format.
"""

from netsynth.extract.pipeline import ExtractResult, ExtractSummary, extract, extract_file, extract_to_parquet

__all__ = ["ExtractResult", "ExtractSummary", "extract", "extract_file", "extract_to_parquet"]
