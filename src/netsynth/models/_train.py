"""The one training loop every neural family uses.

AdamW, linear warm-up then cosine decay (step-based, so a seed gives the same run on CPU), gradient
clipping, optional EMA of the weights, early stopping on validation loss, a wall-clock budget, a rich
progress bar, bf16 autocast on CUDA, and resumable checkpoints (safetensors + JSON, never pickle).

Randomness: batches are shuffled with an explicit `torch.Generator`. Parameter initialisation and any
dropout draw from torch's global generator, which torch offers no way around; `seeded_torch` wraps
them in `torch.random.fork_rng` so the caller's global state is restored afterwards and library code
never leaves global seeds behind.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from netsynth.errors import InputError, one_line
from netsynth.utils.io import atomic_dir

LossFn = Callable[[nn.Module, Sequence[torch.Tensor]], torch.Tensor]
# Data-parallel hook: netsynth.scale.ddp sets a World here for the ranks of a torch.distributed group
# (sliced batches, summed gradients, shared stop decisions, rank-0 checkpoints); None = one process.
DATA_PARALLEL: contextvars.ContextVar[Any] = contextvars.ContextVar("netsynth_data_parallel", default=None)


@dataclass(frozen=True, kw_only=True)
class TrainSettings:
    """Optimisation settings; families copy these fields from their own config."""

    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    batch_size: int = 64
    max_epochs: int = 20
    max_time: float | None = None
    warmup_steps: int = 100
    grad_clip: float = 1.0
    ema: float | None = None
    patience: int = 3
    checkpoint_dir: str | None = None
    progress: bool = True
    cpu_threads: int | None = 1


@contextlib.contextmanager
def torch_threads(n: int | None, device: str = "cpu") -> Iterator[None]:
    """Run with `n` intra-op CPU threads, restoring the previous count after (None: leave as is).

    Why 1 by default: models of ~1 M parameters have 128-wide matrices, too small to gain from
    threads, and on a shared machine OpenMP threads spin-wait on each other — measured on a busy
    2-core box, one training step took 0.31 s with 1 thread and 2.95 s with 2.
    """
    if n is None or not device.startswith("cpu"):
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def seeded_torch(seed: int) -> Iterator[None]:
    """Seed torch's global generator for init/dropout only, restoring the caller's state after."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def autocast(device: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA, nothing on CPU (fp32 is faster and exact there)."""
    if device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def lr_factor(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Linear warm-up to 1, then cosine down to `min_ratio` at `total` steps."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def schedule_horizon(total_steps: int, steps_done: int, elapsed: float, max_time: float | None,
                     margin: float = 0.95) -> int:
    """Steps the cosine schedule is sized to: `total_steps`, or fewer when `max_time` will stop the run.

    Called once, after the first epoch (`steps_done` steps and its validation took `elapsed` s): the
    budget then allows about margin·max_time/elapsed epochs' worth of steps. When that is at least
    `total_steps`, the horizon stays `total_steps`, so a run that ends on max_epochs keeps the exact,
    timing-independent schedule of a run without max_time (determinism for a seed). Otherwise the
    learning rate reaches its floor near the end of the budget instead of staying near its peak.
    """
    if max_time is None or elapsed <= 0 or steps_done <= 0:
        return int(total_steps)
    affordable = int(steps_done * margin * max_time / elapsed)
    return int(max(steps_done, min(total_steps, affordable)))


def _best_epoch(history: list[dict[str, Any]]) -> int:
    if not history:
        return 0
    return int(min(history, key=lambda h: h["val_loss"])["epoch"])


def _param_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Decay matrices only: norms, biases and embeddings' gains are left alone (as in nanoGPT)."""
    decay = [p for p in module.parameters() if p.requires_grad and p.dim() >= 2]
    other = [p for p in module.parameters() if p.requires_grad and p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": other, "weight_decay": 0.0}]


def _batches(n: int, batch_size: int, gen: torch.Generator | None,
             lengths: torch.Tensor | None = None, weights: torch.Tensor | None = None) -> list[torch.Tensor]:
    """Shuffled index batches; with `lengths`, batches hold items of similar length (less padding).

    Bucketing: a random permutation is stably sorted by length, cut into batches, and the batch order
    is shuffled again, so every epoch sees different, length-homogeneous batches. With `weights` (one
    per item) an epoch is n draws with replacement in proportion to them instead of a permutation.
    """
    if weights is not None and gen is not None:
        order = _weighted_draws(weights, n, gen)
    else:
        order = torch.randperm(n, generator=gen) if gen is not None else torch.arange(n)
    if lengths is None:
        return list(order.split(batch_size))
    order = order[torch.argsort(lengths[order], stable=True)]
    batches = list(order.split(batch_size))
    if gen is not None:
        batches = [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]
    return batches


def _weighted_draws(weights: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    """n indices drawn with replacement in proportion to `weights`, by inverse CDF: one uniform per
    draw. Not torch.multinomial, which refuses more than 2^24 items (with torch 2.13 on CPU the
    draws are the same as its draws for one generator state)."""
    cdf = torch.cumsum(weights.double(), 0)
    u = torch.rand(n, generator=gen, dtype=torch.float64) * cdf[-1]
    return torch.searchsorted(cdf, u, right=True).clamp_(max=len(weights) - 1)


@torch.no_grad()
def evaluate_loss(module: nn.Module, loss_fn: LossFn, data: Sequence[torch.Tensor], batch_size: int,
                  device: str) -> float:
    """Mean loss over `data` (batches weighted by size), in eval mode."""
    was_training = module.training
    module.eval()
    total, count = 0.0, 0
    for idx in _batches(len(data[0]), batch_size, None):
        batch = [t[idx].to(device) for t in data]
        with autocast(device):
            total += float(loss_fn(module, batch)) * len(idx)
        count += len(idx)
    module.train(was_training)
    return total / max(count, 1)


class _EMA:
    """Exponential moving average of parameters, swapped in for validation and at the end."""

    def __init__(self, module: nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in module.state_dict().items()}

    def decay_at(self, step: int) -> float:
        """Warm-up: min(decay, (1+step)/(10+step)), so early steps are not averaged with the random init.

        With a fixed 0.99 and a few hundred steps the average still carried (0.99^300 ≈ 5 %) of the
        initial weights and lagged the live model by ~100 steps; the warm-up averages roughly the last
        10 % of the steps taken so far until `decay` takes over (step ≈ 890 for 0.99).
        """
        return min(self.decay, (1 + step) / (10 + step))

    @torch.no_grad()
    def update(self, module: nn.Module, step: int | None = None) -> None:
        decay = self.decay if step is None else self.decay_at(step)
        for k, v in module.state_dict().items():
            if v.dtype.is_floating_point:
                self.shadow[k].mul_(decay).add_(v.detach(), alpha=1 - decay)
            else:
                self.shadow[k].copy_(v)


def _save_checkpoint(path: Path, module: nn.Module, opt: torch.optim.Optimizer, ema: _EMA | None,
                     state: dict[str, Any], gen: torch.Generator) -> None:
    """Model, optimizer moments, EMA and loop counters: tensors in safetensors, the rest in JSON."""
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {f"model.{k}": v for k, v in module.state_dict().items()}
    opt_state = opt.state_dict()
    scalars: dict[str, Any] = {"param_groups": opt_state["param_groups"], "opt_scalars": {}}
    for pid, st in opt_state["state"].items():
        for name, val in st.items():
            if torch.is_tensor(val) and val.dim() > 0:
                tensors[f"opt.{pid}.{name}"] = val
            else:
                scalars["opt_scalars"][f"{pid}.{name}"] = float(val)
    if ema is not None:
        tensors.update({f"ema.{k}": v for k, v in ema.shadow.items()})
    tensors["rng"] = gen.get_state()
    # clone: tied weights (embed = head in the transformer) share memory, which safetensors refuses to save
    tensors = {k: v.detach().cpu().clone() for k, v in tensors.items()}
    with atomic_dir(path) as tmp:
        save_file(tensors, str(tmp / "checkpoint.safetensors"))
        (tmp / "state.json").write_text(json.dumps({**state, **scalars}), encoding="utf-8")


def _load_checkpoint(path: Path, module: nn.Module, opt: torch.optim.Optimizer, ema: _EMA | None,
                     gen: torch.Generator, device: str) -> dict[str, Any] | None:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not (path / "state.json").is_file():
        return None
    try:
        tensors = load_file(str(path / "checkpoint.safetensors"))
        state = json.loads((path / "state.json").read_text(encoding="utf-8"))
        module.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    except (RuntimeError, ValueError, OSError, SafetensorError) as exc:
        # another family or architecture (e.g. a changed --set), or a damaged checkpoint: resuming it
        # would be wrong, and starting over silently would throw away what the user asked to resume
        raise InputError(f"{path}: checkpoint does not fit this model and config; use another checkpoint_dir "
                         f"or delete it to start over ({one_line(exc)})") from None
    opt_state: dict[int, dict[str, Any]] = {}
    for key, val in tensors.items():
        if key.startswith("opt."):
            _, pid, name = key.split(".", 2)
            opt_state.setdefault(int(pid), {})[name] = val.to(device)
    for key, val in state.pop("opt_scalars").items():
        pid, name = key.split(".", 1)
        opt_state.setdefault(int(pid), {})[name] = torch.tensor(val)
    opt.load_state_dict({"state": opt_state, "param_groups": state.pop("param_groups")})
    if ema is not None:
        ema.shadow = {k[4:]: v.to(device) for k, v in tensors.items() if k.startswith("ema.")}
    gen.set_state(tensors["rng"])
    return state


def train(module: nn.Module, loss_fn: LossFn, train_data: Sequence[torch.Tensor],
          valid_data: Sequence[torch.Tensor], settings: TrainSettings, *, device: str,
          generator: torch.Generator, description: str = "training",
          lengths: torch.Tensor | None = None, weights: torch.Tensor | None = None) -> dict[str, Any]:
    """Train `module` in place on tensors `train_data` (same first dimension), keep the best weights.

    `loss_fn(module, batch)` returns a scalar loss for one batch (tensors already on `device`).
    Stops at `max_epochs`, after `patience` epochs without validation improvement, or when `max_time`
    seconds have passed (checked after every step). `lengths` (per training item) turns on length
    bucketing, for sequence models whose loss trims padding. `weights` (per training item) makes each
    epoch n weighted draws with replacement (class balancing). Returns the training summary.
    """
    with torch_threads(settings.cpu_threads, device):
        return _train(module, loss_fn, train_data, valid_data, settings, device=device, generator=generator,
                      description=description, lengths=lengths, weights=weights)


def _train(module: nn.Module, loss_fn: LossFn, train_data: Sequence[torch.Tensor],
           valid_data: Sequence[torch.Tensor], settings: TrainSettings, *, device: str,
           generator: torch.Generator, description: str, lengths: torch.Tensor | None,
           weights: torch.Tensor | None = None) -> dict[str, Any]:
    module.to(device).train()
    world = DATA_PARALLEL.get()
    step_loss = loss_fn if world is None else world.wrap(module, loss_fn)
    n = len(train_data[0])
    steps_per_epoch = max(1, math.ceil(n / settings.batch_size))
    total_steps = steps_per_epoch * settings.max_epochs  # the progress bar's length
    opt = torch.optim.AdamW(_param_groups(module, settings.weight_decay), lr=settings.lr,
                            betas=settings.betas, fused=False)
    ema = _EMA(module, settings.ema) if settings.ema else None
    ckpt = Path(settings.checkpoint_dir) if settings.checkpoint_dir else None
    st: dict[str, Any] = {"epoch": 0, "step": 0, "best": math.inf, "bad_epochs": 0, "history": [],
                          "elapsed": 0.0, "horizon": total_steps}
    best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    if ckpt is not None:
        resumed = _load_checkpoint(ckpt, module, opt, ema, generator, device)
        if resumed is not None:
            st.update(resumed)
            if (ckpt / "best.safetensors").is_file():
                from safetensors.torch import load_file
                best_state = {k: v.to(device) for k, v in load_file(str(ckpt / "best.safetensors")).items()}
    t0 = time.perf_counter() - st["elapsed"]
    c0 = time.process_time() - st.get("cpu_elapsed", 0.0)
    stop_reason = "max_epochs"
    with _progress(settings.progress and (world is None or world.is_main), description, total_steps) as bar:
        bar.advance(st["step"])
        while st["epoch"] < settings.max_epochs:
            losses = []
            for idx in _batches(n, settings.batch_size, generator, lengths, weights):
                loss = _step(module, step_loss, opt, ema, [t[idx].to(device) for t in train_data], settings,
                             st["step"], st["horizon"], device)
                losses.append(loss)
                st["step"] += 1
                bar.update(st["step"], loss=loss)
                if settings.max_time is not None and _agree(world, time.perf_counter() - t0 > settings.max_time):
                    stop_reason = "max_time"
                    break
            st["epoch"] += 1
            val = _validate(module, ema, loss_fn, valid_data, settings.batch_size, device)
            val = val if world is None else world.broadcast(val)  # one early-stopping decision
            st["history"].append({"epoch": st["epoch"], "train_loss": sum(losses) / max(len(losses), 1),
                                  "val_loss": val, "steps": st["step"],
                                  "seconds": round(time.perf_counter() - t0, 3),
                                  "cpu_seconds": round(time.process_time() - c0, 3)})
            bar.update(st["step"], val=val)
            if val < st["best"] - 1e-4:
                st["best"], st["bad_epochs"] = val, 0
                source = ema.shadow if ema is not None else module.state_dict()
                best_state = {k: v.detach().clone() for k, v in source.items()}
            else:
                st["bad_epochs"] += 1
            st["elapsed"] = time.perf_counter() - t0
            st["cpu_elapsed"] = time.process_time() - c0
            if st["epoch"] == 1:
                st["horizon"] = schedule_horizon(total_steps, st["step"], st["elapsed"], settings.max_time)
                st["horizon"] = st["horizon"] if world is None else int(world.broadcast(st["horizon"]))
            if ckpt is not None and (world is None or world.is_main):
                _save_checkpoint(ckpt, module, opt, ema, st, generator)
                from safetensors.torch import save_file
                save_file({k: v.detach().cpu().contiguous() for k, v in best_state.items()},
                          str(ckpt / "best.safetensors"))
            if stop_reason == "max_time":
                break
            if st["bad_epochs"] >= settings.patience:
                stop_reason = "early_stopping"
                break
    module.load_state_dict(best_state)
    module.eval()
    return {"epochs": st["epoch"], "steps": st["step"], "best_val_loss": float(st["best"]),
            "best_epoch": _best_epoch(st["history"]), "schedule_steps": int(st["horizon"]),
            "seconds": round(time.perf_counter() - t0, 3), "stop_reason": stop_reason,
            "history": st["history"]}


def _agree(world: Any, flag: bool) -> bool:
    """A wall-clock stop must be taken by every rank at once, or the others wait forever."""
    return flag if world is None else world.any(flag)


def _step(module: nn.Module, loss_fn: LossFn, opt: torch.optim.Optimizer, ema: _EMA | None,
          batch: list[torch.Tensor], settings: TrainSettings, step: int, total: int, device: str) -> float:
    factor = lr_factor(step, total, settings.warmup_steps, settings.min_lr_ratio)
    for group in opt.param_groups:
        group["lr"] = settings.lr * factor
    with autocast(device):
        loss = loss_fn(module, batch)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if settings.grad_clip:
        nn.utils.clip_grad_norm_(module.parameters(), settings.grad_clip)
    opt.step()
    if ema is not None:
        ema.update(module, step)
    return float(loss.detach())


def _validate(module: nn.Module, ema: _EMA | None, loss_fn: LossFn, data: Sequence[torch.Tensor],
              batch_size: int, device: str) -> float:
    if ema is None:
        return evaluate_loss(module, loss_fn, data, batch_size, device)
    live = {k: v.detach().clone() for k, v in module.state_dict().items()}
    module.load_state_dict(ema.shadow)
    try:
        return evaluate_loss(module, loss_fn, data, batch_size, device)
    finally:
        module.load_state_dict(live)


class _NullBar:
    def advance(self, steps: int) -> None: ...
    def update(self, step: int, **values: float) -> None: ...


class _RichBar:
    """A rich progress bar showing steps, loss and validation loss."""

    def __init__(self, progress: Any, task: Any) -> None:
        self.progress, self.task = progress, task
        self.values: dict[str, float] = {}

    def advance(self, steps: int) -> None:
        self.progress.update(self.task, completed=steps)

    def update(self, step: int, **values: float) -> None:
        self.values.update(values)
        text = " ".join(f"{k} {v:.4f}" for k, v in self.values.items())
        self.progress.update(self.task, completed=step, stats=text)


@contextlib.contextmanager
def _progress(enabled: bool, description: str, total: int) -> Iterator[_NullBar | _RichBar]:
    if not enabled:
        yield _NullBar()
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), TextColumn("{task.fields[stats]}"), transient=True) as progress:
        yield _RichBar(progress, progress.add_task(description, total=total, stats=""))
