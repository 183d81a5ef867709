"""Judge synthetic flows against real ones: fidelity, train-on-synthetic/test-on-real, novelty.

`evaluate` runs everything and writes metrics.json + report.md; the metric functions themselves live in
fidelity.py, tstr.py, privacy.py (pure functions on flow tables) for reuse by the benchmark.
"""

from netsynth.evaluate.api import evaluate, fidelity_pair, write_outputs
from netsynth.evaluate.classifiers import build_features, make_classifier
from netsynth.evaluate.fidelity import fidelity_metrics
from netsynth.evaluate.privacy import copy_rate, novelty
from netsynth.evaluate.report import format_summary, render_markdown
from netsynth.evaluate.tstr import score_seeds, trtr_tstr

__all__ = [
    "build_features",
    "copy_rate",
    "evaluate",
    "fidelity_metrics",
    "fidelity_pair",
    "format_summary",
    "make_classifier",
    "novelty",
    "render_markdown",
    "score_seeds",
    "trtr_tstr",
    "write_outputs",
]
