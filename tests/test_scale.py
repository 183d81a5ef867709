"""netsynth.scale on Dask: extraction and sharded sampling give the single-process results.

One in-process LocalCluster of 2 single-threaded workers is shared by the module (closed at the end);
everything that needs dask skips cleanly when it is not installed.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from netsynth.cli import app
from netsynth.errors import InputError
from netsynth.flows import FlowTable
from netsynth.scale._dask import part_name, require_distributed
from netsynth.scale.dask_sample import plan_shards, sample_sharded

COLUMNS = [f.name for f in fields(FlowTable) if f.name not in ("metadata", "extra")]


def assert_same_table(a: FlowTable, b: FlowTable) -> None:
    assert len(a) == len(b)
    for name in COLUMNS:
        x, y = getattr(a, name), getattr(b, name)
        same = np.array_equal(x, y, equal_nan=True) if x.dtype.kind == "f" else np.array_equal(x, y)
        assert same, name


def make_cluster(n: int) -> Iterator:
    """n in-process single-threaded workers, made and closed by the package's own `connect`."""
    pytest.importorskip("distributed")
    from netsynth.scale._dask import connect

    with connect(f"local:{n}", processes=False) as client:
        yield client


@pytest.fixture(scope="module")
def client() -> Iterator:
    yield from make_cluster(2)


@pytest.fixture(scope="module")
def iot(shared_data: Path):
    from netsynth.extract import extract

    root = shared_data / "iot-sentinel"
    return root, extract([root], packets=20, min_packets=5, labels=root / "labels.csv")


# ------------------------------------------------------------------------------------------ extraction
def test_dask_extract_equals_single_process(client, iot, tmp_path: Path) -> None:
    from netsynth.scale.dask_extract import extract_dask

    root, ref = iot
    res = extract_dask([root], tmp_path / "flows", scheduler=client, packets=20, min_packets=5,
                       labels=root / "labels.csv", task_bytes=4 << 20)
    parts = sorted((tmp_path / "flows").glob("*.parquet"))
    assert len(parts) > 2  # really split across tasks
    assert not list((tmp_path / "flows").glob(".*"))  # no temporary files left behind
    got = FlowTable.read(tmp_path / "flows")
    assert_same_table(ref.table, got)
    assert got.metadata["netsynth.producer"] == ref.table.metadata["netsynth.producer"]
    want, have = ref.summary.to_dict(), res.summary.to_dict()
    for timing in ("seconds", "packets_per_second"):
        want.pop(timing), have.pop(timing)
    assert have == want
    assert res.summary.files_ok == 550 and res.summary.files_failed == {}
    assert res.warnings == ref.warnings


def test_unreadable_file_is_counted_not_lost(client, iot, tmp_path: Path) -> None:
    from netsynth.scale.dask_extract import extract_dask

    root, _ = iot
    good = sorted((root / "Aria").glob("*.pcap"))[:2]
    bad = tmp_path / "broken.pcap"
    bad.write_bytes(b"not a capture at all" * 10)
    res = extract_dask([good[0], bad, good[1]], tmp_path / "out", scheduler=client, label_from="stem",
                       task_bytes=1)
    assert res.summary.files_ok == 2
    assert list(res.summary.files_failed) == [str(bad)]
    assert any("broken.pcap: skipped" in w for w in res.warnings)
    got = FlowTable.read(tmp_path / "out")
    assert sorted(set(got.capture)) == sorted(p.name for p in good)
    assert len(got) == res.summary.flows_kept


def test_failing_task_is_retried_then_reported(client, iot, tmp_path: Path, monkeypatch) -> None:
    """Workers are threads of this process here, so a patched extract_file reaches them."""
    import netsynth.scale.dask_extract as D

    root, _ = iot
    files = sorted((root / "Aria").glob("*.pcap"))[:3]
    real = D.extract_file
    calls: dict[str, int] = {}

    def flaky(item, config, **kw):
        calls[item.path.name] = calls.get(item.path.name, 0) + 1
        if item.path == files[0] and calls[item.path.name] == 1:
            raise OSError("transient: worker lost its mount")
        if item.path == files[2]:
            raise RuntimeError("always broken")
        return real(item, config, **kw)

    monkeypatch.setattr(D, "extract_file", flaky)
    res = D.extract_dask(files, tmp_path / "out", scheduler=client, label_from="stem", task_bytes=1, retries=2)
    assert calls[files[0].name] == 2  # failed once, retried, done
    assert calls[files[2].name] == 3  # 1 try + 2 retries, then reported
    assert res.summary.files_ok == 2
    assert res.summary.files_failed == {str(files[2]): "task failed after retries: RuntimeError: always broken"}
    assert sorted(set(FlowTable.read(tmp_path / "out").capture)) == sorted(f.name for f in files[:2])


def test_cli_extract_bad_scheduler_is_exit_2(iot, tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    root, _ = iot
    out = CliRunner().invoke(app, ["extract", str(root / "Aria"), "--label-from", "parent", "-o",
                                   str(tmp_path / "f"), "--scheduler", "spark://x:1", "-q"])
    assert out.exit_code == 2
    assert "local:N" in out.output


def test_existing_part_files_are_refused(client, iot, tmp_path: Path) -> None:
    from netsynth.scale.dask_extract import extract_dask

    root, _ = iot
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / part_name(0, 1)).write_bytes(b"")
    with pytest.raises(InputError, match="already holds"):
        extract_dask([root / "Aria"], tmp_path / "out", scheduler=client, label_from="parent")


def test_no_flow_kept_leaves_no_output_folder(client, iot, tmp_path: Path) -> None:
    # Bug fixed: "nothing written" left an empty dataset folder behind.
    from netsynth.scale.dask_extract import extract_dask

    root, _ = iot
    labels = tmp_path / "labels.csv"
    labels.write_text("capture,label\nno-such.pcap,x\n")
    with pytest.raises(InputError, match="nothing written"):
        extract_dask([root / "Aria"], tmp_path / "out", scheduler=client, labels=labels)
    assert not (tmp_path / "out").exists()


def test_bad_scheduler_and_missing_dask_are_input_errors(monkeypatch, tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    from netsynth.scale._dask import connect

    with pytest.raises(InputError, match="local:N"), connect("yarn://somewhere"):
        pass
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(InputError, match=r"netsynth\[scale\]"):
        require_distributed()


# ------------------------------------------------------------------------------------------ sampling
@pytest.fixture(scope="module")
def markov_dir(iot, tmp_path_factory) -> Path:
    from netsynth.models import get_generator

    _, ref = iot
    small = ref.table.take(np.arange(0, len(ref.table), 10))
    cls = get_generator("markov")
    path = tmp_path_factory.mktemp("scale") / "markov"
    cls(cls.tiny_config(), random_state=0).fit(small).save(path)
    return path


def test_plan_shards_fixed_sizes_in_class_order() -> None:
    shards = plan_shards({"a": 5, "b": 4}, 4)
    assert [s.counts for s in shards] == [(("a", 4),), (("a", 1), ("b", 3)), (("b", 1),)]
    assert [s.offset for s in shards] == [0, 4, 8]
    with pytest.raises(InputError):
        plan_shards({"a": 1}, 0)


def test_sharded_sampling_same_flows_for_any_worker_count(client, markov_dir: Path, tmp_path: Path) -> None:
    from netsynth.models.base import class_targets, read_model_json

    kw = dict(seed=7, shard_size=97)
    here = sample_sharded(markov_dir, 700, tmp_path / "here", **kw)  # in-process: the 1-worker reference
    two = sample_sharded(markov_dir, 700, tmp_path / "two", scheduler=client, **kw)
    for one_worker in make_cluster(1):
        sample_sharded(markov_dir, 700, tmp_path / "one", scheduler=one_worker, **kw)
    assert here.shards_done == two.shards_done == 8 and two.shards_failed == {}
    a, b, c = (FlowTable.read(tmp_path / x) for x in ("here", "two", "one"))
    assert_same_table(a, b)
    assert_same_table(a, c)
    assert len(set(a.flow_id)) == 700
    counts = read_model_json(markov_dir)["class_counts"]
    assert a.class_counts() == {k: v for k, v in sorted(class_targets(700, counts).items(), key=lambda kv: -kv[1])}
    other = sample_sharded(markov_dir, 700, tmp_path / "seed8", seed=8, shard_size=97)
    assert other.flows == 700
    assert not np.array_equal(FlowTable.read(tmp_path / "seed8").payload_len, a.payload_len)


def test_cli_sample_shards_and_bad_scheduler(markov_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = runner.invoke(app, ["sample", str(markov_dir), "-o", str(tmp_path / "s"), "-n", "50", "--shard-size", "20"])
    assert out.exit_code == 0, out.output
    assert len(list((tmp_path / "s").glob("*.parquet"))) == 3
    assert len(FlowTable.read(tmp_path / "s")) == 50
    bad = runner.invoke(app, ["sample", str(markov_dir), "-o", str(tmp_path / "t"), "-n", "5", "--scheduler", "x"])
    assert bad.exit_code == 2
