"""One contract suite for every registered generator family (new families are picked up by name).

Each family supplies `tiny_config()` so the whole suite runs in seconds. `tiny_flows` is imported by
the other model tests too.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from netsynth.errors import InputError, NotFittedError
from netsynth.flows import FlowTable, max_payload
from netsynth.models import available_generators, get_generator, load_generator

CLASSES = ("alpha", "beta", "gamma")


def tiny_flows(n_per_class: int = 40, width: int = 8, seed: int = 0) -> FlowTable:
    """Three classes with distinct exact sizes; TCP and UDP flows; some IPv6; a few rare sizes."""
    rng = np.random.default_rng(seed)
    rows = []
    for k, label in enumerate(CLASSES):
        for _ in range(n_per_class):
            udp = rng.random() < 0.3
            n = int(rng.integers(3, width + 1))
            sizes = np.array([100 + 17 * k, 517 + k, 60, 1400 - 50 * k] * width)[:width].copy()
            if rng.random() < 0.2:
                sizes[2] = int(rng.integers(0, 1460))  # rare sizes go through the fallback
            direction = np.array([0, 1] * width)[:width]
            iat = np.concatenate([[0.0], rng.exponential(0.01 * (k + 1), width - 1)])
            flags = np.zeros(width, np.uint8) if udp else np.array([0x02, 0x12, 0x10] + [0x18] * width)[:width]
            rows.append((label, n, sizes, direction, iat, flags, 17 if udp else 6, 6 if rng.random() < 0.1 else 4,
                         53 if udp else 443))
    return FlowTable.build(
        label=[r[0] for r in rows], n_packets=np.array([r[1] for r in rows]),
        payload_len=np.stack([r[2] for r in rows]), direction=np.stack([r[3] for r in rows]),
        iat=np.stack([r[4] for r in rows]).astype(np.float32), tcp_flags=np.stack([r[5] for r in rows]),
        protocol=np.array([r[6] for r in rows]), ip_version=np.array([r[7] for r in rows]),
        dst_port=np.array([r[8] for r in rows], np.int32),
    )


FAMILIES = available_generators()


@pytest.fixture(scope="module")
def flows():
    return tiny_flows()


@pytest.fixture(scope="module")
def fitted(flows):
    cache = {}

    def get(name):
        if name not in cache:
            cls = get_generator(name)
            cache[name] = cls(cls.tiny_config(), device="cpu", random_state=0).fit(flows)
        return cache[name]

    return get


def test_registry_has_the_core_families():
    assert {"transformer", "empirical", "independent", "markov"} <= set(FAMILIES)
    with pytest.raises(InputError, match="available"):
        get_generator("nope")


@pytest.mark.parametrize("name", FAMILIES)
def test_fit_returns_self_and_unfitted_raises(name, flows, tmp_path):
    cls = get_generator(name)
    model = cls(cls.tiny_config(), device="cpu", random_state=0)
    with pytest.raises(NotFittedError):
        model.sample(5)
    with pytest.raises(NotFittedError):
        model.save(tmp_path / "m")
    assert model.info()["fitted"] is False


@pytest.mark.parametrize("name", FAMILIES)
def test_fit_returns_self(name, fitted, flows):
    model = fitted(name)
    assert model.classes_ == list(CLASSES)
    assert model.fit_info_["n_train"] + model.fit_info_["n_valid"] == len(flows)


@pytest.mark.parametrize("name", FAMILIES)
def test_counts_int_and_mapping(name, fitted):
    model = fitted(name)
    s = model.sample(10, random_state=1)
    assert len(s) == 10
    assert set(s.class_counts()) <= set(CLASSES)
    s = model.sample({"alpha": 3, "gamma": 5}, random_state=1)
    assert s.class_counts() == {"gamma": 5, "alpha": 3}
    with pytest.raises(InputError, match="known"):
        model.sample({"delta": 1})
    assert len(model.sample(0)) == 0


@pytest.mark.parametrize("name", FAMILIES)
def test_samples_are_valid(name, fitted, flows):
    model = fitted(name)
    s = model.sample(90, random_state=2)
    s.validate("sample")
    assert s.origin[0] == f"synthetic:{name}"
    mask = s.mask
    cap = np.array([max_payload(v, p) for v, p in zip(s.ip_version, s.protocol, strict=True)])
    assert (s.payload_len >= 0).all() and (s.payload_len <= cap[:, None]).all()
    assert (s.iat >= 0).all() and (s.iat[:, 0] == 0).all()
    assert np.isin(s.direction, (0, 1)).all() and (s.n_packets >= 1).all()
    assert (s.tcp_flags[s.protocol != 6] == 0).all()
    tcp_seen = set(np.unique(flows.tcp_flags[(flows.protocol == 6)[:, None] & flows.mask]).tolist())
    assert set(np.unique(s.tcp_flags[(s.protocol == 6)[:, None] & mask]).tolist()) <= tcp_seen
    assert set(np.unique(s.protocol).tolist()) <= {6, 17}
    producer = s.producer()
    assert producer["generator"] == name and producer["model_hash"] == model.model_hash_
    assert set(producer["clipped"]) >= {"payload_len", "iat", "tcp_flags"}


@pytest.mark.parametrize("name", FAMILIES)
def test_seed_determinism(name, fitted, flows):
    a = fitted(name).sample(30, random_state=7)
    b = fitted(name).sample(30, random_state=7)
    np.testing.assert_array_equal(a.payload_len, b.payload_len)
    np.testing.assert_array_equal(a.iat, b.iat)
    cls = get_generator(name)
    again = cls(cls.tiny_config(), device="cpu", random_state=0).fit(flows)
    assert again.model_hash_ == fitted(name).model_hash_
    np.testing.assert_array_equal(again.sample(30, random_state=7).payload_len, a.payload_len)


@pytest.mark.parametrize("name", FAMILIES)
def test_save_load_roundtrip(name, fitted, tmp_path):
    model = fitted(name)
    model.save(tmp_path / "m")
    files = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert files == ["model.json", "weights.safetensors"]
    assert not any(p.suffix in (".pkl", ".pt", ".pickle", ".pth") for p in (tmp_path / "m").rglob("*"))
    doc = json.loads((tmp_path / "m" / "model.json").read_text())
    assert doc["name"] == name and doc["classes"] == list(CLASSES)
    assert set(doc["endpoints"]["alpha"]) >= {"protocol", "ip_version", "dst_port"}
    loaded = load_generator(tmp_path / "m", device="cpu")
    assert type(loaded) is type(model)
    a, b = model.sample(25, random_state=3), loaded.sample(25, random_state=3)
    for col in ("payload_len", "direction", "iat", "tcp_flags", "n_packets", "protocol"):
        np.testing.assert_array_equal(getattr(a, col), getattr(b, col))
    assert loaded.model_hash_ == model.model_hash_


@pytest.mark.parametrize("name", FAMILIES)
def test_info_is_json(name, fitted):
    info = fitted(name).info()
    json.dumps(info)
    assert isinstance(info["parameters"], int) and info["parameters"] > 0
    assert info["classes"] == list(CLASSES) and "training" in info


@pytest.mark.parametrize("name", FAMILIES)
def test_config_json_roundtrip(name):
    cls = get_generator(name)
    cfg = cls.tiny_config()
    assert cls.config_class.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(InputError, match="unknown"):
        cls.config_class.from_dict({**cfg.to_dict(), "bogus": 1})


@pytest.mark.parametrize("name", FAMILIES)
def test_parameter_count_without_training(name, fitted, flows):
    cls = get_generator(name)
    fresh = cls(cls.tiny_config(), device="cpu", random_state=0)
    assert fresh.parameter_count() is None  # depends on the data: no table, no number
    expected = fitted(name).n_parameters()
    assert fresh.parameter_count(flows) == expected == fitted(name).parameter_count()
    assert not fresh._is_fitted()  # counting did not fit the instance itself


def _edited_copy(src, dst, edit):
    import json
    import shutil

    shutil.copytree(src, dst)
    doc = json.loads((dst / "model.json").read_text())
    edit(doc)
    (dst / "model.json").write_text(json.dumps(doc))
    return dst


def test_model_folders_whose_files_do_not_fit_are_one_line_errors(tmp_path):
    """Hand-edited or damaged model folders: an InputError naming the folder, never a traceback
    (found by a new-user test: each of these ended in RuntimeError/TypeError/KeyError/SafetensorError)."""
    from netsynth.errors import InputError
    from netsynth.models import get_generator, load_generator

    cls = get_generator("diffusion")
    gen = cls(cls.tiny_config(), device="cpu", random_state=0).fit(tiny_flows(n_per_class=10, width=6, seed=1))
    gen.save(tmp_path / "m")

    def drop_new_fields(doc):  # an adaLN model read as an additive one: weights of another shape
        for key in ("conditioning", "prediction", "class_balance"):
            del doc["config"][key]

    def as_string(doc):
        doc["config"]["class_balance"] = "0.5"

    def no_config(doc):
        doc["config"] = None

    def no_counts(doc):
        del doc["class_counts"]

    for i, edit in enumerate((drop_new_fields, as_string, no_config, no_counts)):
        bad = _edited_copy(tmp_path / "m", tmp_path / f"bad{i}", edit)
        with pytest.raises(InputError, match=f"bad{i}") as err:
            load_generator(bad, device="cpu")
        assert "\n" not in str(err.value), edit.__name__
    cut = _edited_copy(tmp_path / "m", tmp_path / "cut", lambda doc: None)
    data = (cut / "weights.safetensors").read_bytes()
    (cut / "weights.safetensors").write_bytes(data[: len(data) // 3])
    with pytest.raises(InputError, match=r"cut: .*safetensors"):
        load_generator(cut, device="cpu")
    assert load_generator(tmp_path / "m", device="cpu").n_parameters() == gen.n_parameters()
