"""Vectorised decoding and assembly (placeholder: scalar)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from netsynth.extract import biflows as B
from netsynth.extract.packets import CaptureReader, decode


def assemble_chunks(reader: CaptureReader, asm: B.Assembler, chunk: int) -> Iterator[list[list]]:
    it = iter(reader)
    while True:
        recs = list(itertools.islice(it, chunk))
        if not recs:
            return
        asm.feed(recs, decode)
        yield asm.end_chunk()
