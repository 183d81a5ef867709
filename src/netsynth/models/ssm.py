"""A selective state-space model (Mamba family) in pure PyTorch, as a class-conditioned flow generator.

Why an SSM next to the transformer: it carries a fixed-size recurrent state, so sampling costs O(1)
per token (no key-value cache growing with the sequence), while training runs the whole sequence at
once through a parallel form of the same recurrence.

Each block is a Mamba-2 mixer: one input projection to (gate z, x, B, C, Δ), a short causal depthwise
convolution over (x, B, C), an input-dependent ("selective") step size Δ_t and projections B_t, C_t,
the linear recurrence per head

    h_t = exp(Δ_t A) h_{t-1} + Δ_t x_t B_tᵀ,        y_t = h_t C_t + D x_t,

then a gated RMSNorm (y · silu(z)) and an output projection.

Why Mamba-2 (a scalar decay per head) rather than Mamba-1 (a decay per channel and state): with a
decay per (channel, state) the parallel scan has to materialise a (batch, length, d_inner, d_state)
tensor, and on CPU its element-wise passes dominate everything else — measured here: 0.67 s forward
and 1.2 s forward+backward for ONE layer at batch 64, length 64, d_inner 256, d_state 16, about 20× the
cost of the layer's matrix products. With one decay per head the recurrence inside a chunk of T
tokens is a masked matrix product (the "chunked cumsum" / SSD form: decays are exp of differences of a
cumulative sum), only the states at chunk boundaries are materialised, and those are carried across
chunks by an associative parallel scan (`parallel_scan`, recursive doubling, O(L) work, O(log L) depth).

Three ways to run the same recurrence live here, tested to agree:
- `ssd_chunked` (training): intra-chunk matrix form + inter-chunk `parallel_scan`;
- `ssd_sequential` (reference): the plain loop over time;
- `Mamba2Mixer.step` (sampling): one token with (conv state, ssm state).

The model plugs into `_autoregressive.py` exactly like the transformer: same codec, objective, grammar
masks and batched sampler; only the sequence mixer differs.

Default size (d_model 192, n_layer 4, d_state 16, expand 2, headdim 48 → 8 heads, d_conv 4, chunk 32,
tied embeddings, class broadcast): 926,368 parameters in the blocks and final norm plus 2 × vocab_size ×
192 for the token and class embeddings — 1,226,272 for iot-type16's 781-token vocabulary
(`parameter_count(table)` gives it before training, `info()["parameters"]` after). 192 rather than 256
wide: one training step (batch 32, 44 tokens, 1 thread) measured 0.39 CPU-s against 0.63, and within a
fixed budget this family is short of steps, not of capacity. d_state 16 because the sampler's cost per
token is dominated by reading and writing the (B, N, H·P) state.

Measured numbers: benchmarks/results/models.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from netsynth.errors import InputError
from netsynth.models._autoregressive import AutoregressiveGenerator, TokenModelConfig

# ---------------------------------------------------------------------------------------------- scans


def sequential_scan(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Reference: h_t = a_t * h_{t-1} + b_t along dim 1 from h_{-1} = 0, one step at a time."""
    h = torch.zeros_like(b[:, 0])
    out = []
    for t in range(a.shape[1]):
        h = a[:, t] * h + b[:, t]
        out.append(h)
    return torch.stack(out, dim=1)


def _odd_even_scan(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Inclusive scan of the affine maps h -> a_t h + b_t along dim 1, by recursive doubling.

    Pairs (2i, 2i+1) are fused into one map, the half-length sequence is scanned recursively (giving h
    at odd positions), and even positions are filled in from their odd left neighbour. Each level
    halves the length, so the total work is ~2L multiply-adds (Hillis-Steele does L log L), with only
    log L sequential levels.
    """
    length = a.shape[1]
    if length == 1:
        return b.clone()
    if length % 2:  # pad with the identity map (a=1, b=0); the extra output is dropped
        a = torch.cat([a, torch.ones_like(a[:, :1])], dim=1)
        b = torch.cat([b, torch.zeros_like(b[:, :1])], dim=1)
    a_even, a_odd = a[:, 0::2], a[:, 1::2]
    b_even, b_odd = b[:, 0::2], b[:, 1::2]
    h_odd = _odd_even_scan(a_odd * a_even, torch.addcmul(b_odd, a_odd, b_even))
    h = torch.empty_like(b)
    h[:, 1::2] = h_odd
    h[:, 0] = b[:, 0]
    h[:, 2::2] = torch.addcmul(b_even[:, 1:], a_even[:, 1:], h_odd[:, :-1])
    return h[:, :length]


class _LinearScan(torch.autograd.Function):
    """h = scan(a, b) with a memory-lean backward that reuses the parallel scan.

    For h_t = a_t h_{t-1} + b_t and upstream gradient dh, g = dL/db obeys the reverse recurrence
    g_t = dh_t + a_{t+1} g_{t+1} (the same scan on the time-flipped sequence), and dL/da_t = g_t h_{t-1}.
    So only (a, h) are saved, not the intermediate levels.
    """

    @staticmethod
    def forward(ctx: Any, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        h = _odd_even_scan(a, b)
        ctx.save_for_backward(a, h)
        return h

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, dh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, h = ctx.saved_tensors
        a_next = torch.cat([a[:, 1:], torch.zeros_like(a[:, :1])], dim=1)
        g = _odd_even_scan(a_next.flip(1), dh.flip(1)).flip(1)
        da = torch.zeros_like(h)
        da[:, 1:] = g[:, 1:] * h[:, :-1]
        return da, g


def parallel_scan(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """h_t = a_t * h_{t-1} + b_t along dim 1 from h_{-1} = 0; shapes (B, L, ...), differentiable."""
    if a.shape != b.shape:
        raise ValueError(f"scan inputs must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    return _LinearScan.apply(a, b)


def segsum(x: torch.Tensor) -> torch.Tensor:
    """(..., T) -> (..., T, T): out[i, j] = x_{j+1} + ... + x_i for j <= i, -inf above the diagonal.

    exp(segsum(log_decay)) is the matrix of cumulative decays from step j to step i (0 where j > i).
    """
    cs = x.cumsum(-1)
    out = cs[..., :, None] - cs[..., None, :]
    causal = torch.ones(x.shape[-1], x.shape[-1], dtype=torch.bool, device=x.device).tril()
    return out.masked_fill(~causal, float("-inf"))


def ssd_sequential(x: torch.Tensor, log_a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Reference recurrence. x (B, L, H, P) already Δ-scaled, log_a = Δ·A (B, L, H), b/c (B, L, N)."""
    batch, length, heads, p = x.shape
    h = x.new_zeros(batch, heads, p, b.shape[-1])
    ys = []
    for t in range(length):
        h = torch.exp(log_a[:, t])[:, :, None, None] * h + x[:, t, :, :, None] * b[:, t, None, None, :]
        ys.append((h * c[:, t, None, None, :]).sum(-1))
    return torch.stack(ys, dim=1)


def ssd_chunked(x: torch.Tensor, log_a: torch.Tensor, b: torch.Tensor, c: torch.Tensor,
                chunk: int) -> torch.Tensor:
    """The same recurrence in parallel: matrix form inside chunks, `parallel_scan` across them.

    Works in a (batch, head, chunk, position, ·) layout so that every contraction is a plain batched
    matmul (B and C are shared by all heads and broadcast), with one permute in and one out.
    """
    batch, length, heads, p = x.shape
    pad = -length % chunk
    if pad:  # zero inputs and zero log-decay after the end change nothing before it
        x, log_a = F.pad(x, (0, 0, 0, 0, 0, pad)), F.pad(log_a, (0, 0, 0, pad))
        b, c = F.pad(b, (0, 0, 0, pad)), F.pad(c, (0, 0, 0, pad))
    n_chunks = (length + pad) // chunk
    xc = x.reshape(batch, n_chunks, chunk, heads, p).permute(0, 3, 1, 2, 4)  # (B, H, C, T, P)
    bc = b.reshape(batch, 1, n_chunks, chunk, -1)  # (B, 1, C, T, N)
    cc = c.reshape(batch, 1, n_chunks, chunk, -1)
    la = log_a.reshape(batch, n_chunks, chunk, heads).permute(0, 3, 1, 2)  # (B, H, C, T)
    cum = la.cumsum(-1)
    # 1. within each chunk: y_l = sum_{s<=l} (C_l·B_s) exp(cum_l - cum_s) x_s
    scores = (cc @ bc.transpose(-1, -2)) * torch.exp(segsum(la))  # (B, H, C, T, T)
    y = scores @ xc
    if n_chunks > 1:
        # 2. each chunk's contribution to the state at its end: sum_s exp(cum_end - cum_s) x_s B_sᵀ
        to_end = torch.exp(cum[..., -1:] - cum).unsqueeze(-1)  # (B, H, C, T, 1)
        states = xc.transpose(-1, -2) @ (bc * to_end)  # (B, H, C, P, N)
        # 3. carry states across chunks with the associative scan: S_k = decay_k S_{k-1} + states_k
        chunk_decay = torch.exp(cum[..., -1])[..., None, None].expand_as(states)
        carried = parallel_scan(chunk_decay.transpose(1, 2), states.transpose(1, 2)).transpose(1, 2)
        entering = torch.cat([torch.zeros_like(carried[:, :, :1]), carried[:, :, :-1]], dim=2)
        # 4. the state entering each chunk, decayed to each position and read out by C
        y = y + (cc @ entering.transpose(-1, -2)) * torch.exp(cum).unsqueeze(-1)
    return y.permute(0, 2, 3, 1, 4).reshape(batch, n_chunks * chunk, heads, p)[:, :length]


def causal_depthwise_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """x (B, L, C), weight (C, K): out_t = bias + sum_k weight[:, k] x_{t-K+1+k}.

    Written as K shifted multiply-adds because CPU depthwise Conv1d kernels are slow for tiny K
    (measured ~0.37 s fwd+bwd for one layer here, several times the shifted form).
    """
    k = weight.shape[1]
    xp = F.pad(x, (0, 0, k - 1, 0))
    length = x.shape[1]
    out = bias + xp[:, :length] * weight[:, 0]
    for i in range(1, k):
        out = torch.addcmul(out, xp[:, i:i + length], weight[:, i])
    return out


# ---------------------------------------------------------------------------------------------- config


@dataclass(frozen=True, kw_only=True)
class SSMConfig(TokenModelConfig):
    """Mamba-2 sizes on top of the shared token-model settings (codec, training, sampling)."""

    # 192 × 4 layers (was 256 × 4): one training step (batch 32, 44 tokens, 1 thread) measured 0.39
    # CPU-s against 0.63, so ~1.6× the optimiser steps fit the budget; the old size stopped after ~380
    # steps, far from converged (TSTR 0.384).
    d_model: int = 192
    n_layer: int = 4
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    headdim: int = 48
    chunk_size: int = 32
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    tie_embeddings: bool = True
    # the class token's embedding is added to every position, as in the transformer: with a few
    # hundred steps the recurrence alone carries position 0's class weakly to later packets
    class_broadcast: bool = True
    # under the 10-minute bound with room for validation and saving; the schedule's horizon is cut
    # to what the budget allows after the first epoch (`_train.schedule_horizon`), so the cosine
    # decays even when max_time, not max_epochs, ends the run
    max_time: float | None = 540.0
    max_epochs: int = 8

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.expand * self.d_model) % self.headdim:
            raise InputError("expand * d_model must be divisible by headdim")
        if min(self.d_model, self.n_layer, self.d_state, self.d_conv, self.chunk_size) < 1:
            raise InputError("d_model, n_layer, d_state, d_conv and chunk_size must be >= 1")
        if not 0 < self.dt_min <= self.dt_max:
            raise InputError("need 0 < dt_min <= dt_max")

    @property
    def d_inner(self) -> int:
        return self.expand * self.d_model

    @property
    def n_heads(self) -> int:
        return self.d_inner // self.headdim


# ---------------------------------------------------------------------------------------------- modules

# (conv ring (B, d_conv, conv_dim), scaled ssm state h̃ (B, N, H·P), log of the decay deferred in h̃ (B, H))
State = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
# deferred decay is folded into the state once some head's log decay passes −DEFER_LIMIT: e^50 ≈ 5e21
# keeps h̃ far from float32 overflow, and a decay clamped at e^−50 differs from the true one by < 2e−22
DEFER_LIMIT = 50.0


class RMSNorm(nn.Module):
    """x / rms(x) · g, optionally gated by silu(z) first (Mamba-2's norm before the output projection)."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor, gate: torch.Tensor | None = None) -> torch.Tensor:
        xf = x.float() if gate is None else x.float() * F.silu(gate.float())
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


class Mamba2Mixer(nn.Module):
    """in_proj -> causal depthwise conv over (x, B, C) -> selective SSM -> gated norm -> out_proj."""

    def __init__(self, cfg: SSMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d_in, n, h = cfg.d_inner, cfg.d_state, cfg.n_heads
        self.conv_dim = d_in + 2 * n
        self.in_proj = nn.Linear(cfg.d_model, 2 * d_in + 2 * n + h, bias=False)
        self.conv1d = nn.Conv1d(self.conv_dim, self.conv_dim, cfg.d_conv, groups=self.conv_dim,
                                padding=cfg.d_conv - 1)
        # Δ starts log-uniform in [dt_min, dt_max] (bias = softplus⁻¹(Δ)): memories over many time scales
        dt = torch.exp(torch.rand(h) * (math.log(cfg.dt_max) - math.log(cfg.dt_min)) + math.log(cfg.dt_min))
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))
        # A = -exp(A_log) < 0 keeps the recurrence stable; heads start with decay rates 1..16
        self.A_log = nn.Parameter(torch.log(torch.linspace(1, 16, h)))
        self.D = nn.Parameter(torch.ones(h))
        self.norm = RMSNorm(d_in)
        self.out_proj = nn.Linear(d_in, cfg.d_model, bias=False)

    def _split(self, zxbcdt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        d_in = self.cfg.d_inner
        return zxbcdt.split([d_in, self.conv_dim, self.cfg.n_heads], dim=-1)

    def _ssm_inputs(self, xbc: torch.Tensor, dt: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x heads (..., H, P), Δ (..., H), log decay Δ·A (..., H), B, C), all float32."""
        cfg = self.cfg
        x, b, c = xbc.float().split([cfg.d_inner, cfg.d_state, cfg.d_state], dim=-1)
        x = x.reshape(*x.shape[:-1], cfg.n_heads, cfg.headdim)
        delta = F.softplus(dt.float() + self.dt_bias.float())
        log_a = -torch.exp(self.A_log.float()) * delta
        return x, delta, log_a, b, c

    def forward(self, u: torch.Tensor, *, mode: str = "chunked") -> torch.Tensor:
        """u (B, L, d_model) -> (B, L, d_model), causal. `mode="sequential"` runs the reference loop."""
        z, xbc, dt = self._split(self.in_proj(u))
        xbc = F.silu(causal_depthwise_conv(xbc, self.conv1d.weight.squeeze(1), self.conv1d.bias))
        with torch.autocast(u.device.type, enabled=False):  # the recurrence runs in float32
            x, delta, log_a, b, c = self._ssm_inputs(xbc, dt)
            xs = x * delta.unsqueeze(-1)
            if mode == "chunked":
                y = ssd_chunked(xs, log_a, b, c, self.cfg.chunk_size)
            else:
                y = ssd_sequential(xs, log_a, b, c)
            y = (y + x * self.D.float()[:, None]).reshape(*u.shape[:2], -1)
        return self.out_proj(self.norm(y.to(z.dtype), z))

    def init_state(self, batch: int, device: torch.device | str) -> State:
        """Zero states in the sampler's layout: conv ring (B, d_conv, conv_dim), ssm (B, N, H·P), (B, H).

        Both big layouts keep the long axis last and contiguous, so every per-token pass over them is a
        vectorised broadcast and the read-out is one small batched product (measured at B=512 for the
        default size: 2.8 ms vs 7.1 ms for the (B, H·P, N) @ (B, N, 1) form). The third tensor is
        the log of the decay not yet applied to the state (see `step`).
        """
        cfg = self.cfg
        return (torch.zeros(batch, cfg.d_conv, self.conv_dim, device=device),
                torch.zeros(batch, cfg.d_state, cfg.n_heads * cfg.headdim, device=device),
                torch.zeros(batch, cfg.n_heads, device=device))

    def step(self, u: torch.Tensor, state: State, pos: int) -> tuple[torch.Tensor, State]:
        """One token u (B, d_model) at position `pos` -> (B, d_model) and the state: O(1) in length.

        The states are updated in place (as a KV cache is written in place) and returned. The conv
        state is a ring buffer (slot pos mod d_conv takes the new input; the kernel is rotated to
        match) because shifting a (B, C, d_conv) window with `cat` cost more than the convolution.

        The ssm state is kept as h = e^L · h̃ with the decay L (per row and head) deferred: the update
        h̃ += e^−L (b ⊗ Δx) is one pass over the (B, N, H·P) state instead of two (h ·= decay, then
        h += b ⊗ Δx); at sampling batches that state is bigger than the L2 cache. Measured on the
        update alone (benchmarks/ssm_step.py): 1.12× at batch 512, none at 256. The deferred decay
        is folded into h̃ (one extra pass) only when some head's L passes −DEFER_LIMIT.
        """
        conv_state, h, log_scale = state
        cfg = self.cfg
        z, xbc, dt = self._split(self.in_proj(u))
        k = cfg.d_conv
        conv_state[:, pos % k] = xbc
        # (K, C), contiguous: tap j multiplies x_{t-K+1+j}; a column of the (C, K) weight is strided,
        # which measured ~2x slower in these multiply-adds
        taps = self.conv1d.weight.squeeze(1).t().contiguous()
        rot = [(s - pos - 1) % k for s in range(k)]  # tap applied to ring slot s
        acc = torch.addcmul(self.conv1d.bias, conv_state[:, 0], taps[rot[0]])
        for slot in range(1, k):
            acc = torch.addcmul(acc, conv_state[:, slot], taps[rot[slot]])
        xbc = F.silu(acc)
        with torch.autocast(u.device.type, enabled=False):
            x, delta, log_a, b, c = self._ssm_inputs(xbc, dt)
            batch, heads, p = x.shape
            total = log_scale + log_a
            if bool((total < -DEFER_LIMIT).any()):  # fold e^L into h̃, restart L from this step's decay
                h.mul_(self._per_channel(log_scale.exp(), p))
                total = log_a.clamp(min=-DEFER_LIMIT)
            log_scale.copy_(total)
            xs = (x * (delta * torch.exp(-total)).unsqueeze(-1)).reshape(batch, 1, heads * p)
            h.addcmul_(b[:, :, None], xs)
            y = torch.bmm(c[:, None, :], h).view(batch, heads, p) * total.exp()[:, :, None]
            y = y + x * self.D.float()[:, None]
        return self.out_proj(self.norm(y.reshape(u.shape[0], -1).to(z.dtype), z)), (conv_state, h, log_scale)

    @staticmethod
    def _per_channel(per_head: torch.Tensor, headdim: int) -> torch.Tensor:
        """(B, H) -> (B, 1, H·P): one value per head repeated over its channels, to scale the state."""
        batch, heads = per_head.shape
        return per_head[:, :, None].expand(batch, heads, headdim).reshape(batch, 1, heads * headdim)


class ResidualBlock(nn.Module):
    """Pre-norm residual: u + mixer(norm(u))."""

    def __init__(self, cfg: SSMConfig) -> None:
        super().__init__()
        self.norm = RMSNorm(cfg.d_model)
        self.mixer = Mamba2Mixer(cfg)

    def forward(self, u: torch.Tensor, *, mode: str = "chunked") -> torch.Tensor:
        return u + self.mixer(self.norm(u), mode=mode)

    def step(self, u: torch.Tensor, state: State, pos: int) -> tuple[torch.Tensor, State]:
        out, state = self.mixer.step(self.norm(u), state, pos)
        return u + out, state


class MambaLM(nn.Module):
    """Token embedding -> residual Mamba-2 blocks -> RMSNorm -> logits (`TokenModel` for the sampler)."""

    def __init__(self, cfg: SSMConfig, vocab_size: int, max_length: int) -> None:
        super().__init__()
        self.cfg, self.vocab_size, self.max_length = cfg, vocab_size, max_length
        self.embed = nn.Embedding(vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(ResidualBlock(cfg) for _ in range(cfg.n_layer))
        self.norm = RMSNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, vocab_size, bias=False)
        self.cond = nn.Embedding(vocab_size, cfg.d_model) if cfg.class_broadcast else None
        if self.cond is not None:
            nn.init.normal_(self.cond.weight, std=0.02)
        nn.init.normal_(self.embed.weight, std=0.02)
        if cfg.tie_embeddings:
            self.head.weight = self.embed.weight
        else:
            nn.init.normal_(self.head.weight, std=0.02)
        for block in self.blocks:  # GPT-2 style: residual output projections scaled by depth
            nn.init.normal_(block.mixer.out_proj.weight, std=0.02 / math.sqrt(2 * cfg.n_layer))

    def forward(self, tokens: torch.Tensor, *, mode: str = "chunked") -> torch.Tensor:
        """(B, T) -> (B, T, V) logits, causal."""
        x = self.embed(tokens)
        if self.cond is not None:
            x = x + self.cond(tokens[:, :1])
        for block in self.blocks:
            x = block(x, mode=mode)
        return self.head(self.norm(x))

    def init_state(self, batch: int, device: torch.device | str) -> dict[str, Any]:
        """Zero conv and ssm states, one pair per layer: a fixed size whatever the sequence length.

        `cond` holds the class vector (set from the first token) when `class_broadcast` is on.
        """
        return {"pos": 0, "cond": None, "layers": [block.mixer.init_state(batch, device) for block in self.blocks]}

    def step(self, tokens: torch.Tensor, state: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        """Feed one token per sequence, (B,) -> next-token logits (B, V) and the new states."""
        x = self.embed(tokens)
        if self.cond is not None:
            if state["pos"] == 0:
                state["cond"] = self.cond(tokens)
            x = x + state["cond"]
        new_layers = []
        for block, st in zip(self.blocks, state["layers"], strict=True):
            x, st = block.step(x, st, state["pos"])
            new_layers.append(st)
        return self.head(self.norm(x)), {"pos": state["pos"] + 1, "cond": state["cond"], "layers": new_layers}


# ---------------------------------------------------------------------------------------------- generator


class SSMGenerator(AutoregressiveGenerator):
    """Class-conditioned flow generator: a small Mamba-2 language model over `TokenCodec` sequences."""

    name = "ssm"
    config_class = SSMConfig

    @classmethod
    def tiny_config(cls) -> SSMConfig:
        return SSMConfig(d_model=16, n_layer=1, d_state=4, headdim=8, chunk_size=8, max_epochs=2,
                         max_time=None, batch_size=32, warmup_steps=2, progress=False, sample_batch=64)

    def _build_module(self, vocab_size: int, max_length: int) -> nn.Module:
        return MambaLM(self.config_, vocab_size, max_length)
