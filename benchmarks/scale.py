"""Throughput of netsynth.scale with 1 and 2 Dask workers, side by side in one run, on this machine.

* extraction: the iot-sentinel captures (550 files, 63 MB) → flow table; single-process
  `extract_to_parquet` as the reference, then `extract_dask` on a LocalCluster of 1 and of 2
  single-threaded worker processes (packets/s; nDPI off);
* sampling: `sample_sharded` of a Markov baseline and of the tiny transformer (both fitted here on a
  tenth of the iot flows), in-process and on 1 and 2 workers (flows/s).

Cluster start-up (and warming the workers' imports) is timed apart from the work (a long-lived cluster
does not pay it); every row also
records CPU load before it ran, because the 2 cores are shared and a busy neighbour halves a number.

    python benchmarks/scale.py            # writes benchmarks/results/scale.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "iot-sentinel"
RESULTS = REPO / "benchmarks" / "results"


def _timed(fn: Any) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def bench_extract(tmp: Path, workers: list[int]) -> list[dict[str, Any]]:
    from netsynth.extract import extract_to_parquet
    from netsynth.scale._dask import connect
    from netsynth.scale.dask_extract import extract_dask

    opts = dict(packets=20, min_packets=5, labels=DATA / "labels.csv", ndpi_app=False)
    rows = []
    load = os.getloadavg()[0]
    secs, res = _timed(lambda: extract_to_parquet([DATA], tmp / "single.parquet", **opts))
    rows.append({"stage": "extract", "runner": "single process", "workers": 1, "seconds": round(secs, 2),
                 "startup_s": 0.0, "packets": res.summary.packets_read, "flows": res.summary.flows_kept,
                 "rate": round(res.summary.packets_read / secs), "unit": "packets/s", "load1": load})
    for n in workers:
        load = os.getloadavg()[0]
        start, ctx = _timed(lambda n=n: _enter(connect(f"local:{n}")))
        client = ctx[1]
        try:
            out = tmp / f"dask{n}"
            secs, res = _timed(lambda client=client, out=out: extract_dask([DATA], out, scheduler=client, **opts))
        finally:
            ctx[0].__exit__(None, None, None)
        rows.append({"stage": "extract", "runner": f"dask local:{n}", "workers": n, "seconds": round(secs, 2),
                     "startup_s": round(start, 2), "packets": res.summary.packets_read,
                     "flows": res.summary.flows_kept, "rate": round(res.summary.packets_read / secs),
                     "unit": "packets/s", "load1": load})
    return rows


def _enter(cm: Any) -> tuple[Any, Any]:
    """Start a cluster and warm its workers' imports (a long-lived cluster has them already)."""
    client = cm.__enter__()
    client.run(_warm)
    return cm, client


def _warm() -> None:
    import pyarrow.parquet  # noqa: F401
    import torch  # noqa: F401

    import netsynth.extract.pipeline
    import netsynth.models  # noqa: F401


def bench_sample(tmp: Path, workers: list[int], plan: dict[str, tuple[int, int]]) -> list[dict[str, Any]]:
    from netsynth.flows import FlowTable
    from netsynth.models import get_generator
    from netsynth.scale._dask import connect
    from netsynth.scale.dask_sample import sample_sharded

    table = FlowTable.read(tmp / "single.parquet")
    small = table.take(np.arange(0, len(table), 10))
    rows = []
    for name, (n, shard_size) in plan.items():
        cls = get_generator(name)
        cls(cls.tiny_config(), device="cpu", random_state=0).fit(small).save(tmp / name)
        runners: list[tuple[str, int, Any]] = [("in-process", 1, None)] + [(f"dask local:{w}", w, w) for w in workers]
        for label, w, sched in runners:
            load = os.getloadavg()[0]
            out = tmp / f"{name}-{label.replace(' ', '_').replace(':', '')}"
            if sched is None:
                secs, summary = _timed(lambda out=out, n=n, name=name, k=shard_size: sample_sharded(
                    tmp / name, n, out, seed=0, shard_size=k))
                start = 0.0
            else:
                start, ctx = _timed(lambda sched=sched: _enter(connect(f"local:{sched}")))
                try:
                    secs, summary = _timed(lambda out=out, n=n, name=name, k=shard_size, c=ctx[1]: sample_sharded(
                        tmp / name, n, out, seed=0, shard_size=k, scheduler=c))
                finally:
                    ctx[0].__exit__(None, None, None)
            rows.append({"stage": f"sample {name}", "runner": label, "workers": w, "seconds": round(secs, 2),
                         "startup_s": round(start, 2), "flows": summary.flows, "shards": summary.shards_done,
                         "rate": round(summary.flows / secs), "unit": "flows/s", "load1": load,
                         "shard_size": shard_size})
        same = [FlowTable.read(p).payload_len for p in sorted(tmp.glob(f"{name}-*"))]
        rows[-1]["identical_across_runners"] = all(np.array_equal(same[0], s) for s in same[1:])
    return rows


def render(doc: dict[str, Any]) -> str:
    lines = ["# netsynth.scale throughput: 1 vs 2 Dask workers", "",
             f"Command: `{doc['command']}`  ", f"Machine: {doc['machine']}  ", f"Run: {doc['when']}", "",
             "| stage | runner | workers | work s | cluster start s | items | rate | load (1 min) before |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in doc["rows"]:
        items = r.get("packets", r.get("flows"))
        lines.append(f"| {r['stage']} | {r['runner']} | {r['workers']} | {r['seconds']} | {r['startup_s']} | "
                     f"{items:,} | {r['rate']:,} {r['unit']} | {r['load1']:.1f} |")
    lines += ["", *doc["notes"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--markov-flows", type=int, default=100_000)
    ap.add_argument("--markov-shard", type=int, default=5_000)
    ap.add_argument("--transformer-flows", type=int, default=2_000)
    ap.add_argument("--transformer-shard", type=int, default=250)
    ap.add_argument("--out", type=Path, default=RESULTS / "scale")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="netsynth-bench-scale-"))
    try:
        rows = bench_extract(tmp, args.workers)
        rows += bench_sample(tmp, args.workers, {"markov": (args.markov_flows, args.markov_shard),
                                                 "transformer": (args.transformer_flows, args.transformer_shard)})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    doc = {
        "command": "python benchmarks/scale.py " + " ".join(
            f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in vars(args).items() if k != "out"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared), "
                   f"Python {platform.python_version()}",
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "rows": rows,
        "notes": ["Load average before each row is in the last column: on a shared machine a busy neighbour, not "
                  "netsynth, can decide the ratio between 1 and 2 workers."],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}.json").write_text(json.dumps(doc, indent=2), encoding="utf-8")
    Path(f"{args.out}.md").write_text(render(doc), encoding="utf-8")
    print(render(doc))


if __name__ == "__main__":
    main()
