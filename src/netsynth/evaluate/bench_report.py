"""Render a bench results dict as report.md and a self-contained report.html, and write all outputs.

Both formats come from one list of blocks (heading, paragraph, table, image), so they cannot disagree.
The tie rule lives here: in every comparison table the best generator is marked **bold**, and any
generator whose mean is within the spread (the larger std of the two) of the best is marked "≈" — a
difference smaller than the spread is reported as no difference.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from netsynth.evaluate.fidelity import EXTENDED_DEFINITIONS, TEMPORAL_KEYS
from netsynth.evaluate.goals import matched_strict, temporal_score
from netsynth.flows import FlowTable
from netsynth.utils.io import atomic_path, write_text_atomic

Block = tuple  # ("h", level, text) | ("p", text) | ("table", header, rows) | ("img", stem, caption, png)
REAL = "real"
UNRANKED = ("copy_rate", "dcr_ratio", "distinct_share", "train_seconds")


def _get(summary: list[dict], **keys: Any) -> dict | None:
    for s in summary:
        if all(s.get(k) == v for k, v in keys.items()) and set(s) - {"mean", "std", "n"} == set(keys):
            return s
    return None


def pm(stat: dict | None, digits: int = 3) -> str:
    if not stat or stat.get("mean") is None or not math.isfinite(stat["mean"]):
        return "–"
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


# ---------------------------------------------------------------------------------------------- tie rule
def cost_fn(metric: str) -> Callable[[float], float]:
    """What 'better' means for a metric, as a cost to minimise."""
    if metric in ("macro_f1", "accuracy", "class_f1", "precision", "recall", "coverage", "sample_flows_per_s",
                  "macro_f1_ratio"):
        return lambda v: -v
    if metric in ("detection_auc", "mia_auc"):
        return lambda v: abs(v - 0.5)
    if metric in ("density", "dcr_ratio"):
        return lambda v: abs(v - 1.0)
    return lambda v: v


def mark(stats: Mapping[str, dict | None], metric: str, digits: int = 3) -> dict[str, str]:
    """Cells for one comparison: best **bold**, within-spread ties '≈', others plain."""
    cost = cost_fn(metric)
    ok = {g: s for g, s in stats.items() if s and s.get("mean") is not None and math.isfinite(s["mean"])}
    cells = {g: pm(s, digits) for g, s in stats.items()}
    if len(ok) < 2:
        return cells
    best = min(ok, key=lambda g: cost(ok[g]["mean"]))
    b = ok[best]
    for g, s in ok.items():
        if g == best:
            cells[g] = f"**{cells[g]}**"
        elif abs(cost(s["mean"]) - cost(b["mean"])) <= max(s["std"], b["std"]):
            cells[g] = f"≈ {cells[g]}"
    return cells


# ---------------------------------------------------------------------------------------------- sections
def _budget_line(o: dict) -> str:
    """The training budget as the user set it: none means each generator's own defaults."""
    strict = o["strict_max_time"] if o["strict_max_time"] is not None else o["max_time"]
    if o["max_time"] is None and strict is None:
        budget = "each generator's default (no max_time override)"
    else:
        budget = f"max_time = {o['max_time']} s (strict-protocol fits: {strict} s)"
    return f"Training budget per generator fit: {budget}; overrides: `{json.dumps(o['overrides'])}`."


def _head(results: dict) -> list[Block]:
    o, sp = results["options"], results["split"]
    folds = results["folds"]
    inp = results["inputs"]
    t = results["timing"]["total_seconds"]
    lines = [
        f"Created {results['created']}; wall time **{t / 60:.1f} min** ({t:.0f} s) for this task.",
        f"Command: `{results['command']}`" if results.get("command") else "Command: (library call)",
        f"Data: {inp['n_flows']:,} flows, {len(inp['classes'])} classes, {inp['max_packets']} packets kept. Split: "
        f"{sp['method']} (split_by={sp.get('split_by')}, seed {sp.get('seed', '–')}), {len(folds)} fold(s); "
        f"test flows per fold: {', '.join(str(f['n_test']) for f in folds)}.",
        f"Every number is mean ± std (population) over folds × seeds (seeds = {o['seeds']} sampling/classifier "
        f"seeds per fold; {o['sample_seeds'] or o['seeds']} independent synthetic draw(s) per fit, classifier "
        f"seeds cycle over them; each draw has {o['sample_scale']:g} × the training count of every class). "
        f"Classifiers: {', '.join(o['classifiers'])} with {o['n_estimators']} trees/rounds "
        f"(the TASKS.md reference uses 300 RF trees). **Bold** = best; ≈ = within the spread of the best, i.e. no "
        "difference.",
        _budget_line(o),
        "Versions: " + ", ".join(f"{k} {v}" for k, v in results["versions"].items()) + ".",
    ]
    return [("h", 1, results["title"]), *[("p", x) for x in lines]]


def _goals(results: dict) -> list[Block]:
    word = {True: "**met**", False: "**not met**", None: "not measurable in this run"}
    rows = [[g["goal"], g["measured"], word[g["verdict"]]] for g in results["goals"]]
    return [("h", 2, "Goals, measured"), ("table", ["goal", "measured", "verdict"], rows)]


def _names(results: dict) -> list[str]:
    return [REAL, *results["generators"]]


def _label(name: str) -> str:
    return "real (TRTR / train vs test)" if name == REAL else name


def _headline(results: dict) -> list[Block]:
    s, names, o = results["summary"], _names(results), results["options"]
    cols: list[tuple[str, Callable[[str], dict | None], str]] = []
    for feats in o["feature_sets"]:
        for clf in o["classifiers"]:
            cols.append((f"TSTR F1 {clf}/{feats}", lambda g, c=clf, f=feats: _get(
                s, section="tstr", generator=g, classifier=c, features=f, metric="macro_f1"), "macro_f1"))
    cols += [
        ("copy rate", lambda g: _get(s, section="privacy", generator=g, metric="copy_rate"), "copy_rate"),
        ("DCR ratio", lambda g: _get(s, section="privacy", generator=g, metric="dcr_ratio"), "dcr_ratio"),
        ("real-vs-syn AUC", lambda g: _get(s, section="fidelity", generator=g, metric="detection_auc"),
         "detection_auc"),
        ("temporal dist.", lambda g: _temporal(s, g), "temporal"),
        ("train s", lambda g: _get(s, section="cost", generator=g, metric="train_seconds"), "train_seconds"),
    ]
    table_cells = {}
    for title, fn, metric in cols:
        stats = {g: fn(g) for g in names}
        gen_stats = {g: v for g, v in stats.items() if g != REAL}
        # privacy numbers and cost are not ranked: fewer copies or a larger DCR is not "better" on its own
        # (a generator of noise copies nothing); they are read next to fidelity and TSTR
        cells = mark(gen_stats, metric) if metric not in UNRANKED else {g: pm(v) for g, v in gen_stats.items()}
        cells[REAL] = pm(stats[REAL])
        table_cells[title] = cells
    rows = [[_label(g), *[table_cells[t][g] for t, _, _ in cols]] for g in names]
    note = ("Real row: TRTR for the scores, real test vs train for copies/DCR, real train vs real test for "
            "distances (the floor). Temporal dist. = mean of " + ", ".join(f"`{k}`" for k in TEMPORAL_KEYS)
            + " (lower is better). Copy rate is read against the real row: real traffic repeats itself too.")
    return [("h", 2, "Headline"), ("table", ["generator", *[t for t, _, _ in cols]], rows), ("p", note)]


def _temporal(summary: list[dict], g: str) -> dict | None:
    m, sd = temporal_score(summary, g)
    return {"mean": m, "std": sd} if math.isfinite(m) else None


def _metric_table(results: dict, section: str, metrics: list[str], digits: int = 3, **extra: Any) -> Block:
    s, names = results["summary"], _names(results)
    rows = []
    for m in metrics:
        stats = {g: _get(s, section=section, generator=g, metric=m, **extra) for g in names}
        if not any(stats.values()):
            continue
        gen_stats = {g: v for g, v in stats.items() if g != REAL}
        cells = {g: pm(v, digits) for g, v in gen_stats.items()} if m in UNRANKED else mark(gen_stats, m, digits)
        rows.append([f"`{m}`", pm(stats[REAL], digits), *[cells[g] for g in results["generators"]]])
    return ("table", ["metric", "real train (floor)", *results["generators"]], rows)


def _fidelity(results: dict) -> list[Block]:
    ext = [k.replace("{d}", str(d)).replace("{n}", str(n)) for k in EXTENDED_DEFINITIONS
           for d in ((0, 1) if "{d}" in k else (None,)) for n in ((2, 3, 4) if "{n}" in k else (None,))]
    mv = ["detection_auc", "precision", "recall", "density", "coverage", "mmd2"]
    defs = [f"- `{k}`: {v}" for k, v in EXTENDED_DEFINITIONS.items()]
    defs += ["- `detection_auc`: 3-fold CV ROC AUC of a random forest telling real test from synthetic on the fixed "
             "embedding (0.5 = indistinguishable).",
             "- `precision`/`recall`/`density`/`coverage`: Naeem et al. 2020, k = 5 nearest neighbours, fixed "
             "embedding (payload/1500, direction, log10 IAT per position of the first 10 packets, length).",
             "- `mmd2`: unbiased MMD² with a Gaussian kernel, bandwidth = median real–real distance."]
    return [("h", 2, "1. Fidelity (synthetic vs real test; real train vs real test as the floor)"),
            ("h", 3, "Static and temporal"), _metric_table(results, "fidelity", ext, 4),
            ("h", 3, "Multivariate"), _metric_table(results, "fidelity", mv, 3),
            ("p", "Definitions (over kept packets; fidelity compares the packet slots all tables share):"),
            ("p", "\n".join(defs)), *_per_class(results)]


def _per_class(results: dict) -> list[Block]:
    s = results["summary"]
    out: list[Block] = [("h", 3, "Per class")]
    for m in ("payload_jsd_dir0", "direction_3gram_jsd", "detection_auc"):
        rows = []
        for c in results["labels"]:
            stats = {g: _get(s, section="fidelity_class", generator=g, metric=m, cls=c) for g in _names(results)}
            if not any(stats.values()):
                continue
            cells = mark({g: v for g, v in stats.items() if g != REAL}, m)
            rows.append([c, pm(stats[REAL]), *[cells[g] for g in results["generators"]]])
        out += [("p", f"`{m}` per class (a model good on big classes and collapsing on small ones shows here):"),
                ("table", ["class", "real train (floor)", *results["generators"]], rows)]
    return out


def _tstr(results: dict) -> list[Block]:
    s, o = results["summary"], results["options"]
    out: list[Block] = [("h", 2, "2. Synthetic-only training (TSTR vs TRTR)")]
    rows = []
    for feats in o["feature_sets"]:
        for clf in o["classifiers"]:
            for metric in ("macro_f1", "accuracy"):
                stats = {g: _get(s, section="tstr", generator=g, classifier=clf, features=feats, metric=metric)
                         for g in _names(results)}
                cells = mark({g: v for g, v in stats.items() if g != REAL}, metric)
                rows.append([f"{clf} / {feats} / {metric}", pm(stats[REAL]),
                             *[cells[g] for g in results["generators"]]])
    out += [("table", ["classifier / features / score", "TRTR", *results["generators"]], rows),
            ("p", "Features: `paper` = payload length and direction of the first 10 packets; `all` adds log1p(IAT "
                  "µs) and TCP flags. Scores over the test fold's classes; a class missing from synthetic gets F1 0.")]
    clf, feats = o["classifiers"][0], o["feature_sets"][0]
    rows = []
    for c in results["labels"]:
        stats = {g: _get(s, section="tstr", generator=g, classifier=clf, features=feats, metric="class_f1", cls=c)
                 for g in _names(results)}
        if any(stats.values()):
            cells = mark({g: v for g, v in stats.items() if g != REAL}, "class_f1")
            rows.append([c, pm(stats[REAL]), *[cells[g] for g in results["generators"]]])
    out += [("p", f"Per-class F1 ({clf}, {feats}):"), ("table", ["class", "TRTR", *results["generators"]], rows)]
    return out


def _augmentation(results: dict) -> list[Block]:
    s, o = results["summary"], results["options"]
    if not o["fractions"]:
        return []
    trtr = _get(s, section="tstr", generator=REAL, classifier=o["classifiers"][0], features="paper",
                metric="macro_f1")
    out: list[Block] = [
        ("h", 2, "3. Augmentation in low-data regimes"),
        ("p", f"Classifier {o['classifiers'][0]} on `paper` features. Real subsets stratified with ≥ 1 flow per "
              f"class, {o['aug_seeds']} seeds per fold; synthetic flows top every class up to its full-data count. "
              f"Full-data TRTR: {pm(trtr)}. Protocol `paper`: generator fitted on the full training fold; `strict`: "
              f"a fresh generator fitted on the low-data subset only (run on the first "
              f"{o['strict_folds'] if o['strict_folds'] is not None else 'all'} fold(s)). 'closed' = share of the gap "
              "to full-data TRTR closed.")]
    rows = []
    for f in sorted(o["fractions"]):
        base = _get(s, section="augment", generator=REAL, protocol="real-only", fraction=f, metric="macro_f1")
        for proto in o["protocols"]:
            stats = {g: _get(s, section="augment", generator=g, protocol=proto, fraction=f, metric="macro_f1")
                     for g in results["generators"]}
            if not any(stats.values()):
                continue
            stats_b = {**stats, "real-only": base}
            cells = mark(stats_b, "macro_f1")
            closed = []
            for g in results["generators"]:
                v = stats[g]
                if v and base and trtr and trtr["mean"] > base["mean"]:
                    closed.append(f"{(v['mean'] - base['mean']) / (trtr['mean'] - base['mean']):+.2f}")
                else:
                    closed.append("–")
            rows.append([f"{f:.0%}", proto, cells["real-only"], *[f"{cells[g]} ({c})" for g, c in
                                                                   zip(results["generators"], closed, strict=True)]])
    out.append(("table", ["real data", "protocol", "real only", *[f"{g} (closed)" for g in results["generators"]]],
                rows))
    rows = []
    for f in sorted(o["fractions"]):
        for g in results["generators"]:
            m = matched_strict(results.get("records", []), g, f)
            if m:
                spread = max(m["strict_std"], m["base_std"], m["gain_std"])
                rows.append([f"{f:.0%}", g, str(m["n"]), f"{m['base_mean']:.3f} ± {m['base_std']:.3f}",
                             f"{m['strict_mean']:.3f} ± {m['strict_std']:.3f}",
                             f"{m['gain']:+.3f} ± {m['gain_std']:.3f}",
                             _verdict(m["gain"], spread)])
    if rows:
        out += [("p", "Strict protocol against real-only on the same folds and seeds (the strict protocol runs on "
                      "fewer folds/seeds than the table above's real-only mean, so this is the fair comparison):"),
                ("table", ["real data", "generator", "pairs", "real only", "strict", "gain", "gain > spread?"], rows)]
    rows = []
    for f in o["ratio_fractions"]:
        for r in o["ratios"]:
            stats = {g: _get(s, section="augment", generator=g, protocol="paper", fraction=f, ratio=r,
                             metric="macro_f1_ratio") for g in results["generators"]}
            if any(stats.values()):
                cells = mark(stats, "macro_f1")
                rows.append([f"{f:.0%}", f"{r:g}:1", *[cells[g] for g in results["generators"]]])
    if rows:
        out += [("p", "Synthetic:real ratio sweep (paper protocol):"),
                ("table", ["real data", "synthetic:real", *results["generators"]], rows)]
    return out


def _verdict(gain: float, spread: float) -> str:
    if gain > spread:
        return "yes"
    return "no (a loss)" if gain < -spread else "no (within spread)"


def _cost(results: dict) -> list[Block]:
    metrics = ["parameters", "train_seconds", "train_peak_rss_mb", "train_rss_increase_mb", "sample_flows_per_s",
               "sample_peak_rss_mb"]
    s = results["summary"]
    rows = []
    for g in results["generators"]:
        row = [g]
        for m in metrics:
            v = _get(s, section="cost", generator=g, metric=m)
            row.append("–" if not v else (f"{v['mean']:,.0f}" if m == "parameters" else pm(v, 1)))
        rows.append(row)
    return [("h", 2, "4. Cost (measured in this run, on this machine)"),
            ("table", ["generator", *metrics], rows), *_training_reached(results),
            ("p", "Peak RSS is the process's resident memory sampled every 20 ms during the call (torch buffers "
                  "included); the increase is over the RSS just before it. Sampling speed over the synthetic "
                  "draws of each fit (training class counts per draw).")]


def _training_reached(results: dict) -> list[Block]:
    """How far each trained generator got per fit: a budget-capped deep model must say it was capped."""
    rows = []
    for g in results["generators"]:
        fits = [f[g]["training"] for f in results.get("generator_info", {}).values()
                if isinstance(f.get(g, {}).get("training"), dict) and "steps" in f[g]["training"]]
        if not fits:
            continue
        steps = np.array([t["steps"] for t in fits], dtype=np.float64)
        losses = np.array([t.get("best_val_loss", np.nan) for t in fits], dtype=np.float64)
        reasons = sorted({str(t.get("stop_reason")) for t in fits})
        stops = ", ".join(f"{r} ×{sum(str(t.get('stop_reason')) == r for t in fits)}" for r in reasons)
        rows.append([g, str(len(fits)), f"{steps.mean():,.0f} ({steps.min():,.0f}–{steps.max():,.0f})",
                     f"{np.nanmean(losses):.3f}" if np.isfinite(losses).any() else "–", stops])
    if not rows:
        return []
    return [("p", "Training reached, per fit of the main protocol (mean over folds; `max_time` = stopped by the "
                  "training budget, not converged):"),
            ("table", ["generator", "fits", "optimizer steps (min–max)", "best val loss", "stop reasons"], rows)]


def _privacy(results: dict) -> list[Block]:
    t = _metric_table(results, "privacy", ["copy_rate", "distinct_share", "dcr_ratio"])
    s = results["summary"]
    rows = []
    for g in results["generators"]:
        for attack in ("likelihood", "distance"):
            v = _get(s, section="privacy", generator=g, metric="mia_auc", attack=attack)
            if v:
                rows.append([g, attack, pm(v)])
    return [("h", 2, "5. Privacy"), t,
            ("p", "copy rate: share of flows whose paper vector (payload + direction, first 10 packets) equals a "
                  "training flow's (real column: real test flows). DCR ratio: mean distance to the closest training "
                  "record, synthetic / real test (< 1 = closer than fresh real traffic; when almost every real test "
                  "flow copies a training flow, as on iot-type16, the denominator is near 0 and the ratio is large "
                  "for any generator that copies less). Membership inference: "
                  "members = training flows, non-members = held-out real test flows (1,000 each); score = the "
                  "generator's log-likelihood when it offers `log_likelihood(flows)`, else minus the distance to the "
                  "closest synthetic flow. 0.5 = nothing learnt by the attacker. With capture-grouped folds "
                  "non-members come from other captures, so some AUC above 0.5 is distribution shift, not leakage; "
                  "compare generators with each other."),
            ("table", ["generator", "attack", "MIA AUC"], rows)]


def blocks(results: dict, plots: Mapping[str, tuple[str, bytes]]) -> list[Block]:
    out = [*_head(results), *_goals(results), *_headline(results), *_fidelity(results), *_tstr(results),
           *_augmentation(results), *_cost(results), *_privacy(results)]
    if plots:
        out.append(("h", 2, "Plots"))
        out += [("img", stem, cap, png) for stem, (cap, png) in plots.items()]
    return out


# ---------------------------------------------------------------------------------------------- renderers
def to_markdown(bl: list[Block]) -> str:
    parts = []
    for b in bl:
        if b[0] == "h":
            parts.append("#" * b[1] + " " + b[2])
        elif b[0] == "p":
            parts.append(b[1])
        elif b[0] == "table":
            head, rows = b[1], b[2]
            lines = ["| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
            lines += ["| " + " | ".join(str(c).replace("|", "/") for c in r) + " |" for r in rows]
            parts.append("\n".join(lines))
        elif b[0] == "img":
            parts.append(f"![{b[2]}](plots/{b[1]}.png)\n\n*{b[2]}*")
    return "\n\n".join(parts) + "\n"


def _inline(text: str) -> str:
    """Markdown bold and code spans to HTML, everything else escaped."""
    import re

    t = html.escape(text)
    t = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", t)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", t)


def to_html(bl: list[Block], title: str) -> str:
    body = []
    for b in bl:
        if b[0] == "h":
            body.append(f"<h{b[1]}>{_inline(b[2])}</h{b[1]}>")
        elif b[0] == "p":
            lines = b[1].split("\n")
            if all(x.startswith("- ") for x in lines):
                body.append("<ul>" + "".join(f"<li>{_inline(x[2:])}</li>" for x in lines) + "</ul>")
            else:
                body.append(f"<p>{_inline(b[1])}</p>")
        elif b[0] == "table":
            head = "".join(f"<th>{_inline(h)}</th>" for h in b[1])
            rows = "".join("<tr>" + "".join(f"<td>{_inline(str(c))}</td>" for c in r) + "</tr>" for r in b[2])
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif b[0] == "img":
            data = base64.b64encode(b[3]).decode("ascii")
            body.append(f'<figure><img alt="{html.escape(b[2])}" src="data:image/png;base64,{data}">'
                        f"<figcaption>{html.escape(b[2])}</figcaption></figure>")
    style = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
             "table{border-collapse:collapse;margin:1em 0;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;"
             "text-align:right}td:first-child,th:first-child{text-align:left}th{background:#f3f3f3}"
             "img{max-width:100%}code{background:#f5f5f5;padding:0 2px}figcaption{font-style:italic}")
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def rerender(out_dir: Path) -> dict:
    """Re-render report.md/report.html (and goals) from an existing results.json and plots/*.png.

    For report changes after a long run: numbers are read back, never recomputed.
    """
    from netsynth.evaluate.goals import evaluate_goals
    from netsynth.evaluate.plots import CAPTIONS

    results = json.loads((out_dir / "results.json").read_text(encoding="utf-8"))
    results["goals"] = evaluate_goals(results)
    plots = {stem: (cap, (out_dir / "plots" / f"{stem}.png").read_bytes()) for stem, cap in CAPTIONS.items()
             if (out_dir / "plots" / f"{stem}.png").exists()}
    write_bench(results, out_dir, None, plots=plots)
    return results


def write_bench(results: dict, out_dir: Path, keep: Mapping[str, FlowTable] | None,
                plots: Mapping[str, tuple[str, bytes]] | None = None) -> None:
    """results.json, report.md, report.html and plots/*.png, each written atomically."""
    from netsynth.evaluate.plots import all_plots

    out_dir.mkdir(parents=True, exist_ok=True)
    if plots is None:
        plots = all_plots(results, keep) if keep is not None else {}
    for stem, (_, png) in plots.items():
        with atomic_path(out_dir / "plots" / f"{stem}.png") as tmp:
            tmp.write_bytes(png)
    write_text_atomic(out_dir / "results.json", json.dumps(results, indent=1, allow_nan=False) + "\n")
    bl = blocks(results, plots)
    write_text_atomic(out_dir / "report.md", to_markdown(bl))
    write_text_atomic(out_dir / "report.html", to_html(bl, results["title"]))
