"""Numerics of the transformer: causal mask, KV-cached decoding ≡ full forward, grammar-valid sampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from netsynth.codecs.tokens import K_BIN, K_EOS, K_SIZE, TokenCodec
from netsynth.errors import InputError
from netsynth.models._autoregressive import Grammar, sample_tokens
from netsynth.models.gpt import GPT, GPTConfig, TransformerGenerator
from test_contract import tiny_flows


def small_gpt(vocab: int = 50, max_length: int = 24) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(n_layer=2, n_head=2, d_model=32, mlp_hidden=64), vocab, max_length).eval()


def test_causal_mask():
    model = small_gpt()
    x = torch.randint(0, 50, (3, 20), generator=torch.Generator().manual_seed(1))
    y = x.clone()
    y[:, 12:] = (y[:, 12:] + 7) % 50
    with torch.no_grad():
        a, b = model(x), model(y)
    torch.testing.assert_close(a[:, :12], b[:, :12])
    assert (a[:, 12:] - b[:, 12:]).abs().max() > 1e-4


def test_cached_decoding_matches_full_forward():
    model = small_gpt()
    x = torch.randint(0, 50, (4, 24), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = model(x)
        state = model.init_state(4, "cpu")
        steps = []
        for t in range(x.size(1)):
            logits, state = model.step(x[:, t], state)
            steps.append(logits)
    assert (torch.stack(steps, 1) - full).abs().max().item() < 1e-4
    with pytest.raises(InputError):
        model.step(x[:, 0], state)


def test_default_size_is_in_the_1_to_2_million_range():
    model = GPT(GPTConfig(), 781, 63)
    n = sum(p.numel() for p in model.parameters())
    assert n == 853_120 + 2 * 781 * 128 == 1_053_056
    assert 1_000_000 <= n <= 2_000_000


def test_grammar_constrained_sampling_is_well_formed():
    flows = tiny_flows(20)
    codec = TokenCodec.fit(flows)
    model = small_gpt(codec.vocab_size, codec.max_length)
    grammar = Grammar(codec, "cpu", [0x02, 0x10])
    prefix = torch.tensor([[codec.class_token("alpha"), codec.proto_token(p)] for p in (6, 17) * 20])
    is_tcp = prefix[:, 1] == codec.proto_token(6)
    toks = sample_tokens(model, grammar, prefix, is_tcp, torch.full((40,), 1000), max_length=codec.max_length,
                         generator=torch.Generator().manual_seed(0)).numpy()
    dec = codec.decode(toks)
    assert (dec["n_packets"] >= 1).all() and (dec["n_packets"] <= codec.max_packets).all()
    assert (dec["tcp_flags"][~is_tcp.numpy()] == 0).all()
    assert set(np.unique(dec["tcp_flags"][is_tcp.numpy()]).tolist()) <= {0, 0x02, 0x10}
    assert (dec["iat"][:, 0] == 0).all() and (dec["payload_len"] <= 1000 + codec.bin_width).all()
    ended = (codec.kinds()[toks] == K_EOS).sum(axis=1)
    assert ((ended == 1) | (dec["n_packets"] == codec.max_packets)).all()
    # every tokenised real flow is accepted by the grammar at every step
    tokens, lengths = codec.encode(flows)
    kinds = torch.as_tensor(codec.kinds())
    loose = Grammar(codec, "cpu")
    for row, n, proto in zip(tokens[:15], lengths[:15], flows.protocol[:15], strict=True):
        count = 0
        for t in range(2, n):
            ok = loose.mask(kinds[row[t - 1]][None], torch.tensor([count]), torch.tensor([proto == 6]),
                            torch.tensor([1460]))
            assert ok[0, row[t]], (t, row[t])
            count += int(codec.kinds()[row[t]] in (K_SIZE, K_BIN))


def test_generate_and_top_k():
    flows = tiny_flows(15)
    cfg = TransformerGenerator.tiny_config().replace(top_k=3, temperature=0.8)
    model = TransformerGenerator(cfg, device="cpu", random_state=0).fit(flows)
    s = model.sample(12, random_state=0)
    s.validate()
    out = model.module_.generate(torch.tensor([[2, 5]]), 5, generator=torch.Generator().manual_seed(0))
    assert out.shape == (1, 7)
    with pytest.raises(InputError):
        GPTConfig(temperature=0)
    with pytest.raises(InputError):
        GPTConfig(d_model=30, n_head=4)


def test_min_steps_raises_epochs_for_small_tables():
    from netsynth.models.gpt import GPTConfig

    cfg = GPTConfig(batch_size=32, max_epochs=12, min_steps=2000)
    assert cfg.train_settings(5923).max_epochs == 12  # 186 steps/epoch: 12 epochs are already 2,232 steps
    assert cfg.train_settings(1500).max_epochs == 43  # 47 steps/epoch -> ceil(2000 / 47)
    assert cfg.train_settings().max_epochs == 12
    assert GPTConfig(min_steps=0).train_settings(100).max_epochs == 12
