"""Numerics of the diffusion family: forward process, DDIM sampler, classifier-free guidance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from netsynth.codecs.grid import N_CHANNELS
from netsynth.models.diffusion import (
    DiffusionConfig,
    DiffusionGenerator,
    GaussianDiffusion,
    cosine_alpha_bar,
    q_sample,
)
from test_contract import tiny_flows

CFG = DiffusionConfig(d_model=16, n_layer=1, n_head=2, mlp_hidden=32, timesteps=100, sample_steps=8)


@pytest.fixture(scope="module")
def model():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        m = GaussianDiffusion(CFG, n_classes=3, n_protocols=3, max_packets=6).eval()
        for p in m.parameters():  # the output layer starts at zero; make the network non-trivial
            p.data.add_(torch.randn_like(p) * 0.1)
    return m


def test_cosine_schedule_is_monotone_in_unit_interval():
    ab = cosine_alpha_bar(1000)
    assert ab.shape == (1000,)
    assert 0.99 < float(ab[0]) <= 1 and 0 < float(ab[-1]) < 1e-3
    assert torch.all(ab[1:] < ab[:-1])


def test_q_sample_closed_form():
    g = torch.Generator().manual_seed(0)
    ab = cosine_alpha_bar(100)
    x0 = torch.randn(5, 6, N_CHANNELS, generator=g)
    eps = torch.randn(5, 6, N_CHANNELS, generator=g)
    t = torch.tensor([0, 10, 50, 90, 99])
    got = q_sample(x0, t, eps, ab)
    for i, ti in enumerate(t):
        want = ab[ti].sqrt() * x0[i] + (1 - ab[ti]).sqrt() * eps[i]
        torch.testing.assert_close(got[i], want)


def test_ddim_shapes_range_and_determinism(model):
    y = torch.tensor([0, 1, 2, 0])
    proto = torch.tensor([0, 1, 0, 2])
    a = model.ddim_sample(y, proto, (6, N_CHANNELS), steps=8, generator=torch.Generator().manual_seed(1))
    b = model.ddim_sample(y, proto, (6, N_CHANNELS), steps=8, generator=torch.Generator().manual_seed(1))
    assert a.shape == (4, 6, N_CHANNELS)
    assert torch.isfinite(a).all() and a.min() >= -1 and a.max() <= 1
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_cfg_uses_null_class_only_when_guided(model, monkeypatch):
    seen = []
    real = model.denoiser.forward

    def spy(x, t, y, proto):
        seen.append(y.clone())
        return real(x, t, y, proto)

    monkeypatch.setattr(model.denoiser, "forward", spy)
    y, proto = torch.tensor([0, 2]), torch.tensor([0, 1])
    x = torch.zeros(2, 6, N_CHANNELS)
    t = torch.tensor([50, 50])
    plain = model.guided_eps(x, t, y, proto, 1.0)
    assert len(seen) == 1 and not (seen[0] == model.null_class).any()
    seen.clear()
    guided = model.guided_eps(x, t, y, proto, 3.0)
    assert len(seen) == 1 and (seen[0] == model.null_class).sum() == 2  # one batched (class, null) pass
    null = real(x, t, torch.full_like(y, model.null_class), proto)
    torch.testing.assert_close(guided, null + 3.0 * (plain - null), rtol=1e-5, atol=1e-5)


def test_label_dropout_reaches_null_class(model, monkeypatch):
    seen = []
    real = model.denoiser.forward
    monkeypatch.setattr(model.denoiser, "forward", lambda x, t, y, p: (seen.append(y), real(x, t, y, p))[1])
    x0 = torch.zeros(400, 6, N_CHANNELS)
    model.loss(x0, torch.zeros(400, dtype=torch.long), torch.zeros(400, dtype=torch.long),
               generator=torch.Generator().manual_seed(0))
    share = float((seen[0] == model.null_class).float().mean())
    assert 0.05 < share < 0.15  # p_uncond = 0.1


def test_guidance_changes_the_ddim_output(model):
    y, proto = torch.tensor([0, 1, 2]), torch.tensor([0, 0, 1])
    a, b = (model.ddim_sample(y, proto, (6, N_CHANNELS), steps=8, cond_scale=s,
                              generator=torch.Generator().manual_seed(0)) for s in (1.0, 3.0))
    assert not torch.allclose(a, b)


def test_cond_scale_and_snap_options_stay_valid():
    flows = tiny_flows(n_per_class=20, width=6, seed=1)
    cfg = DiffusionGenerator.tiny_config()
    gen = DiffusionGenerator(cfg, device="cpu", random_state=0).fit(flows)
    a = gen.sample(30, random_state=3)
    gen.config = cfg.replace(cond_scale=3.0)
    b = gen.sample(30, random_state=3)
    gen.config = cfg.replace(snap_sizes=False)
    c = gen.sample(30, random_state=3)
    for table in (a, b, c):
        table.validate()
    labels = a.label.astype(str)
    for cl in np.unique(labels):  # snapped sizes come from the class's training sizes
        assert set(np.unique(a.payload_len[labels == cl])) <= set(gen.codec_.sizes_by_class[cl]) | {0}


def test_default_parameter_count():
    """Documented default size: N = 20, one label row (the null class), one protocol row."""
    m = GaussianDiffusion(DiffusionConfig(), n_classes=0, n_protocols=1, max_packets=20)
    assert sum(p.numel() for p in m.parameters()) == 1_226_636


@pytest.fixture(scope="module")
def fitted():
    flows = tiny_flows(n_per_class=20, width=6, seed=2)
    return flows, DiffusionGenerator(DiffusionGenerator.tiny_config(), device="cpu", random_state=0).fit(flows)


def test_save_load_keeps_quantile_tables_and_samples(fitted, tmp_path):
    flows, gen = fitted
    assert gen.codec_.size_transform == "class_quantile"
    assert gen.codec_.size_values == np.unique(flows.payload_len[flows.mask]).tolist()
    c = flows.classes[0]
    rows = flows.label.astype(str) == c
    assert gen.codec_.class_size_tables[c][0]["values"] == np.unique(flows.payload_len[rows, 0]).tolist()
    gen.save(tmp_path / "m")
    again = DiffusionGenerator.load(tmp_path / "m", device="cpu")
    assert again.codec_ == gen.codec_
    for snap in (True, False):
        gen.config = again.config = gen.config_.replace(snap_sizes=snap)
        a, b = gen.sample(40, random_state=5), again.sample(40, random_state=5)
        np.testing.assert_array_equal(a.payload_len, b.payload_len)
        np.testing.assert_array_equal(a.direction, b.direction)
        np.testing.assert_array_equal(a.n_packets, b.n_packets)


def test_sampled_sizes_are_the_class_position_training_sizes(fitted):
    flows, gen = fitted
    gen.config = gen.config_.replace(snap_sizes=False)
    table = gen.sample(60, random_state=1)
    labels, train_labels = table.label.astype(str), flows.label.astype(str)
    for c in np.unique(labels):
        for j in range(table.max_packets):
            kept = table.mask[:, j] & (labels == c)
            seen = flows.payload_len[(train_labels == c) & flows.mask[:, j], j]
            if kept.any() and len(seen):
                assert set(np.unique(table.payload_len[kept, j])) <= set(np.unique(seen))


@pytest.mark.parametrize("transform", ["log", "quantile"])
def test_other_size_transforms_still_selectable(transform):
    flows = tiny_flows(n_per_class=10, width=6, seed=4)
    cfg = DiffusionGenerator.tiny_config().replace(size_transform=transform, class_direction=True)
    gen = DiffusionGenerator(cfg, device="cpu", random_state=0).fit(flows)
    assert gen.codec_.size_transform == transform and not gen.codec_.class_size_tables
    assert gen.codec_.class_direction_p
    gen.sample(10, random_state=0).validate()


class _Oracle(torch.nn.Module):
    """A denoiser that knows x0: returns the exact ε (or v) for the x_t it is given."""

    def __init__(self, x0: torch.Tensor, alpha_bar: torch.Tensor, prediction: str) -> None:
        super().__init__()
        self.x0, self.alpha_bar, self.prediction = x0, alpha_bar, prediction
        self.null_class = 2

    def forward(self, x, t, y, proto):
        ab = self.alpha_bar[t].view(-1, 1, 1)
        eps = (x - ab.sqrt() * self.x0) / (1 - ab).sqrt()
        return eps if self.prediction == "eps" else ab.sqrt() * eps - (1 - ab).sqrt() * self.x0


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_ddim_with_an_exact_denoiser_returns_x0(prediction):
    """Both parameterisations turn the network output into x0 correctly: an oracle recovers x0."""
    cfg = CFG.replace(prediction=prediction)
    m = GaussianDiffusion(cfg, n_classes=2, n_protocols=1, max_packets=6)
    x0 = torch.rand(3, 6, N_CHANNELS, generator=torch.Generator().manual_seed(0)) * 1.8 - 0.9
    m.denoiser = _Oracle(x0, m.alpha_bar, prediction)
    out = m.ddim_sample(torch.zeros(3, dtype=torch.long), torch.zeros(3, dtype=torch.long), (6, N_CHANNELS),
                        steps=5, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(out, x0, rtol=0, atol=1e-4)


def test_v_prediction_loss_target():
    """With prediction=v the loss is the MSE to √ᾱ ε − √(1−ᾱ) x0: zero for the oracle."""
    cfg = CFG.replace(prediction="v", p_uncond=0.0)
    m = GaussianDiffusion(cfg, n_classes=2, n_protocols=1, max_packets=6)
    x0 = torch.rand(4, 6, N_CHANNELS, generator=torch.Generator().manual_seed(2)) * 2 - 1
    m.denoiser = _Oracle(x0, m.alpha_bar, "v")
    loss = m.loss(x0, torch.zeros(4, dtype=torch.long), torch.zeros(4, dtype=torch.long),
                  generator=torch.Generator().manual_seed(3))
    assert float(loss) < 1e-8


def test_adaln_blocks_start_as_identity():
    """adaLN-Zero: gates start at zero, so every block passes its input through unchanged."""
    from netsynth.models.diffusion import Block

    block = Block(CFG.replace(conditioning="adaln"))
    x = torch.randn(2, 6, CFG.d_model, generator=torch.Generator().manual_seed(0))
    c = torch.randn(2, CFG.d_model, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(block(x, c), x, rtol=0, atol=0)
    assert block.cond.out_features == 6 * CFG.d_model and not block.norm1.elementwise_affine


def test_class_weights_balance_the_classes():
    from netsynth.models._train import _batches
    from netsynth.models.diffusion import class_weights

    labels = np.array(["a"] * 90 + ["b"] * 10)
    assert class_weights(labels, 0.0) is None
    w = class_weights(labels, 1.0)
    assert float(w[:90].sum()) == pytest.approx(float(w[90:].sum()))
    draws = torch.cat(_batches(100, 10, torch.Generator().manual_seed(0), weights=w))
    assert len(draws) == 100 and 0.35 < float((draws >= 90).float().mean()) < 0.65
    from netsynth.models._train import _weighted_draws

    many = _weighted_draws(w, 20_000, torch.Generator().manual_seed(1))
    assert int(many.min()) >= 0 and int(many.max()) <= 99
    assert abs(float((many >= 90).float().mean()) - 0.5) < 0.02
    assert float(((many >= 45) & (many < 90)).float().mean()) == pytest.approx(0.25, abs=0.02)
    half = class_weights(labels, 0.5)
    assert float(half[90:].sum() / half.sum()) == pytest.approx(np.sqrt(10) / (np.sqrt(10) + np.sqrt(90)))


@pytest.mark.parametrize("bad", [{"class_balance": 1.5}, {"conditioning": "film"}, {"prediction": "x0"}])
def test_bad_diffusion_options_are_refused(bad):
    from netsynth.errors import InputError

    with pytest.raises(InputError):
        CFG.replace(**bad)


def test_model_saved_before_the_new_options_loads_as_trained(tmp_path):
    """A model.json without conditioning/prediction/class_balance was an additive-ε model: it must load
    as one (its weights have no adaLN rows), while a fresh config gets today's defaults."""
    import json

    flows = tiny_flows(n_per_class=10, width=6, seed=4)
    cfg = DiffusionGenerator.tiny_config().replace(conditioning="add", prediction="eps", class_balance=0.0)
    gen = DiffusionGenerator(cfg, device="cpu", random_state=0).fit(flows)
    gen.save(tmp_path / "m")
    doc = json.loads((tmp_path / "m" / "model.json").read_text())
    for key in ("conditioning", "prediction", "class_balance"):
        del doc["config"][key]
    (tmp_path / "m" / "model.json").write_text(json.dumps(doc))
    again = DiffusionGenerator.load(tmp_path / "m", device="cpu")
    assert (again.config_.conditioning, again.config_.prediction, again.config_.class_balance) == ("add", "eps", 0.0)
    a, b = gen.sample(20, random_state=1), again.sample(20, random_state=1)
    np.testing.assert_array_equal(a.payload_len, b.payload_len)
    assert (DiffusionConfig().conditioning, DiffusionConfig().prediction, DiffusionConfig().class_balance) == (
        "adaln", "v", 0.5)
