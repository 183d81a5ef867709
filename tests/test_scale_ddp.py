"""Data-parallel training: 2 CPU processes (gloo) end with identical weights, equal to one process.

The ranks are spawned processes (about 10-20 s on a busy 2-core box, most of it importing torch);
the model is the transformer's tiny config on ~400 real flows for 2 epochs.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from netsynth.flows import FlowTable
from netsynth.models import get_generator
from netsynth.scale.ddp import World, fit_distributed


def test_rank_slices_cover_the_batch_disjointly() -> None:
    for n in (0, 1, 5, 64):
        slices = [World(r, 3).bounds(n) for r in range(3)]
        assert slices[0][0] == 0 and slices[-1][1] == n
        assert all(a[1] == b[0] for a, b in itertools.pairwise(slices))
        assert max(hi - lo for lo, hi in slices) - min(hi - lo for lo, hi in slices) <= 1


@pytest.fixture(scope="module")
def flows(shared_data: Path, tmp_path_factory) -> Path:
    from netsynth.extract import extract

    root = shared_data / "iot-sentinel"
    table = extract([root], packets=20, min_packets=5, labels=root / "labels.csv").table
    path = tmp_path_factory.mktemp("ddp") / "train.parquet"
    table.take(np.arange(0, len(table), 20)).write(path)
    return path


def test_two_ranks_match_each_other_and_single_process(flows: Path, tmp_path: Path) -> None:
    cls = get_generator("transformer")
    config = cls.tiny_config().replace(max_epochs=2, checkpoint_dir=str(tmp_path / "ckpt"))
    ranks = fit_distributed("transformer", flows, tmp_path / "model", nproc=2, seed=0, device="cpu",
                            config=config.to_dict(), return_weights=True)
    w0, w1 = ranks[0]["weights"], ranks[1]["weights"]
    assert w0 and all(torch.equal(w0[k], w1[k]) for k in w0)  # bit-identical across ranks
    assert (tmp_path / "model" / "model.json").is_file()  # rank 0 saved the model
    assert (tmp_path / "ckpt" / "state.json").is_file()  # and the checkpoint

    single = cls(config.replace(checkpoint_dir=None), device="cpu", random_state=0).fit(FlowTable.read(flows))
    ref = single.module_.state_dict()
    assert max(float((ref[k] - w0[k]).abs().max()) for k in w0) < 1e-5
    hist = ranks[0]["info"]["training"]["history"]
    want = single.training_["history"]
    assert len(hist) == len(want) == 2
    for got, exp in zip(hist, want, strict=True):
        assert got["train_loss"] == pytest.approx(exp["train_loss"], rel=1e-5)
        assert got["val_loss"] == pytest.approx(exp["val_loss"], rel=1e-5)
