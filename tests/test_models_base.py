"""Base-class helpers: `--set` parsing, class proportions, splits, and the shared training loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from netsynth.errors import InputError
from netsynth.models import config_from_overrides, get_generator
from netsynth.models._train import TrainSettings, lr_factor, train
from netsynth.models.base import class_targets, endpoint_stats, stratified_split
from netsynth.models.baselines import MarkovConfig
from netsynth.models.gpt import GPTConfig
from test_contract import tiny_flows


def test_overrides_parse_to_field_types():
    cfg = config_from_overrides(get_generator("transformer"),
                                {"n_layer": "2", "lr": "1e-3", "top_k": "none", "ema": "0.99",
                                 "progress": "false", "rare_sizes": "bin", "max_time": "30"})
    assert isinstance(cfg, GPTConfig)
    assert (cfg.n_layer, cfg.lr, cfg.top_k, cfg.ema, cfg.progress, cfg.rare_sizes, cfg.max_time) == (
        2, 1e-3, None, 0.99, False, "bin", 30.0)
    m = config_from_overrides(MarkovConfig, {"alpha_grid": "0.1,1"})
    assert m.alpha_grid == (0.1, 1.0)


@pytest.mark.parametrize(("overrides", "match"), [
    ({"n_layers": "2"}, "valid: .*n_layer"),
    ({"n_layer": "two"}, "expected int"),
    ({"progress": "maybe"}, "boolean"),
    ({"rare_sizes": "exact"}, "choose one of"),
    ({"temperature": "0"}, "temperature"),
])
def test_override_errors(overrides, match):
    with pytest.raises(InputError, match=match):
        config_from_overrides(GPTConfig, overrides)


def test_class_targets_largest_remainder():
    counts = {"a": 5, "b": 3, "c": 2}
    t = class_targets(7, counts)
    assert sum(t.values()) == 7 and t == {"a": 4, "b": 2, "c": 1}
    assert sum(class_targets(1001, counts).values()) == 1001
    with pytest.raises(InputError):
        class_targets(-1, counts)
    with pytest.raises(InputError, match="known: a, b, c"):
        class_targets({"z": 1}, counts)


def test_stratified_split_and_endpoints():
    flows = tiny_flows()
    tr, va = stratified_split(flows.label.astype(str), 0.1, np.random.default_rng(0))
    assert len(set(tr) & set(va)) == 0 and len(tr) + len(va) == len(flows)
    assert set(flows.label[va]) == set(flows.label)
    ep = endpoint_stats(flows)["alpha"]
    assert abs(sum(ep["protocol"].values()) - 1) < 1e-9 and set(ep["dst_port"]) <= {"53", "443"}
    assert set(ep["ip_version"]) <= {"4", "6"}


def _toy_problem():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 4, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 0.0]) + 0.1 * torch.randn(200, generator=g)
    return x, y


def _loss(module, batch):
    x, y = batch
    return torch.nn.functional.mse_loss(module(x).squeeze(-1), y)


def _fit(settings, seed=0):
    torch.manual_seed(seed)
    module = torch.nn.Linear(4, 1)
    x, y = _toy_problem()
    summary = train(module, _loss, [x[:160], y[:160]], [x[160:], y[160:]], settings, device="cpu",
                    generator=torch.Generator().manual_seed(seed))
    return module, summary


def test_training_loop_learns_deterministically_and_early_stops():
    s = TrainSettings(lr=0.05, batch_size=16, max_epochs=30, warmup_steps=5, progress=False, patience=2,
                      ema=0.9)
    m1, sum1 = _fit(s)
    m2, _ = _fit(s)
    assert torch.equal(m1.weight, m2.weight)
    assert sum1["best_val_loss"] < 0.1 and sum1["epochs"] <= 30 and sum1["steps"] > 0
    assert {"epochs", "best_val_loss", "seconds", "steps", "stop_reason"} <= set(sum1)
    _, short = _fit(TrainSettings(max_epochs=50, max_time=0.0, progress=False))
    assert short["stop_reason"] == "max_time" and short["epochs"] == 1
    assert lr_factor(0, 100, 10, 0.1) == pytest.approx(0.1) and lr_factor(100, 100, 10, 0.1) == pytest.approx(0.1)


def test_training_resumes_from_checkpoint(tmp_path):
    settings = TrainSettings(lr=0.05, batch_size=16, warmup_steps=5, progress=False, patience=100,
                             max_epochs=6, checkpoint_dir=str(tmp_path / "ck"))
    full, _ = _fit(settings.__class__(**{**settings.__dict__, "checkpoint_dir": None}))
    calls = {"n": 0}

    def flaky(module, batch):  # dies in the middle of epoch 3 (10 steps per epoch)
        calls["n"] += 1
        if calls["n"] == 25:
            raise KeyboardInterrupt
        return _loss(module, batch)

    x, y = _toy_problem()
    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        train(torch.nn.Linear(4, 1), flaky, [x[:160], y[:160]], [x[160:], y[160:]], settings, device="cpu",
              generator=torch.Generator().manual_seed(0))
    assert (tmp_path / "ck" / "checkpoint.safetensors").is_file()
    torch.manual_seed(123)  # a different init: the checkpoint must overwrite it
    module = torch.nn.Linear(4, 1)
    summary = train(module, _loss, [x[:160], y[:160]], [x[160:], y[160:]], settings, device="cpu",
                    generator=torch.Generator().manual_seed(99))
    assert summary["epochs"] == 6
    torch.testing.assert_close(module.weight, full.weight)


def test_schedule_horizon_shrinks_only_when_the_budget_binds():
    from netsynth.models._train import schedule_horizon

    assert schedule_horizon(1000, 100, 10.0, None) == 1000  # no budget: max_epochs sizes the schedule
    assert schedule_horizon(1000, 100, 10.0, 1000.0) == 1000  # budget allows more: unchanged
    assert schedule_horizon(1000, 100, 10.0, 50.0) == int(100 * 0.95 * 5)  # ~4.75 epochs fit
    assert schedule_horizon(1000, 100, 10.0, 1.0) == 100  # never shorter than what is already done
    # the cosine then reaches its floor at the shortened horizon
    assert lr_factor(475, 475, 10, 0.1) == pytest.approx(0.1)


def test_time_capped_run_decays_and_epoch_run_keeps_its_schedule(monkeypatch):
    import netsynth.models._train as tr

    clock = {"t": 0.0}

    def fake_clock():  # every call advances 0.05 s: a deterministic "slow" machine
        clock["t"] += 0.05
        return clock["t"]

    lrs: list[float] = []
    real_step = tr._step

    def spy(module, loss_fn, opt, ema, batch, settings, step, total, device):
        out = real_step(module, loss_fn, opt, ema, batch, settings, step, total, device)
        lrs.append(opt.param_groups[0]["lr"])
        return out

    monkeypatch.setattr(tr, "_step", spy)
    monkeypatch.setattr(tr.time, "perf_counter", fake_clock)
    base = dict(lr=0.05, batch_size=16, warmup_steps=2, progress=False, patience=100, max_epochs=100,
                min_lr_ratio=0.1)
    _, capped = _fit(TrainSettings(**base, max_time=5.0))
    assert capped["stop_reason"] == "max_time" and capped["schedule_steps"] < 100 * 10
    assert lrs[-1] < 0.05 * 0.2  # decayed close to the floor (0.005) before time ran out
    lrs.clear()
    # a generous budget: the run ends on max_epochs with exactly the schedule of a run without max_time
    _, free = _fit(TrainSettings(**{**base, "max_epochs": 3}, max_time=1e6))
    lrs_free = list(lrs)
    lrs.clear()
    _, none = _fit(TrainSettings(**{**base, "max_epochs": 3}, max_time=None))
    assert free["stop_reason"] == "max_epochs" and free["schedule_steps"] == none["schedule_steps"] == 30
    assert lrs_free == lrs


def test_ema_warm_up_decay():
    from netsynth.models._train import _EMA

    m = torch.nn.Linear(2, 1, bias=False)
    ema = _EMA(m, 0.99)
    assert ema.decay_at(0) == pytest.approx(0.1) and ema.decay_at(90) == pytest.approx(0.91)
    assert ema.decay_at(10_000) == 0.99
    with torch.no_grad():
        m.weight.fill_(1.0)
    ema.shadow["weight"].zero_()
    ema.update(m, 0)  # first step: the average is 90 % the new weights, not 1 %
    torch.testing.assert_close(ema.shadow["weight"], torch.full((1, 2), 0.9))


def test_samples_are_held_to_the_training_first_direction_and_longest_iat() -> None:
    """A new user saw flows whose first packet came from the responder (export → extract then flipped
    the whole flow) and an IAT of 3162 s against a training maximum of 51 s (the flow split in two)."""
    from netsynth.models.base import RawFlows
    from test_contract import tiny_flows

    flows = tiny_flows()
    assert (flows.direction[:, 0] == 0).all()
    model = get_generator("independent")(random_state=0).fit(flows)
    stats = model.endpoints_[flows.classes[0]]
    assert stats["first_direction"] == {"0": 1.0}
    longest = float((flows.iat * flows.mask)[flows.label.astype(str) == flows.classes[0]].max())
    assert stats["iat_max"] == pytest.approx(longest)
    n, w = 4, flows.max_packets
    raw = RawFlows(n_packets=np.full(n, 3), payload_len=np.full((n, w), 10), direction=np.ones((n, w), np.int8),
                   iat=np.full((n, w), 3162.0), tcp_flags=np.zeros((n, w), np.int64))
    labels = np.array([flows.classes[0]] * n)
    out = model._finalize(labels, np.full(n, 17), np.full(n, 4), raw)
    assert (out.direction[:, 0] == 0).all() and (out.direction[:, 1:3] == 1).all()
    assert out.iat[:, 1:3].max() == pytest.approx(longest, rel=1e-6)
    clipped = out.producer()["clipped"]
    assert clipped["first_direction"] == 4 and clipped["iat_over_training_max"] == 4 * 2


def test_resuming_a_checkpoint_of_another_architecture_is_a_clear_error(tmp_path):
    """A checkpoint_dir written by a different model (another --set, another family) must not
    end in a torch traceback: InputError naming the folder (exit 2 in the CLI), nothing trained."""
    from netsynth.errors import InputError

    settings = TrainSettings(lr=0.05, batch_size=16, warmup_steps=5, progress=False, max_epochs=1,
                             checkpoint_dir=str(tmp_path / "ck"))
    _fit(settings)
    x, y = _toy_problem()
    wider = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 1))
    with pytest.raises(InputError, match=r"ck: checkpoint does not fit this model"):
        train(wider, _loss, [x[:160], y[:160]], [x[160:], y[160:]], settings, device="cpu",
              generator=torch.Generator().manual_seed(0))
