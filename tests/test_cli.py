"""The CLI end to end on tiny crafted captures: extract → split → train → sample → evaluate.

Also the promise about bad input: one line naming the file, exit status 2, no output file.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from captures import ACK, PSH, SYN, Pkt, eth_frames, write_pcap
from netsynth.cli import app
from netsynth.flows import FlowTable

runner = CliRunner()

# Each class has its own request/response sizes, so a classifier can tell them apart.
CLASS_SIZES = {"web": (517, 1448, 90), "mail": (60, 300, 40), "chat": (200, 200, 120)}


def conversation(t0: float, port: int, sizes: tuple[int, int, int]) -> list[Pkt]:
    c, s = f"10.0.0.1:{port}", "10.0.0.2:443"
    req, resp, tail = sizes
    return [
        Pkt(t0, c, s, 0, flags=SYN),
        Pkt(t0 + 0.01, s, c, 0, flags=SYN | ACK),
        Pkt(t0 + 0.011, c, s, 0, flags=ACK),
        Pkt(t0 + 0.02, c, s, req, flags=PSH | ACK),
        Pkt(t0 + 0.05, s, c, resp, flags=PSH | ACK),
        Pkt(t0 + 0.06, c, s, tail, flags=PSH | ACK),
    ]


@pytest.fixture(scope="module")
def captures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("caps")
    rows = ["capture,label"]
    for label, sizes in CLASS_SIZES.items():
        (root / label).mkdir()
        for session in range(5):
            pkts = [p for i in range(6) for p in conversation(1000.0 + 300 * i, 40000 + 10 * session + i, sizes)]
            write_pcap(root / label / f"s{session}.pcap", eth_frames(pkts))
            rows.append(f"{label}/s{session}.pcap,{label}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def invoke(*args: str | Path) -> object:
    result = runner.invoke(app, [str(a) for a in args])
    return result


def test_pipeline_end_to_end(captures: Path, tmp_path: Path) -> None:
    flows = tmp_path / "flows.parquet"
    r = invoke("extract", captures, "--labels", captures / "labels.csv", "--min-packets", "3", "-o", flows, "-q")
    assert r.exit_code == 0, r.output
    table = FlowTable.read(flows)
    assert table.class_counts() == {"chat": 30, "mail": 30, "web": 30}
    assert table.payload_len[0, :6].tolist() == [0, 0, 0, 200, 200, 120]

    r = invoke("split", flows, "-o", tmp_path / "split", "--by", "capture", "--seed", "0")
    assert r.exit_code == 0, r.output
    train = FlowTable.read(tmp_path / "split" / "train.parquet")
    test = FlowTable.read(tmp_path / "split" / "test.parquet")
    assert set(train.capture) & set(test.capture) == set()
    assert len(train) + len(test) == 90

    r = invoke("train", "markov", tmp_path / "split" / "train.parquet", "-o", tmp_path / "model", "--seed", "0")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "model" / "model.json").exists()
    assert (tmp_path / "model" / "weights.safetensors").exists()

    synth = tmp_path / "synth.parquet"
    r = invoke("sample", tmp_path / "model", "--class", "web=7", "--class", "chat=3", "--seed", "1", "-o", synth)
    assert r.exit_code == 0, r.output
    assert FlowTable.read(synth).class_counts() == {"web": 7, "chat": 3}
    r = invoke("sample", tmp_path / "model", "--per-class", "20", "--seed", "1", "-o", synth)
    assert r.exit_code == 0, r.output
    assert FlowTable.read(synth).class_counts() == {"chat": 20, "mail": 20, "web": 20}

    report = tmp_path / "report"
    r = invoke("evaluate", "--train", tmp_path / "split" / "train.parquet", "--test",
               tmp_path / "split" / "test.parquet", "--synthetic", synth, "-o", report, "--seeds", "1")
    assert r.exit_code == 0, r.output
    metrics = json.loads((report / "metrics.json").read_text())
    # The three classes are separable by exact sizes, which the markov chain keeps exactly.
    assert metrics["classification"]["trtr"]["macro_f1"]["mean"] == 1.0
    assert metrics["classification"]["tstr"]["macro_f1"]["mean"] == 1.0
    assert (report / "report.md").read_text().startswith("#")


def test_train_rejects_unknown_set_key(captures: Path, tmp_path: Path) -> None:
    flows = tmp_path / "flows.parquet"
    invoke("extract", captures, "--labels", captures / "labels.csv", "-o", flows, "-q")
    r = invoke("train", "transformer", flows, "-o", tmp_path / "m", "--set", "no_such_field=3")
    assert r.exit_code == 2
    assert "no_such_field" in r.output
    assert not (tmp_path / "m").exists()
    r = invoke("train", "no-such-model", flows, "-o", tmp_path / "m")
    assert r.exit_code == 2 and "transformer" in r.output


@pytest.mark.parametrize("content", [b"", b"this is not a capture\n", b"\xd4\xc3\xb2\xa1\x02\x00"])
def test_bad_capture_is_one_line_exit_2_no_output(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(content)
    out = tmp_path / "flows.parquet"
    r = invoke("extract", bad, "--label-from", "stem", "-o", out)
    assert r.exit_code == 2
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "bad.pcap" in lines[0] and "Traceback" not in r.output
    assert not out.exists() and list(tmp_path.iterdir()) == [bad]


def test_bad_flow_table_is_one_line_exit_2(tmp_path: Path) -> None:
    junk = tmp_path / "junk.parquet"
    junk.write_text("no")
    r = invoke("split", junk, "-o", tmp_path / "split")
    assert r.exit_code == 2 and "junk.parquet" in r.output
    assert not (tmp_path / "split").exists()


def test_one_bad_file_among_several_is_skipped(captures: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"garbage")
    out = tmp_path / "flows.parquet"
    r = invoke("extract", captures / "web" / "s0.pcap", bad, "--label-from", "parent", "-o", out, "-q")
    assert r.exit_code == 0, r.output
    assert "bad.pcap" in r.output and "skipped" in r.output
    assert FlowTable.read(out).class_counts() == {"web": 6}


def test_export_pcap_and_inspect(captures: Path, tmp_path: Path) -> None:
    flows = tmp_path / "flows.parquet"
    invoke("extract", captures / "web", "--label-from", "parent", "-o", flows, "-q")
    pcap = tmp_path / "out.pcapng"
    r = invoke("export-pcap", flows, "-o", pcap, "--format", "pcapng", "--server-port", "8443", "--seed", "3")
    assert r.exit_code == 0, r.output
    back = tmp_path / "back.parquet"
    r = invoke("extract", pcap, "--label-from", "stem", "-o", back, "-q")
    assert r.exit_code == 0, r.output
    a, b = FlowTable.read(flows), FlowTable.read(back)
    assert sorted(map(tuple, a.payload_len.tolist())) == sorted(map(tuple, b.payload_len.tolist()))
    assert set(b.dst_port.tolist()) == {443}  # the table's own endpoints win over --server-port
    r = invoke("inspect", back)
    assert r.exit_code == 0 and "30" in r.output
    r = invoke("export-pcap", flows, "-o", tmp_path / "x.pcap", "--payload", "real")
    assert r.exit_code == 2 and "--payload" in r.output and not (tmp_path / "x.pcap").exists()


def test_models_lists_exact_counts_for_a_table(captures: Path, tmp_path: Path) -> None:
    flows = tmp_path / "flows.parquet"
    invoke("extract", captures, "--labels", captures / "labels.csv", "-o", flows, "-q")
    from netsynth.models import get_generator

    expected = get_generator("transformer")(random_state=0).parameter_count(FlowTable.read(flows))
    r = invoke("models", "--for", flows)
    assert r.exit_code == 0, r.output
    assert f"{expected:,}" in r.output and "markov" in r.output
    r = invoke("models")
    assert r.exit_code == 0 and "depends on data" in r.output


def test_no_flow_kept_writes_no_file(captures: Path, tmp_path: Path) -> None:
    # Bug fixed: with every flow unlabelled, extract said "nothing written" and exited 2 but left an
    # empty Parquet file behind (the streamed write was renamed into place before the check).
    labels = tmp_path / "labels.csv"
    labels.write_text("capture,label\nno-such.pcap,x\n")
    out = tmp_path / "flows.parquet"
    r = invoke("extract", captures / "web" / "s0.pcap", "--labels", labels, "-o", out, "-q")
    assert r.exit_code == 2 and "nothing written" in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.csv"]


def test_outputs_never_destroy_user_data_and_follow_the_umask(captures: Path, tmp_path: Path) -> None:
    """Bugs a new user found: `train -o` replaced a data folder or a file with a model, export-pcap
    overwrote its own input, and outputs were created 0600 (mkstemp), unreadable to a tcpreplay user."""
    import os
    import stat

    flows = tmp_path / "flows.parquet"
    invoke("extract", captures, "--labels", captures / "labels.csv", "-o", flows, "-q")
    data = tmp_path / "data"
    data.mkdir()
    (data / "keep.parquet").write_bytes(flows.read_bytes())
    r = invoke("train", "markov", flows, "-o", data)
    assert r.exit_code == 2 and "no model.json" in r.output and (data / "keep.parquet").exists()
    r = invoke("train", "markov", flows, "-o", flows)
    assert r.exit_code == 2 and "is a file" in r.output and len(FlowTable.read(flows)) > 0
    model = tmp_path / "m"
    assert invoke("train", "markov", flows, "-o", model).exit_code == 0
    assert invoke("train", "markov", flows, "-o", model, "--seed", "1").exit_code == 0  # a model may be replaced
    before = flows.read_bytes()
    r = invoke("export-pcap", flows, "-o", flows)
    assert r.exit_code == 2 and "output is the input" in r.output and flows.read_bytes() == before
    r = invoke("export-pcap", flows, "-o", tmp_path)
    assert r.exit_code == 2 and "is a folder" in r.output
    mask = os.umask(0o022)
    try:
        pcap = tmp_path / "out.pcap"
        assert invoke("export-pcap", flows, "-o", pcap).exit_code == 0
        assert invoke("train", "markov", flows, "-o", tmp_path / "m2").exit_code == 0
    finally:
        os.umask(mask)
    assert stat.S_IMODE(pcap.stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "m2").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "m2" / "weights.safetensors").stat().st_mode) == 0o644


def test_bench_rejects_bad_outputs_and_folds_before_any_work(captures: Path, tmp_path: Path) -> None:
    flows = tmp_path / "flows.parquet"
    invoke("extract", captures, "--labels", captures / "labels.csv", "-o", flows, "-q")
    afile = tmp_path / "afile"
    afile.write_text("x")
    r = invoke("bench", "--train", flows, "--generators", "markov", "--quick", "-o", afile)
    assert r.exit_code == 2 and "is a file" in r.output and "[bench" not in r.output
    r = invoke("bench", "--train", flows, "--generators", "markov", "--folds", "50", "-o", tmp_path / "b")
    assert r.exit_code == 2 and "captures cannot make 50" in r.output


@pytest.mark.parametrize("value", ["-1", "0"])
def test_non_positive_training_budget_is_refused(captures: Path, tmp_path: Path, value: str) -> None:
    flows = tmp_path / "flows.parquet"
    invoke("extract", captures, "--labels", captures / "labels.csv", "-o", flows, "-q")
    for family in ("transformer", "diffusion"):
        r = invoke("train", family, flows, "-o", tmp_path / family, "--set", f"max_time={value}")
        assert r.exit_code == 2 and "max_time must be > 0" in r.output and not (tmp_path / family).exists()
    r = invoke("bench", "--train", flows, "--generators", "markov", "--max-time", value, "-o", tmp_path / "b")
    assert r.exit_code == 2 and "max_time must be > 0" in r.output
