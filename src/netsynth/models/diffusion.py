"""A class-conditioned denoising diffusion model over the flow as a (packets × channels) grid.

Why diffusion next to the token models: it generates all packets of a flow at once (no left-to-right
order, so the last packets can shape the first), and its cost is set by the number of DDIM steps, not
by the flow length.

- Data: `codecs.grid.GridCodec` turns a flow into an (N, 12) array in [-1, 1] (size, direction, IAT,
  mask, 8 flag bits) and decodes any array soundly (signs, first negative mask, nearest seen flags).
  Payload size (and optionally direction) is coded by its rank in the training CDF of the flow's
  (class, position) and decoded by the inverse CDF: whatever the denoiser outputs lands on a size that
  class used at that position, in its training proportions if the output is uniform, so the network
  only has to learn how positions depend on each other. With the earlier log scale, sampled flows of
  minority classes carried the majority class's sizes (TSTR 0.18-0.21 against 0.48 now).
- Denoiser: a small transformer over the N packet positions (bidirectional attention; N ≤ ~30 makes
  a U-Net's down-sampling pointless) with a sinusoidal timestep embedding, a class embedding with a
  learned null class, and a protocol embedding, summed into one conditioning vector. Every block
  takes it through adaLN-Zero (DiT): LayerNorm shift/scale and residual gates computed from it.
- Training: the cosine schedule (Nichol & Dhariwal) with v-prediction (Salimans & Ho), label dropout
  `p_uncond` to the null class so one network is both conditional and unconditional, and batches
  drawn with weight count(class)^−0.5 so that minority classes get more of the steps.
- Sampling: deterministic DDIM (η = 0) over `sample_steps` steps with x0 clipped to [-1, 1], and
  classifier-free guidance out = out_null + cond_scale (out_class − out_null) when cond_scale != 1.
  The weights used are the EMA weights (the shared training loop keeps the best EMA state).

Why these three, measured on iot-type16 (benchmarks/diffusion_levers.py, 300 s each, TSTR macro F1,
3 RF seeds): additive conditioning with ε 0.477; adaLN 0.549; + class balance 0.5 0.571 (1.0: 0.545);
+ v-prediction 0.606. Sampled minority-class flows had been position-wise mixtures of the class's
few real patterns (D-LinkDayCam: 46 distinct first-8-packet patterns from 7 real ones; 11 now —
benchmarks/diffusion_diagnose.py).

Default size (d_model 128, n_layer 4, n_head 4, mlp_hidden 512, N = 20): 1,226,636 parameters with one
label row (the null class) and one protocol row, plus 128 per class and per further protocol row —
1,228,940 for iot-type16 (16 classes; TCP, UDP, other); `info()["parameters"]` is exact. Smaller than
the token models' in FLOPs per flow on purpose: sampling costs `sample_steps` full forward passes per
flow (default 10 DDIM steps), so parameters cost here 10× what they cost an autoregressive sampler.

Training defaults (batch 64, up to 40 epochs, 540 s cap, EMA 0.99 with the loop's warm-up, 10 DDIM
steps at sampling) replace batch 128 / 420 s / 20 steps, whose runs got only 283–396 optimizer steps
(TSTR 0.08–0.14) with an EMA still dominated by the initial weights. Measured numbers:
benchmarks/results/models.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from netsynth.codecs.grid import N_CHANNELS, GridCodec
from netsynth.errors import InputError
from netsynth.flows import FlowTable
from netsynth.models._train import TrainSettings, seeded_torch, torch_threads
from netsynth.models._train import train as run_training
from netsynth.models.base import BaseConfig, Generator, RawFlows
from netsynth.utils.device import resolve_device
from netsynth.utils.seeding import derive_seed


@dataclass(frozen=True, kw_only=True)
class DiffusionConfig(BaseConfig):
    """Denoiser sizes, diffusion and sampling settings, optimisation (see `_train.TrainSettings`)."""

    # denoiser
    d_model: int = 128
    n_layer: int = 4
    n_head: int = 4
    mlp_hidden: int = 512
    dropout: float = 0.0
    # "add": the conditioning vector is added to every block's input; "adaln": adaLN-Zero as in DiT
    # (Peebles & Xie) — per block, a zero-initialised linear map of it gives the LayerNorm shift/scale
    # and the residual gates, so the class can rescale features instead of only shifting them
    conditioning: Literal["add", "adaln"] = "adaln"
    # diffusion
    # what the denoiser predicts: the noise ε (DDPM) or v = √ᾱ ε − √(1−ᾱ) x0 (Salimans & Ho), whose
    # target stays well-scaled at both ends of the schedule
    prediction: Literal["eps", "v"] = "v"
    timesteps: int = 1000
    p_uncond: float = 0.1
    sample_steps: int = 10  # DDIM steps at sampling; the cost is linear in them (was 20)
    cond_scale: float = 1.0
    # Log transform, measured on iot-type16 (same DDIM grids decoded both ways, TSTR macro F1, 3 RF
    # seeds): snap 0.140 ± 0.022 vs no snap 0.130 ± 0.007 (396 steps), 0.084 vs 0.043 (283 steps); global
    # quantile (833 steps): 0.180 vs 0.145 (cond_scale 1), 0.211 vs 0.174 (2). Under class_quantile
    # decoding already lands on the class's sizes at that position, so the flag changes nothing there.
    snap_sizes: bool = True
    # payload-size channel (codecs/grid.py): rank in the training CDF of the flow's (class, position),
    # decoded by the inverse CDF. Measured (benchmarks/diffusion_levers.py, iot-type16, 240 s, ~130-150
    # CPU-s, cond_scale 1): class_quantile 0.481 ± 0.016 TSTR vs global quantile 0.180 and log 0.210
    # (models.md, same CPU budget): the denoiser's class signal was too weak to pick the class's sizes.
    size_transform: Literal["class_quantile", "quantile", "log"] = "class_quantile"
    class_direction: bool = False  # direction coded by its (class, position) CDF (codecs/grid.py)
    # training batches drawn with weight count(class)^−class_balance per flow: 0 = as in the data,
    # 1 = every class equally often. The model is class-conditional, so this changes which classes
    # get the gradient steps, not the distribution learned for each class
    class_balance: float = 0.5
    cpu_threads: int | None = 1  # training and sampling (2 threads contend on a shared 2-core machine)
    # optimisation
    lr: float = 2e-3
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.01
    # Batch 64 (was 128): one step measured 0.145 CPU-s against 0.316 (1 thread), so the budget holds
    # ~4× the optimiser steps; this family is limited by steps, not by batch noise. max_epochs is an
    # upper bound: the cosine horizon is cut to what max_time allows after epoch 1 (`_train`).
    batch_size: int = 64
    max_epochs: int = 40
    max_time: float | None = 540.0
    warmup_steps: int = 100
    grad_clip: float = 1.0
    ema: float | None = 0.99  # with the loop's warm-up min(0.99, (1+t)/(10+t)): no lag behind early steps
    patience: int = 8
    checkpoint_dir: str | None = None
    progress: bool = True
    # sampling
    sample_batch: int = 1024
    # models saved before these fields existed were trained this way (`BaseConfig.from_saved`)
    SAVED_DEFAULTS: ClassVar[dict[str, Any]] = {"conditioning": "add", "prediction": "eps", "class_balance": 0.0}

    def __post_init__(self) -> None:
        if self.d_model % self.n_head:
            raise InputError("d_model must be divisible by n_head")
        if not 1 <= self.sample_steps <= self.timesteps:
            raise InputError("sample_steps must be in [1, timesteps]")
        if not 0 <= self.p_uncond < 1:
            raise InputError("p_uncond must be in [0, 1)")
        if not 0 <= self.class_balance <= 1:
            raise InputError(f"class_balance must be in [0, 1], got {self.class_balance}")
        if self.conditioning not in ("add", "adaln") or self.prediction not in ("eps", "v"):
            raise InputError("conditioning must be add or adaln, prediction eps or v")
        if self.batch_size < 1 or self.sample_batch < 1 or self.max_epochs < 1:
            raise InputError("batch_size, sample_batch and max_epochs must be >= 1")
        if self.max_time is not None and not self.max_time > 0:
            raise InputError(f"max_time must be > 0 seconds (or none for no cap), got {self.max_time}")

    def train_settings(self) -> TrainSettings:
        return TrainSettings(lr=self.lr, min_lr_ratio=self.min_lr_ratio, weight_decay=self.weight_decay,
                             batch_size=self.batch_size, max_epochs=self.max_epochs, max_time=self.max_time,
                             warmup_steps=self.warmup_steps, grad_clip=self.grad_clip, ema=self.ema,
                             patience=self.patience, checkpoint_dir=self.checkpoint_dir,
                             progress=self.progress, cpu_threads=self.cpu_threads)


# ---------------------------------------------------------------------------------------------- schedule


def cosine_alpha_bar(timesteps: int, s: float = 0.008) -> torch.Tensor:
    """ᾱ_t for t = 0..T-1 from the cosine schedule, with β_t clipped to 0.999 (Nichol & Dhariwal)."""
    steps = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
    return torch.cumprod(1 - betas, dim=0).float()


def q_sample(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(ᾱ_t) x0 + sqrt(1 − ᾱ_t) ε: the forward process in closed form."""
    ab = alpha_bar[t].view(-1, *([1] * (x0.dim() - 1)))
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


# ---------------------------------------------------------------------------------------------- denoiser


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps (B,) -> (B, dim), as in the Transformer/DDPM."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    ang = t.float()[:, None] * freqs[None]
    emb = torch.cat([ang.cos(), ang.sin()], dim=-1)
    return F.pad(emb, (0, dim % 2))


class Block(nn.Module):
    """Pre-LN bidirectional self-attention and a GELU MLP, conditioned additively or by adaLN-Zero."""

    def __init__(self, cfg: DiffusionConfig) -> None:
        super().__init__()
        d, adaln = cfg.d_model, cfg.conditioning == "adaln"
        self.adaln = adaln
        # adaLN: shift/scale/gate for attention and MLP (6 d), zero-initialised so every block starts
        # as the identity; additive: one d-vector added to the input
        self.cond = nn.Linear(d, 6 * d if adaln else d)
        if adaln:
            nn.init.zeros_(self.cond.weight)
            nn.init.zeros_(self.cond.bias)
        self.norm1 = nn.LayerNorm(d, elementwise_affine=not adaln)
        self.attn = nn.MultiheadAttention(d, cfg.n_head, dropout=cfg.dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(d, elementwise_affine=not adaln)
        self.mlp = nn.Sequential(nn.Linear(d, cfg.mlp_hidden), nn.GELU(),
                                 nn.Linear(cfg.mlp_hidden, d), nn.Dropout(cfg.dropout))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        if not self.adaln:
            x = x + self.cond(c)[:, None, :]
            h = self.norm1(x)
            x = x + self.attn(h, h, h, need_weights=False)[0]
            return x + self.mlp(self.norm2(x))
        shift1, scale1, gate1, shift2, scale2, gate2 = self.cond(c)[:, None, :].chunk(6, dim=-1)
        h = self.norm1(x) * (1 + scale1) + shift1
        x = x + gate1 * self.attn(h, h, h, need_weights=False)[0]
        return x + gate2 * self.mlp(self.norm2(x) * (1 + scale2) + shift2)


class Denoiser(nn.Module):
    """ε̂(x_t, t, class, protocol): (B, N, C) -> (B, N, C). Class index `n_classes` is the null class."""

    def __init__(self, cfg: DiffusionConfig, n_classes: int, n_protocols: int, max_packets: int) -> None:
        super().__init__()
        d = cfg.d_model
        self.d_model, self.null_class = d, n_classes
        self.inp = nn.Linear(N_CHANNELS, d)
        self.pos = nn.Parameter(torch.randn(max_packets, d) * 0.02)
        self.time = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.label = nn.Embedding(n_classes + 1, d)
        self.proto = nn.Embedding(n_protocols, d)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm = nn.LayerNorm(d)
        self.out = nn.Linear(d, N_CHANNELS)
        nn.init.zeros_(self.out.weight)  # start by predicting ε = 0: a calm first few hundred steps
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, proto: torch.Tensor) -> torch.Tensor:
        c = F.silu(self.time(timestep_embedding(t, self.d_model)) + self.label(y) + self.proto(proto))
        h = self.inp(x) + self.pos[None, : x.shape[1]]
        for block in self.blocks:
            h = block(h, c)
        return self.out(self.norm(h))


class GaussianDiffusion(nn.Module):
    """The denoiser plus its noise schedule (a buffer, so it moves with the module)."""

    def __init__(self, cfg: DiffusionConfig, n_classes: int, n_protocols: int, max_packets: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.denoiser = Denoiser(cfg, n_classes, n_protocols, max_packets)
        self.register_buffer("alpha_bar", cosine_alpha_bar(cfg.timesteps), persistent=False)

    @property
    def null_class(self) -> int:
        return self.denoiser.null_class

    def loss(self, x0: torch.Tensor, y: torch.Tensor, proto: torch.Tensor,
             generator: torch.Generator | None = None) -> torch.Tensor:
        """ε-prediction MSE at a uniform random timestep, labels dropped to null with p_uncond."""
        B = x0.shape[0]
        t = torch.randint(0, self.cfg.timesteps, (B,), device=x0.device, generator=generator)
        noise = torch.randn(x0.shape, device=x0.device, generator=generator)
        drop = torch.rand(B, device=x0.device, generator=generator) < self.cfg.p_uncond
        y = torch.where(drop, torch.full_like(y, self.null_class), y)
        pred = self.denoiser(q_sample(x0, t, noise, self.alpha_bar), t, y, proto)
        if self.cfg.prediction == "v":
            ab = self.alpha_bar[t].view(-1, *([1] * (x0.dim() - 1)))
            return F.mse_loss(pred.float(), ab.sqrt() * noise - (1 - ab).sqrt() * x0)
        return F.mse_loss(pred.float(), noise)

    def guided_eps(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, proto: torch.Tensor,
                   cond_scale: float) -> torch.Tensor:
        """Classifier-free guidance; one batched pass over (class, null) when cond_scale != 1.

        Guidance mixes the raw outputs (ε or v: both are linear in x_t and the target, so mixing
        either is the same guidance); `ddim_sample` turns a v output into x0 and ε.
        """
        if cond_scale == 1.0:
            return self.denoiser(x, t, y, proto).float()
        null = torch.full_like(y, self.null_class)
        both = self.denoiser(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null]),
                             torch.cat([proto, proto])).float()
        eps_c, eps_u = both.chunk(2)
        return eps_u + cond_scale * (eps_c - eps_u)

    @torch.no_grad()
    def ddim_sample(self, y: torch.Tensor, proto: torch.Tensor, shape: tuple[int, int], *, steps: int,
                    cond_scale: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """Deterministic DDIM (η = 0) from pure noise to x0 in [-1, 1], shape (B, *shape)."""
        device = self.alpha_bar.device
        x = torch.randn((len(y), *shape), generator=generator, device="cpu").to(device)
        ts = torch.linspace(self.cfg.timesteps - 1, 0, steps, device=device).round().long()
        for i, t in enumerate(ts):
            ab = self.alpha_bar[t]
            ab_prev = self.alpha_bar[ts[i + 1]] if i + 1 < len(ts) else torch.ones((), device=device)
            out = self.guided_eps(x, t.expand(len(y)), y, proto, cond_scale)
            if self.cfg.prediction == "v":
                x0 = (ab.sqrt() * x - (1 - ab).sqrt() * out).clamp(-1, 1)
            else:
                x0 = ((x - (1 - ab).sqrt() * out) / ab.sqrt()).clamp(-1, 1)
            eps = (x - ab.sqrt() * x0) / (1 - ab).sqrt()
            x = ab_prev.sqrt() * x0 + (1 - ab_prev).sqrt() * eps
        return x.clamp(-1, 1)


# ---------------------------------------------------------------------------------------------- generator


def class_weights(labels: np.ndarray, balance: float) -> torch.Tensor | None:
    """Per-flow draw weights count(class)^−balance (None for 0: plain shuffled epochs)."""
    if balance == 0:
        return None
    _, inverse, counts = np.unique(np.asarray(labels).astype(str), return_inverse=True, return_counts=True)
    return torch.as_tensor(counts[inverse].astype(np.float64) ** -balance)


def diffusion_loss(module: nn.Module, batch: list[torch.Tensor]) -> torch.Tensor:
    """`_train` loss hook. Validation (eval mode) uses fixed noise so epochs compare like with like."""
    x0, y, proto = batch
    gen = None
    if not module.training:
        gen = torch.Generator(device=x0.device).manual_seed(0)
    return module.loss(x0, y, proto, generator=gen)


class DiffusionGenerator(Generator):
    """Class-conditioned flow generator: DDPM-trained transformer denoiser over `GridCodec` grids."""

    name = "diffusion"
    config_class = DiffusionConfig

    @classmethod
    def tiny_config(cls) -> DiffusionConfig:
        return DiffusionConfig(d_model=16, n_layer=1, n_head=2, mlp_hidden=32, timesteps=100, sample_steps=5,
                               max_epochs=2, max_time=None, batch_size=32, warmup_steps=2, progress=False,
                               sample_batch=64, ema=0.9)

    # ------------------------------------------------------------------ helpers
    def _protocol_index(self, protocol: np.ndarray) -> np.ndarray:
        """Index into the protocol embedding; unseen protocols share the last ('other') row."""
        lookup = {p: i for i, p in enumerate(self.protocols_)}
        return np.array([lookup.get(int(p), len(self.protocols_)) for p in protocol], np.int64)

    def _class_index(self, labels: np.ndarray) -> np.ndarray:
        lookup = {c: i for i, c in enumerate(self.codec_.classes)}
        return np.array([lookup[str(c)] for c in labels], np.int64)

    def _count_parameters(self, flows: FlowTable, train: FlowTable, valid: FlowTable,
                          given_valid: FlowTable | None) -> int:
        codec = GridCodec.fit(train, size_transform=self.config_.size_transform,
                              class_direction=self.config_.class_direction)
        n_classes = len(set(codec.classes) | set(valid.classes))
        n_protocols = len({int(p) for p in train.protocol}) + 1
        with seeded_torch(0):
            module = GaussianDiffusion(self.config_, n_classes, n_protocols, codec.max_packets)
        return int(sum(p.numel() for p in module.parameters()))

    def _build_module(self) -> GaussianDiffusion:
        return GaussianDiffusion(self.config_, len(self.codec_.classes), len(self.protocols_) + 1,
                                 self.codec_.max_packets)

    def _tensors(self, flows: FlowTable) -> list[torch.Tensor]:
        return [torch.as_tensor(self.codec_.encode(flows)), torch.as_tensor(self._class_index(flows.label)),
                torch.as_tensor(self._protocol_index(flows.protocol))]

    # ------------------------------------------------------------------ fit / sample
    def _fit(self, train: FlowTable, valid: FlowTable, rng: np.random.Generator) -> dict[str, Any]:
        cfg = self.config_
        device = resolve_device(self.device)
        self.codec_ = GridCodec.fit(train, size_transform=cfg.size_transform, class_direction=cfg.class_direction)
        self.codec_.classes = sorted(set(self.codec_.classes) | set(valid.classes))
        self.protocols_ = sorted({int(p) for p in train.protocol})
        seed = derive_seed(rng)
        with seeded_torch(seed):
            module = self._build_module()
            summary = run_training(module, diffusion_loss, self._tensors(train), self._tensors(valid),
                                   cfg.train_settings(), device=device,
                                   generator=torch.Generator().manual_seed(seed), description=self.name,
                                   weights=class_weights(train.label, cfg.class_balance))
        self.module_ = module.to(device).eval()
        self.device_ = device
        return {**summary, "parameters": self.n_parameters()}

    def sample_grid(self, labels: np.ndarray, protocol: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Raw DDIM grids (n, N, C) in [-1, 1] before decoding (benchmarks decode one grid several ways)."""
        cfg = self.config_
        gen = torch.Generator().manual_seed(derive_seed(rng))
        y_all = torch.as_tensor(self._class_index(labels), device=self.device_)
        p_all = torch.as_tensor(self._protocol_index(protocol), device=self.device_)
        parts = []
        with torch_threads(cfg.cpu_threads, self.device_):
            for start in range(0, len(labels), cfg.sample_batch):
                sl = slice(start, start + cfg.sample_batch)
                x = self.module_.ddim_sample(y_all[sl], p_all[sl], (self.codec_.max_packets, N_CHANNELS),
                                             steps=cfg.sample_steps, cond_scale=cfg.cond_scale, generator=gen)
                parts.append(x.float().cpu().numpy())
        return np.concatenate(parts)

    def _sample_flows(self, labels: np.ndarray, protocol: np.ndarray, ip_version: np.ndarray,
                      rng: np.random.Generator) -> RawFlows:
        grid = self.sample_grid(labels, protocol, rng)
        return self.decode_grid(grid, labels, protocol, snap_sizes=self.config_.snap_sizes)

    def decode_grid(self, grid: np.ndarray, labels: np.ndarray, protocol: np.ndarray, *,
                    snap_sizes: bool) -> RawFlows:
        """Decode sampled grids with the fitted codec; records the clip counts in `last_clipped_`."""
        dec = self.codec_.decode(grid, labels, snap_sizes=snap_sizes, protocol=protocol)
        self.last_clipped_ = dec["clipped"]
        return RawFlows(n_packets=dec["n_packets"], payload_len=dec["payload_len"], direction=dec["direction"],
                        iat=dec["iat"], tcp_flags=dec["tcp_flags"], clipped=dec["clipped"])

    # ------------------------------------------------------------------ state
    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays = {k: v.detach().float().cpu().numpy() for k, v in self.module_.state_dict().items()}
        return {"codec": self.codec_.to_dict(), "protocols": self.protocols_}, arrays

    def _load_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.codec_ = GridCodec.from_dict(meta["codec"])
        self.protocols_ = [int(p) for p in meta["protocols"]]
        self.device_ = resolve_device(self.device)
        with seeded_torch(0):
            module = self._build_module()
        module.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in arrays.items()})
        self.module_ = module.to(self.device_).eval()

    def n_parameters(self) -> int:
        return int(sum(p.numel() for p in self.module_.parameters()))
