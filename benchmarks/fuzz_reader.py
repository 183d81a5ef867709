"""Coverage-guided fuzzing of the capture reader, decoders and assembly (atheris; not run in CI).

Each input is written as a capture file and extracted with both the vectorised and the scalar path.
A crash is any exception other than netsynth's InputError, or the two paths disagreeing. Seeds are
the crafted captures from tests/captures.py. Bounded by time:

    pip install 'netsynth[fuzz]'
    python benchmarks/fuzz_reader.py -max_total_time=120 -rss_limit_mb=2048

A crash found is saved by libFuzzer as crash-<hash>; turn it into a fixture test in
tests/test_extract_fuzz.py (a regression case next to the hypothesis tests).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

with atheris.instrument_imports():
    from netsynth.errors import InputError
    from netsynth.extract import extract

_DIR = tempfile.mkdtemp(prefix="netsynth-fuzz-")
_PATH = Path(_DIR) / "x.pcap"


def one_input(data: bytes) -> None:
    """Extract `data` with both paths; anything but InputError, or a disagreement, is a crash."""
    _PATH.write_bytes(data)
    try:
        fast = extract([_PATH], label_from="stem", protocols="icmp,esp")
    except InputError:
        try:
            extract([_PATH], label_from="stem", protocols="icmp,esp", fast=False)
        except InputError:
            return
        raise AssertionError("only the fast path raised InputError") from None
    slow = extract([_PATH], label_from="stem", protocols="icmp,esp", fast=False)
    if not fast.table.to_arrow().equals(slow.table.to_arrow()) or fast.warnings != slow.warnings:
        raise AssertionError("fast and scalar paths disagree")
    fast.table.validate()


def _seed_corpus() -> str:
    """Write the crafted captures as the initial corpus; returns its folder."""
    from test_extract_fuzz import VALID

    corpus = Path(_DIR) / "corpus"
    corpus.mkdir(exist_ok=True)
    for i, data in enumerate(VALID):
        (corpus / f"seed{i}").write_bytes(data)
    return str(corpus)


def main() -> None:
    args = [a for a in sys.argv if not a.startswith("--corpus")]
    if not any(not a.startswith("-") for a in args[1:]):
        args.append(_seed_corpus())
    os.environ.setdefault("PYTHONHASHSEED", "0")
    atheris.Setup(args, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
