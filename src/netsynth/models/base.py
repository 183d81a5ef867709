"""The one generator interface every model family implements, plus the registry and config helpers.

A family is one file in `models/` with a `Generator` subclass that sets `name` and `config_class` and
implements four hooks: `_fit`, `_sample_flows`, `_state` / `_load_state` and `n_parameters`. Everything a
user relies on for every family — class bookkeeping, validation splits, endpoint statistics, exact
per-class counts, validity of the output, atomic saving, json+safetensors loading — lives here once, so
the families cannot drift apart and the contract test suite covers them all.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
import types
import typing
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

from netsynth.errors import InputError, NotFittedError, one_line
from netsynth.flows import FlowTable, max_payload
from netsynth.flows.schema import META_PRODUCER
from netsynth.utils.io import atomic_dir
from netsynth.utils.seeding import RandomState, as_generator, derive_seed

MODEL_JSON = "model.json"
WEIGHTS = "weights.safetensors"
TOP_PORTS = 20

_REGISTRY: dict[str, type[Generator]] = {}


# ---------------------------------------------------------------------------------------------- configs
@dataclass(frozen=True, kw_only=True)
class BaseConfig:
    """Frozen, keyword-only hyper-parameters; subclasses add fields. JSON round trip, unknown keys fail."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Build from a dict (e.g. model.json); unknown keys are an InputError listing the valid ones."""
        valid = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - valid)
        if unknown:
            raise InputError(f"{cls.__name__}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}")
        hints = typing.get_type_hints(cls)
        kwargs = {k: _coerce_json(v, hints[k]) for k, v in data.items()}
        return cls(**kwargs)

    @classmethod
    def from_saved(cls, data: Mapping[str, Any]) -> Self:
        """Build from a saved model.json config. Fields added after a model was saved take the value
        the model was trained with (`SAVED_DEFAULTS`), not today's default."""
        return cls.from_dict({**getattr(cls, "SAVED_DEFAULTS", {}), **data})

    def replace(self, **changes: Any) -> Self:
        """A copy with some fields changed (unknown names are an InputError)."""
        return type(self).from_dict({**self.to_dict(), **changes})


def _coerce_json(value: Any, hint: Any) -> Any:
    """JSON has no tuples: turn lists back into tuples where the field wants one."""
    origin = typing.get_origin(hint)
    if origin is tuple and isinstance(value, list):
        return tuple(value)
    return value


def _parse_scalar(text: str, hint: Any, key: str) -> Any:
    """Parse a `--set key=value` string to the field's type (bool, int, float, str, None, tuples)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and text.strip().lower() in ("none", "null", ""):
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _parse_scalar(text, arg, key)
            except InputError as exc:
                errors.append(str(exc))
        raise InputError(f"--set {key}={text!r}: {'; '.join(errors)}")
    if origin is typing.Literal:
        if text in args:
            return text
        raise InputError(f"--set {key}={text!r}: choose one of {', '.join(map(str, args))}")
    if origin is tuple:
        inner = args[0] if args else str
        parts = [p for p in text.replace(",", " ").split() if p]
        return tuple(_parse_scalar(p, inner, key) for p in parts)
    if hint is bool:
        low = text.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise InputError(f"--set {key}={text!r}: expected a boolean (true/false)")
    if hint in (int, float):
        try:
            return hint(float(text)) if hint is int and float(text).is_integer() else hint(text)
        except ValueError:
            raise InputError(f"--set {key}={text!r}: expected {hint.__name__}") from None
    if hint is str:
        return text
    raise InputError(f"--set {key}: fields of type {hint!r} cannot be set from the command line")


def config_from_overrides(
    cls: type[BaseConfig] | type[Generator],
    overrides: Mapping[str, str],
    *,
    base: BaseConfig | None = None,
) -> BaseConfig:
    """Turn CLI `--set key=value` strings into a config, each value parsed to its field's type.

    `cls` is a config dataclass or a Generator class (its `config_class` is used). Unknown keys are an
    InputError that lists the valid ones, so a typo never silently trains with defaults.
    """
    config_cls = cls.config_class if isinstance(cls, type) and issubclass(cls, Generator) else cls
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    hints = typing.get_type_hints(config_cls)
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise InputError(
            f"unknown setting(s) {', '.join(unknown)} for {config_cls.__name__}; valid: {', '.join(sorted(fields))}"
        )
    start = (base or config_cls()).to_dict()
    parsed = {k: _parse_scalar(str(v), hints[k], k) for k, v in overrides.items()}
    try:
        return config_cls.from_dict({**start, **parsed})
    except (TypeError, ValueError) as exc:
        raise InputError(f"invalid settings for {config_cls.__name__}: {exc}") from None


# ---------------------------------------------------------------------------------------------- helpers
def class_targets(n: int | Mapping[str, int], counts: Mapping[str, int]) -> dict[str, int]:
    """Per-class sample counts: an int follows training proportions (largest remainder, total exactly n)."""
    classes = list(counts)
    if isinstance(n, Mapping):
        unknown = [str(c) for c in n if str(c) not in counts]
        if unknown:
            raise InputError(f"unknown class(es) {', '.join(unknown)}; known: {', '.join(sorted(classes))}")
        out = {str(c): int(v) for c, v in n.items()}
        if any(v < 0 for v in out.values()):
            raise InputError("per-class sample counts must be >= 0")
        return out
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise InputError(f"n must be a non-negative integer or a mapping class -> count, got {n!r}")
    total = sum(counts.values())
    exact = np.array([counts[c] * int(n) / total for c in classes])
    base = np.floor(exact).astype(int)
    rest = int(n) - int(base.sum())
    order = np.argsort(-(exact - base), kind="stable")
    base[order[:rest]] += 1
    return {c: int(k) for c, k in zip(classes, base, strict=True) if k > 0}


def stratified_split(labels: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, valid): `fraction` of every class with >= 2 flows goes to valid (at least one)."""
    train, valid = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        k = round(len(idx) * fraction) if len(idx) >= 2 else 0
        k = max(k, 1) if len(idx) >= 2 else 0
        valid.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(valid))


def _distribution(values: np.ndarray, top: int | None = None) -> dict[str, float]:
    vals, cnt = np.unique(values, return_counts=True)
    order = np.argsort(-cnt, kind="stable")
    if top is not None:
        order = order[:top]
    total = cnt.sum()
    return {str(int(vals[i])): float(cnt[i] / total) for i in order}


def endpoint_stats(flows: FlowTable) -> dict[str, dict[str, dict[str, float]]]:
    """Per class: protocol, ip_version, their joint ("4/6") and the top server ports (`dst_port`, and per
    protocol number in `dst_port_by_protocol`)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    labels = flows.label.astype(str)
    for c in sorted(set(labels)):
        m = labels == c
        ports = np.asarray(flows.dst_port, dtype=np.int64)[m]
        protos = np.asarray(flows.protocol, dtype=np.int64)[m]
        by_proto = {str(int(pr)): _distribution(ports[(protos == pr) & (ports >= 0)], TOP_PORTS)
                    for pr in np.unique(protos) if ((protos == pr) & (ports >= 0)).any()}
        ports = ports[ports >= 0]
        joint_vals, joint_cnt = np.unique(
            [f"{int(v)}/{int(p)}" for v, p in zip(flows.ip_version[m], flows.protocol[m], strict=True)],
            return_counts=True,
        )
        out[c] = {
            "protocol": _distribution(flows.protocol[m]),
            "ip_version": _distribution(flows.ip_version[m]),
            "joint": {str(k): float(v / joint_cnt.sum()) for k, v in zip(joint_vals, joint_cnt, strict=True)},
            "dst_port": _distribution(ports, TOP_PORTS) if len(ports) else {},
            # per transport protocol: a TCP flow must not get a port only UDP used (53 over TCP with an
            # empty payload is a malformed DNS message to Wireshark)
            "dst_port_by_protocol": by_proto,
            # what `_finalize` holds samples to: which side sent the first packet (the extractor's
            # initiator, always 0 unless --initiator port), and the longest inter-arrival time seen
            "first_direction": _distribution(np.asarray(flows.direction)[m, 0]),
            "iat_max": float(np.max(np.asarray(flows.iat, np.float64)[m] * flows.mask[m], initial=0.0)),
        }
    return out


@dataclass
class RawFlows:
    """What a family's sampler returns before the base class makes it valid: arrays of shape (n, N)."""

    n_packets: np.ndarray
    payload_len: np.ndarray
    direction: np.ndarray
    iat: np.ndarray
    tcp_flags: np.ndarray
    tcp_window: np.ndarray | None = None
    # repairs the family's own decoder made (e.g. the grid codec's), reported with the base class's
    clipped: dict[str, int] | None = None


# ---------------------------------------------------------------------------------------------- generator
class Generator(ABC):
    """A class-conditioned generative model of flows: scikit-learn-style fit / sample / save / load.

    `__init__` only stores its arguments; everything learned ends in `_`. Subclasses set `name`
    (registry key, CLI name) and `config_class`, and implement the underscore hooks.
    """

    name: ClassVar[str]
    config_class: ClassVar[type[BaseConfig]] = BaseConfig
    valid_fraction: ClassVar[float] = 0.1

    def __init__(self, config: BaseConfig | Mapping[str, Any] | None = None, *, device: str = "auto",
                 random_state: RandomState = None) -> None:
        self.config = config
        self.device = device
        self.random_state = random_state

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("name")
        if isinstance(name, str):
            if name in _REGISTRY and _REGISTRY[name].__qualname__ != cls.__qualname__:
                raise RuntimeError(f"generator name {name!r} registered twice")
            _REGISTRY[name] = cls

    # ------------------------------------------------------------------ hooks for families
    @classmethod
    def tiny_config(cls) -> BaseConfig:
        """A config small enough for the contract tests (seconds, not minutes)."""
        return cls.config_class()

    @abstractmethod
    def _fit(self, train: FlowTable, valid: FlowTable, rng: np.random.Generator) -> dict[str, Any]:
        """Learn from `train` (early-stop on `valid`); return the training summary."""

    @abstractmethod
    def _sample_flows(self, labels: np.ndarray, protocol: np.ndarray, ip_version: np.ndarray,
                      rng: np.random.Generator) -> RawFlows:
        """Draw one flow per entry of `labels` (protocol/ip_version already drawn, for conditioning)."""

    @abstractmethod
    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(JSON-serialisable state such as the codec, named NumPy arrays for safetensors)."""

    @abstractmethod
    def _load_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        """Inverse of `_state`."""

    @abstractmethod
    def n_parameters(self) -> int:
        """Exact number of learned parameters (numbers in the weights file for non-neural models)."""

    # ------------------------------------------------------------------ public API
    @property
    def config_(self) -> BaseConfig:
        """The resolved config (defaults when none was given)."""
        cfg = self.config
        if cfg is None:
            return self.config_class()
        if isinstance(cfg, Mapping):
            return self.config_class.from_dict(cfg)
        if not isinstance(cfg, self.config_class):
            raise InputError(f"{self.name}: config must be a {self.config_class.__name__}, got {type(cfg).__name__}")
        return cfg

    def fit(self, flows: FlowTable, *, valid: FlowTable | None = None) -> Self:
        """Fit on `flows`; without `valid`, a stratified 10 % of `flows` is held out for early stopping."""
        if not isinstance(flows, FlowTable) or len(flows) == 0:
            raise InputError(f"{self.name}: fit needs a non-empty FlowTable")
        flows.validate("training flows")
        _ = self.config_
        rng = as_generator(self.random_state)
        train, valid = self._split(flows, valid, rng)
        self.classes_ = flows.classes
        self.class_counts_ = {c: int(v) for c, v in flows.class_counts().items()}
        self.max_packets_ = flows.max_packets
        self.endpoints_ = endpoint_stats(flows)
        tcp = (flows.protocol == 6)[:, None] & flows.mask
        self.tcp_flag_values_ = sorted({int(v) for v in np.unique(flows.tcp_flags[tcp])}) or [0]
        self.fit_info_ = {"n_train": len(train), "n_valid": len(valid),
                          "fitted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        t0 = time.perf_counter()
        summary = self._fit(train, valid, rng)
        self.training_ = {**summary, "fit_seconds": round(time.perf_counter() - t0, 3)}
        self.model_hash_ = self._hash()
        return self

    def parameter_count(self, flows: FlowTable | None = None, *, valid: FlowTable | None = None) -> int | None:
        """Exact number of parameters `fit(flows, valid=valid)` would give, without training.

        Without `flows`: the fitted model's count, or None when unfitted (every family's size depends
        on the data: vocabulary, classes, protocols, states). With `flows`: the same validation split
        as `fit` is drawn from `random_state` (exact for an int seed; with None the split, and so a
        codec's rare-size vocabulary, is random), then deep families fit only their codec and build
        the untrained network; baselines are simply fitted (they are cheap).
        """
        if flows is None:
            return int(self.n_parameters()) if self._is_fitted() else None
        if not isinstance(flows, FlowTable) or len(flows) == 0:
            raise InputError(f"{self.name}: parameter_count needs a non-empty FlowTable")
        flows.validate("training flows")
        _ = self.config_
        train, valid_part = self._split(flows, valid, as_generator(self.random_state))
        return int(self._count_parameters(flows, train, valid_part, valid))

    def _count_parameters(self, flows: FlowTable, train: FlowTable, valid: FlowTable,
                          given_valid: FlowTable | None) -> int:
        """Hook for `parameter_count`: default fits a copy (right for cheap, non-neural families)."""
        clone = type(self)(self.config, device="cpu", random_state=self.random_state)
        return clone.fit(flows, valid=given_valid).n_parameters()

    def _split(self, flows: FlowTable, valid: FlowTable | None,
               rng: np.random.Generator) -> tuple[FlowTable, FlowTable]:
        """(train, valid) as `fit` uses them: a stratified hold-out unless `valid` is given."""
        if valid is None:
            tr, va = stratified_split(flows.label.astype(str), self.valid_fraction, rng)
            train, held = flows.take(tr), flows.take(va)
            return train, (held if len(held) else train)
        valid.validate("validation flows")
        return flows, valid

    def sample(self, n: int | Mapping[str, int], *, random_state: RandomState = None) -> FlowTable:
        """`n` flows in training proportions, or exact per-class counts from a mapping."""
        self._check_fitted()
        targets = class_targets(n, self.class_counts_)
        rng = as_generator(random_state)
        labels = np.array([c for c, k in targets.items() for _ in range(k)], dtype=object)
        protocol, ip_version = self._draw_endpoints(labels, rng)
        if len(labels) == 0:
            raw = RawFlows(*(np.zeros((0, self.max_packets_)) for _ in range(5)))
            raw.n_packets = np.zeros(0, np.int16)
        else:
            raw = self._sample_flows(labels, protocol, ip_version, as_generator(derive_seed(rng)))
        return self._finalize(labels, protocol, ip_version, raw)

    def save(self, path: str | os.PathLike) -> None:
        """Write `path/` atomically: model.json (config, classes, codec, provenance) + weights.safetensors."""
        self._check_fitted()
        from safetensors.numpy import save_file

        import netsynth

        meta, arrays = self._state()
        doc = {
            "name": self.name,
            "format": 1,
            "netsynth_version": netsynth.__version__,
            "config": self.config_.to_dict(),
            "classes": self.classes_,
            "class_counts": self.class_counts_,
            "max_packets": self.max_packets_,
            "endpoints": self.endpoints_,
            "tcp_flag_values": self.tcp_flag_values_,
            "training": self.training_,
            "provenance": {**self.fit_info_, "random_state": _jsonable_seed(self.random_state)},
            "model_hash": self.model_hash_,
            "parameters": self.n_parameters(),
            "state": meta,
        }
        with atomic_dir(path, marker="model.json") as tmp:
            save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp / WEIGHTS))
            (tmp / MODEL_JSON).write_text(json.dumps(doc, indent=2, sort_keys=False), encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: str = "auto") -> Generator:
        """Load a saved model folder; dispatches on model.json's `name`. JSON + safetensors only.

        A folder whose files do not fit together (a config edited by hand, weights of another
        architecture, a truncated weights file, a field of the wrong type) is an InputError naming
        the folder, never a traceback from deep inside torch or safetensors.
        """
        doc = read_model_json(path)
        target = get_generator(doc["name"])
        if cls is not Generator and not issubclass(target, cls):
            raise InputError(f"{path}: holds a {doc['name']!r} model, not {cls.name!r}")
        try:
            return target._from_doc(path, doc, device)
        except InputError as exc:
            if str(path) in str(exc):
                raise
            raise InputError(f"{path}: {exc}") from None
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
            raise InputError(f"{path}: model files do not fit together ({one_line(exc)}); "
                             "was model.json edited, or the weights copied from another model?") from None

    @classmethod
    def _from_doc(cls, path: str | os.PathLike, doc: dict[str, Any], device: str) -> Generator:
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        if not isinstance(doc.get("config"), Mapping):
            raise InputError(f"{MODEL_JSON} has no config object")
        model = cls(cls.config_class.from_saved(doc["config"]), device=device,
                    random_state=doc.get("provenance", {}).get("random_state"))
        model.classes_ = list(doc["classes"])
        model.class_counts_ = {str(k): int(v) for k, v in doc["class_counts"].items()}
        model.max_packets_ = int(doc["max_packets"])
        model.endpoints_ = doc["endpoints"]
        model.tcp_flag_values_ = [int(v) for v in doc["tcp_flag_values"]]
        model.training_ = doc["training"]
        model.fit_info_ = {k: v for k, v in doc["provenance"].items() if k != "random_state"}
        weights = Path(path) / WEIGHTS
        try:
            arrays = load_file(str(weights)) if weights.exists() else {}
        except SafetensorError as exc:
            raise InputError(f"{WEIGHTS} is not a readable safetensors file ({exc})") from None
        model._load_state(doc["state"], arrays)
        model.model_hash_ = doc.get("model_hash") or model._hash()
        return model

    def info(self) -> dict[str, Any]:
        """JSON-serialisable summary: family, parameters, classes, training summary, versions."""
        import netsynth

        out: dict[str, Any] = {"name": self.name, "config": self.config_.to_dict(),
                               "netsynth_version": netsynth.__version__, "fitted": self._is_fitted()}
        if self._is_fitted():
            out.update(parameters=int(self.n_parameters()), classes=list(self.classes_),
                       class_counts=dict(self.class_counts_), training=dict(self.training_),
                       model_hash=self.model_hash_, max_packets=self.max_packets_)
        return json.loads(json.dumps(out, default=_json_default))

    # ------------------------------------------------------------------ internals
    def _is_fitted(self) -> bool:
        return hasattr(self, "classes_") and hasattr(self, "model_hash_")

    def _check_fitted(self) -> None:
        if not self._is_fitted():
            raise NotFittedError(f"this {self.name} generator is not fitted yet: call fit() first")

    def _hash(self) -> str:
        """sha256 over the weights and JSON state: identifies the model in sampled tables' metadata."""
        meta, arrays = self._state()
        h = hashlib.sha256(json.dumps(meta, sort_keys=True, default=_json_default).encode())
        for k in sorted(arrays):
            h.update(k.encode())
            h.update(np.ascontiguousarray(arrays[k]).tobytes())
        return h.hexdigest()[:16]

    def _draw_endpoints(self, labels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(protocol, ip_version) per flow from the class's joint training distribution."""
        proto = np.zeros(len(labels), np.uint8)
        ipv = np.zeros(len(labels), np.uint8)
        for c in np.unique(labels.astype(str)) if len(labels) else []:
            m = labels == c
            joint = self.endpoints_[c]["joint"]
            keys = list(joint)
            p = np.array([joint[k] for k in keys])
            pick = rng.choice(len(keys), size=int(m.sum()), p=p / p.sum())
            ipv[m] = [int(keys[i].split("/")[0]) for i in pick]
            proto[m] = [int(keys[i].split("/")[1]) for i in pick]
        return proto, ipv

    def _hold_to_training(self, labels: np.ndarray, di: np.ndarray, iat: np.ndarray, mask: np.ndarray,
                          clipped: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
        """Per class: a first packet from the side that never sent one in training is the initiator's
        (else export → extract flips the whole flow), and no IAT exceeds the class's longest (an IAT past
        the extractor's idle timeout splits the flow in two). Models saved before these statistics
        existed are left as they are."""
        labels = np.asarray(labels).astype(str)
        first = np.zeros(len(labels), bool)
        cap = np.full(len(labels), np.inf)
        for c, stats in (self.endpoints_ or {}).items():
            rows = labels == c
            if not isinstance(stats, dict):
                continue
            if "first_direction" in stats and "1" not in stats["first_direction"]:
                first |= rows & (di[:, 0] == 1)
            if "iat_max" in stats:
                cap[rows] = float(stats["iat_max"])
        over = (iat > cap[:, None]) & mask
        clipped["first_direction"] = int(first.sum())
        clipped["iat_over_training_max"] = int(over.sum())
        di = di.copy()
        di[first, 0] = 0
        return di, np.minimum(iat, cap[:, None])

    def _finalize(self, labels: np.ndarray, protocol: np.ndarray, ip_version: np.ndarray,
                  raw: RawFlows) -> FlowTable:
        """Force every value into the valid range, count what had to change, build the table."""
        n, width = len(labels), self.max_packets_
        clipped: dict[str, int] = dict(raw.clipped or {})
        n_packets = np.asarray(raw.n_packets, np.int64)
        clipped["n_packets"] = int(np.sum((n_packets < 1) | (n_packets > width)))
        n_packets = np.clip(n_packets, 1, width)
        mask = np.arange(width)[None, :] < n_packets[:, None]

        pl = np.rint(np.nan_to_num(np.asarray(raw.payload_len, np.float64), nan=0.0)).reshape(n, width)
        cap = np.array([max_payload(v, p) for v, p in zip(ip_version, protocol, strict=True)], np.float64)
        bad = ((pl < 0) | (pl > cap[:, None])) & mask
        clipped["payload_len"] = int(bad.sum())
        pl = np.clip(pl, 0, cap[:, None]).astype(np.int32)

        di = np.asarray(raw.direction).reshape(n, width)
        clipped["direction"] = int((~np.isin(di, (0, 1)) & mask).sum())
        di = (di > 0.5).astype(np.int8) if clipped["direction"] else di.astype(np.int8)

        iat = np.asarray(raw.iat, np.float64).reshape(n, width)
        bad = (~np.isfinite(iat) | (iat < 0)) & mask
        bad[:, 0] |= iat[:, 0] != 0
        clipped["iat"] = int(bad.sum())
        iat = np.where(np.isfinite(iat), np.maximum(iat, 0.0), 0.0)
        iat[:, 0] = 0.0
        di, iat = self._hold_to_training(labels, di, iat, mask, clipped)

        flags = np.asarray(raw.tcp_flags).astype(np.int64).reshape(n, width)
        is_tcp = (protocol == 6)[:, None]
        allowed = np.array(self.tcp_flag_values_)
        unseen = ~np.isin(flags, allowed) & mask & is_tcp
        udp_flags = (flags != 0) & mask & ~is_tcp
        clipped["tcp_flags"] = int(unseen.sum() + udp_flags.sum())
        if unseen.any():  # nearest seen flag byte by Hamming distance: keeps the bits that were meant
            ham = np.array([[bin(int(a) ^ int(b)).count("1") for b in allowed] for a in range(256)])
            flags = np.where(unseen, allowed[ham[flags & 0xFF].argmin(axis=-1)], flags)
        flags = np.where(is_tcp, flags, 0).astype(np.uint8)

        win = raw.tcp_window
        win = np.zeros((n, width), np.uint16) if win is None else np.clip(np.asarray(win), 0, 65535)
        win = np.where(is_tcp, win, 0).astype(np.uint16)

        producer = {"generator": self.name, "model_hash": self.model_hash_, "clipped": clipped}
        return FlowTable.build(
            label=labels, n_packets=n_packets, payload_len=pl, direction=di, iat=iat.astype(np.float32),
            tcp_flags=flags, tcp_window=win, origin=f"synthetic:{self.name}", protocol=protocol,
            ip_version=ip_version, metadata={META_PRODUCER.decode(): json.dumps(producer)},
        )


def _jsonable_seed(seed: RandomState) -> int | None:
    return int(seed) if isinstance(seed, int | np.integer) and not isinstance(seed, bool) else None


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")


# ---------------------------------------------------------------------------------------------- registry
def read_model_json(path: str | os.PathLike) -> dict[str, Any]:
    """Read and minimally check a saved model's model.json."""
    p = Path(path) / MODEL_JSON
    if not p.is_file():
        raise InputError(f"{path}: not a saved netsynth model (no {MODEL_JSON})")
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{p}: unreadable JSON ({exc})") from None
    if not isinstance(doc, dict) or "name" not in doc:
        raise InputError(f"{p}: has no model name")
    return doc


def get_generator(name: str) -> type[Generator]:
    """The Generator class registered under `name` (InputError listing known names otherwise)."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InputError(f"unknown generator {name!r}; available: {', '.join(available_generators())}") from None


def available_generators() -> list[str]:
    """Registered generator names, sorted."""
    return sorted(_REGISTRY)


def load_generator(path: str | os.PathLike, *, device: str = "auto") -> Generator:
    """Load any saved generator folder (dispatch on model.json's name)."""
    return Generator.load(path, device=device)
