"""Generator families side by side on iot-type16: training cost, size, TSTR, novelty, sampling throughput.

Phases (each writes JSON under --work; `report` assembles benchmarks/results/models.{md,json}):

    python benchmarks/models.py fit --families transformer ssm ... [--max-time 540]
    python benchmarks/models.py throughput [--families ...] [--n 1024]
    python benchmarks/models.py rescore --families ssm   # re-sample saved fits with the current sampler
    python benchmarks/models.py report
    python benchmarks/models.py all            # fit (one process per family, in parallel), throughput, report

fit: trains each family with its defaults (deep families' wall-clock cap set by --max-time), records the
exact parameter count (`Generator.parameter_count(train)` before fitting, checked against the fitted
model), wall and CPU seconds to the best validation loss and in total, then samples the training class
counts (seed 0) and scores TSTR macro F1 (Random Forest, 300 trees, 3 seeds, size+direction of the first
10 packets, `netsynth.evaluate.tstr.trtr_tstr`) and the exact-copy rate (`netsynth.evaluate.privacy.novelty`)
against the real test split's own copy rate.

throughput: in a fresh process per family (so peak RSS is the sampler's, not training's), measures the
machine's own float32 matmul rate (512×512, 1 thread and the sampler's thread count), then times the
core generation step (token sampling with cache/recurrent state; DDIM; baselines' resampling) for 10- and
20-packet flows at two sample batch sizes, counts its FLOPs with `torch.utils.flop_counter.FlopCounterMode`
(matmuls, bmm, attention; element-wise work is not counted; token models' count covers live sequences
only, see `core_generate`) and reports achieved FLOP/s as a fraction of the matmul rate, plus end-to-end
`sample()` flows/s and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path("/work/shared/data/iot-sentinel")
FAMILIES = ["transformer", "ssm", "diffusion", "markov", "independent", "empirical"]
DEEP = {"transformer", "ssm", "diffusion"}


# ---------------------------------------------------------------------------------------------- data
def load_split(work: Path):
    from netsynth.flows import FlowTable

    cache = work / "split"
    if not (cache / "train.parquet").is_file():
        from netsynth.extract import extract
        from netsynth.flows.split import split_flows

        t = extract([str(DATA)], packets=20, min_packets=5, labels=str(DATA / "labels.csv")).table
        s = split_flows(t, by="capture", test_size=0.2, seed=0)
        cache.mkdir(parents=True, exist_ok=True)
        s.train.write(cache / "train.parquet")
        s.test.write(cache / "test.parquet")
    return FlowTable.read(cache / "train.parquet"), FlowTable.read(cache / "test.parquet")


def make_model(name: str, max_time: float | None):
    from netsynth.models import get_generator

    cls = get_generator(name)
    overrides = {}
    fields = cls.config_class.__dataclass_fields__
    if "progress" in fields:
        overrides["progress"] = False
    if name in DEEP and max_time is not None:
        overrides["max_time"] = float(max_time)
    return cls(cls.config_class().replace(**overrides), device="cpu", random_state=0)


# ---------------------------------------------------------------------------------------------- fit
def score_model(model, train, test) -> dict:
    """Sample the training class counts (seed 0), score TSTR (RF, 3 seeds) and the exact-copy rate."""
    from netsynth.evaluate.privacy import novelty
    from netsynth.evaluate.tstr import trtr_tstr

    synth = model.sample(dict(model.class_counts_), random_state=0)
    scores = trtr_tstr(train, test, synth, seeds=3, features="paper", packets=10, classifier="rf",
                       n_estimators=300, n_jobs=1)
    nov = novelty(train, test, synth, packets=10)
    return {"tstr_f1": scores["tstr"]["macro_f1"], "trtr_f1": scores["trtr"]["macro_f1"],
            "missing_in_synthetic": scores["missing_in_synthetic"],
            "copy_rate": nov["synthetic_copy_rate"], "test_copy_rate": nov["test_copy_rate"],
            "distinct_synthetic": nov["distinct"]["synthetic"], "n_synthetic": len(synth)}


def rescore_family(name: str, work: Path) -> dict:
    """Re-sample and re-score a saved fit with the current sampling code; the fit record is kept and
    the fields replaced are listed under `rescored` (with the time and the previous values)."""
    from netsynth.models import load_generator

    train, test = load_split(work)
    path = work / name / "fit.json"
    record = json.loads(path.read_text())
    sampled = score_model(load_generator(work / name / "model", device="cpu"), train, test)
    before = {k: record.get(k) for k in ("tstr_f1", "copy_rate")}
    record.update(sampled)
    record["rescored"] = {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "before": before}
    path.write_text(json.dumps(record, indent=2, default=float))
    print(json.dumps({"family": name, "tstr_f1": sampled["tstr_f1"], "copy_rate": sampled["copy_rate"],
                      "before": before}, default=float), flush=True)
    return record


def fit_family(name: str, work: Path, max_time: float | None) -> dict:
    train, test = load_split(work)
    model = make_model(name, max_time)
    predicted = model.parameter_count(train)
    c0, t0 = time.process_time(), time.perf_counter()
    model.fit(train)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    tr = model.training_
    hist = tr.get("history") or []
    if hist:
        best = min(hist, key=lambda h: h["val_loss"])
        to_best = {"wall": best["seconds"], "cpu": best.get("cpu_seconds")}
    else:
        to_best = {"wall": wall, "cpu": cpu}
    model.save(work / name / "model")
    sampled = score_model(model, train, test)
    out = {
        "family": name,
        "parameters": int(model.n_parameters()),
        "parameter_count_before_fit": predicted,
        "fit_wall_s": round(wall, 1), "fit_cpu_s": round(cpu, 1),
        "to_best_wall_s": to_best["wall"], "to_best_cpu_s": to_best["cpu"],
        "best_val_loss": tr.get("best_val_loss"), "steps": tr.get("steps"), "epochs": tr.get("epochs"),
        "best_epoch": tr.get("best_epoch"), "schedule_steps": tr.get("schedule_steps"),
        "stop_reason": tr.get("stop_reason"), "max_time": max_time if name in DEEP else None,
        "config": model.config_.to_dict(),
        **sampled,
        "load_avg_end": os.getloadavg(),
    }
    (work / name).mkdir(parents=True, exist_ok=True)
    (work / name / "fit.json").write_text(json.dumps(out, indent=2, default=float))
    print(json.dumps({k: out[k] for k in ("family", "parameters", "to_best_wall_s", "fit_cpu_s", "steps",
                                          "stop_reason", "tstr_f1", "copy_rate")}, default=float), flush=True)
    return out


# ---------------------------------------------------------------------------------------------- throughput
def matmul_rate(threads: int, size: int = 512, seconds: float = 1.0) -> float:
    """float32 FLOP/s of torch.matmul(size×size) with `threads` intra-op threads (best of 3 windows)."""
    return matmul_rates(threads, size, seconds)[0]


def matmul_rates(threads: int, size: int = 512, seconds: float = 1.0) -> tuple[float, float]:
    """(best-window wall FLOP/s, FLOP per process CPU-second over all windows) of torch.matmul."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(size, size), torch.randn(size, size)
        for _ in range(3):
            a @ b
        best, total, c0 = 0.0, 0, time.process_time()
        for _ in range(3):
            k, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds / 3:
                torch.matmul(a, b)
                k += 1
            best = max(best, 2 * size**3 * k / (time.perf_counter() - t0))
            total += k
        return best, 2 * size**3 * total / max(time.process_time() - c0, 1e-9)
    finally:
        torch.set_num_threads(before)


def _labels(model, n: int, rng: np.random.Generator):
    from netsynth.models.base import class_targets

    targets = class_targets(n, model.class_counts_)
    labels = np.array([c for c, k in targets.items() for _ in range(k)], dtype=object)
    protocol, ipv = model._draw_endpoints(labels, rng)
    return labels, protocol, ipv


def core_generate(model, n: int, packets: int, batch: int, seed: int = 0, useful_only: bool = False) -> dict:
    """The family's generation step only (no decoding), for `packets`-packet flows; returns timing input.

    `useful_only` (for counting FLOPs) drops each finished flow at once, so the count holds only the
    work of live sequences: the timed sampler keeps finished rows stepping until they are a quarter of
    the batch, and counting that padding work would flatter the achieved FLOP/s.
    """
    import torch

    from netsynth.flows import max_payload
    from netsynth.models._autoregressive import AutoregressiveGenerator, Grammar, sample_tokens
    from netsynth.models._train import torch_threads
    from netsynth.models.diffusion import DiffusionGenerator

    rng = np.random.default_rng(seed)
    labels, protocol, ipv = _labels(model, n, rng)
    if isinstance(model, AutoregressiveGenerator):
        codec, cfg = model.codec_, model.config_
        grammar = Grammar(codec, "cpu", model.tcp_flag_values_)
        grammar.max_packets = packets  # EOS forced after `packets` packets
        per_packet = 3 if codec.rare_sizes == "offset" else 2
        max_length = min(codec.max_length, 3 + per_packet * packets)
        prefix = np.stack([[codec.class_token(c) for c in labels], [codec.proto_token(p) for p in protocol]], 1)
        cap = np.array([max_payload(v, p) for v, p in zip(ipv, protocol, strict=True)])
        gen = torch.Generator().manual_seed(seed)
        extra = {"compact_fraction": 0.0} if useful_only else {}
        tokens = 0
        with torch_threads(cfg.cpu_threads):
            threads = torch.get_num_threads()
            for s in range(0, n, batch):
                sl = slice(s, s + batch)
                out = sample_tokens(model.module_, grammar, torch.as_tensor(prefix[sl]),
                                    torch.as_tensor(protocol[sl] == 6), torch.as_tensor(cap[sl]),
                                    max_length=max_length, temperature=cfg.temperature, top_k=cfg.top_k,
                                    generator=gen, **extra)
                tokens += int((out != 0).sum())
        return {"threads": threads, "tokens": tokens}
    if isinstance(model, DiffusionGenerator):
        from netsynth.codecs.grid import N_CHANNELS

        cfg = model.config_
        y = torch.as_tensor(model._class_index(labels))
        p = torch.as_tensor(model._protocol_index(protocol))
        gen = torch.Generator().manual_seed(seed)
        for s in range(0, n, batch):
            shape = (min(packets, model.codec_.max_packets), N_CHANNELS)
            model.module_.ddim_sample(y[s:s + batch], p[s:s + batch], shape,
                                      steps=cfg.sample_steps, cond_scale=cfg.cond_scale, generator=gen)
        return {"threads": torch.get_num_threads(), "tokens": None}
    model.sample(n, random_state=seed).truncate(packets)  # baselines: resampling / chains, no FLOPs
    return {"threads": 1, "tokens": None}


def throughput_family(name: str, work: Path, n: int) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    from netsynth.models import load_generator

    model = load_generator(work / name / "model", device="cpu")
    cfg = model.config_.to_dict()
    default_batch = int(cfg.get("sample_batch", n))
    batches = sorted({min(default_batch, n), max(32, n // 4)} if name in DEEP else {n})
    rate1, cpu1 = matmul_rates(1)
    rate_all, rate_cpu = {1: rate1}, {1: cpu1}
    rows = []
    for packets in (10, 20):
        for batch in batches:
            b = min(batch, n)
            core_generate(model, min(16, n), packets, b)  # warm-up
            t0, c0 = time.perf_counter(), time.process_time()
            info = core_generate(model, n, packets, b)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            flops = None
            if name in DEEP:  # counted on a quarter of the flows (the counter's dispatch is slow), scaled
                n_count = max(1, n // 4)
                with FlopCounterMode(display=False) as fc:
                    core_generate(model, n_count, packets, min(b, n_count), useful_only=True)
                flops = int(fc.get_total_flops() * n / n_count)
            th = info["threads"]
            if th not in rate_all:
                rate_all[th], rate_cpu[th] = matmul_rates(th)
            achieved = flops / wall if flops else None
            rows.append({"packets": packets, "sample_batch": b, "n": n, "threads": th, "wall_s": round(wall, 3),
                         "cpu_s": round(cpu, 3), "flows_per_s": round(n / wall, 1),
                         "flows_per_cpu_s": round(n / max(cpu, 1e-9), 1), "tokens": info["tokens"],
                         "flops": flops, "flop_per_s": achieved,
                         "matmul_flop_per_s": rate_all[th], "matmul_flop_per_cpu_s": rate_cpu[th],
                         "fraction_per_cpu": (flops / max(cpu, 1e-9) / rate_cpu[th]) if flops else None,
                         "fraction_of_matmul": (achieved / rate_all[th]) if achieved else None})
            print(name, json.dumps(rows[-1], default=float), flush=True)
    n_e2e = max(1, n // 4)
    t0 = time.perf_counter()
    model.sample(n_e2e, random_state=1)
    e2e = n_e2e / (time.perf_counter() - t0)
    out = {"family": name, "matmul_flop_per_s": {str(k): v for k, v in rate_all.items()},
           "matmul_flop_per_cpu_s": {str(k): v for k, v in rate_cpu.items()}, "rows": rows,
           "end_to_end_flows_per_s_20": round(e2e, 1),
           "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
           "load_avg": os.getloadavg()}
    (work / name / "throughput.json").write_text(json.dumps(out, indent=2, default=float))
    return out


# ---------------------------------------------------------------------------------------------- report
def _f(v, d=3):
    return "–" if v is None else f"{v:.{d}f}"


def report(work: Path, out_dir: Path, command: str) -> None:
    fits = {f: json.loads((work / f / "fit.json").read_text()) for f in FAMILIES if (work / f / "fit.json").is_file()}
    thr = {f: json.loads((work / f / "throughput.json").read_text()) for f in FAMILIES
           if (work / f / "throughput.json").is_file()}
    doc = {"command": command, "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
           "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "fit": fits, "throughput": thr}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "models.json").write_text(json.dumps(doc, indent=2, default=float))
    lines = ["# Generator families on iot-type16 (capture split, 6,581 train / 1,654 test flows)", "",
             f"Command: `{command}`  ", f"Generated {doc['generated_at']} on {doc['machine']['platform']}, "
             f"{doc['machine']['cpus']} CPUs; 1-minute load average when each fit ended: "
             + ", ".join(f"{f} {v['load_avg_end'][0]:.1f}" for f, v in fits.items() if v.get("load_avg_end"))
             + ".", ""]
    trtr = next((v["trtr_f1"]["mean"] for v in fits.values()), None)
    test_copy = next((v["test_copy_rate"] for v in fits.values()), None)
    lines += [f"TRTR macro F1 (real train → real test): {_f(trtr)}; real test's exact-copy rate vs train: "
              f"{_f(test_copy)}.", "",
              "| family | parameters | to best val (wall s / CPU s) | total fit (wall / CPU s) | steps (schedule) | "
              "stop | best val loss | TSTR macro F1 | copy rate |",
              "|---|---:|---:|---:|---:|---|---:|---:|---:|"]
    for f, v in fits.items():
        to_cpu = _f(v["to_best_cpu_s"], 0) if v["to_best_cpu_s"] is not None else "–"
        steps = f"{v['steps']} ({v['schedule_steps']})" if v.get("steps") is not None else "–"
        lines.append(f"| {f} | {v['parameters']:,} | {_f(v['to_best_wall_s'], 0)} / {to_cpu} | "
                     f"{_f(v['fit_wall_s'], 0)} / {_f(v['fit_cpu_s'], 0)} | {steps} | {v.get('stop_reason') or '–'} | "
                     f"{_f(v['best_val_loss'])} | {v['tstr_f1']['mean']:.3f} ± {v['tstr_f1']['std']:.3f} | "
                     f"{v['copy_rate']:.3f} |")
    if thr:
        lines += ["", "## Sampling throughput", "",
                  "Matmul rate: torch.matmul 512×512 float32 measured in the same process just before sampling. "
                  "FLOPs counted by FlopCounterMode (matrix products and attention only). `fraction` = achieved "
                  "FLOP/s (wall) ÷ matmul FLOP/s at the sampler's thread count; `fraction/CPU` uses the "
                  "sampler's FLOPs per CPU-second ÷ the matmul's FLOPs per CPU-second (on a machine where the "
                  "process gets a fraction of a core, wall-clock rates mix in the other jobs; the wall matmul "
                  "rate is the best of three short windows).", "",
                  "| family | packets | sample batch | threads | flows/s | flows/CPU-s | achieved GFLOP/s | "
                  "matmul GFLOP/s | fraction | fraction/CPU | peak RSS MB | end-to-end sample() flows/s |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for f, v in thr.items():
            for r in v["rows"]:
                ach = _f(r["flop_per_s"] / 1e9, 2) if r["flop_per_s"] else "–"
                lines.append(f"| {f} | {r['packets']} | {r['sample_batch']} | {r['threads']} | "
                             f"{r['flows_per_s']:.1f} | {r['flows_per_cpu_s']:.1f} | {ach} | "
                             f"{r['matmul_flop_per_s'] / 1e9:.2f} | {_f(r['fraction_of_matmul'])} | "
                             f"{_f(r.get('fraction_per_cpu'))} | "
                             f"{v['peak_rss_mb']:.0f} | {v['end_to_end_flows_per_s_20']:.1f} |")
    notes = work / "NOTES.md"
    if notes.is_file():
        lines += ["", notes.read_text().strip()]
    (out_dir / "models.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def run_limited(cmds: list[list[str]], jobs: int) -> list[int]:
    """Run the commands with at most `jobs` at a time, in order; their exit codes.

    Why a limit: with one process per family on a 2-core machine (four processes), each deep fit got
    about a third of a core and stopped on its time cap long before converging (run 2 of models.md).
    """
    running: list[tuple[int, subprocess.Popen]] = []
    codes = [0] * len(cmds)
    queue = list(enumerate(cmds))
    while queue or running:
        while queue and len(running) < max(1, jobs):
            i, cmd = queue.pop(0)
            running.append((i, subprocess.Popen(cmd)))
        time.sleep(1.0)
        for i, proc in list(running):
            if proc.poll() is not None:
                codes[i] = proc.returncode
                running.remove((i, proc))
    return codes


# ---------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("phase", choices=["fit", "rescore", "throughput", "chain", "report", "all"])
    ap.add_argument("--families", nargs="+", default=FAMILIES)
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "models-bench")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--max-time", type=float, default=540.0, help="wall-clock cap of each deep family's fit")
    ap.add_argument("--n", type=int, default=512, help="flows per throughput measurement")
    ap.add_argument("--command", default=None, help="the command line recorded in the report")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                    help="`all`: family chains run at once (default: one per CPU, so no fit is starved)")
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    me = [sys.executable, str(Path(__file__).resolve())]
    common = ["--work", str(args.work), "--out", str(args.out)]
    if args.phase == "fit":
        for f in args.families:
            fit_family(f, args.work, args.max_time)
    elif args.phase == "rescore":  # saved models, current sampler (e.g. after a sampler change)
        for f in args.families:
            rescore_family(f, args.work)
    elif args.phase == "throughput":
        if len(args.families) == 1:
            throughput_family(args.families[0], args.work, args.n)
        else:
            for f in args.families:  # one fresh process each: peak RSS is the sampler's own
                subprocess.run([*me, "throughput", "--families", f, "--n", str(args.n), *common], check=True)
    elif args.phase == "report":
        report(args.work, args.out, args.command or " ".join(["python benchmarks/models.py", *sys.argv[1:]]))
    elif args.phase == "chain":  # fit then throughput, each family in turn, each phase its own process
        for f in args.families:
            subprocess.run([*me, "fit", "--families", f, "--max-time", str(args.max_time), *common], check=True)
            subprocess.run([*me, "throughput", "--families", f, "--n", str(args.n), *common], check=True)
    else:  # deep families in parallel (one process each), baselines in one more; then the report
        load_split(args.work)
        groups = [[f] for f in args.families if f in DEEP] + [[f for f in args.families if f not in DEEP]]
        cmds = [[*me, "chain", "--families", *g, "--max-time", str(args.max_time), "--n", str(args.n), *common]
                for g in groups if g]
        codes = run_limited(cmds, args.jobs)
        report(args.work, args.out, args.command or "python benchmarks/models.py all")
        if any(codes):
            raise SystemExit(f"a family's run failed (exit codes {codes})")


if __name__ == "__main__":
    main()
