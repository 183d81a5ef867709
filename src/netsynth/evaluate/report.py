"""Rendering of an evaluation's metrics dict: a Markdown report and a terminal summary.

Both read only the metrics dict (never the tables), so a report can be re-rendered from metrics.json,
and the benchmark can render many runs with the same code.
"""

from __future__ import annotations

import math
from typing import Any

from rich.table import Table

from netsynth.evaluate.fidelity import DEFINITIONS

_FIDELITY_TITLES = {
    "payload_len_jsd_dir0": "Payload length JSD, initiator→responder",
    "payload_len_jsd_dir1": "Payload length JSD, responder→initiator",
    "payload_len_w1": "Payload length Wasserstein-1 (bytes)",
    "direction_3gram_jsd": "Direction 3-gram JSD (first 10 packets)",
    "flow_len_jsd": "Flow length JSD (capped at 10)",
    "iat_jsd_dir0": "IAT JSD (log bins), initiator→responder",
    "iat_jsd_dir1": "IAT JSD (log bins), responder→initiator",
}


def _num(value: Any, digits: int = 3) -> str:
    """A number for a table cell; missing or NaN as an en dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}f}"


def _pm(stat: dict | None) -> str:
    """`mean ± std` of a score summary."""
    return "–" if stat is None else f"{stat['mean']:.3f} ± {stat['std']:.3f}"


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in r) + " |" for r in rows]
    return "\n".join(lines)


def _summary_rows(metrics: dict) -> list[tuple[str, str, str]]:
    """(measure, synthetic, real reference) rows shared by the terminal and Markdown summaries."""
    cls = metrics["classification"]
    tstr = cls.get("tstr")
    nov = metrics["novelty"]
    rows = [
        ("Macro F1 on real test: TSTR vs TRTR", _pm(tstr and tstr["macro_f1"]), _pm(cls["trtr"]["macro_f1"])),
        ("Accuracy on real test: TSTR vs TRTR", _pm(tstr and tstr["accuracy"]), _pm(cls["trtr"]["accuracy"])),
        ("Share that copies a train flow: synthetic vs test",
         _num(nov.get("synthetic_copy_rate")), _num(nov["test_copy_rate"])),
        ("Distinct 10-packet vectors: synthetic vs test",
         _num(nov["distinct"].get("synthetic")), _num(nov["distinct"]["test"])),
    ]
    for name, pair in metrics["fidelity"]["metrics"].items():
        title = _FIDELITY_TITLES.get(name, name) + ": synthetic vs train, each to test"
        rows.append((title, _num(pair.get("synthetic_vs_test")), _num(pair["train_vs_test"])))
    return rows


def format_summary(metrics: dict) -> Table:
    """A rich table of the headline numbers: synthetic next to its real reference on every row."""
    table = Table(title="netsynth evaluate", caption="Reference: TRTR for scores, real test for copies, "
                  "real train vs test for distances (lower is closer).")
    table.add_column("Measure")
    table.add_column("Synthetic", justify="right")
    table.add_column("Real reference", justify="right")
    for row in _summary_rows(metrics):
        table.add_row(*row)
    return table


def _counts_section(metrics: dict) -> str:
    counts = metrics["inputs"]["class_counts"]
    names = sorted(set().union(*(c.keys() for c in counts.values())))
    sides = [s for s in ("train", "test", "synthetic") if s in counts]
    rows = [[n, *[_num(counts[s].get(n, 0)) for s in sides]] for n in names]
    rows.append(["**total**", *[_num(metrics["inputs"]["n_flows"][s]) for s in sides]])
    return _md_table(["class", *sides], rows)


def _per_class_section(metrics: dict) -> str:
    cls = metrics["classification"]
    trtr, tstr = cls["trtr"]["per_class_f1"], (cls.get("tstr") or {}).get("per_class_f1", {})
    missing = set(cls.get("missing_in_synthetic", []))
    rows = [[c + (" (absent from synthetic)" if c in missing else ""), _num(trtr[c]), _num(tstr.get(c))]
            for c in cls["labels"]]
    return _md_table(["class", "F1 TRTR", "F1 TSTR"], rows)


def _fidelity_section(metrics: dict) -> str:
    rows = [[f"`{name}`", _num(p.get("synthetic_vs_test"), 4), _num(p["train_vs_test"], 4)]
            for name, p in metrics["fidelity"]["metrics"].items()]
    table = _md_table(["metric", "synthetic vs test", "train vs test (floor)"], rows)
    defs = "\n".join(f"- `{n}`: {metrics['fidelity'].get('definitions', DEFINITIONS).get(n, '')}"
                     for n in metrics["fidelity"]["metrics"])
    return table + "\n\nDefinitions (over kept packets of the first " \
        f"{metrics['fidelity']['packets']} slots of every table):\n\n" + defs


def render_markdown(metrics: dict) -> str:
    """The full report as Markdown: summary, class counts, per-class F1, fidelity with definitions."""
    cfg = metrics["config"]
    cls = metrics["classification"]
    paths = metrics["inputs"].get("paths") or {}
    parts = ["# netsynth evaluation report", ""]
    if paths:
        parts += ["Inputs: " + ", ".join(f"{k} `{v}`" for k, v in paths.items()), ""]
    parts += [
        "## Summary", "",
        _md_table(["measure", "synthetic", "real reference"], [list(r) for r in _summary_rows(metrics)]), "",
        "## Flows per class", "", _counts_section(metrics), "",
        "## Classification (train on real vs train on synthetic, test on real)", "",
        f"{cfg['classifier']} with {cfg['n_estimators']} trees, seeds {cls['seeds']} (random_state = seed); "
        f"features `{cfg['features']}`: payload length and direction of the first {cls['packets']} packets "
        "(0 after n_packets). Macro F1 over the sorted test classes; mean ± population std over seeds. "
        "Classes present in test but absent from synthetic get F1 = 0.", "",
    ]
    if cls.get("missing_in_synthetic"):
        parts += ["Absent from synthetic: " + ", ".join(cls["missing_in_synthetic"]), ""]
    nov = metrics["novelty"]
    parts += [
        _per_class_section(metrics), "",
        "## Novelty", "",
        "A flow is a copy when its paper-style vector (payload length and direction of the first "
        f"{metrics['novelty']['packets']} packets) equals that of some training flow exactly. The real test "
        "set's copy rate is the reference: real traffic repeats itself too.", "",
        _md_table(["", "synthetic", "test", "train"], [
            ["copy rate vs train", _num(nov.get("synthetic_copy_rate")), _num(nov["test_copy_rate"]), "1.000"],
            ["distinct vectors", _num(nov["distinct"].get("synthetic")), _num(nov["distinct"]["test"]),
             _num(nov["distinct"]["train"])],
            ["distinct vectors not in train", _num(nov.get("synthetic_distinct_new")), "–", "–"],
        ]), "",
        "## Fidelity", "",
        "Distances between synthetic and real test, next to real train vs real test: two real samples are "
        "never at distance 0, so the second column is the floor to read the first against.", "",
        _fidelity_section(metrics), "",
        "## Run", "",
        "Timing (s): " + ", ".join(f"{k} {v:.1f}" for k, v in metrics["timing"].items()) + "  ",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in metrics["versions"].items()), "",
    ]
    return "\n".join(parts)
