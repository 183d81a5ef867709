"""A small LLaMA-style decoder-only transformer over flow tokens (nanoGPT-style: one readable file).

Blocks: RMSNorm → causal self-attention with rotary position embeddings → residual, RMSNorm → SwiGLU
MLP → residual. Attention uses `F.scaled_dot_product_attention` (flash/efficient kernels on CUDA).
Sampling goes through `_autoregressive.sample_tokens` with a key-value cache (`init_state`/`step`), so
one new token costs one position's worth of compute.

Default size (n_layer 4, n_head 4, d_model 128, mlp_hidden 384, tied embeddings, class broadcast):
853,120 parameters in the blocks and final norm plus 2 × vocab_size × 128 for the token and class
embeddings: 1,053,056 for iot-type16's 781-token vocabulary (`info()["parameters"]` reports the
exact count of a fitted model). Sized for CPU: a 2-core machine must train it in about six minutes.

The class token is also added to every position's input (`class_broadcast`): with a budget of a few
hundred optimiser steps, attention alone conditions weakly on a token at position 0.
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


@dataclass(frozen=True, kw_only=True)
class GPTConfig(TokenModelConfig):
    """Transformer sizes on top of the shared token-model settings (codec, training, sampling)."""

    n_layer: int = 4
    n_head: int = 4
    d_model: int = 128
    mlp_hidden: int = 384
    dropout: float = 0.0
    tie_embeddings: bool = True
    class_broadcast: bool = True
    rope_base: float = 10000.0
    # Training length. Measured on iot-type16 (6,581 train flows, 1 CPU thread): 12 epochs = 2,232 steps,
    # 358 s of CPU time, best validation loss 0.491 (0.551 after 6), TSTR macro F1 0.642 and direction
    # 3-gram JSD 0.016 (0.599 / 0.034 after 6). Epochs, not wall-clock time, end a default run, so the
    # result does not depend on how busy the machine is; max_time is only a safety cap.
    max_epochs: int = 12
    min_steps: int = 2000
    max_time: float | None = 1200.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.d_model % self.n_head or (self.d_model // self.n_head) % 2:
            raise InputError("d_model must be divisible by n_head into an even head size (rotary embeddings)")


class RMSNorm(nn.Module):
    """x / rms(x) · g: LayerNorm without centring or bias (cheaper, as good for small LMs)."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


def rotary_tables(max_len: int, head_dim: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables (max_len, head_dim/2) for rotary position embeddings."""
    inv = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    ang = torch.outer(torch.arange(max_len, dtype=torch.float32), inv)
    return ang.cos(), ang.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (x1, x2) of the head dimension by position-dependent angles; x: (B, H, T, D)."""
    x1, x2 = x.float().chunk(2, dim=-1)
    out = torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    return out.type_as(x)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.n_head, self.head_dim = cfg.n_head, cfg.d_model // cfg.n_head
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.dropout = cfg.dropout

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B, T, _ = x.shape
        q, k, v = self.qkv(x).split(self.n_head * self.head_dim, dim=2)
        return tuple(t.view(B, T, self.n_head, self.head_dim).transpose(1, 2) for t in (q, k, v))

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self._split(x)
        q, k = apply_rotary(q, cos[:T], sin[:T]), apply_rotary(k, cos[:T], sin[:T])
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))

    def step(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: dict[str, Any],
             pos: int) -> torch.Tensor:
        """One position: write k/v into the preallocated cache, attend over positions 0..pos."""
        B, _, C = x.shape
        q, k, v = self._split(x)
        q, k = apply_rotary(q, cos[pos:pos + 1], sin[pos:pos + 1]), apply_rotary(k, cos[pos:pos + 1], sin[pos:pos + 1])
        cache["k"][:, :, pos:pos + 1] = k
        cache["v"][:, :, pos:pos + 1] = v
        # one query per sequence: two batched products and a softmax; measured faster on CPU than
        # scaled_dot_product_attention, whose flash kernel pays per-(batch, head) block overhead
        scores = torch.matmul(q * self.head_dim ** -0.5, cache["k"][:, :, :pos + 1].transpose(-1, -2))
        y = torch.matmul(torch.softmax(scores, dim=-1), cache["v"][:, :, :pos + 1])
        return self.proj(y.transpose(1, 2).reshape(B, 1, C))


class SwiGLU(nn.Module):
    """w2(silu(w1 x) · w3 x): the gated MLP of LLaMA."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.w1 = nn.Linear(cfg.d_model, cfg.mlp_hidden, bias=False)
        self.w3 = nn.Linear(cfg.d_model, cfg.mlp_hidden, bias=False)
        self.w2 = nn.Linear(cfg.mlp_hidden, cfg.d_model, bias=False)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.w2(F.silu(self.w1(x)) * self.w3(x)))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.norm1, self.attn = RMSNorm(cfg.d_model), CausalSelfAttention(cfg)
        self.norm2, self.mlp = RMSNorm(cfg.d_model), SwiGLU(cfg)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), cos, sin)
        return x + self.mlp(self.norm2(x))

    def step(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: dict[str, Any],
             pos: int) -> torch.Tensor:
        x = x + self.attn.step(self.norm1(x), cos, sin, cache, pos)
        return x + self.mlp(self.norm2(x))


class GPT(nn.Module):
    """Token embedding → blocks → RMSNorm → logits; `forward` for training, `step` for sampling."""

    def __init__(self, cfg: GPTConfig, vocab_size: int, max_length: int) -> None:
        super().__init__()
        self.cfg, self.vocab_size, self.max_length = cfg, vocab_size, max_length
        self.embed = nn.Embedding(vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm = RMSNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, vocab_size, bias=False)
        # the first token (the class) also conditions every position directly: a few CPU-minutes of
        # training do not teach attention to look back at position 0 reliably, an added vector does
        self.cond = nn.Embedding(vocab_size, cfg.d_model) if cfg.class_broadcast else None
        if cfg.tie_embeddings:
            self.head.weight = self.embed.weight
        cos, sin = rotary_tables(max_length, cfg.d_model // cfg.n_head, cfg.rope_base)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        self.apply(self._init)
        for name, p in self.named_parameters():  # GPT-2: scale residual projections by depth
            if name.endswith(("proj.weight", "w2.weight")):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear | nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, T) → (B, T, V) logits with a causal mask."""
        x = self.embed(tokens)
        if self.cond is not None:
            x = x + self.cond(tokens[:, :1])
        for block in self.blocks:
            x = block(x, self.cos, self.sin)
        return self.head(self.norm(x))

    def init_state(self, batch: int, device: torch.device | str) -> dict[str, Any]:
        """Empty key-value cache, preallocated to `max_length` positions.

        Zeroed, not `torch.empty`: the first touch of each page costs a page fault either way, and
        faulting it in one sequential fill measured cheaper than on the scattered per-step writes.
        """
        shape = (batch, self.cfg.n_head, self.max_length, self.cfg.d_model // self.cfg.n_head)
        dtype = self.embed.weight.dtype
        return {"pos": 0, "layers": [{"k": torch.zeros(shape, device=device, dtype=dtype),
                                      "v": torch.zeros(shape, device=device, dtype=dtype)}
                                     for _ in self.blocks]}

    def select_state(self, state: dict[str, Any], index: torch.Tensor) -> dict[str, Any]:
        """Keep batch entries `index` (increasing) of a cache, in place: a prefix view of the buffers.

        Only the positions written so far are moved, into the first len(index) rows of the same
        storage, so compaction allocates no new cache (the generic `select_state` copied the whole
        (B, H, max_length, D) buffers into fresh memory: 30 % of sampling time when run per step).
        The state passed in is consumed: its tensors now hold the compacted rows.
        """
        pos, n = state["pos"], len(index)
        layers = []
        for cache in state["layers"]:
            new = {}
            for key, buf in cache.items():
                buf[:n, :, :pos] = buf[:, :, :pos].index_select(0, index)
                new[key] = buf[:n]
            layers.append(new)
        out = {**state, "layers": layers}
        if "cond" in state:
            out["cond"] = state["cond"].index_select(0, index)
        return out

    def step(self, tokens: torch.Tensor, state: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        """Feed one token per sequence, (B,) → next-token logits (B, V); advances the cache."""
        pos = state["pos"]
        if pos >= self.max_length:
            raise InputError(f"sequence longer than the model's max_length {self.max_length}")
        x = self.embed(tokens)[:, None, :]
        if self.cond is not None:
            if pos == 0:
                state["cond"] = self.cond(tokens)[:, None, :]
            x = x + state["cond"]
        for block, cache in zip(self.blocks, state["layers"], strict=True):
            x = block.step(x, self.cos, self.sin, cache, pos)
        state["pos"] = pos + 1
        return self.head(self.norm(x))[:, 0], state

    @torch.no_grad()
    def generate(self, prefix: torch.Tensor, steps: int, *, temperature: float = 1.0,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Plain unconstrained sampling with the cache (for inspection; flows use grammar masks)."""
        state = self.init_state(prefix.size(0), prefix.device)
        for t in range(prefix.size(1)):
            logits, state = self.step(prefix[:, t], state)
        out = [prefix]
        for _ in range(steps):
            nxt = torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=generator)
            out.append(nxt)
            logits, state = self.step(nxt[:, 0], state)
        return torch.cat(out, dim=1)


class TransformerGenerator(AutoregressiveGenerator):
    """Class-conditioned flow generator: a small GPT over `TokenCodec` sequences."""

    name = "transformer"
    config_class = GPTConfig

    @classmethod
    def tiny_config(cls) -> GPTConfig:
        return GPTConfig(n_layer=1, n_head=2, d_model=16, mlp_hidden=32, max_epochs=2, min_steps=0, max_time=None,
                         batch_size=32, warmup_steps=2, progress=False, sample_batch=64)

    def _build_module(self, vocab_size: int, max_length: int) -> nn.Module:
        return GPT(self.config_, vocab_size, max_length)
