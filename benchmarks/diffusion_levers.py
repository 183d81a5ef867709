"""Diffusion levers on iot-type16, measured on one trained model: size decoding and guidance strength.

    OMP_NUM_THREADS=1 python benchmarks/diffusion_levers.py --max-time 240 [--set size_transform=log ...]
        [--cond-scales 1 2] [--work runs/diffusion-levers]

Fits `diffusion` with its defaults plus the `--set` overrides (1 thread, wall-clock cap --max-time;
or loads `--model DIR` and applies the overrides to sampling only, e.g. sample_steps),
and `independent` as the same-run reference. Then it samples the DDIM grids once per `cond_scale`
(training class counts, seed 0) and decodes each grid twice — sizes snapped to the class's training
sizes and not — so the snapping comparison sees the same samples. For each variant: TSTR macro F1
(Random Forest, 300 trees, 3 seeds, size + direction of the first 10 packets, as benchmarks/models.py),
the exact-copy rate, distinct sizes, the share of packet sizes that the class used in training, and
mean flow length, next to the real train/test values. Writes `<work>/levers-<tag>.json`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def describe(table, train) -> dict:
    """Size/length statistics of a table on its first 10 packets (what the classifier sees)."""
    k = 10
    mask = table.mask[:, :k]
    sizes = table.payload_len[:, :k]
    labels = table.label.astype(str)
    seen = {c: set(np.unique(train.payload_len[:, :k][(train.label.astype(str) == c)[:, None] & train.mask[:, :k]]))
            for c in train.classes}
    in_class = np.mean([int(s) in seen[c] for c, row, m in zip(labels, sizes, mask, strict=True)
                        for s in row[m]])
    return {"distinct_sizes": len(np.unique(sizes[mask])), "class_seen_share": round(float(in_class), 4),
            "mean_packets": round(float(table.n_packets.mean()), 3),
            "direction_mean": round(float(table.direction[:, :k][mask].mean()), 4)}


def score(train, test, synth) -> dict:
    from netsynth.evaluate.privacy import novelty
    from netsynth.evaluate.tstr import trtr_tstr

    s = trtr_tstr(train, test, synth, seeds=3, features="paper", packets=10, classifier="rf",
                  n_estimators=300, n_jobs=1)
    nov = novelty(train, test, synth, packets=10)
    return {"tstr_f1": round(s["tstr"]["macro_f1"]["mean"], 4), "tstr_std": round(s["tstr"]["macro_f1"]["std"], 4),
            "trtr_f1": round(s["trtr"]["macro_f1"]["mean"], 4), "copy_rate": round(nov["synthetic_copy_rate"], 4),
            "test_copy_rate": round(nov["test_copy_rate"], 4), **describe(synth, train)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max-time", type=float, default=240.0)
    ap.add_argument("--set", nargs="*", default=[], help="diffusion config overrides key=value")
    ap.add_argument("--cond-scales", nargs="+", type=float, default=[1.0])
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "diffusion-levers")
    ap.add_argument("--split-from", type=Path, default=ROOT / "runs" / "models-bench2" / "split",
                    help="reuse an extracted split (else benchmarks/models.py extracts it)")
    ap.add_argument("--tag", default="run")
    ap.add_argument("--no-independent", action="store_true")
    ap.add_argument("--model", type=Path, default=None,
                    help="load this saved diffusion model instead of fitting (sampling-only levers)")
    args = ap.parse_args(argv)

    from models import load_split

    from netsynth.models import get_generator
    from netsynth.models.base import class_targets, config_from_overrides

    if not (args.work / "split" / "train.parquet").is_file() and (args.split_from / "train.parquet").is_file():
        (args.work / "split").mkdir(parents=True, exist_ok=True)
        for name in ("train.parquet", "test.parquet"):
            shutil.copy(args.split_from / name, args.work / "split" / name)
    train, test = load_split(args.work)
    out: dict = {"max_time": args.max_time, "set": args.set, "rows": []}
    cls = get_generator("diffusion")
    overrides = dict(kv.split("=", 1) for kv in args.set)
    cfg = config_from_overrides(cls, {**overrides, "progress": "false", "max_time": str(args.max_time)})
    if args.model is not None:
        from netsynth.models import load_generator

        model = load_generator(args.model, device="cpu")
        cfg = model.config_.replace(**{k: v for k, v in cfg.to_dict().items() if k in overrides})
        model.config = cfg
    else:
        model = cls(cfg, device="cpu", random_state=0)
    c0, t0 = time.process_time(), time.perf_counter()
    if args.model is None:
        model.fit(train)
    tr = model.training_
    out["fit"] = {"parameters": model.n_parameters(), "wall_s": round(time.perf_counter() - t0, 1),
                  "cpu_s": round(time.process_time() - c0, 1), "steps": tr["steps"], "epochs": tr["epochs"],
                  "stop_reason": tr["stop_reason"], "best_val_loss": tr["best_val_loss"], "config": cfg.to_dict()}
    print(json.dumps(out["fit"] | {"config": None}), flush=True)
    if args.model is None:
        model.save(args.work / args.tag / "model")
    out["real_train"], out["real_test"] = describe(train, train), describe(test, train)
    targets = class_targets(dict(model.class_counts_), model.class_counts_)
    labels = np.array([c for c, k in targets.items() for _ in range(k)], dtype=object)
    for cs in args.cond_scales:
        rng = np.random.default_rng(0)
        protocol, ipv = model._draw_endpoints(labels, rng)
        model.config = cfg.replace(cond_scale=cs)
        t1 = time.perf_counter()
        grid = model.sample_grid(labels, protocol, np.random.default_rng(1))
        sample_s = round(time.perf_counter() - t1, 1)
        # under class_quantile snapping is a no-op (codecs/grid.py): decode once
        snaps = (False,) if cfg.size_transform == "class_quantile" else (True, False)
        for snap in snaps:
            raw = model.decode_grid(grid, labels, protocol, snap_sizes=snap)
            synth = model._finalize(labels, protocol, ipv, raw)
            row = {"family": "diffusion", "cond_scale": cs, "snap_sizes": snap, "sample_s": sample_s,
                   **score(train, test, synth)}
            out["rows"].append(row)
            print(json.dumps(row), flush=True)
    if not args.no_independent:
        ind = get_generator("independent")(random_state=0).fit(train)
        row = {"family": "independent", **score(train, test, ind.sample(dict(ind.class_counts_), random_state=0))}
        out["rows"].append(row)
        print(json.dumps(row), flush=True)
    print(json.dumps({"real_train": out["real_train"], "real_test": out["real_test"]}), flush=True)
    (args.work / f"levers-{args.tag}.json").write_text(json.dumps(out, indent=2, default=float))


if __name__ == "__main__":
    main()
