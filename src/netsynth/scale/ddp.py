"""Data-parallel training with torch.distributed: N processes, one global batch, identical weights.

How it stays equal to single-process training: every rank runs the same seeded code (same init, same
shuffled global batches, same validation), and only the training step differs — each rank computes the
loss on a disjoint contiguous slice of the global batch, scaled by its share of the batch's weight
(rows, or non-padding targets for the token models' per-token mean), and the gradients are summed
across ranks as they are produced. The summed gradient is then the single-process gradient of the
whole batch up to floating-point summation order, and clipping, AdamW and EMA see identical inputs on
every rank. The hook in `models/_train.py` is the `DATA_PARALLEL` context variable: nothing else in
the training loop or in the model families knows about distribution. Only rank 0 writes checkpoints
and the model folder.

Not bit-identical to single process: dropout masks and any noise a loss draws from torch's global
generator (diffusion's timesteps/noise) are drawn per slice, so those runs match only in distribution.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from netsynth.errors import InputError
from netsynth.models import _train


@dataclass
class World:
    """This process's place in a data-parallel group (rank, size) and its training hooks."""

    rank: int
    size: int
    device: str = "cpu"
    _hooks: list[Any] = field(default_factory=list)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def bounds(self, n: int) -> tuple[int, int]:
        """This rank's contiguous slice [lo, hi) of a global batch of n items (sizes differ by <= 1)."""
        base, extra = divmod(n, self.size)
        lo = self.rank * base + min(self.rank, extra)
        return lo, lo + base + (1 if self.rank < extra else 0)

    def wrap(self, module: nn.Module, loss_fn: _train.LossFn) -> _train.LossFn:
        """Make `loss_fn` data parallel for `module`: same start weights, sliced batches, summed grads."""
        for p in module.parameters():
            dist.broadcast(p.data, src=0)  # identical already (same seed); cheap insurance after resume
        self.close()
        self._hooks = [p.register_post_accumulate_grad_hook(_all_reduce_grad)
                       for p in module.parameters() if p.requires_grad]

        def parallel_loss(mod: nn.Module, batch: Sequence[torch.Tensor]) -> torch.Tensor:
            lo, hi = self.bounds(len(batch[0]))
            local = [t[lo:hi] for t in batch] if hi > lo else [t[:1] for t in batch]
            weight = loss_weight(loss_fn, local) if hi > lo else 0.0
            total = torch.tensor([weight], dtype=torch.float64, device=batch[0].device)
            dist.all_reduce(total)
            loss = loss_fn(mod, local)
            share = weight / max(float(total), 1e-12)
            scaled = loss * share  # an empty slice still runs the graph (share 0), so hooks match
            value = scaled.detach().clone().float()
            dist.all_reduce(value)
            return scaled + (value - scaled.detach())  # gradient of the local share, value of the whole

        return parallel_loss

    def any(self, flag: bool) -> bool:
        """True on every rank if it is true on any (a stop decision all ranks must share)."""
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def broadcast(self, value: float) -> float:
        """Rank 0's value everywhere: the validation loss (one early-stopping decision) and the schedule
        horizon (it depends on rank 0's wall clock)."""
        t = torch.tensor([float(value)], dtype=torch.float64, device=self.device)
        dist.broadcast(t, src=0)
        return float(t.item())

    def close(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []


def _all_reduce_grad(p: torch.Tensor) -> None:
    if p.grad is not None:
        dist.all_reduce(p.grad)


def loss_weight(loss_fn: _train.LossFn, batch: Sequence[torch.Tensor]) -> float:
    """What the loss averages over in `batch`: non-padding next-token targets for the token models'
    per-token cross-entropy, else rows (a per-item mean)."""
    from netsynth.models._autoregressive import PAD, next_token_loss

    if loss_fn is next_token_loss:
        return float((batch[0][:, 1:] != PAD).sum())
    return float(len(batch[0]))


@contextlib.contextmanager
def data_parallel(world: World) -> Iterator[World]:
    """Within this block, `models._train.train` runs data parallel in `world`."""
    token = _train.DATA_PARALLEL.set(world)
    try:
        yield world
    finally:
        _train.DATA_PARALLEL.reset(token)
        world.close()


# ------------------------------------------------------------------------------------------ launching
def backend_for(device: str) -> str:
    """NCCL for GPUs, gloo for CPU."""
    return "nccl" if device.startswith("cuda") else "gloo"


def launched_by_torchrun() -> bool:
    """True inside `torchrun` (or any env:// launcher) with more than one process."""
    return "RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1


@contextlib.contextmanager
def joined(rank: int, size: int, device: str, init_method: str) -> Iterator[World]:
    """Join the process group (and pick this rank's GPU), leave it afterwards."""
    if device.startswith("cuda"):
        local = int(os.environ.get("LOCAL_RANK", rank))
        torch.cuda.set_device(local % max(torch.cuda.device_count(), 1))
        device = f"cuda:{torch.cuda.current_device()}"
    dist.init_process_group(backend_for(device), init_method=init_method, rank=rank, world_size=size)
    try:
        world = World(rank, size, device)
        with data_parallel(world):
            yield world
    finally:
        dist.destroy_process_group()


def _spawned(rank: int, fn: Callable[[World], Any], size: int, device: str, init_method: str,
             results: str) -> None:
    with joined(rank, size, device, init_method) as world:
        out = fn(world)
    torch.save(out, Path(results) / f"rank{rank}.pt")


def run_distributed(fn: Callable[[World], Any], nproc: int, *, device: str = "cpu") -> list[Any]:
    """Run `fn(world)` in `nproc` new processes joined by a loopback-only rendezvous; results by rank.

    `fn` must be picklable (a module-level function or a functools.partial of one). The rendezvous is a
    file in a private temporary folder, so nothing listens on a network interface.
    """
    import torch.multiprocessing as mp

    if nproc < 1:
        raise InputError(f"--nproc must be >= 1, not {nproc}")
    if device.startswith("cuda") and torch.cuda.device_count() < nproc:
        raise InputError(f"--nproc {nproc} on {device} needs {nproc} GPUs, found {torch.cuda.device_count()}")
    with tempfile.TemporaryDirectory(prefix="netsynth-ddp-") as tmp:
        init = f"file://{Path(tmp) / 'rendezvous'}"
        mp.spawn(_spawned, args=(fn, nproc, device, init, tmp), nprocs=nproc, join=True)
        return [torch.load(Path(tmp) / f"rank{r}.pt", weights_only=False) for r in range(nproc)]


# ------------------------------------------------------------------------------------------ fitting
def fit_rank(world: World, *, name: str, train_path: str, output: str | None, seed: int, device: str,
             config: Mapping[str, Any] | None, valid_path: str | None = None,
             return_weights: bool = False) -> dict[str, Any]:
    """One rank's share of `netsynth train`: same data and seed everywhere, rank 0 saves the model."""
    from netsynth.flows import FlowTable
    from netsynth.models import get_generator

    cls = get_generator(name)
    flows = FlowTable.read(train_path)
    valid = FlowTable.read(valid_path) if valid_path else None
    cfg = cls.config_class.from_dict(dict(config)) if config is not None else None
    if cfg is not None and hasattr(cfg, "progress") and not world.is_main:
        cfg = cfg.replace(progress=False)  # one progress bar, rank 0's
    model = cls(cfg, device=world.device if device != "cpu" else "cpu", random_state=seed).fit(flows, valid=valid)
    if world.is_main and output is not None:
        model.save(output)
    out: dict[str, Any] = {"rank": world.rank, "info": model.info()}
    if return_weights:
        module = getattr(model, "module_", None)
        out["weights"] = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()} if module else {}
    return out


def fit_distributed(name: str, train_path: str | os.PathLike, output: str | os.PathLike | None, *, nproc: int,
                    seed: int = 0, device: str = "cpu", config: Mapping[str, Any] | None = None,
                    valid_path: str | os.PathLike | None = None, return_weights: bool = False) -> list[dict[str, Any]]:
    """`netsynth train --nproc N`: spawn N local ranks (gloo on CPU, NCCL on GPUs) and fit data parallel;
    under torchrun, join the launcher's group instead and run this process's rank only."""
    import functools

    from netsynth.utils.device import resolve_device

    dev = resolve_device(device)
    fn = functools.partial(fit_rank, name=name, train_path=str(train_path),
                           output=None if output is None else str(output), seed=seed, device=dev,
                           config=None if config is None else dict(config),
                           valid_path=None if valid_path is None else str(valid_path), return_weights=return_weights)
    if launched_by_torchrun():
        rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        with joined(rank, size, dev, "env://") as world:
            return [fn(world)]
    return run_distributed(fn, nproc, device=dev)
