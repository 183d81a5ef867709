"""The ssm's per-token state update, deferred decay (current) vs the two-pass update, side by side.

    OMP_NUM_THREADS=1 python benchmarks/ssm_step.py [--repeats 3] [--out benchmarks/results]

For the default ssm size (d_state 16, 8 heads × 48 channels, 4 layers) at sample batches 128/256/512,
times one token's state work for all layers, interleaving the two forms in each repeat (this machine is
noisy): the previous update `h ·= decay; h += b ⊗ Δx; y = cᵀh` (two passes over the (B, 16, 384) state
plus the read-out) against `Mamba2Mixer.step`'s `h̃ += e^−L (b ⊗ Δx); y = e^L cᵀh̃` (one pass plus the
read-out; the occasional fold is left out, as it runs only when some head's decay passes e^−50).
Both get the same random inputs. Prints and writes ssm_step.{md,json}: ms per token and the ratio.
The sampler's end-to-end share of the matmul rate is benchmarks/models.py's `throughput`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
N_STATE, HEADS, HEADDIM, LAYERS, TOKENS = 16, 8, 48, 4, 200


def two_pass(h, decay, b, xs, c):
    h.mul_(decay).addcmul_(b[:, :, None], xs)
    return torch.bmm(c[:, None, :], h)


def deferred(h, scale_in, scale_out, b, xs, c):
    h.addcmul_(b[:, :, None], xs * scale_in)
    return torch.bmm(c[:, None, :], h) * scale_out


def time_form(fn, states, args, tokens: int) -> float:
    t0 = time.perf_counter()
    for _ in range(tokens):
        for h in states:
            fn(h, *args)
    return (time.perf_counter() - t0) / tokens * 1e3


def measure(batch: int, repeats: int) -> dict:
    g = torch.Generator().manual_seed(0)
    hp = HEADS * HEADDIM
    states_a = [torch.zeros(batch, N_STATE, hp) for _ in range(LAYERS)]
    states_b = [torch.zeros(batch, N_STATE, hp) for _ in range(LAYERS)]
    b, c = torch.randn(batch, N_STATE, generator=g), torch.randn(batch, N_STATE, generator=g)
    xs = torch.randn(batch, 1, hp, generator=g)
    decay = torch.rand(batch, 1, hp, generator=g)
    scale = torch.rand(batch, 1, hp, generator=g)
    old, new = [], []
    for _ in range(repeats):
        old.append(time_form(two_pass, states_a, (decay, b, xs, c), TOKENS))
        new.append(time_form(deferred, states_b, (scale, scale, b, xs, c), TOKENS))
    return {"batch": batch, "state_mb_per_layer": round(batch * N_STATE * hp * 4 / 2**20, 1),
            "two_pass_ms": round(min(old), 3), "deferred_ms": round(min(new), 3),
            "ratio": round(min(old) / min(new), 2), "all_two_pass_ms": old, "all_deferred_ms": new}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    rows = [measure(batch, args.repeats) for batch in (128, 256, 512)]
    lines = ["# ssm state update per token: two passes vs deferred decay", "",
             "Command: `OMP_NUM_THREADS=1 python benchmarks/ssm_step.py`; 1 thread, 4 layers of a (B, 16, 384) "
             f"float32 state, {TOKENS} tokens per timing, best of {args.repeats} interleaved repeats.", "",
             "| batch | state per layer (MiB) | two passes (ms/token) | deferred (ms/token) | speed-up |",
             "|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['batch']} | {r['state_mb_per_layer']} | {r['two_pass_ms']} | {r['deferred_ms']} | "
              f"{r['ratio']}× |" for r in rows]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ssm_step.json").write_text(json.dumps({"rows": rows}, indent=2))
    (args.out / "ssm_step.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
