"""Run the whole CLI pipeline on the benchmark tasks of ../shared/data/TASKS.md and record what it measured.

Each step is the real `netsynth` command a user would type (extract → split → train → sample →
evaluate), timed for wall clock and CPU (user + system of the child process), so the README's table
comes from one named run. Results go to benchmarks/results/tasks.{json,md}.

    .venv/bin/python benchmarks/run_tasks.py [--tasks iot-type16,ndpi-cat14-flow,ndpi-cat14-capture]
        [--model transformer] [--out runs/tasks]
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

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
NETSYNTH = [sys.executable, "-m", "netsynth.cli"]

TASKS = {
    "iot-type16": {
        "input": DATA / "iot-sentinel",
        "labels": DATA / "iot-sentinel" / "labels.csv",
        "by": "capture",
    },
    "ndpi-cat14-flow": {
        "input": DATA / "ndpi-tests" / "pcap",
        "labels": DATA / "ndpi-tests" / "labels.csv",
        "by": "flow",
    },
    "ndpi-cat14-capture": {
        "input": DATA / "ndpi-tests" / "pcap",
        "labels": DATA / "ndpi-tests" / "labels.csv",
        "by": "capture",
    },
}


def run(step: str, args: list[str], log: list[dict]) -> None:
    """Run one CLI command, recording wall and CPU seconds; stop on failure."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(NETSYNTH + args, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    log.append({"step": step, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
                "command": "netsynth " + " ".join(args)})
    print(f"  {step}: {wall:.1f} s wall, {cpu:.1f} s CPU", flush=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"{step} failed with exit status {proc.returncode}")


def run_task(name: str, model: str, out: Path, extra_train: list[str]) -> dict:
    """The five steps on one task; returns the evaluation metrics plus timings."""
    spec = TASKS[name]
    work = out / name
    work.mkdir(parents=True, exist_ok=True)
    log: list[dict] = []
    flows = out / f"{name.split('-')[0]}-flows.parquet"
    if not flows.exists():
        run("extract", ["extract", str(spec["input"]), "--labels", str(spec["labels"]), "--packets", "20",
                        "--min-packets", "5", "-o", str(flows), "-q"], log)
    run("split", ["split", str(flows), "-o", str(work / "split"), "--by", spec["by"], "--test-size", "0.2",
                  "--seed", "0"], log)
    run("train", ["train", model, str(work / "split" / "train.parquet"), "-o", str(work / "model"), "--seed", "0",
                  *extra_train], log)
    import pyarrow.parquet as pq

    n_train = pq.read_metadata(work / "split" / "train.parquet").num_rows
    run("sample", ["sample", str(work / "model"), "-n", str(n_train), "--seed", "0", "-o",
                   str(work / "synthetic.parquet")], log)
    run("evaluate", ["evaluate", "--train", str(work / "split" / "train.parquet"), "--test",
                     str(work / "split" / "test.parquet"), "--synthetic", str(work / "synthetic.parquet"), "-o",
                     str(work / "report")], log)
    metrics = json.loads((work / "report" / "metrics.json").read_text())
    model_info = json.loads((work / "model" / "model.json").read_text())
    return {"task": name, "model": model, "steps": log, "metrics": metrics,
            "training": model_info.get("training", {}), "n_train": n_train}


FIDELITY_ROWS = (
    ("direction_3gram_jsd", "direction 3-gram JSD"),
    ("payload_len_jsd_dir0", "payload JSD, initiator→responder"),
    ("payload_len_jsd_dir1", "payload JSD, responder→initiator"),
    ("payload_len_w1", "payload Wasserstein-1 (bytes)"),
    ("flow_len_jsd", "flow length JSD (cap 10)"),
    ("iat_jsd_dir0", "IAT JSD, initiator→responder"),
    ("iat_jsd_dir1", "IAT JSD, responder→initiator"),
)


def _pm(d: dict) -> str:
    return f"{d['mean']:.3f} ± {d['std']:.3f}"


def render_markdown(record: dict) -> str:
    """The README's results table, from one run's record."""
    res = record["results"]
    head = "| | " + " | ".join(r["task"] for r in res) + " |\n|---|" + "---|" * len(res) + "\n"
    rows = []

    def row(name: str, cells: list[str]) -> None:
        rows.append(f"| {name} | " + " | ".join(cells) + " |")

    m = [r["metrics"] for r in res]
    row("flows train / test", [f"{x['inputs']['n_flows']['train']:,} / {x['inputs']['n_flows']['test']:,}" for x in m])
    row("classes", [str(len(x["inputs"]["class_counts"]["train"])) for x in m])
    row("TRTR macro F1 (RF, 3 seeds)", [_pm(x["classification"]["trtr"]["macro_f1"]) for x in m])
    row(f"TSTR macro F1 ({record['results'][0]['model']})", [_pm(x["classification"]["tstr"]["macro_f1"]) for x in m])
    row("TRTR / TSTR accuracy", [f"{x['classification']['trtr']['accuracy']['mean']:.3f} / "
                                 f"{x['classification']['tstr']['accuracy']['mean']:.3f}" for x in m])
    row("exact copies of a train flow: synthetic / real test",
        [f"{x['novelty']['synthetic_copy_rate']:.3f} / {x['novelty']['test_copy_rate']:.3f}" for x in m])
    for key, name in FIDELITY_ROWS:
        row(f"{name}: synthetic / train, vs test",
            [f"{x['fidelity']['metrics'][key]['synthetic_vs_test']:.3f} / "
             f"{x['fidelity']['metrics'][key]['train_vs_test']:.3f}" for x in m])
    row("parameters", [f"{r['training'].get('parameters', 0):,}" for r in res])
    row("training: epochs, stop reason", [f"{r['training'].get('epochs')}, {r['training'].get('stop_reason')}"
                                          for r in res])

    def step(r: dict, name: str, key: str) -> str:
        return next((f"{s[key]:.0f}" for s in r["steps"] if s["step"] == name), "-")

    row("train: wall / CPU seconds", [f"{step(r, 'train', 'wall_s')} / {step(r, 'train', 'cpu_s')}" for r in res])
    row("sampling: flows/s (wall)", [f"{r['n_train'] / max(float(step(r, 'sample', 'wall_s')), 1.0):,.0f}"
                                     for r in res])
    row("whole pipeline: CPU seconds", [f"{sum(s['cpu_s'] for s in r['steps']):.0f}" for r in res])
    counts = "\n".join(
        f"- **{r['task']}** (train): "
        + ", ".join(f"{k} {v}" for k, v in r["metrics"]["inputs"]["class_counts"]["train"].items())
        for r in res
    )
    cmds = "\n".join(f"    {s['command']}" for r in res for s in r["steps"])
    return (f"Measured {record['date']} on {record['machine']['cpus']} CPUs ({record['machine']['platform']}), "
            f"command `{record['command']}`.\n\n{head}" + "\n".join(rows) + f"\n\nFlows per class:\n{counts}\n\n"
            f"Commands run:\n\n{cmds}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--model", default="transformer")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "tasks")
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--set", action="append", default=[], help="config override passed to train")
    parser.add_argument("--render", type=Path, help="only re-render the Markdown of an existing tasks*.json")
    args = parser.parse_args()
    if args.render:
        args.render.with_suffix(".md").write_text(render_markdown(json.loads(args.render.read_text())))
        return
    extra = [x for kv in args.set for x in ("--set", kv)]
    started = time.time()
    results = []
    for name in args.tasks.split(","):
        print(f"== {name}", flush=True)
        results.append(run_task(name, args.model, args.out, extra))
    record = {
        "command": "python benchmarks/run_tasks.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started)),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "results": results,
    }
    args.results.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.model == "transformer" else f"-{args.model}"
    (args.results / f"tasks{suffix}.json").write_text(json.dumps(record, indent=2, default=str))
    (args.results / f"tasks{suffix}.md").write_text(render_markdown(record))
    print(json.dumps([{k: r[k] for k in ("task", "n_train")} for r in results]))


if __name__ == "__main__":
    main()
