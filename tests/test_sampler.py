"""The batched token sampler's pieces: additive grammar table, inverse-CDF draws, top-k, compaction."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from netsynth.codecs.tokens import K_BIN, K_EOS, K_SIZE, K_TIME, TokenCodec
from netsynth.models._autoregressive import (
    Grammar,
    _top_k_filter,
    sample_categorical,
    sample_tokens,
    select_state,
)
from netsynth.models.gpt import GPT, GPTConfig
from netsynth.models.ssm import MambaLM, SSMConfig
from test_contract import tiny_flows


@pytest.fixture(scope="module")
def codec() -> TokenCodec:
    return TokenCodec.fit(tiny_flows(40))


def test_additive_table_equals_the_per_step_mask_in_every_state(codec):
    """Every (kind, packet count, TCP, cap) the sampler can meet: the table row is the old mask."""
    grammar = Grammar(codec, "cpu", [0x02, 0x10, 0x12])
    caps = [0, 10, 63, 64, 500, 1000, 1460]  # 0 and 10: below most sizes, exercises the empty fallback
    combos = list(itertools.product(range(8), [0, 1, 2, codec.max_packets - 1, codec.max_packets],
                                    [False, True], caps))
    kind = torch.tensor([c[0] for c in combos])
    n_packets = torch.tensor([c[1] for c in combos])
    is_tcp = torch.tensor([c[2] for c in combos])
    cap = torch.tensor([c[3] for c in combos])
    reference = grammar.mask(kind, n_packets, is_tcp, cap)
    table, base = grammar.additive_table(is_tcp, cap)
    assert table.shape[0] == 2 * Grammar.N_STATES * len(caps) * 2
    idx = base + Grammar.N_STATES * (n_packets == 1).long() + grammar.state(kind, n_packets)
    rows = table[idx]
    assert torch.equal(rows == 0, reference)
    assert torch.isinf(rows[~reference]).all() and (rows[~reference] < 0).all()
    assert reference.any(dim=1).all()  # never a row with nothing allowed
    # FULL really is reached: after the N-th packet's TIME only EOS is allowed
    full = (kind == K_TIME) & (n_packets == codec.max_packets)
    assert (grammar.kind[reference[full].nonzero()[:, 1]] == K_EOS).all()


def test_inverse_cdf_frequencies_match_softmax():
    """200,000 draws per row: every frequency within 0.005 of softmax (≥ 4.5 binomial σ for p ≤ 0.5)."""
    scores = torch.tensor([[0.0, 1.0, float("-inf"), 2.0, -1.0, float("-inf")],
                           [float("-inf"), 0.5, 0.5, float("-inf"), float("-inf"), 3.0],
                           [float("-inf")] * 5 + [0.0]])
    n = 200_000
    gen = torch.Generator().manual_seed(0)
    draws = sample_categorical(scores.repeat_interleave(n, 0), gen).view(3, n)
    freq = torch.stack([torch.bincount(d, minlength=6) for d in draws]).double() / n
    probs = torch.softmax(scores.double(), -1)
    assert (freq - probs).abs().max() < 0.005
    assert (freq[probs == 0] == 0).all()  # a token of probability 0 is never drawn


def test_inverse_cdf_never_runs_past_the_last_allowed_token():
    """u close to the total (here forced by a tiny tail mass) must not pick the masked tail."""
    scores = torch.full((50_000, 781), float("-inf"))
    scores[:, 0] = 0.0
    scores[:, 1] = -30.0  # probability ~1e-13: rounds away in float32 cumsums
    out = sample_categorical(scores, torch.Generator().manual_seed(1))
    assert set(out.unique().tolist()) <= {0, 1}


def test_top_k_keeps_the_k_best_and_ties():
    scores = torch.tensor([[3.0, 1.0, 2.0, 2.0, float("-inf"), 0.5]])
    kept = torch.isfinite(_top_k_filter(scores, 2))[0].tolist()
    assert kept == [True, False, True, True, False, False]
    assert torch.equal(_top_k_filter(scores, None), scores)
    assert torch.equal(_top_k_filter(scores, 6), scores)


def _tiny_gpt(codec: TokenCodec) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(n_layer=2, n_head=2, d_model=32, mlp_hidden=64), codec.vocab_size, codec.max_length).eval()


def test_gpt_select_state_matches_generic_selection(codec):
    """The transformer's own compaction (in place, filled positions only) gives the same next logits."""
    model = _tiny_gpt(codec)
    tokens = torch.randint(2, codec.vocab_size, (6, 9), generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        state = model.init_state(6, "cpu")
        for t in range(8):
            _, state = model.step(tokens[:, t], state)
        keep = torch.tensor([0, 2, 5])
        copy = select_state(state, torch.arange(6))  # model.select_state consumes its input
        a, _ = model.step(tokens[keep, 8], model.select_state(state, keep))
        b, _ = model.step(tokens[keep, 8], select_state(copy, keep))
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


@pytest.mark.parametrize("family", ["transformer", "ssm"])
@pytest.mark.parametrize("compact_fraction", [0.0, 0.25, 1.0])
def test_sampling_is_valid_and_seeded_whatever_the_compaction(codec, family, compact_fraction):
    """Finished rows carried along (PAD only) or dropped at once: well-formed, and one seed one output."""
    if family == "transformer":
        model = _tiny_gpt(codec)
    else:
        torch.manual_seed(0)
        model = MambaLM(SSMConfig(d_model=32, n_layer=2, d_state=8, headdim=16, chunk_size=8),
                        codec.vocab_size, codec.max_length).eval()
    grammar = Grammar(codec, "cpu", [0x02, 0x10])
    protos = [6, 17] * 24
    prefix = torch.tensor([[codec.class_token(codec.classes[i % len(codec.classes)]), codec.proto_token(p)]
                           for i, p in enumerate(protos)])
    is_tcp = torch.tensor([p == 6 for p in protos])
    cap = torch.tensor([1000, 40] * 24)

    def run(seed: int) -> np.ndarray:
        return sample_tokens(model, grammar, prefix, is_tcp, cap, max_length=codec.max_length,
                             generator=torch.Generator().manual_seed(seed), compact_fraction=compact_fraction).numpy()

    toks = run(0)
    assert np.array_equal(toks, run(0))
    # every sampled token is allowed by the reference mask given its prefix; after EOS only PAD
    kinds = torch.as_tensor(codec.kinds())
    t_toks = torch.as_tensor(toks)
    count = torch.zeros(len(toks), dtype=torch.long)
    ended = torch.zeros(len(toks), dtype=torch.bool)
    for t in range(2, toks.shape[1]):
        prev = kinds[t_toks[:, t - 1]]
        ended |= prev == K_EOS
        ok = grammar.mask(prev, count, is_tcp, cap)[torch.arange(len(toks)), t_toks[:, t]]
        assert (ok | ended).all(), t
        assert (t_toks[ended, t] == 0).all()
        count += ((kinds[t_toks[:, t]] == K_SIZE) | (kinds[t_toks[:, t]] == K_BIN)).long()
    dec = codec.decode(toks)
    assert (dec["n_packets"] >= 1).all() and (dec["iat"][:, 0] == 0).all()
