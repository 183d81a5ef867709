"""Figures of a bench run, as PNG bytes (embedded in report.html, written next to report.md).

Distribution plots use fold 0's tables (real test, real train, one synthetic draw per generator); the
summary plots (augmentation, cost, confusion) use the numbers over every fold.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from netsynth.flows import FlowTable

TEST, TRAIN = "test", "real"


def _fig(nrows: int, ncols: int, w: float, h: float) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(nrows, ncols, figsize=(w, h), squeeze=False)
    return fig, axes


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def _sources(keep: Mapping[str, FlowTable]) -> list[tuple[str, FlowTable]]:
    """(legend name, table): real test, real train, then each generator in run order."""
    out = [("real test", keep[TEST]), ("real train", keep[TRAIN])]
    return out + [(k, v) for k, v in keep.items() if k not in (TEST, TRAIN)]


def _kept(t: FlowTable, col: str, d: int, start: int = 0) -> np.ndarray:
    sel = t.mask & (t.direction == d)
    sel[:, :start] = False
    return getattr(t, col)[sel].astype(np.float64)


def cdfs(keep: Mapping[str, FlowTable]) -> bytes:
    """Empirical CDFs of payload length and log10 IAT, one panel per direction."""
    fig, ax = _fig(2, 2, 11, 7)
    for i, (name, t) in enumerate(_sources(keep)):
        style = {"color": "k", "lw": 2} if i == 0 else ({"color": "0.5", "ls": "--"} if i == 1 else {})
        for d in (0, 1):
            for row, (col, fn) in enumerate((("payload_len", lambda x: x),
                                             ("iat", lambda x: np.log10(x + 1e-6)))):
                x = np.sort(fn(_kept(t, col, d, start=row)))
                if x.size:
                    ax[row, d].plot(x, np.arange(1, x.size + 1) / x.size, label=name, **style)
    titles = [["payload length, initiator→responder (bytes)", "payload length, responder→initiator (bytes)"],
              ["log10 IAT, initiator→responder (s)", "log10 IAT, responder→initiator (s)"]]
    for r in range(2):
        for c in range(2):
            ax[r, c].set_title(titles[r][c], fontsize=9)
            ax[r, c].set_ylabel("CDF")
    ax[0, 0].legend(fontsize=7)
    return _png(fig)


def position_heatmaps(keep: Mapping[str, FlowTable], packets: int = 10) -> bytes:
    """Per position, the distribution of payload size in log2 bins (columns normalised), per source."""
    srcs = _sources(keep)
    fig, ax = _fig(1, len(srcs), 2.3 * len(srcs), 3.2)
    edges = np.r_[-0.5, 0.5, 2.0 ** np.arange(1, 12)]
    for j, (name, t) in enumerate(srcs):
        k = min(packets, t.max_packets)
        h = np.zeros((len(edges) - 1, k))
        for p in range(k):
            x = t.payload_len[t.mask[:, p], p]
            if x.size:
                h[:, p] = np.histogram(np.minimum(x, 2047), edges)[0] / x.size
        ax[0, j].imshow(h, origin="lower", aspect="auto", cmap="viridis", vmin=0, vmax=1)
        ax[0, j].set_title(name, fontsize=8)
        ax[0, j].set_xlabel("packet position")
        ax[0, j].set_xticks(range(0, k, 2))
        ax[0, j].set_xticklabels([str(p + 1) for p in range(0, k, 2)])
        ax[0, j].set_yticks(range(0, len(edges) - 1, 3))
        ax[0, j].set_yticklabels([f"{int(max(0, edges[i + 1]))}" for i in range(0, len(edges) - 1, 3)], fontsize=6)
    ax[0, 0].set_ylabel("payload ≤ bytes")
    return _png(fig)


def direction_bars(keep: Mapping[str, FlowTable], length: int = 5, top: int = 12) -> bytes:
    """Frequency of the most common direction patterns of the first `length` packets (flows that long)."""
    srcs = _sources(keep)

    def patterns(t: FlowTable) -> dict[str, float]:
        ok = t.n_packets >= length
        rows = t.direction[ok, :length]
        keys, cnt = np.unique(["".join(map(str, r)) for r in rows], return_counts=True)
        return {k: c / max(1, ok.sum()) for k, c in zip(keys, cnt, strict=True)}

    freq = [patterns(t) for _, t in srcs]
    order = sorted(freq[0], key=lambda k: -freq[0][k])[:top]
    fig, ax = _fig(1, 1, 11, 3.6)
    width = 0.8 / len(srcs)
    for j, ((name, _), f) in enumerate(zip(srcs, freq, strict=True)):
        ax[0, 0].bar(np.arange(len(order)) + j * width, [f.get(k, 0.0) for k in order], width, label=name)
    ax[0, 0].set_xticks(np.arange(len(order)) + 0.4)
    ax[0, 0].set_xticklabels(order, rotation=45, fontsize=7)
    ax[0, 0].set_ylabel("share of flows")
    ax[0, 0].set_title(f"direction patterns of the first {length} packets (0 = initiator), top {top} in real test",
                       fontsize=9)
    ax[0, 0].legend(fontsize=7, ncol=4)
    return _png(fig)


def _get(summary: list[dict], **keys: Any) -> dict | None:
    for s in summary:
        if all(s.get(k) == v for k, v in keys.items()) and set(s) - {"mean", "std", "n"} == set(keys):
            return s
    return None


def augmentation_curves(results: dict) -> bytes:
    """Macro F1 vs real-data fraction: real only, + synthetic (each protocol), full-data TRTR line."""
    s, gens = results["summary"], results["generators"]
    fr = sorted(results["options"]["fractions"])
    protocols = [p for p in results["options"]["protocols"]
                 if any(x.get("protocol") == p and x.get("section") == "augment" for x in s)]
    fig, ax = _fig(1, max(1, len(protocols)), 6 * max(1, len(protocols)), 4)
    trtr = _get(s, section="tstr", generator="real", classifier=results["options"]["classifiers"][0],
                features="paper", metric="macro_f1")
    for j, proto in enumerate(protocols or ["paper"]):
        a = ax[0, j]
        for name, p in [("real only", ("real", "real-only"))] + [(g, (g, proto)) for g in gens]:
            pts = [(f, _get(s, section="augment", generator=p[0], protocol=p[1], fraction=f, metric="macro_f1"))
                   for f in fr]
            pts = [(f, v) for f, v in pts if v]
            if pts:
                a.errorbar([f * 100 for f, _ in pts], [v["mean"] for _, v in pts], [v["std"] for _, v in pts],
                           marker="o", capsize=3, label=name, color="k" if name == "real only" else None)
        if trtr:
            a.axhline(trtr["mean"], color="0.4", ls="--", label="full-data TRTR")
        a.set_xscale("log")
        a.set_xticks([f * 100 for f in fr])
        a.set_xticklabels([f"{f * 100:g} %" for f in fr])
        a.minorticks_off()
        a.set_xlabel("real training data")
        a.set_ylabel("macro F1 on real test")
        a.set_title(f"augmentation, {proto} protocol", fontsize=9)
        a.legend(fontsize=7)
    return _png(fig)


def cost_scatter(results: dict) -> bytes:
    """Training seconds vs TSTR macro F1 and vs real-vs-synthetic AUC, one point per generator."""
    s, gens = results["summary"], results["generators"]
    clf = results["options"]["classifiers"][0]
    fig, ax = _fig(1, 2, 11, 4)
    for g in gens:
        t = _get(s, section="cost", generator=g, metric="train_seconds")
        f1 = _get(s, section="tstr", generator=g, classifier=clf, features="paper", metric="macro_f1")
        auc = _get(s, section="fidelity", generator=g, metric="detection_auc")
        if not t:
            continue
        x = max(t["mean"], 1e-3)
        for a, v in ((ax[0, 0], f1), (ax[0, 1], auc)):
            if v and math.isfinite(v["mean"]):
                a.errorbar([x], [v["mean"]], yerr=[v["std"]], marker="o", capsize=3)
                a.annotate(g, (x, v["mean"]), fontsize=8, xytext=(4, 4), textcoords="offset points")
    for a, label in ((ax[0, 0], f"TSTR macro F1 ({clf}, paper)"), (ax[0, 1], "real-vs-synthetic AUC (0.5 best)")):
        a.set_xscale("log")
        a.set_xlabel("training seconds per fit")
        a.set_ylabel(label)
    return _png(fig)


def confusion_grid(results: dict) -> bytes:
    """Row-normalised confusion matrices (summed over folds) of TRTR and each generator's TSTR."""
    mats = results["confusion"]["matrices"]
    labels = results["labels"]
    names = ["real"] + [g for g in results["generators"] if g in mats]
    cols = min(4, len(names))
    rows = math.ceil(len(names) / cols)
    fig, ax = _fig(rows, cols, 4 * cols, 4 * rows)
    for i in range(rows * cols):
        a = ax[i // cols, i % cols]
        if i >= len(names):
            a.axis("off")
            continue
        m = np.asarray(mats[names[i]], np.float64)
        m = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
        a.imshow(m, cmap="Blues", vmin=0, vmax=1)
        a.set_title("TRTR (real)" if names[i] == "real" else f"TSTR {names[i]}", fontsize=9)
        a.set_xticks(range(len(labels)))
        a.set_yticks(range(len(labels)))
        a.set_xticklabels(labels, rotation=90, fontsize=5)
        a.set_yticklabels(labels, fontsize=5)
    return _png(fig)


CAPTIONS = {
    "cdfs": "CDFs of payload length and IAT per direction (fold 0)",
    "positions": "Per-position payload-size distributions, real vs synthetic (fold 0)",
    "directions": "Direction patterns (fold 0)",
    "augmentation": "Augmentation curves (mean ± std over folds and seeds)",
    "cost": "Cost vs fidelity",
    "confusion": "Confusion matrices, summed over folds",
}


def all_plots(results: dict, keep: Mapping[str, FlowTable] | None) -> dict[str, tuple[str, bytes]]:
    """{file stem: (caption, PNG)} for every figure this run can draw."""
    out: dict[str, tuple[str, bytes]] = {}
    if keep and TEST in keep and TRAIN in keep:
        out["cdfs"] = (CAPTIONS["cdfs"], cdfs(keep))
        out["positions"] = (CAPTIONS["positions"], position_heatmaps(keep))
        out["directions"] = (CAPTIONS["directions"], direction_bars(keep))
    if any(x.get("section") == "augment" for x in results["summary"]):
        out["augmentation"] = (CAPTIONS["augmentation"], augmentation_curves(results))
    out["cost"] = (CAPTIONS["cost"], cost_scatter(results))
    out["confusion"] = (CAPTIONS["confusion"], confusion_grid(results))
    return out
