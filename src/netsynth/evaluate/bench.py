"""`run_bench`: the seed paper's four-axis comparison of generators (plus privacy), in one call.

For each of K folds (capture-grouped and stratified where captures are known), every generator is fitted
once on the fold's training side and judged on its test side:

1. fidelity — static, temporal and multivariate distances to real test, next to real train's (the floor),
   overall and per class;
2. TSTR vs TRTR — Random Forest and LightGBM, `paper` and `all` features, several sampling/classifier
   seeds; novelty (exact-copy rate, distance-to-closest-record ratio) next to it;
3. augmentation — low-data real subsets with and without synthetic flows, `paper` and `strict` protocols;
4. cost — parameters, training seconds, sampling flows/s, peak memory, measured here;
5. privacy — copy rate, DCR ratio, membership-inference AUC.

Every measured number is one *record* (section, generator, metric, fold, seed, …, value); the summary is
mean ± std over folds and seeds of each group of records, so the report, the JSON and the tie rule
("a difference smaller than the spread is no difference") all read the same numbers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

from netsynth.errors import InputError
from netsynth.evaluate import augment as A
from netsynth.evaluate import fidelity as F
from netsynth.evaluate import privacy as P
from netsynth.evaluate.api import _json_safe, _versions
from netsynth.evaluate.classifiers import PAPER_PACKETS, build_features, make_classifier
from netsynth.evaluate.cost import measure
from netsynth.evaluate.multivariate import detection_auc_by_group, embed, multivariate_metrics
from netsynth.flows import FlowTable

BENCH_VERSION = 1
#: Families the issue's goals call "deep"; the others are baselines.
DEEP = ("transformer", "ssm", "diffusion")
#: A per-class real-vs-synthetic AUC needs this many flows of the class on both sides of the pooled forest.
CLASS_AUC_MIN = 5
REAL = "real"
Step = Callable[[str], None]


# ---------------------------------------------------------------------------------------------- options
@dataclass(frozen=True, kw_only=True)
class BenchOptions:
    """Everything `run_bench` can vary (bench_tasks.py sets the committed protocol per task).

    Splits: `folds` K (1 = use the given train/test as is; K ≥ 2 pools train+test and makes K folds),
    `split_by` ("auto" = by capture when every flow has one, else by flow; "capture"; "flow"), `fold_seed`.
    Seeds: `seeds` sampling/classifier seeds per fold; `sample_seeds` independent synthetic draws per fit
    (None = `seeds`; classifier seeds cycle over the draws); `sample_scale` draw size as a multiple of the
    training count of every class (the paper-protocol top-up and the strict top-up are capped by it).
    Classifiers: `classifiers` ("rf", "lightgbm"), `feature_sets` ("paper", "all"), `n_estimators`.
    Augmentation: `fractions` of real training data, `aug_seeds` subsets per fraction, `ratios` of the
    synthetic:real sweep at `ratio_fractions`, `protocols` ("paper", "strict"); the strict protocol fits a
    generator per subset, so it runs on the first `strict_folds` folds (None = all), for
    `strict_generators` (None = all), at `strict_fractions` (None = all), for the first `strict_seeds` seeds.
    Generators: `overrides` {name: {key: "value"}} (`--set NAME.key=value`, see `parse_overrides`);
    `max_time` training budget in seconds per fit for configs with a `max_time` field (an explicit override
    wins), `strict_max_time` the same for strict fits (None = `max_time`); `device` passed to every generator.
    Execution: `fold_jobs` folds run at once in separate processes (each then gets one thread for torch and
    Random Forest; the records are identical to a one-process run because every seed derives from the fold
    index), `n_jobs` for Random Forest (LightGBM always gets one thread), `multivariate_points` subsample
    for AUC/PRDC/MMD, `per_class` fidelity per class, `plots`, `progress` lines on stderr, `quick` (tests:
    ≤ 2 folds, ≤ 2 seeds, 20 trees, tiny generator configs, max_time ≤ 5 s, see `resolved`).
    Provenance: `title`, `command` (recorded in the report).
    """

    folds: int = 5
    seeds: int = 3
    sample_seeds: int | None = None
    sample_scale: float = 1.0
    split_by: str = "auto"
    fold_seed: int = 0
    classifiers: tuple[str, ...] = ("rf", "lightgbm")
    feature_sets: tuple[str, ...] = ("paper", "all")
    n_estimators: int = 100
    fractions: tuple[float, ...] = (0.01, 0.05, 0.10, 0.25)
    aug_seeds: int = 3
    ratios: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
    ratio_fractions: tuple[float, ...] = (0.05,)
    protocols: tuple[str, ...] = ("paper", "strict")
    strict_folds: int | None = 1
    strict_generators: tuple[str, ...] | None = None
    strict_fractions: tuple[float, ...] | None = None
    strict_seeds: int | None = None
    overrides: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    max_time: float | None = None
    strict_max_time: float | None = None
    fold_jobs: int = 1
    n_jobs: int = -1
    device: str = "auto"
    multivariate_points: int = 2000
    per_class: bool = True
    plots: bool = True
    quick: bool = False
    progress: bool = True
    title: str | None = None
    command: str | None = None

    def resolved(self) -> BenchOptions:
        """The options actually used: `quick` caps folds, seeds, trees, fractions and sample sizes."""
        if not self.quick:
            return self
        return dataclasses.replace(
            self, folds=min(self.folds, 2), seeds=min(self.seeds, 2), n_estimators=min(self.n_estimators, 20),
            fractions=self.fractions[-2:] or (0.25,), aug_seeds=min(self.aug_seeds, 2), ratios=self.ratios[:1],
            ratio_fractions=self.fractions[-1:], multivariate_points=min(self.multivariate_points, 200),
            max_time=5.0 if self.max_time is None else min(self.max_time, 5.0), quick=True)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["overrides"] = {k: dict(v) for k, v in self.overrides.items()}
        return d


def parse_overrides(items: list[str] | tuple[str, ...]) -> dict[str, dict[str, str]]:
    """CLI `--set NAME.key=value` strings → {generator: {key: value}} for `BenchOptions.overrides`.

    Values stay strings: `config_from_overrides` parses them against each config's field types, so a typo
    in a key fails with the list of valid keys when the generator is built (before any training).
    """
    out: dict[str, dict[str, str]] = {}
    for item in items:
        name_key, sep, value = item.partition("=")
        name, dot, key = name_key.partition(".")
        if not sep or not dot or not name or not key:
            raise InputError(f"--set {item!r}: expected NAME.key=value, e.g. transformer.max_time=60")
        out.setdefault(name.strip(), {})[key.strip()] = value.strip()
    return out


def check_overrides(generators: list[str], opts: BenchOptions) -> None:
    """Fail before any work if an override names a generator not in the run or a key its config lacks."""
    extra = sorted(set(opts.overrides) - set(generators))
    if extra:
        raise InputError(f"--set for generator(s) not in this run: {', '.join(extra)}")
    for name in generators:
        make_generator(name, opts, seed=0)


# ---------------------------------------------------------------------------------------------- records
class Records:
    """A flat list of measured numbers; `summary` groups them by every key except fold, seed and value."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(self, value: float, **keys: Any) -> None:
        self.rows.append({**keys, "value": float(value) if value is not None else float("nan")})

    def summary(self) -> list[dict[str, Any]]:
        groups: dict[tuple, list[float]] = {}
        proto: dict[tuple, dict] = {}
        for r in self.rows:
            k = tuple(sorted((a, b) for a, b in r.items() if a not in ("fold", "seed", "value")))
            groups.setdefault(k, []).append(r["value"])
            proto[k] = dict(k)
        out = []
        for k, vals in groups.items():
            arr = np.asarray(vals, dtype=np.float64)
            ok = arr[np.isfinite(arr)]
            out.append({**proto[k], "mean": float(ok.mean()) if ok.size else float("nan"),
                        "std": float(ok.std()) if ok.size else float("nan"), "n": int(ok.size)})
        return out


def lookup(summary: list[dict], **keys: Any) -> dict | None:
    """The summary entry whose keys match `keys` exactly (extra keys in the entry must be absent)."""
    for s in summary:
        if all(s.get(k) == v for k, v in keys.items()) and set(s) - {"mean", "std", "n"} == set(keys):
            return s
    return None


# ---------------------------------------------------------------------------------------------- folds
def make_folds(table: FlowTable, k: int, by: str, seed: int) -> tuple[list[np.ndarray], str]:
    """K test-index arrays: StratifiedGroupKFold on capture (`by="capture"`) or StratifiedKFold (by flow)."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    y = table.label.astype(str)
    if by == "capture":
        groups = table.capture.astype(str)
        if len(set(groups)) < k:
            raise InputError(f"{len(set(groups))} captures cannot make {k} capture-grouped folds; use fewer folds")
        cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        return [te for _, te in cv.split(np.zeros(len(y)), y, groups)], f"StratifiedGroupKFold({k}, capture)"
    min_count = min(table.class_counts().values())
    if min_count < k:
        raise InputError(f"a class has {min_count} flows: cannot make {k} stratified folds")
    cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return [te for _, te in cv.split(np.zeros(len(y)), y)], f"StratifiedKFold({k})"


def resolve_split_by(table: FlowTable, by: str) -> str:
    """`auto` means by capture when every flow has one (the honest split), else by flow."""
    if by not in ("auto", "capture", "flow"):
        raise InputError(f"split_by must be auto, capture or flow, got {by!r}")
    has_capture = all(c is not None for c in table.capture)
    if by == "capture" and not has_capture:
        raise InputError("split_by='capture' needs the capture column on every flow")
    return ("capture" if has_capture else "flow") if by == "auto" else by


def fold_pairs(train: FlowTable, test: FlowTable | None, opts: BenchOptions,
               ) -> tuple[list[tuple[FlowTable, FlowTable]], dict]:
    """(train, test) per fold. K = 1 with a test table uses the given split; otherwise pool and fold."""
    if opts.folds < 1:
        raise InputError("folds must be >= 1")
    if opts.folds == 1:
        if test is None:
            raise InputError("folds=1 needs a test table (or use folds >= 2 on one table)")
        return [(train, test)], {"method": "given train/test", "split_by": "given"}
    pooled = train if test is None else FlowTable.concat([train, test])
    by = resolve_split_by(pooled, opts.split_by)
    folds, method = make_folds(pooled, opts.folds, by, opts.fold_seed)
    pairs = []
    for te in folds:
        is_test = np.zeros(len(pooled), dtype=bool)
        is_test[te] = True
        pairs.append((pooled.take(~is_test), pooled.take(is_test)))
    return pairs, {"method": method, "split_by": by, "seed": opts.fold_seed, "pooled_flows": len(pooled)}


# ---------------------------------------------------------------------------------------------- generators
def make_generator(name: str, opts: BenchOptions, seed: int, *, max_time: float | None = None) -> Any:
    """A configured, unfitted generator: quick → tiny_config; overrides; per-fit budget; no nested bars."""
    from netsynth.models import config_from_overrides, get_generator

    cls = get_generator(name)
    fields = {f.name for f in dataclasses.fields(cls.config_class)}
    over = {k: str(v) for k, v in (opts.overrides.get(name) or {}).items()}
    budget = max_time if max_time is not None else opts.max_time
    if budget is not None and "max_time" in fields and "max_time" not in over:
        over["max_time"] = str(budget)
    if "progress" in fields and "progress" not in over:
        over["progress"] = "false"
    base = cls.tiny_config() if opts.quick else None
    config = config_from_overrides(cls, over, base=base)
    return cls(config, device=opts.device, random_state=seed)


def fit_generator(name: str, train: FlowTable, opts: BenchOptions, seed: int,
                  max_time: float | None = None) -> tuple[Any, dict[str, float]]:
    """Fit and measure: (model, cost dict with parameters, training seconds and memory)."""
    model = make_generator(name, opts, seed, max_time=max_time)
    with measure() as m:
        model.fit(train)
    cost = {"parameters": float(model.n_parameters()), **m.as_dict("train")}
    return model, cost


def draw_samples(model: Any, counts: Mapping[str, int], seeds: int, base_seed: int,
                 ) -> tuple[list[FlowTable], dict[str, float]]:
    """`seeds` independent synthetic tables with the training class counts, and the sampling speed."""
    tables = []
    with measure() as m:
        for s in range(seeds):
            tables.append(model.sample(dict(counts), random_state=base_seed + s))
    n = sum(len(t) for t in tables)
    return tables, {"sample_flows_per_s": n / max(m.seconds, 1e-9), "sample_seconds": m.seconds,
                    "sample_peak_rss_mb": m.rss_peak / 2**20}


# ---------------------------------------------------------------------------------------------- scoring
def fit_score(x_fit: np.ndarray, y_fit: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, clf: str, seed: int,
              opts: BenchOptions) -> dict[str, Any]:
    """Macro F1, accuracy, per-class F1 (over the test classes) and predictions of one classifier fit."""
    labels = sorted(set(y_test))
    # LightGBM's OpenMP threads busy-wait: on a shared, oversubscribed machine two threads measured 20x slower
    # than one (115 s vs 5.5 s for one fit on iot-type16), so it always gets a single thread here.
    n_jobs = 1 if clf == "lightgbm" else opts.n_jobs
    model = make_classifier(clf, seed, n_estimators=opts.n_estimators, n_jobs=n_jobs).fit(x_fit, y_fit)
    pred = np.asarray(model.predict(x_test)).astype(str)
    return {"macro_f1": f1_score(y_test, pred, labels=labels, average="macro", zero_division=0),
            "accuracy": accuracy_score(y_test, pred),
            "per_class": dict(zip(labels, f1_score(y_test, pred, labels=labels, average=None, zero_division=0),
                                  strict=True)),
            "pred": pred}


@dataclass
class FoldContext:
    """What every section of one fold needs."""

    fold: int
    train: FlowTable
    test: FlowTable
    rec: Records
    opts: BenchOptions
    step: Step
    labels: list[str] = field(default_factory=list)
    confusion: dict[str, np.ndarray] = field(default_factory=dict)


def _add_confusion(ctx: FoldContext, name: str, y_true: np.ndarray, pred: np.ndarray, labels: list[str]) -> None:
    m = confusion_matrix(y_true, pred, labels=labels)
    ctx.confusion[name] = ctx.confusion.get(name, 0) + m


def classification(ctx: FoldContext, name: str, fit_tables: list[FlowTable]) -> None:
    """TRTR (`name` = real, one table) or TSTR (one table per seed): every classifier × feature set × seed."""
    o = ctx.opts
    y_test = ctx.test.label.astype(str)
    for feats in o.feature_sets:
        x_test = build_features(ctx.test, feats, PAPER_PACKETS)
        for clf in o.classifiers:
            for s in range(o.seeds):
                table = fit_tables[s % len(fit_tables)]
                r = fit_score(build_features(table, feats, PAPER_PACKETS), table.label.astype(str), x_test, y_test,
                              clf, s, o)
                keys = dict(section="tstr", generator=name, classifier=clf, features=feats, fold=ctx.fold, seed=s)
                ctx.rec.add(r["macro_f1"], metric="macro_f1", **keys)
                ctx.rec.add(r["accuracy"], metric="accuracy", **keys)
                for c, v in r["per_class"].items():
                    ctx.rec.add(v, metric="class_f1", cls=c, **keys)
                if clf == o.classifiers[0] and feats == o.feature_sets[0] and s == 0:
                    _add_confusion(ctx, name, y_test, r["pred"], ctx.labels)


def fidelity(ctx: FoldContext, name: str, table: FlowTable, seed: int) -> None:
    """Extended static/temporal metrics and multivariate metrics against real test; per class too."""
    o = ctx.opts
    k = F.common_packets(ctx.train, ctx.test, table)
    for metric, v in F.extended_metrics(table, ctx.test, packets=k).items():
        ctx.rec.add(v, section="fidelity", generator=name, metric=metric, fold=ctx.fold, seed=seed)
    mv = multivariate_metrics(ctx.test, table, seed=seed, n_jobs=o.n_jobs, max_points=o.multivariate_points,
                              n_estimators=o.n_estimators)
    for metric, v in mv.items():
        ctx.rec.add(v, section="fidelity", generator=name, metric=metric, fold=ctx.fold, seed=seed)
    if not o.per_class:
        return
    lab_s, lab_t = table.label.astype(str), ctx.test.label.astype(str)
    for c in sorted(set(lab_t)):
        sub_s, sub_t = table.take(lab_s == c), ctx.test.take(lab_t == c)
        if len(sub_s) == 0:
            continue
        ext = F.extended_metrics(sub_s, sub_t, packets=k)
        for metric in ("payload_jsd_dir0", "payload_jsd_dir1", "direction_3gram_jsd", "iat_jsd_dir0",
                       "burst_jsd", "flow_len_jsd"):
            ctx.rec.add(ext[metric], section="fidelity_class", generator=name, metric=metric, cls=c,
                        fold=ctx.fold, seed=seed)
    # multivariate per class: the detection AUC of one pooled forest, scored within each class
    _, per = detection_auc_by_group(embed(ctx.test), embed(table), lab_t, lab_s, seed=seed,
                                    n_estimators=o.n_estimators, n_jobs=o.n_jobs, min_per_side=CLASS_AUC_MIN)
    for c, auc in per.items():
        ctx.rec.add(auc, section="fidelity_class", generator=name, metric="detection_auc", cls=c, fold=ctx.fold,
                    seed=seed)


def novelty_privacy(ctx: FoldContext, name: str, model: Any | None, synthetic: FlowTable | None, seed: int) -> None:
    """Copy rates, DCR ratio and membership-inference AUC (likelihood hook when the model has one)."""
    xf = lambda t: np.hstack([build_features(t, "paper", PAPER_PACKETS)[:, :PAPER_PACKETS] / 1500.0,  # noqa: E731
                              build_features(t, "paper", PAPER_PACKETS)[:, PAPER_PACKETS:]])
    x_train, x_test = xf(ctx.train), xf(ctx.test)
    keys = dict(section="privacy", generator=name, fold=ctx.fold, seed=seed)
    if synthetic is None:  # the real reference: test against train
        ctx.rec.add(P.copy_rate(x_test, x_train), metric="copy_rate", **keys)
        ctx.rec.add(1.0, metric="dcr_ratio", **keys)
        return
    x_syn = xf(synthetic)
    ctx.rec.add(P.copy_rate(x_syn, x_train), metric="copy_rate", **keys)
    ctx.rec.add(P.n_distinct(x_syn) / max(1, len(x_syn)), metric="distinct_share", **keys)
    d = P.dcr_ratio(x_train, x_test, x_syn[: max(2000, len(x_test))])
    ctx.rec.add(d["dcr_ratio"], metric="dcr_ratio", **keys)
    rng = np.random.default_rng(seed)
    n = min(len(ctx.train), len(ctx.test), 1000)
    mem, non = rng.choice(len(ctx.train), n, replace=False), rng.choice(len(ctx.test), n, replace=False)
    hook = getattr(model, "log_likelihood", None)
    if callable(hook):
        s_mem = np.asarray(hook(ctx.train.take(mem)), np.float64)
        s_non = np.asarray(hook(ctx.test.take(non)), np.float64)
        attack = "likelihood"
    else:
        s_mem = P.distance_attack_scores(x_train[mem], x_syn)
        s_non = P.distance_attack_scores(x_test[non], x_syn)
        attack = "distance"
    ctx.rec.add(P.membership_auc(s_mem, s_non), metric="mia_auc", attack=attack, **keys)


def augmentation(ctx: FoldContext, pools: Mapping[str, list[FlowTable]], strict: tuple[str, ...]) -> None:
    """Real-only vs real + synthetic at every fraction and seed, paper protocol for every generator with a
    pool, strict protocol (one fresh fit per subset) for the generators in `strict`."""
    o = ctx.opts
    y_train = ctx.train.label.astype(str)
    x_test, y_test = build_features(ctx.test, "paper", PAPER_PACKETS), ctx.test.label.astype(str)
    full = ctx.train.class_counts()
    clf = o.classifiers[0]

    def score(table: FlowTable, seed: int) -> float:
        return fit_score(build_features(table, "paper", PAPER_PACKETS), table.label.astype(str), x_test, y_test,
                         clf, seed, o)["macro_f1"]

    for frac in o.fractions:
        for a in range(o.aug_seeds):
            rng = np.random.default_rng([o.fold_seed, ctx.fold, int(frac * 1e4), a])
            sub = ctx.train.take(A.low_data_subset(y_train, frac, rng))
            base = dict(section="augment", fraction=frac, fold=ctx.fold, seed=a)
            ctx.rec.add(score(sub, a), generator=REAL, protocol="real-only", metric="macro_f1", **base)
            need = A.topup_counts(full, sub.class_counts())
            if "paper" in o.protocols:
                for name, pool in pools.items():
                    syn = A.take_per_class(pool[a % len(pool)], need)
                    ctx.rec.add(score(FlowTable.concat([sub, syn]), a), generator=name, protocol="paper",
                                metric="macro_f1", **base)
                    if frac in o.ratio_fractions:
                        big = FlowTable.concat(pool)
                        for ratio in o.ratios:
                            syn = A.take_per_class(big, A.ratio_counts(sub.class_counts(), ratio))
                            ctx.rec.add(score(FlowTable.concat([sub, syn]), a), generator=name, protocol="paper",
                                        metric="macro_f1_ratio", ratio=ratio, **base)
            strict_here = (o.strict_fractions is None or frac in o.strict_fractions) and (
                o.strict_seeds is None or a < o.strict_seeds)
            for name in strict if strict_here else ():
                ctx.step(f"fold {ctx.fold}: strict {name} at {frac:.0%} seed {a}")
                model, cost = fit_generator(name, sub, o, seed=1000 + a, max_time=o.strict_max_time)
                # capped like the paper protocol's pool (sample_scale × full count), so both add as much
                cap = {c: min(k, max(1, round(full[c] * o.sample_scale))) for c, k in need.items() if k > 0}
                syn = model.sample({c: k for c, k in cap.items() if c in model.class_counts_}, random_state=2000 + a)
                ctx.rec.add(score(FlowTable.concat([sub, syn]), a), generator=name, protocol="strict",
                            metric="macro_f1", **base)
                ctx.rec.add(cost["train_seconds"], generator=name, protocol="strict", metric="train_seconds", **base)


# ---------------------------------------------------------------------------------------------- driver
@contextmanager
def _stepper(enabled: bool, label: str | None = None) -> Iterator[Step]:
    """Progress lines `[bench   12.3s] message` on stderr (plain lines: readable in logs and CI); `label`
    (the run's title) tells interleaved lines of several benches sharing a worker pool apart."""
    import sys

    start = time.perf_counter()
    tag = f"{label}: " if label else ""

    def step(msg: str) -> None:
        if enabled:
            print(f"[bench {time.perf_counter() - start:7.1f}s] {tag}{msg}", file=sys.stderr, flush=True)

    yield step


def run_fold(fold: int, train: FlowTable, test: FlowTable, generators: list[str], opts: BenchOptions,
             rec: Records, step: Step, keep: dict[str, Any]) -> dict[str, Any]:
    """Every section for one fold; returns the fold's confusion matrices and per-generator info."""
    ctx = FoldContext(fold=fold, train=train, test=test, rec=rec, opts=opts, step=step,
                      labels=sorted(set(test.label.astype(str)) | set(train.label.astype(str))))
    step(f"fold {fold}: {len(train)} train / {len(test)} test flows; real reference")
    classification(ctx, REAL, [train])
    fidelity(ctx, REAL, train, seed=0)
    novelty_privacy(ctx, REAL, None, None, seed=0)
    pools: dict[str, list[FlowTable]] = {}
    info: dict[str, Any] = {}
    counts = {c: max(1, round(n * opts.sample_scale)) for c, n in train.class_counts().items()}
    for g_i, name in enumerate(generators):
        step(f"fold {fold}: fit {name}")
        model, cost = fit_generator(name, train, opts, seed=100 * fold + g_i)
        step(f"fold {fold}: {name} fitted in {cost['train_seconds']:.1f}s; sampling")
        n_draws = opts.seeds if opts.sample_seeds is None else max(1, min(opts.sample_seeds, opts.seeds))
        tables, speed = draw_samples(model, counts, n_draws, base_seed=10_000 * (fold + 1) + 100 * g_i)
        for metric, v in {**cost, **speed}.items():
            rec.add(v, section="cost", generator=name, metric=metric, fold=fold, seed=0)
        info[name] = {"training": _jsonable(getattr(model, "training_", {})), "config": model.config_.to_dict()}
        pools[name] = tables
        step(f"fold {fold}: {name} fidelity, TSTR, privacy")
        fidelity(ctx, name, tables[0], seed=0)
        classification(ctx, name, tables)
        novelty_privacy(ctx, name, model, tables[0], seed=0)
        if fold == 0:
            keep[name] = tables[0]
    if opts.fractions:
        in_strict = "strict" in opts.protocols and (opts.strict_folds is None or fold < opts.strict_folds)
        strict = tuple(g for g in generators if in_strict and (opts.strict_generators is None
                                                               or g in opts.strict_generators))
        step(f"fold {fold}: augmentation ({len(opts.fractions)} fractions × {opts.aug_seeds} seeds"
             + (f", strict: {', '.join(strict)})" if strict else ")"))
        augmentation(ctx, pools, strict)
    if fold == 0:
        keep[REAL] = train
        keep["test"] = test
    return {"confusion": ctx.confusion, "labels": ctx.labels, "generators": info}


def _one_fold(fold: int, train: FlowTable, test: FlowTable, generators: list[str], opts: BenchOptions,
              step: Step | None = None) -> tuple[list[dict], dict[str, Any], dict[str, Any]]:
    """One fold with its own records: (record rows, run_fold's output, tables kept for plots)."""
    rec, keep = Records(), {}
    if step is None:  # in a worker process: own progress lines, prefixed so interleaved folds stay readable
        with _stepper(opts.progress, opts.title) as worker_step:
            out = run_fold(fold, train, test, generators, opts, rec, worker_step, keep)
    else:
        out = run_fold(fold, train, test, generators, opts, rec, step, keep)
    return rec.rows, out, keep


def _worker_init() -> None:
    """Worker processes share the machine's cores: one torch thread each (see _train.torch_threads)."""
    import torch

    torch.set_num_threads(1)


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def run_bench(train: FlowTable, test: FlowTable | None, generators: list[str], out_dir: Path | str,
              options: BenchOptions | None = None) -> dict:
    """Run the whole benchmark and write report.md, report.html and results.json into `out_dir`.

    `test=None` with folds ≥ 2 folds `train` alone; with a test table and folds ≥ 2 the two are pooled
    first (each fold then has its own, grouped split). Returns the results dict (what results.json holds).
    With `fold_jobs` > 1 the folds run in that many worker processes (see `fold_pool`).
    """
    opts = (options or BenchOptions()).resolved()
    jobs = min(max(1, opts.fold_jobs), max(1, opts.folds))
    if jobs == 1:
        return start_bench(train, test, generators, out_dir, opts).finish()
    with fold_pool(jobs) as pool:
        return start_bench(train, test, generators, out_dir, opts, pool=pool).finish()


@contextmanager
def fold_pool(jobs: int) -> Iterator[Any]:
    """Worker processes for folds (several benches may share one, so no core idles between tasks).

    Why processes: a fold is minutes of single-threaded torch and tree fitting, and ~1 M-parameter models
    gain nothing from intra-op threads, so on a K-core machine K folds at once is the way to use the
    cores. `spawn`, not `fork`: forking a process that has started torch's thread pools can deadlock.
    """
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn"), initializer=_worker_init) as pool:
        yield pool


def start_bench(train: FlowTable, test: FlowTable | None, generators: list[str], out_dir: Path | str,
                options: BenchOptions | None = None, *, pool: Any | None = None) -> BenchRun:
    """Check everything, make the folds and (with a `pool`) submit them; `.finish()` collects and reports.

    Every check that can fail runs here, before any fold starts. Records do not depend on whether folds
    ran in this process or in workers: every seed derives from the fold index (test).
    """
    from netsynth.models import get_generator

    opts = (options or BenchOptions()).resolved()
    if not generators:
        raise InputError("name at least one generator")
    for g in generators:
        get_generator(g)  # unknown names fail before any work
    check_overrides(list(generators), opts)
    bad = [p for p in opts.protocols if p not in A.PROTOCOLS]
    if bad:
        raise InputError(f"unknown protocol(s) {bad}; choose from {A.PROTOCOLS}")
    for name, t in (("max_time", opts.max_time), ("strict_max_time", opts.strict_max_time)):
        if t is not None and not t > 0:
            raise InputError(f"{name} must be > 0 seconds, got {t}")
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise InputError(f"{out_dir}: exists and is a file; the bench writes a folder")
    if len(train) == 0 or (test is not None and len(test) == 0):
        raise InputError("the bench needs flows in the train (and test) table; got an empty table")
    run = BenchRun(train=train, test=test, generators=list(generators), out_dir=Path(out_dir), opts=opts)
    run.pairs, run.split = fold_pairs(train, test, opts)
    if pool is not None:
        worker_opts = dataclasses.replace(opts, n_jobs=1, fold_jobs=1)
        run.futures = [pool.submit(_one_fold, i, tr, te, run.generators, worker_opts)
                       for i, (tr, te) in enumerate(run.pairs)]
    return run


@dataclass
class BenchRun:
    """A started benchmark: its folds (running in a pool, or run by `finish` in this process)."""

    train: FlowTable
    test: FlowTable | None
    generators: list[str]
    out_dir: Path
    opts: BenchOptions
    pairs: list[tuple[FlowTable, FlowTable]] = field(default_factory=list)
    split: dict = field(default_factory=dict)
    futures: list[Any] | None = None
    t0: float = field(default_factory=time.perf_counter)

    def _fold_outputs(self, step: Step) -> Iterator[tuple[list[dict], dict[str, Any], dict[str, Any]]]:
        if self.futures is not None:
            step(f"{len(self.pairs)} folds submitted to worker processes")
            for f in self.futures:
                yield f.result()
            return
        for i, (tr, te) in enumerate(self.pairs):
            yield _one_fold(i, tr, te, self.generators, self.opts, step)

    def finish(self) -> dict:
        """Wait for every fold, assemble the results and write report.md, report.html and results.json."""
        from netsynth.evaluate.bench_report import write_bench

        rec, keep = Records(), {}
        fold_info, confusion, labels, gen_info = [], {}, [], {}
        with _stepper(self.opts.progress, self.opts.title if self.futures is not None else None) as step:
            for i, ((tr, te), (rows, out, kept)) in enumerate(zip(self.pairs, self._fold_outputs(step), strict=True)):
                rec.rows.extend(rows)
                keep.update(kept)
                labels = sorted(set(labels) | set(out["labels"]))
                for name, m in out["confusion"].items():
                    confusion.setdefault(name, []).append((out["labels"], m))
                gen_info.setdefault(i, out["generators"])
                fold_info.append({"fold": i, "n_train": len(tr), "n_test": len(te),
                                  "train_counts": tr.class_counts(), "test_counts": te.class_counts(),
                                  "test_groups": len({c for c in te.capture if c is not None})})
            results = assemble(rec, self.opts, self.generators, self.train, self.test, self.split, fold_info,
                               confusion, labels, gen_info, time.perf_counter() - self.t0)
            step("writing report")
            write_bench(results, self.out_dir, keep if self.opts.plots else None)
            step(f"done in {time.perf_counter() - self.t0:.1f}s → {self.out_dir}")
        return results


def _merge_confusion(parts: list[tuple[list[str], np.ndarray]], labels: list[str]) -> list[list[int]]:
    """Sum per-fold confusion matrices over a common label order (folds may miss a class)."""
    total = np.zeros((len(labels), len(labels)), dtype=np.int64)
    pos = {c: i for i, c in enumerate(labels)}
    for labs, m in parts:
        idx = [pos[c] for c in labs]
        total[np.ix_(idx, idx)] += np.asarray(m, dtype=np.int64)
    return total.tolist()


def assemble(rec: Records, opts: BenchOptions, generators: list[str], train: FlowTable, test: FlowTable | None,
             split: dict, fold_info: list[dict], confusion: dict, labels: list[str], gen_info: dict,
             seconds: float) -> dict:
    """The results dict: inputs, options, folds, records, summary, confusion, goals, timing, versions."""
    from netsynth.evaluate.goals import evaluate_goals

    summary = rec.summary()
    pooled = train if test is None else FlowTable.concat([train, test])
    results = {
        "bench_version": BENCH_VERSION,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "title": opts.title or "netsynth bench",
        "command": opts.command,
        "options": opts.to_dict(),
        "generators": list(generators),
        "generator_info": {str(k): v for k, v in gen_info.items()},
        "inputs": {"n_flows": len(pooled), "class_counts": pooled.class_counts(), "classes": pooled.classes,
                   "max_packets": pooled.max_packets, "given_test": test is not None},
        "split": split,
        "folds": fold_info,
        "labels": labels,
        "confusion": {"classifier": opts.classifiers[0], "features": opts.feature_sets[0], "seed": 0,
                      "summed_over_folds": True,
                      "matrices": {k: _merge_confusion(v, labels) for k, v in confusion.items()}},
        "summary": summary,
        "records": rec.rows,
        "timing": {"total_seconds": seconds},
        "versions": _versions_all(),
    }
    results["goals"] = evaluate_goals(results)
    return _json_safe(results)


def _versions_all() -> dict[str, str]:
    out = _versions()
    for mod in ("torch", "lightgbm", "matplotlib"):
        with contextlib.suppress(ImportError):
            out[mod] = __import__(mod).__version__
    return out


__all__ = ["BenchOptions", "BenchRun", "Records", "fold_pool", "lookup", "parse_overrides", "run_bench", "start_bench"]
