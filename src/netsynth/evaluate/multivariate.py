"""Multivariate fidelity on a fixed embedding: real-vs-synthetic classifier AUC, PRDC, MMD.

Marginal distances can all be small while the joint distribution is wrong (right sizes, wrong order).
These three look at whole flows. The embedding is *fixed* — constant scalings, nothing fitted to either
side — so every generator, fold and seed is embedded identically and the numbers are comparable.

- AUC of a classifier telling real from synthetic (cross-validated): 0.5 = indistinguishable, 1 = trivially.
- Precision / recall / density / coverage (Naeem et al. 2020, "Reliable fidelity and diversity metrics
  for generative models"), k-nearest-neighbour balls around real points.
- MMD² (unbiased) with a Gaussian kernel whose bandwidth is the median real–real distance.
"""

from __future__ import annotations

import numpy as np

from netsynth.flows import FlowTable

EMBED_PACKETS = 10
#: Payload bytes are divided by this (≈ MTU) so one feature does not dominate the distances.
PAYLOAD_SCALE = 1500.0
MAX_POINTS = 2000


def embed(table: FlowTable, packets: int = EMBED_PACKETS) -> np.ndarray:
    """(flows, 3·packets + 1): payload/1500, direction, log10(IAT + 1 µs)/6 + 1 per position, length/packets.

    Padding positions are 0 in every block, so flow length is visible both directly and through them.
    """
    k = min(packets, table.max_packets)
    m = table.mask[:, :k]
    pl = table.payload_len[:, :k] / PAYLOAD_SCALE * m
    di = table.direction[:, :k].astype(np.float64) * m
    iat = (np.log10(table.iat[:, :k].astype(np.float64) + 1e-6) / 6.0 + 1.0) * m
    blocks = [pl, di, iat]
    if k < packets:
        blocks = [np.pad(b, ((0, 0), (0, packets - k))) for b in blocks]
    length = np.minimum(table.n_packets, packets)[:, None] / packets
    return np.hstack([*blocks, length]).astype(np.float64)


def _subsample(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return x if len(x) <= n else x[rng.choice(len(x), n, replace=False)]


def _knn_radius(x: np.ndarray, k: int) -> np.ndarray:
    """Distance from each row of x to its k-th nearest other row."""
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=min(k + 1, len(x))).fit(x)
    dist, _ = nn.kneighbors(x)
    return dist[:, -1]


def prdc(real: np.ndarray, fake: np.ndarray, k: int = 5) -> dict[str, float]:
    """Precision, recall, density, coverage of `fake` against `real` (Naeem et al. 2020, k-NN balls).

    precision: share of fake points inside some real k-NN ball; recall: share of real points inside some
    fake k-NN ball; density: mean number of real balls containing a fake point, / k (≈ 1 when matched);
    coverage: share of real points whose ball contains at least one fake point. Identical sets give
    precision = recall = coverage = 1 and density ≈ 1.
    """
    from scipy.spatial.distance import cdist

    if len(real) < 2 or len(fake) < 2:
        return {"precision": float("nan"), "recall": float("nan"), "density": float("nan"),
                "coverage": float("nan")}
    r_real, r_fake = _knn_radius(real, k), _knn_radius(fake, k)
    d = cdist(real, fake)  # (real, fake)
    inside = d <= r_real[:, None] + 1e-12
    return {
        "precision": float(inside.any(axis=0).mean()),
        "recall": float((d <= r_fake[None, :] + 1e-12).any(axis=1).mean()),
        "density": float(inside.sum(axis=0).mean() / k),
        "coverage": float((d.min(axis=1) <= r_real + 1e-12).mean()),
    }


def mmd2(x: np.ndarray, y: np.ndarray, bandwidth: float | None = None) -> float:
    """Unbiased MMD² with a Gaussian kernel; bandwidth = median pairwise distance of `x` when not given.

    The median heuristic is taken on the real side only, so the kernel does not adapt to the synthetic
    sample it judges. Identical sets give ≈ 0 (exactly 0 in expectation; can be slightly negative).
    """
    from scipy.spatial.distance import cdist

    if len(x) < 2 or len(y) < 2:
        return float("nan")
    dxx, dyy, dxy = cdist(x, x), cdist(y, y), cdist(x, y)
    if bandwidth is None:
        tri = dxx[np.triu_indices(len(x), 1)]
        bandwidth = float(np.median(tri[tri > 0])) if np.any(tri > 0) else 1.0
    g = 1.0 / (2.0 * bandwidth**2)
    kxx, kyy, kxy = np.exp(-g * dxx**2), np.exp(-g * dyy**2), np.exp(-g * dxy**2)
    n, m = len(x), len(y)
    return float((kxx.sum() - n) / (n * (n - 1)) + (kyy.sum() - m) / (m * (m - 1)) - 2 * kxy.mean())


def detection_auc(real: np.ndarray, fake: np.ndarray, *, seed: int = 0, n_estimators: int = 100,
                  n_jobs: int | None = -1, folds: int = 3) -> float:
    """Cross-validated ROC AUC of a random forest telling `real` (0) from `fake` (1); 0.5 = indistinguishable.

    Both sides are subsampled to the same size so the AUC is not driven by class balance.
    """
    y, p, _ = _detection_probs(real, fake, None, None, seed=seed, n_estimators=n_estimators, n_jobs=n_jobs,
                               folds=folds)
    return _auc(y, p)


def detection_auc_by_group(real: np.ndarray, fake: np.ndarray, real_groups: np.ndarray, fake_groups: np.ndarray,
                           *, seed: int = 0, n_estimators: int = 100, n_jobs: int | None = -1, folds: int = 3,
                           min_per_side: int = 5) -> tuple[float, dict[str, float]]:
    """The detection AUC overall and within each group (class), from one cross-validated forest.

    Why one forest: a forest per class costs a fit per class and small classes have too few points to
    train one; scoring the out-of-fold probabilities of the pooled real-vs-synthetic forest within each
    class answers the same question (can this class's synthetic flows be told from its real ones?) at
    the price of one fit. A group with fewer than `min_per_side` flows on either side gets NaN.
    """
    y, p, g = _detection_probs(real, fake, real_groups, fake_groups, seed=seed, n_estimators=n_estimators,
                               n_jobs=n_jobs, folds=folds)
    per = {}
    for c in sorted(set(np.asarray(real_groups).astype(str))):
        sel = g == c
        ok = min(int((y[sel] == 0).sum()), int((y[sel] == 1).sum())) >= min_per_side
        per[c] = _auc(y[sel], p[sel]) if ok else float("nan")
    return _auc(y, p), per


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p)) if len(y) and len(set(y.tolist())) == 2 else float("nan")


def _detection_probs(real: np.ndarray, fake: np.ndarray, real_groups: np.ndarray | None,
                     fake_groups: np.ndarray | None, *, seed: int, n_estimators: int, n_jobs: int | None,
                     folds: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, out-of-fold P(fake), groups) on equal-size subsamples of both sides (MAX_POINTS at most)."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    rng = np.random.default_rng(seed)
    n = min(len(real), len(fake), MAX_POINTS)
    if n < folds:
        return np.zeros(0), np.zeros(0), np.zeros(0, dtype=object)
    ir = rng.choice(len(real), n, replace=False) if len(real) > n else np.arange(len(real))
    jf = rng.choice(len(fake), n, replace=False) if len(fake) > n else np.arange(len(fake))
    x = np.vstack([real[ir], fake[jf]])
    y = np.r_[np.zeros(n), np.ones(n)]
    groups = (np.r_[np.asarray(real_groups)[ir], np.asarray(fake_groups)[jf]].astype(str)
              if real_groups is not None and fake_groups is not None else np.zeros(2 * n, dtype=object))
    clf = RandomForestClassifier(n_estimators=n_estimators, random_state=seed, n_jobs=n_jobs, min_samples_leaf=2)
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    return y, cross_val_predict(clf, x, y, cv=cv, method="predict_proba")[:, 1], groups


def multivariate_metrics(real: FlowTable, fake: FlowTable, *, seed: int = 0, n_jobs: int | None = -1,
                         max_points: int = MAX_POINTS, n_estimators: int = 100) -> dict[str, float]:
    """detection AUC, PRDC and MMD² of `fake` against `real` on the fixed embedding (subsampled)."""
    rng = np.random.default_rng(seed)
    xr = _subsample(embed(real), max_points, rng)
    xf = _subsample(embed(fake), max_points, rng)
    out = {"detection_auc": detection_auc(xr, xf, seed=seed, n_jobs=n_jobs, n_estimators=n_estimators)}
    out.update(prdc(xr, xf))
    m = min(len(xr), len(xf), 1000)
    out["mmd2"] = mmd2(xr[:m], xf[:m])
    return out
