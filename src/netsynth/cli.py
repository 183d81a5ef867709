"""The `netsynth` command line: each command parses its options and calls one library function.

Errors a user can cause (`NetsynthError`, or an OS error on a named file) become one line on stderr and
exit status 2 — never a traceback. Heavy imports (torch, scikit-learn) happen inside the commands so
that `netsynth --help` is instant.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from netsynth.errors import InputError, NetsynthError

app = typer.Typer(
    name="netsynth",
    help="Real captures in, class-conditioned synthetic flows out, judged against real traffic.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)
out = Console()

F = TypeVar("F", bound=Callable[..., Any])


def _handles_errors(func: F) -> F:
    """Turn user-caused errors into one line on stderr and exit status 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except NetsynthError as exc:
            err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            err.print(f"[bold red]error:[/] {where}{exc.strerror or exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err.print("interrupted; no output was written")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _parse_pairs(items: list[str] | None, what: str) -> dict[str, str]:
    """Parse repeated `KEY=VALUE` options."""
    pairs: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"{what} expects KEY=VALUE, got {item!r}")
        pairs[key.strip()] = value.strip()
    return pairs


# --------------------------------------------------------------------------- extract
@app.command()
@_handles_errors
def extract(
    paths: Annotated[list[Path], typer.Argument(help="pcap/pcapng files or folders (walked recursively)")],
    output: Annotated[Path, typer.Option("-o", "--output", help="flow table to write (Parquet)")],
    packets: Annotated[int, typer.Option("--packets", min=1, max=1000, help="packets kept per flow (N)")] = 20,
    min_packets: Annotated[int, typer.Option("--min-packets", min=1, help="drop flows with fewer packets")] = 1,
    idle_timeout: Annotated[float, typer.Option("--idle-timeout", help="seconds of silence that end a flow")] = 120.0,
    active_timeout: Annotated[
        float | None, typer.Option("--active-timeout", help="seconds after its start that end a flow (default: none)")
    ] = None,
    tcp_end: Annotated[
        bool, typer.Option("--tcp-end/--no-tcp-end", help="end TCP flows at FIN/RST; a new SYN starts a new flow")
    ] = False,
    initiator: Annotated[
        str, typer.Option("--initiator", help="first (first sender), syn (SYN sender), port (SYN, else higher port)")
    ] = "first",
    exclude_empty: Annotated[
        bool, typer.Option("--exclude-empty", help="leave zero-payload packets out of the per-packet columns")
    ] = False,
    exclude_retransmissions: Annotated[
        bool, typer.Option("--exclude-retransmissions", help="leave TCP retransmissions out of the per-packet columns")
    ] = False,
    protocols: Annotated[
        str | None, typer.Option("--protocols", help="also keep as flows: icmp,icmpv6,esp,gre,sctp,... or numbers")
    ] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="files read in parallel (same table)")] = 1,
    labels: Annotated[
        Path | None, typer.Option("--labels", help="CSV: capture,label[,protocol,ip_a,port_a,ip_b,port_b]")
    ] = None,
    label_from: Annotated[
        str | None, typer.Option("--label-from", help="label by 'parent' folder, file 'stem' or 'ndpi' category")
    ] = None,
    ndpi_app: Annotated[
        bool | None, typer.Option("--ndpi-app/--no-ndpi-app", help="add the nDPI app name (default: if installed)")
    ] = None,
    strict: Annotated[bool, typer.Option("--strict", help="a bad input file is fatal")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar or summary")] = False,
    scheduler: Annotated[str | None, typer.Option(
        "--scheduler", help="dask://HOST:PORT or local:N: one Dask task per file; OUTPUT is then a folder of "
        "part files (needs netsynth[scale])")] = None,
) -> None:
    """Read captures, assemble bidirectional flows, keep the first N packets of each (streamed to disk)."""
    from netsynth.extract import extract_to_parquet

    write = extract_to_parquet
    if scheduler is not None:
        from netsynth.scale.dask_extract import extract_dask

        write = functools.partial(extract_dask, scheduler=scheduler)
    result = write(
        paths,
        output,
        require_flows=False,
        packets=packets,
        min_packets=min_packets,
        idle_timeout=idle_timeout,
        active_timeout=active_timeout,
        tcp_end=tcp_end,
        initiator=initiator,
        include_empty=not exclude_empty,
        include_retransmissions=not exclude_retransmissions,
        protocols=protocols,
        jobs=jobs,
        labels=labels,
        label_from=label_from,
        ndpi_app=ndpi_app,
        strict=strict,
        progress=not quiet and err.is_terminal,
    )
    for warning in result.warnings:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    if not quiet:
        result.summary.render(err)
    if result.summary.flows_kept == 0:
        raise InputError("no flows left after labelling and filtering (see the summary); nothing written")
    err.print(f"wrote {result.summary.flows_kept} flows to {output}")


# --------------------------------------------------------------------------- import-flows / export-flows
@app.command("import-flows")
@_handles_errors
def import_flows_cmd(
    path: Annotated[Path, typer.Argument(help="file or folder in another tool's flow layout")],
    output: Annotated[Path, typer.Option("-o", "--output", help="flow table to write (Parquet)")],
    format: Annotated[
        str | None, typer.Option("--format", "-f", help="ppi (CESNET), mirage, nfstream, csv (default: guessed)")
    ] = None,
    packets: Annotated[int | None, typer.Option("--packets", min=1, help="packets kept per flow (N)")] = None,
    label_column: Annotated[str | None, typer.Option("--label-column", help="class column to use")] = None,
    mirage_label: Annotated[str, typer.Option("--mirage-label", help="bf_label, or android (tcbench)")] = "bf_label",
    nfstream_size: Annotated[
        str, typer.Option("--nfstream-size", help="what nfstream's splt_ps counts: link, ip, transport, payload")
    ] = "link",
    min_packets: Annotated[int, typer.Option("--min-packets", min=1, help="drop flows with fewer packets")] = 1,
    exclude_empty: Annotated[bool, typer.Option("--exclude-empty", help="drop zero-payload packets first")] = False,
) -> None:
    """Convert CESNET PPI / MIRAGE JSON / nfstream CSV flows into a netsynth flow table."""
    from netsynth.flows.interop import import_flows

    table = import_flows(path, format, packets=packets, label_column=label_column, mirage_label=mirage_label,
                         nfstream_size=nfstream_size, min_packets=min_packets, exclude_empty=exclude_empty)
    table.write(output)
    err.print(f"imported {len(table)} flows ({len(table.classes)} classes) to {output}")


@app.command("export-flows")
@_handles_errors
def export_flows_cmd(
    table: Annotated[Path, typer.Argument(help="flow table (Parquet)")],
    output: Annotated[Path, typer.Option("-o", "--output", help="file to write (.csv; PPI also .parquet/.npz)")],
    format: Annotated[str, typer.Option("--format", "-f", help="csv (netsynth) or ppi (CESNET layout)")] = "csv",
) -> None:
    """Write a flow table as flat CSV or in the CESNET per-packet-information layout."""
    from netsynth.flows import FlowTable
    from netsynth.flows.interop import export_flows

    flows = FlowTable.read(table)
    export_flows(flows, output, format)
    err.print(f"exported {len(flows)} flows to {output} ({format})")


# --------------------------------------------------------------------------- split
@app.command()
@_handles_errors
def split(
    table: Annotated[Path, typer.Argument(help="flow table (Parquet)")],
    output: Annotated[Path, typer.Option("-o", "--output", help="folder for train.parquet and test.parquet")],
    by: Annotated[str, typer.Option("--by", help="'capture' (no capture on both sides) or 'flow'")] = "capture",
    test_size: Annotated[float, typer.Option("--test-size", help="share of flows (or captures) in test")] = 0.2,
    seed: Annotated[int, typer.Option("--seed")] = 0,
) -> None:
    """Split a flow table into train and test, stratified by label."""
    from netsynth.flows import FlowTable
    from netsynth.flows.split import split_flows

    result = split_flows(FlowTable.read(table), by=by, test_size=test_size, seed=seed)
    output.mkdir(parents=True, exist_ok=True)
    result.train.write(output / "train.parquet")
    result.test.write(output / "test.parquet")
    info = result.info
    where = f"seed {info.get('seed', seed)}" + (f", fold {info['fold']}" if "fold" in info else "")
    if info.get("searched"):
        where += f" (searched from seed {seed}, fold 0 so that every class is on both sides)"
    err.print(f"split by {by}: {info['n_train']} train / {info['n_test']} test flows; used {where}")
    err.print(f"wrote {output / 'train.parquet'} and {output / 'test.parquet'}")


# --------------------------------------------------------------------------- train
@app.command()
@_handles_errors
def train(
    name: Annotated[str, typer.Argument(help="generator family (see `netsynth models`)")],
    train_path: Annotated[Path, typer.Argument(metavar="TRAIN", help="training flow table (Parquet)")],
    output: Annotated[Path, typer.Option("-o", "--output", help="model folder to write")],
    seed: Annotated[int, typer.Option("--seed")] = 0,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda")] = "auto",
    overrides: Annotated[list[str] | None, typer.Option("--set", help="config override KEY=VALUE (repeatable)")] = None,
    valid: Annotated[Path | None, typer.Option("--valid", help="validation table (default: carved from train)")] = None,
    nproc: Annotated[int, typer.Option(
        "--nproc", min=1, help="data-parallel processes (gloo on CPU, NCCL on GPUs); torchrun sets it itself")] = 1,
) -> None:
    """Fit a class-conditioned generator and save it (model.json + weights.safetensors)."""
    from netsynth.flows import FlowTable
    from netsynth.models import config_from_overrides, get_generator
    from netsynth.utils.io import check_replaceable_dir

    cls = get_generator(name)
    config = config_from_overrides(cls.config_class, _parse_pairs(overrides, "--set"))
    check_replaceable_dir(output, "model.json")  # before training: never fit for minutes, then refuse
    if nproc > 1 or os.environ.get("WORLD_SIZE", "1") != "1":
        from netsynth.scale.ddp import fit_distributed

        start = time.perf_counter()
        ranks = fit_distributed(name, train_path, output, nproc=nproc, seed=seed, device=device,
                                config=config.to_dict(), valid_path=valid)
        if ranks[0]["rank"] == 0:
            info = ranks[0]["info"]
            procs = int(os.environ.get("WORLD_SIZE", len(ranks)))
            err.print(f"trained {name} ({info.get('parameters', 0):,} parameters) data-parallel on {procs} "
                      f"processes in {time.perf_counter() - start:.1f} s; saved to {output}")
        return
    flows = FlowTable.read(train_path)
    valid_flows = FlowTable.read(valid) if valid else None
    start = time.perf_counter()
    model = cls(config, device=device, random_state=seed).fit(flows, valid=valid_flows)
    model.save(output)
    info = model.info()
    err.print(
        f"trained {name} ({info.get('parameters', 0):,} parameters) on {len(flows)} flows "
        f"in {time.perf_counter() - start:.1f} s; saved to {output}"
    )


# --------------------------------------------------------------------------- sample
@app.command()
@_handles_errors
def sample(
    model_dir: Annotated[Path, typer.Argument(metavar="MODEL", help="model folder written by `netsynth train`")],
    output: Annotated[Path, typer.Option("-o", "--output", help="synthetic flow table to write")],
    n: Annotated[int | None, typer.Option("-n", help="total flows, in the training set's class proportions")] = None,
    per_class: Annotated[int | None, typer.Option("--per-class", help="flows for every class")] = None,
    classes: Annotated[list[str] | None, typer.Option("--class", help="NAME=N (repeatable)")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    device: Annotated[str, typer.Option("--device")] = "auto",
    scheduler: Annotated[str | None, typer.Option(
        "--scheduler", help="dask://HOST:PORT or local:N: shards as Dask tasks; OUTPUT is a folder of parts")] = None,
    shard_size: Annotated[int | None, typer.Option(
        "--shard-size", min=1, help="flows per shard (seeded by shard: same flows for any worker count)")] = None,
) -> None:
    """Sample synthetic flows from a trained generator."""
    from netsynth.models import load_generator

    chosen = [x is not None and x != [] for x in (n, per_class, classes)]
    if sum(chosen) != 1:
        raise InputError("give exactly one of -n N, --per-class N or --class NAME=N")
    model = load_generator(model_dir, device=device)
    request: int | dict[str, int]
    if n is not None:
        request = n
    elif per_class is not None:
        request = {c: per_class for c in model.classes_}
    else:
        pairs = _parse_pairs(classes, "--class")
        try:
            request = {k: int(v) for k, v in pairs.items()}
        except ValueError:
            raise InputError(f"--class counts must be integers, got {pairs}") from None
    counts = [request] if isinstance(request, int) else list(request.values())
    if min(counts) < 0 or sum(counts) < 1:
        raise InputError("sample counts must be positive")
    if scheduler is not None or shard_size is not None:
        from netsynth.scale.dask_sample import DEFAULT_SHARD_SIZE, sample_sharded

        done = sample_sharded(model_dir, request, output, seed=seed, shard_size=shard_size or DEFAULT_SHARD_SIZE,
                              scheduler=scheduler, device=device, progress=err.is_terminal)
        err.print(f"sampled {done.flows} flows in {done.shards_done} shards in {done.seconds:.1f} s "
                  f"({done.flows_per_second:,.0f} flows/s); wrote {output}/")
        return
    start = time.perf_counter()
    flows = model.sample(request, random_state=seed)
    seconds = time.perf_counter() - start
    flows.write(output)
    rate = len(flows) / max(seconds, 1e-9)
    err.print(f"sampled {len(flows)} flows in {seconds:.1f} s ({rate:,.0f} flows/s); wrote {output}")


# --------------------------------------------------------------------------- evaluate
@app.command()
@_handles_errors
def evaluate(
    train_path: Annotated[Path, typer.Option("--train", help="real training flows")],
    test_path: Annotated[Path, typer.Option("--test", help="real test flows")],
    synthetic_path: Annotated[Path, typer.Option("--synthetic", help="synthetic flows")],
    output: Annotated[Path, typer.Option("-o", "--output", help="report folder")],
    seeds: Annotated[int, typer.Option("--seeds", min=1, help="classifier seeds")] = 3,
) -> None:
    """Fidelity, train-on-synthetic-test-on-real and novelty: metrics.json + report.md."""
    from netsynth.evaluate import evaluate as run_evaluate
    from netsynth.evaluate import format_summary
    from netsynth.flows import FlowTable

    paths = {"train": train_path, "test": test_path, "synthetic": synthetic_path}
    tables = {k: FlowTable.read(p) for k, p in paths.items()}
    metrics = run_evaluate(
        tables["train"],
        tables["test"],
        tables["synthetic"],
        seeds=seeds,
        out_dir=output,
        paths={k: str(p) for k, p in paths.items()},
        progress=True,
    )
    out.print(format_summary(metrics))
    err.print(f"wrote {output / 'metrics.json'} and {output / 'report.md'}")


# --------------------------------------------------------------------------- bench
@app.command()
@_handles_errors
def bench(
    train_path: Annotated[Path, typer.Option("--train", help="real flows (train split, or everything with --folds)")],
    output: Annotated[Path, typer.Option("-o", "--output", help="folder for report.md, report.html, results.json")],
    test_path: Annotated[
        Path | None, typer.Option("--test", help="real test flows (pooled with train for folds)")
    ] = None,
    generators: Annotated[
        str, typer.Option("--generators", help="comma-separated families")
    ] = "transformer,ssm,diffusion,markov,independent,empirical",
    folds: Annotated[int, typer.Option("--folds", min=1, help="capture-grouped stratified folds")] = 5,
    seeds: Annotated[int, typer.Option("--seeds", min=1, help="sampling and classifier seeds")] = 3,
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="NAME.key=value config override (repeatable)")
    ] = None,
    max_time: Annotated[float | None, typer.Option("--max-time", help="training budget per fit, seconds")] = None,
    device: Annotated[str, typer.Option("--device")] = "auto",
    jobs: Annotated[int, typer.Option("--jobs", min=1, help="folds run at once, one process each")] = 1,
    quick: Annotated[bool, typer.Option("--quick", help="tiny settings, for a smoke test")] = False,
) -> None:
    """The four-axis comparison: fidelity, TSTR vs TRTR, augmentation, cost (+ privacy), over folds."""
    import sys

    from netsynth.evaluate.bench import BenchOptions, parse_overrides, run_bench
    from netsynth.flows import FlowTable

    names = [g.strip() for g in generators.split(",") if g.strip()]
    options = BenchOptions(
        folds=folds,
        seeds=seeds,
        overrides=parse_overrides(overrides or []),
        max_time=max_time,
        device=device,
        fold_jobs=jobs,
        quick=quick,
        command="netsynth " + " ".join(sys.argv[1:]),
    )
    test = FlowTable.read(test_path) if test_path else None
    run_bench(FlowTable.read(train_path), test, names, output, options)
    err.print(f"wrote {output / 'report.md'}, {output / 'report.html'} and {output / 'results.json'}")


# --------------------------------------------------------------------------- export-pcap / inspect
@app.command("export-pcap")
@_handles_errors
def export_pcap(
    table: Annotated[Path, typer.Argument(help="flow table (Parquet) to turn into packets")],
    output: Annotated[Path, typer.Option("-o", "--output", help="capture to write")],
    fmt: Annotated[str, typer.Option("--format", help="pcap or pcapng")] = "pcap",
    clients: Annotated[str | None, typer.Option("--clients", help="IPv4 client pool (CIDR)")] = None,
    servers: Annotated[str | None, typer.Option("--servers", help="IPv4 server pool (CIDR)")] = None,
    clients6: Annotated[str | None, typer.Option("--clients6", help="IPv6 client pool")] = None,
    servers6: Annotated[str | None, typer.Option("--servers6", help="IPv6 server pool")] = None,
    model: Annotated[Path | None, typer.Option("--model", help="model folder: server ports per class")] = None,
    server_port: Annotated[
        list[str] | None, typer.Option("--server-port", help="PORT for all classes, or CLASS=PORT (repeatable)")
    ] = None,
    flows_per_second: Annotated[
        float | None, typer.Option("--flows-per-second", help="start-time layout when the table has none")
    ] = None,
    start_time: Annotated[str | None, typer.Option("--start-time", help="ISO time of the first flow")] = None,
    payload: Annotated[str | None, typer.Option("--payload", help="zeros or random (never real data)")] = None,
    seed: Annotated[int | None, typer.Option("--seed")] = None,
    close_tcp: Annotated[bool, typer.Option("--close-tcp", help="append FIN/ACK to open TCP flows")] = False,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", help="flows read at a time (memory; output is the same)")
    ] = None,
) -> None:
    """Write a flow table as a replayable pcap/pcapng (valid checksums, consistent TCP state)."""
    from netsynth.export import export_pcap as run_export

    ports: int | dict[str, int] | None = None
    if server_port:
        try:
            if len(server_port) == 1 and "=" not in server_port[0]:
                ports = int(server_port[0])
            else:
                ports = {k: int(v) for k, v in _parse_pairs(server_port, "--server-port").items()}
        except ValueError:
            raise InputError(f"--server-port expects PORT or CLASS=PORT, got {server_port}") from None
    summary = run_export(
        table,
        output,
        format=fmt,
        clients=clients,
        servers=servers,
        clients6=clients6,
        servers6=servers6,
        model=model,
        server_ports=ports,
        flows_per_second=flows_per_second,
        start_time=start_time,
        payload=payload,
        seed=seed,
        close_tcp=close_tcp or None,
        batch_size=batch_size,
    )
    info = summary.to_dict()
    skipped = info.get("skipped") or {}
    extra = f"; skipped {skipped}" if skipped else ""
    added = f" ({info['added_packets']} added by --close-tcp)" if info.get("added_packets") else ""
    err.print(f"wrote {info['flows']} flows, {info['packets']} packets{added} to {output}{extra}")


@app.command()
@_handles_errors
def inspect(path: Annotated[Path, typer.Argument(help="flow table (Parquet) or capture (pcap/pcapng)")]) -> None:
    """Summarise a flow table or a capture: flows per class, sizes, IATs, schema and producer."""
    from netsynth.inspect import inspect_path, render_inspection

    render_inspection(inspect_path(path), out)


# --------------------------------------------------------------------------- models / info
@app.command("models")
@_handles_errors
def list_models(
    table_path: Annotated[
        Path | None, typer.Option("--for", help="flow table: exact parameter counts for a fit on it")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="seed of that fit (its validation split)")] = 0,
) -> None:
    """List the generator families; with --for TABLE, the exact parameter count each would have."""
    from rich.table import Table

    from netsynth.flows import FlowTable
    from netsynth.models import available_generators, get_generator

    flows = FlowTable.read(table_path) if table_path else None
    table = Table(title="generator families")
    table.add_column("name")
    table.add_column("parameters" + (f" (fit on {table_path.name})" if flows is not None else ""), justify="right")
    table.add_column("description")
    for name in available_generators():
        cls = get_generator(name)
        count = cls(random_state=seed).parameter_count(flows) if flows is not None else None
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        table.add_row(name, f"{count:,}" if count is not None else "depends on data: use --for TABLE", doc)
    out.print(table)


@app.command()
@_handles_errors
def info(model_dir: Annotated[Path, typer.Argument(metavar="MODEL")]) -> None:
    """Print a trained model's info() as JSON."""
    from netsynth.models import load_generator

    out.print_json(json.dumps(load_generator(model_dir, device="cpu").info()))


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
