"""`make bench`: run `run_bench` on the tasks of ../shared/data/TASKS.md and commit-ready reports.

    .venv/bin/python benchmarks/bench_tasks.py [--tasks ndpi-cat14-flow,iot-type16] [--folds 5]
        [--generators transformer,ssm,diffusion,markov,independent,empirical] [--quick] [--out runs/bench]
        [--results benchmarks/results]

Each task is extracted with netsynth's own pipeline (cached under runs/bench-cache/), folded by
`run_bench` (5 folds: capture-grouped for iot-type16 and ndpi-cat14-capture, by flow for
ndpi-cat14-flow), and its report.md / report.html / results.json are copied to
benchmarks/results/bench-<task>.{md,html,json} (plots to bench-<task>-plots/). A summary with the wall
time of the whole run (the issue's 60-minute goal) goes to benchmarks/results/bench-summary.md.
Generators that are not registered (yet) are skipped and listed in the summary.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
ALL_GENERATORS = ("transformer", "ssm", "diffusion", "markov", "independent", "empirical")
DEEP = ("transformer", "ssm", "diffusion")

# Budgets (see bench-summary.md for how they were sized): `max_time` seconds of training per deep fit on
# one core — the folds run two at a time, one process and one thread each, so a fit gets a whole core;
# `sample_scale` synthetic flows per fit as a multiple of each class's training count.
TASKS = {
    "ndpi-cat14-flow": {"input": DATA / "ndpi-tests" / "pcap", "labels": DATA / "ndpi-tests" / "labels.csv",
                        "split_by": "flow", "cache": "ndpi-cat14", "max_time": 60.0, "sample_scale": 1.0,
                        "strict_fractions": (0.25,), "strict_folds": 1, "folds": 5},
    "iot-type16": {"input": DATA / "iot-sentinel", "labels": DATA / "iot-sentinel" / "labels.csv",
                   "split_by": "capture", "cache": "iot-type16", "max_time": 120.0, "sample_scale": 1.0,
                   "strict_fractions": (0.25,), "strict_folds": 1, "folds": 5},
    "ndpi-cat14-capture": {"input": DATA / "ndpi-tests" / "pcap", "labels": DATA / "ndpi-tests" / "labels.csv",
                           "split_by": "capture", "cache": "ndpi-cat14", "max_time": 60.0,
                           "sample_scale": 1.0, "strict_fractions": (0.25,), "strict_folds": 1, "folds": 5},
}
DEFAULT_TASKS = "ndpi-cat14-flow,iot-type16"


def load_task(name: str, cache_dir: Path):
    """The task's flow table (20 packets, ≥ 5 packets, labelled), extracted once and cached as Parquet."""
    from netsynth.extract import extract
    from netsynth.flows import FlowTable

    spec = TASKS[name]
    path = cache_dir / f"{spec['cache']}.parquet"
    if path.exists():
        return FlowTable.read(path)
    table = extract([str(spec["input"])], packets=20, min_packets=5, labels=str(spec["labels"])).table
    table.write(path)
    return table


def options_for(name: str, args: argparse.Namespace, command: str):
    """The committed protocol for one task (see the report's header for what each field means)."""
    from netsynth.evaluate.bench import BenchOptions

    spec = TASKS[name]
    return BenchOptions(
        folds=args.folds or spec["folds"], seeds=3, sample_seeds=1, sample_scale=spec["sample_scale"],
        split_by=spec["split_by"], n_estimators=50,
        fractions=(0.01, 0.05, 0.10, 0.25), aug_seeds=3, ratios=(0.5, 1.0, 2.0, 4.0), ratio_fractions=(0.05,),
        strict_folds=spec["strict_folds"], strict_fractions=spec["strict_fractions"], strict_seeds=3,
        max_time=args.max_time or spec["max_time"], strict_max_time=(args.max_time or spec["max_time"]) / 3,
        fold_jobs=args.jobs, n_jobs=1 if args.jobs > 1 else 2, device="cpu",
        multivariate_points=1500, quick=args.quick, title=f"netsynth bench: {name}", command=command)


def copy_results(out: Path, results_dir: Path, name: str) -> None:
    """bench-<task>.{md,html,json} and bench-<task>-plots/ under results_dir; md plot links rewritten."""
    results_dir.mkdir(parents=True, exist_ok=True)
    stem = f"bench-{name}"
    md = (out / "report.md").read_text(encoding="utf-8").replace("](plots/", f"]({stem}-plots/")
    (results_dir / f"{stem}.md").write_text(md, encoding="utf-8")
    shutil.copyfile(out / "report.html", results_dir / f"{stem}.html")
    shutil.copyfile(out / "results.json", results_dir / f"{stem}.json")
    plots = results_dir / f"{stem}-plots"
    if plots.exists():
        shutil.rmtree(plots)
    if (out / "plots").exists():
        shutil.copytree(out / "plots", plots)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", default=DEFAULT_TASKS)
    p.add_argument("--folds", type=int, default=None,
                   help="folds per task (default 5, the committed headline)")
    p.add_argument("--generators", default=",".join(ALL_GENERATORS))
    p.add_argument("--quick", action="store_true")
    p.add_argument("--jobs", type=int, default=2, help="folds at once, one worker process each (default 2)")
    p.add_argument("--max-time", type=float, default=None,
                   help="training seconds per deep fit (default: per task, 120 iot-type16 / 60 ndpi)")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "bench")
    p.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results")
    p.add_argument("--summary", default="bench-summary", help="stem of the summary files in --results")
    p.add_argument("--no-copy", action="store_true", help="do not copy reports to --results")
    args = p.parse_args(argv)
    from netsynth.evaluate.bench import fold_pool, start_bench
    from netsynth.models import available_generators

    command = "python benchmarks/bench_tasks.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    wanted = [g for g in args.generators.split(",") if g]
    gens = [g for g in wanted if g in available_generators()]
    skipped = [g for g in wanted if g not in gens]
    t0 = time.perf_counter()
    load_start = os.getloadavg()[0]
    rows = []
    names = [t for t in args.tasks.split(",") if t]
    # One pool for every task's folds, the biggest task first, so no core idles while a task's last
    # fold runs alone (5 folds on 2 workers would otherwise leave one core idle for a third of the time).
    tables = {name: load_task(name, REPO / "runs" / "bench-cache") for name in names}
    order = sorted(names, key=lambda n: -len(tables[n]))
    with fold_pool(args.jobs) if args.jobs > 1 else contextlib.nullcontext() as pool:
        runs = {}
        for name in order:
            print(f"== {name}: {len(tables[name])} flows, generators {', '.join(gens)}", file=sys.stderr, flush=True)
            runs[name] = start_bench(tables[name], None, gens, args.out / name, options_for(name, args, command),
                                     pool=pool)
        for name in order:
            res = runs[name].finish()
            if not args.no_copy:
                copy_results(args.out / name, args.results, name)
            rows.append((name, time.perf_counter() - t0, res["goals"]))
    total = time.perf_counter() - t0
    lines = ["# netsynth bench: summary of the committed run", "",
             f"Command: `{command}`  ", f"Machine: {platform.machine()}, {platform.processor() or 'cpu'}, "
             f"Python {platform.python_version()}; generators run: {', '.join(gens)}"
             + (f"; not registered, skipped: {', '.join(skipped)}" if skipped else ""), "",
             f"The tasks' folds ran in one pool of {args.jobs} worker processes, biggest task first; the time "
             "below is when each task's report was written, counted from the start.", "",
             "| task | finished after (min) |", "| --- | --- |"]
    lines += [f"| {n} | {s / 60:.1f} |" for n, s, _ in rows]
    verdict = "met" if total <= 3600 else "NOT met"
    lines += [f"| **total** | **{total / 60:.1f}** |", "",
              f"Goal 'a full `make bench` of both tasks finishes within 60 minutes on this 2-core machine': "
              f"**{verdict}** ({total / 60:.1f} min on {os.cpu_count()} CPUs; 1-minute load average "
              f"{load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end).", ""]
    for n, _, goals in rows:
        lines += [f"## {n}", ""] + [f"- {g['goal']}: **{ {True: 'met', False: 'not met', None: 'n/a'}[g['verdict']] }**"
                                    f" — {g['measured']}" for g in goals] + [""]
    text = "\n".join(lines)
    print(text)
    if not args.no_copy:
        args.results.mkdir(parents=True, exist_ok=True)
        (args.results / f"{args.summary}.md").write_text(text, encoding="utf-8")
        (args.results / f"{args.summary}.json").write_text(json.dumps(
            {"command": command, "total_seconds": total, "tasks": {n: s for n, s, _ in rows},
             "generators": gens, "skipped": skipped}, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
