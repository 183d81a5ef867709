"""Capture → flows speed and peak memory, side by side in one run: netsynth, nfstream, a dpkt loop.

Datasets: the iot-sentinel captures concatenated into one pcap, the ndpi-tests captures (a folder of
mixed pcap/pcapng), and a generated large Ethernet/IPv4 capture (benchmarks/gen_capture.py, written to
/tmp). Tools, each in a fresh process so that peak RSS (the process and its children) is its own:

* ``netsynth``: `extract_to_parquet` (what the CLI runs: vectorised path, streamed row groups), first 20
  packets per flow with payload length, direction, IAT, TCP flags and window;
* ``netsynth-scalar``: the same with ``fast=False`` (the per-packet reference path);
* ``nfstream``: ``NFStreamer(splt_analysis=20, statistical_analysis=False, n_meters=1)`` iterated to
  the end (flows + direction, size and IAT of the first 20 packets), single meter for a like-for-like
  single-core comparison;
* ``dpkt``: a dpkt parsing loop only (Ethernet → IP → TCP/UDP ports and lengths, no flows).

Each tool's modules are imported before its timer starts (throughput, not start-up). Wall and CPU
seconds (process + children) are both reported: on a shared machine CPU seconds are steadier.

    python benchmarks/extract.py --packets 1000000     # writes benchmarks/results/extract.{json,md}
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
TOOLS = ("netsynth", "netsynth-scalar", "nfstream", "dpkt")


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.suffix in (".pcap", ".pcapng", ".cap") and p.is_file())


# ------------------------------------------------------------------------------------- measurements
def run_netsynth(path: Path, fast: bool) -> dict:
    from netsynth.extract import extract_to_parquet

    with tempfile.TemporaryDirectory() as d:
        res = extract_to_parquet([path], Path(d) / "f.parquet", label_from="stem", packets=20, fast=fast,
                                 require_flows=False)
    return {"packets": res.summary.packets_read, "flows": res.summary.flows_total}


def run_nfstream(path: Path) -> dict:
    from nfstream import NFStreamer

    packets = flows = failed = 0
    for f in _files(path):
        try:
            for flow in NFStreamer(source=str(f), splt_analysis=20, statistical_analysis=False, n_meters=1):
                packets += flow.bidirectional_packets
                flows += 1
        except Exception:  # a file nfstream's libpcap rejects is counted, not fatal
            failed += 1
    return {"packets": packets, "flows": flows, "files_failed": failed}


def run_dpkt(path: Path) -> dict:
    import dpkt

    packets = parsed = 0
    for f in _files(path):
        with open(f, "rb") as fh:
            try:
                reader = dpkt.pcap.Reader(fh)
            except ValueError:
                fh.seek(0)
                try:
                    reader = dpkt.pcapng.Reader(fh)
                except ValueError:
                    continue
            if reader.datalink() != dpkt.pcap.DLT_EN10MB:
                continue
            try:
                for _ts, buf in reader:
                    packets += 1
                    eth = dpkt.ethernet.Ethernet(buf)
                    ip = eth.data
                    if isinstance(ip, dpkt.ip.IP | dpkt.ip6.IP6) and isinstance(ip.data, dpkt.tcp.TCP | dpkt.udp.UDP):
                        l4 = ip.data
                        _ = (l4.sport, l4.dport, len(l4.data))
                        parsed += 1
            except (dpkt.dpkt.NeedData, dpkt.dpkt.UnpackError, struct.error):
                pass
    return {"packets": packets, "parsed_tcp_udp": parsed}


def _warm_imports(tool: str) -> None:
    """Import each tool's modules before timing: the table measures throughput, not start-up (the
    first `pa.array` of NumPy data imports pandas when installed — nfstream installs it — ~1 s)."""
    import importlib

    mods = {"netsynth": ["netsynth.extract", "pyarrow.parquet", "pandas"], "nfstream": ["nfstream"],
            "dpkt": ["dpkt"]}[tool.split("-")[0]]
    for m in mods:
        with contextlib.suppress(ImportError):
            importlib.import_module(m)


def one(tool: str, path: Path) -> dict:
    """Run one tool on one dataset in this process; returns counts, seconds and peak RSS (MB)."""
    _warm_imports(tool)
    start = time.perf_counter()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = r0.ru_utime + r0.ru_stime  # interpreter start-up and imports are not the tool's work
    if tool == "netsynth":
        out = run_netsynth(path, True)
    elif tool == "netsynth-scalar":
        out = run_netsynth(path, False)
    elif tool == "nfstream":
        out = run_nfstream(path)
    else:
        out = run_dpkt(path)
    out["seconds"] = time.perf_counter() - start
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    out["peak_rss_mb"] = max(me.ru_maxrss, kids.ru_maxrss) / 1024
    # CPU seconds of the process and its children (nfstream meters): steadier than wall time on a shared machine
    out["cpu_seconds"] = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime - cpu0
    return out


# ----------------------------------------------------------------------------------------- datasets
def concat_pcaps(src: Path, out: Path) -> int:
    """All Ethernet pcaps under `src`, in sorted order, as one pcap (record bytes copied as they are)."""
    n = 0
    with open(out, "wb") as fo:
        fo.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for f in _files(src):
            data = f.read_bytes()
            if data[:4] != b"\xd4\xc3\xb2\xa1" or struct.unpack_from("<I", data, 20)[0] != 1:
                continue
            pos = 24
            while pos + 16 <= len(data):
                incl = struct.unpack_from("<I", data, pos + 8)[0]
                if pos + 16 + incl > len(data):
                    break
                fo.write(data[pos : pos + 16 + incl])
                pos += 16 + incl
                n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--packets", type=int, default=1_000_000, help="packets in the generated large capture")
    ap.add_argument("--tools", default=",".join(TOOLS))
    ap.add_argument("--one", nargs=2, metavar=("TOOL", "PATH"), help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "extract")
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], Path(args.one[1]))))
        return
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from gen_capture import generate

    tmp = Path(tempfile.gettempdir())
    iot = tmp / "netsynth-bench-iot.pcap"
    large = tmp / f"netsynth-bench-large-{args.packets}.pcap"
    if not iot.exists():
        concat_pcaps(DATA / "iot-sentinel", iot)
    if not large.exists():
        generate(large, args.packets, seed=0)
    datasets = {"iot-sentinel (concatenated)": iot, "ndpi-tests (folder)": DATA / "ndpi-tests" / "pcap",
                f"generated large ({args.packets:,} packets)": large}
    results: dict[str, dict] = {}
    for name, path in datasets.items():
        results[name] = {"bytes": sum(f.stat().st_size for f in _files(path))}
        for tool in args.tools.split(","):
            proc = subprocess.run([sys.executable, __file__, "--one", tool, str(path)], capture_output=True,
                                  text=True, check=False, cwd=ROOT)
            if proc.returncode:
                results[name][tool] = {"error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
            else:
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                r["packets_per_second"] = r["packets"] / r["seconds"] if r["seconds"] else 0.0
                r["packets_per_cpu_second"] = r["packets"] / r["cpu_seconds"] if r["cpu_seconds"] else 0.0
                results[name][tool] = r
            print(name, tool, results[name][tool], flush=True)
    meta = {"command": "python benchmarks/extract.py " + " ".join(sys.argv[1:]), "cpus": os.cpu_count(),
            "load_average_at_end": os.getloadavg(), "python": sys.version.split()[0]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(render(meta, results))
    print(f"wrote {args.out.with_suffix('.md')} and .json")


def render(meta: dict, results: dict) -> str:
    """Markdown table: packets/s, ratio to nfstream, peak RSS, per dataset and tool."""
    lines = ["# Capture extraction speed and memory", "", f"Command: `{meta['command']}`  ",
             f"Machine: {meta['cpus']} CPUs shared with other jobs (load average at the end "
             f"{', '.join(f'{x:.1f}' for x in meta['load_average_at_end'])}), Python {meta['python']}.", ""]
    for name, res in results.items():
        lines += [f"## {name} — {res['bytes'] / 1e6:,.0f} MB", "",
                  "| tool | packets | flows | wall s | packets/s (wall) | × nfstream | CPU s | packets/CPU s "
                  "| × nfstream (CPU) | peak RSS (MB) |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        nf = res.get("nfstream", {}).get("packets_per_second") or 0
        nfc = res.get("nfstream", {}).get("packets_per_cpu_second") or 0
        for tool in TOOLS:
            r = res.get(tool)
            if r is None:
                continue
            if "error" in r:
                lines.append(f"| {tool} | error: {r['error']} | | | | | | | | |")
                continue
            ratio = f"{r['packets_per_second'] / nf:.2f}" if nf else "-"
            cratio = f"{r['packets_per_cpu_second'] / nfc:.2f}" if nfc else "-"
            lines.append(f"| {tool} | {r['packets']:,} | {r.get('flows', '-')} | {r['seconds']:.1f} | "
                         f"{r['packets_per_second']:,.0f} | {ratio} | {r['cpu_seconds']:.1f} | "
                         f"{r['packets_per_cpu_second']:,.0f} | {cratio} | {r['peak_rss_mb']:,.0f} |")
        lines.append("")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
