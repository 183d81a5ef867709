"""Memory of a streamed `export_pcap` against the number of flows: flat in flows, bounded by the batch.

Builds synthetic flow tables of several sizes with NumPy, writes each to a temporary Parquet file with
many row groups, and exports each in a fresh child process (so that each peak is its own), reading the
table from disk a batch at a time. Per size it reports the child's peak RSS (VmHWM), its RSS once
everything is imported (the interpreter, NumPy, pyarrow, pandas and netsynth: the floor), and, in
separate runs at the --trace-sizes, the peak Python allocation traced during the export itself
(tracemalloc sees NumPy's buffers, not pyarrow's, and slows the export ~8x, so those runs are smaller).

Two orders are measured: "ascending" start times (the usual case; synthetic tables without start times
are laid out in row order and take the same path) and "concatenated" — the table is four ascending
"captures" one after the other, so starts are not ascending overall and the exporter sorts them
(12 B per flow kept, ~20 B per flow while sorting). Run (1 thread, as committed):

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/export_memory.py --out benchmarks/results/export_memory

(defaults: --sizes 100000 300000 1000000, --trace-sizes 25000 50000, --concatenated-up-to 300000,
--batch-size 16384, --packets 6).

It writes OUT.json and OUT.md with every number and the command.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROW_GROUP = 50_000


def synthetic_table(n: int, width: int, seed: int, order: str) -> object:
    """n TCP/UDP flows of 2..width packets (handshake, sizes, IATs) with start times at ~1,000 flows/s.

    Each flow lasts ~width × 50 ms, so a few hundred flows are open at any moment, as in real traffic.
    """
    from netsynth.flows import FlowTable
    from netsynth.flows.schema import ACK, PSH, SYN

    rng = np.random.default_rng(seed)
    n_packets = rng.integers(2, width + 1, size=n).astype(np.int16)
    mask = np.arange(width)[None, :] < n_packets[:, None]
    direction = rng.integers(0, 2, size=(n, width)).astype(np.int8)
    direction[:, 0], direction[:, 1] = 0, 1
    payload = rng.integers(1, 1461, size=(n, width)).astype(np.int32)
    flags = np.full((n, width), PSH | ACK, np.uint8)
    flags[:, 0], flags[:, 1] = SYN, SYN | ACK
    payload[:, :2] = 0
    iat = rng.exponential(0.05, size=(n, width)).astype(np.float32)
    iat[:, 0] = 0
    protocol = np.where(rng.random(n) < 0.2, 17, 6).astype(np.uint8)
    flags[protocol == 17] = 0
    start = 1.7e9 + np.cumsum(rng.exponential(1e-3, n))
    if order == "concatenated":  # four captures of the same period, one after the other
        start = np.concatenate([s for s in np.array_split(start, 4)[::-1]])
    return FlowTable.build(label=np.array(["a", "b", "c"])[rng.integers(0, 3, n)], n_packets=n_packets,
                           payload_len=np.where(mask, payload, 0), direction=np.where(mask, direction, 0),
                           iat=np.where(mask, iat, 0), tcp_flags=np.where(mask, flags, 0), protocol=protocol,
                           start_time=start, flow_id=np.arange(n).astype(str).astype(object))


def rss_now_mib(field: str = "VmRSS") -> float:
    """This process's resident set size (VmRSS) or its peak (VmHWM), from /proc (Linux).

    VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss across exec, so a child started by a
    parent holding a large table would report the parent's size; VmHWM belongs to the child's own
    address space.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(table: str, out: str, batch_size: int, trace: bool) -> dict:
    """Run one export in this (fresh) process and measure it."""
    import tracemalloc

    from netsynth.export import export_pcap

    with contextlib.suppress(ImportError):  # pyarrow imports pandas on first ChunkedArray.to_numpy (~70 MiB)
        import pandas  # noqa: F401
    floor = rss_now_mib()
    if trace:
        tracemalloc.start()
    start, cpu = time.perf_counter(), time.process_time()
    summary = export_pcap(table, out, batch_size=batch_size)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    peak = tracemalloc.get_traced_memory()[1] / 2**20 if trace else None
    return {"flows": summary.flows, "packets": summary.packets, "file_mib": Path(out).stat().st_size / 2**20,
            "rss_floor_mib": floor, "peak_rss_mib": rss_now_mib("VmHWM"),
            "traced_peak_mib": peak, "wall_s": wall, "cpu_s": cpu, "packets_per_s": summary.packets / wall,
            "packets_per_cpu_s": summary.packets / cpu}


def measure(n: int, order: str, trace: bool, args: argparse.Namespace, tmp: Path) -> dict:
    """Build and write the table here, export it in a child process, return the child's numbers."""
    table_path, out = tmp / f"t{n}-{order}.parquet", tmp / f"o{n}-{order}.pcap"
    synthetic_table(n, args.packets, 0, order).write(table_path, row_group_size=ROW_GROUP)
    cmd = [sys.executable, __file__, "--child", str(table_path), str(out), str(args.batch_size), str(int(trace))]
    run = subprocess.run(cmd, capture_output=True, text=True, check=True)
    result = json.loads(run.stdout.strip().splitlines()[-1])
    result.update(order=order, table_mib=table_path.stat().st_size / 2**20, row_groups=-(-n // ROW_GROUP))
    table_path.unlink()
    out.unlink()
    return result


def render(results: list[dict], args: argparse.Namespace, command: str) -> str:
    rows = ["| start times | flows | packets | pcap MiB | peak RSS MiB | RSS after imports MiB | peak − floor MiB"
            " | traced peak MiB | wall s | CPU s | packets per CPU-s |", "|---" * 11 + "|"]
    for r in results:
        traced = f"{r['traced_peak_mib']:.1f}" if r["traced_peak_mib"] is not None else "—"
        label = r["order"] + (" (tracemalloc)" if r["traced_peak_mib"] is not None else "")
        rows.append(f"| {label} | {r['flows']:,} | {r['packets']:,} | {r['file_mib']:,.0f} | "
                    f"{r['peak_rss_mib']:.0f} | {r['rss_floor_mib']:.0f} | "
                    f"{r['peak_rss_mib'] - r['rss_floor_mib']:.0f} | {traced} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | "
                    f"{r['packets_per_cpu_s']:,.0f} |")
    return "\n".join([
        "# Streamed export memory against flows", "",
        f"Command: `{command}`", "",
        f"Batch size {args.batch_size:,} flows; tables of 2..{args.packets} packets per flow, {ROW_GROUP:,}-row"
        " Parquet row groups, read from disk; each export in a fresh process. Machine: "
        f"{platform.machine()}, {os.cpu_count()} cores shared with other jobs (wall times vary with load).", "",
        *rows, "",
        "Peak RSS is the whole child process; 'RSS after imports' is its floor before the export starts"
        " (interpreter, NumPy, pyarrow, pandas — which pyarrow loads on first use — and netsynth). The"
        " traced peak is the Python/NumPy allocation peak"
        " during the export (tracemalloc; pyarrow's own buffers are not traced), measured in separate,"
        " smaller runs because tracemalloc slows the export ~8x (so their times are not comparable)."
        " 'concatenated' (start"
        f" times not ascending, sorted by the exporter) is measured up to {args.concatenated_up_to:,} flows"
        " to keep the run short.", ""])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        table, out, batch, trace = sys.argv[2:6]
        print(json.dumps(child(table, out, int(batch), trace == "1")))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    ap.add_argument("--packets", type=int, default=6, help="N, the most packets per flow")
    ap.add_argument("--batch-size", type=int, default=16384)
    ap.add_argument("--orders", nargs="+", default=["ascending", "concatenated"],
                    choices=["ascending", "concatenated"])
    ap.add_argument("--trace-sizes", type=int, nargs="*", default=[25_000, 50_000],
                    help="extra runs under tracemalloc (ascending order), smaller: it slows the export ~8x")
    ap.add_argument("--concatenated-up-to", type=int, default=300_000,
                    help="measure the 'concatenated' order for sizes up to this")
    ap.add_argument("--out", type=Path, help="write OUT.json and OUT.md")
    args = ap.parse_args()
    command = "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/export_memory.py " + " ".join(sys.argv[1:])
    results = []
    runs = [(n, "ascending", True) for n in args.trace_sizes]
    runs += [(n, order, False) for order in args.orders for n in args.sizes
             if order == "ascending" or n <= args.concatenated_up_to]
    with tempfile.TemporaryDirectory() as tmp:
        for n, order, trace in runs:
            results.append(measure(n, order, trace, args, Path(tmp)))
            print(json.dumps(results[-1]), flush=True)
    text = render(results, args, command)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps({"command": command, "batch_size": args.batch_size,
                                                             "results": results}, indent=2) + "\n")
        args.out.with_suffix(".md").write_text(text)


if __name__ == "__main__":
    main()
