"""Conditional-coverage diagnostics for any interval or set predictor.

All take the coverage indicators ``covered[i] = 1{y_i in C(x_i)}`` (or, for :func:`conditional_mae`,
exact conditional coverages) so they apply to classifiers and regressors alike. Definitions follow
the CoCP paper's App. C.5 and the ``covmetrics`` package (Braun et al. 2025): MSCE over k-means
clusters, worst-slab coverage (WSC) and the excess risk of the target coverage (ERT).
"""

import numbers

import numpy as np
from sklearn.base import clone
from sklearn.cluster import KMeans
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold
from sklearn.preprocessing import StandardScaler

from .._core import check_confidence_level
from .._numba import jit

__all__ = [
    "conditional_mae",
    "excess_risk_target_coverage",
    "mean_squared_conditional_error",
    "worst_slab_coverage",
]


def _check_covered(X, covered):
    X = np.asarray(X, dtype=float)
    if X.ndim == 1:
        X = X.reshape(-1, 1)
    covered = np.asarray(covered, dtype=float).ravel()
    if X.ndim != 2 or X.shape[0] != covered.shape[0]:
        raise ValueError(
            f"X must be 2-D with one row per entry of covered; got X.shape={X.shape} and "
            f"{covered.shape[0]} coverage indicators."
        )
    if covered.size == 0:
        raise ValueError("covered must not be empty.")
    if not np.all((covered == 0) | (covered == 1)):
        raise ValueError("covered must hold 0/1 (or boolean) coverage indicators.")
    return X, covered


def conditional_mae(conditional_coverage, confidence_level=0.9):
    """ConMAE: mean absolute deviation of exact conditional coverages from the target.

    ``mean_i |c_i - confidence_level|`` with ``c_i = P(Y in C(x_i) | X = x_i)``, computable when the
    conditional law is known (e.g. :class:`~sklearn_conformal.datasets.HeteroscedasticOracle`).

    Parameters
    ----------
    conditional_coverage : array-like of shape (n_samples,)
        Exact conditional coverages in [0, 1].
    confidence_level : float, default=0.9

    Returns
    -------
    conmae : float
    """
    level = check_confidence_level(confidence_level)
    c = np.asarray(conditional_coverage, dtype=float).ravel()
    if c.size == 0 or np.any(~np.isfinite(c)) or np.any((c < 0) | (c > 1)):
        raise ValueError("conditional_coverage must be a non-empty array of values in [0, 1].")
    return float(np.mean(np.abs(c - level)))


def mean_squared_conditional_error(
    X, covered, confidence_level=0.9, *, n_clusters=10, random_state=42
):
    """MSCE: cluster-size weighted squared coverage error over k-means clusters of ``X``.

    ``sum_g (|G_g| / n) (mean_{i in G_g} covered_i - confidence_level)**2`` with ``G_g`` the
    clusters of ``KMeans(n_clusters, n_init=10)`` on standardised ``X`` (CoCP paper, App. C.5).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    covered : array-like of shape (n_samples,)
        0/1 coverage indicators.
    confidence_level : float, default=0.9
    n_clusters : int, default=10
    random_state : int, default=42
        Seed of k-means.

    Returns
    -------
    msce : float
    """
    level = check_confidence_level(confidence_level)
    X, covered = _check_covered(X, covered)
    if not isinstance(n_clusters, numbers.Integral) or not 1 <= n_clusters <= len(X):
        raise ValueError(f"n_clusters must be an integer in [1, n_samples], got {n_clusters!r}.")
    labels = KMeans(n_clusters=n_clusters, n_init=10, random_state=random_state).fit_predict(
        StandardScaler().fit_transform(X)
    )
    total = 0.0
    for g in np.unique(labels):
        members = labels == g
        total += members.mean() * (covered[members].mean() - level) ** 2
    return float(total)


@jit()
def _min_window_mean(sorted_covered, min_size):
    """Exact minimum mean of a contiguous window of at least ``min_size`` entries.

    Bisection on the threshold t: some window has mean <= t iff
    ``min_j (Q_j - max_{i <= j - L} Q_i) <= 0`` with ``Q_k = P_k - t k`` (P the prefix sums), an
    O(n) test. Window means of 0/1 data are fractions with denominators <= n, distinct ones differ
    by >= 1/n**2, so once the bracket is narrower than that the witness window's mean is the
    minimum, returned exactly.
    """
    n = sorted_covered.shape[0]
    prefix = np.zeros(n + 1)
    for k in range(n):
        prefix[k + 1] = prefix[k] + sorted_covered[k]
    lo, hi = -1e-12, 1.0 + 1e-12
    best = prefix[n] / n  # the whole sample is a valid window
    tol = 0.25 / (float(n) * float(n))
    while hi - lo > tol:
        t = 0.5 * (lo + hi)
        found = False
        witness = 0.0
        arg_max = 0
        for j in range(min_size, n + 1):
            i = j - min_size
            if prefix[i] - t * i > prefix[arg_max] - t * arg_max:
                arg_max = i
            if (prefix[j] - t * j) - (prefix[arg_max] - t * arg_max) <= 0.0:
                found = True
                witness = (prefix[j] - prefix[arg_max]) / (j - arg_max)
                break
        if found:
            hi = t
            if witness < best:
                best = witness
        else:
            lo = t
    return best


def worst_slab_coverage(X, covered, *, delta=0.1, n_directions=1000, random_state=42):
    """Worst-slab coverage (WSC): the lowest coverage over slabs holding a fraction >= ``delta``.

    For each of ``n_directions`` random unit vectors ``v`` the points are ordered by ``v^T x`` and
    the minimum empirical coverage over all slabs ``{a <= v^T x <= b}`` with at least
    ``ceil(delta n)`` points is taken; WSC is the minimum over directions (Cauchois et al. 2021;
    the CoCP paper uses ``covmetrics.WSC`` with ``delta = 0.1``, 1000 directions). The same points
    choose and evaluate the slab, so WSC is biased low (about 0.82 for exact 0.9 coverage at
    n = 4000); compare methods on equal ``n``. Ties in ``v^T x`` are broken by the stable sort.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    covered : array-like of shape (n_samples,)
        0/1 coverage indicators.
    delta : float in (0, 1], default=0.1
        Minimal slab mass.
    n_directions : int, default=1000
    random_state : int, default=42
        Seed of the directions (standard normal, normalised).

    Returns
    -------
    wsc : float
    """
    X, covered = _check_covered(X, covered)
    if not isinstance(delta, numbers.Real) or not 0 < delta <= 1:
        raise ValueError(f"delta must lie in (0, 1], got {delta!r}.")
    if not isinstance(n_directions, numbers.Integral) or n_directions < 1:
        raise ValueError(f"n_directions must be a positive integer, got {n_directions!r}.")
    n = len(X)
    min_size = max(int(np.ceil(delta * n - 1e-9)), 1)
    rng = np.random.default_rng(random_state)
    directions = rng.standard_normal((n_directions, X.shape[1]))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    worst = 1.0
    for v in directions:
        order = np.argsort(X @ v, kind="stable")
        worst = min(worst, _min_window_mean(covered[order], min_size))
    return float(worst)


def excess_risk_target_coverage(
    X, covered, confidence_level=0.9, *, loss="l1", estimator=None, n_splits=5, random_state=42
):
    """ERT: how much a classifier of ``covered`` from ``X`` beats the constant target coverage.

    With cross-fitted predictions ``p(x)`` of ``P(covered | x)`` (``n_splits`` folds) and
    ``tau = confidence_level``, the mean over folds of ``R(tau) - R(p)``, the risk gain of ``p``
    over the constant ``tau`` under a proper loss (Braun et al. 2025, ``covmetrics.ERT``):

    * ``"l1"``: ``L(p, z) = -sign(p - tau) (z - tau)``, so ERT = mean ``sign(p - tau)(z - tau)``,
      a lower bound on ``E|c(X) - tau|``;
    * ``"l2"``: Brier loss ``(p - z)**2``, a lower bound on ``E(c(X) - tau)**2``.

    Values near 0 (possibly slightly negative) mean no detectable conditional miscoverage.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    covered : array-like of shape (n_samples,)
        0/1 coverage indicators.
    confidence_level : float, default=0.9
    loss : {"l1", "l2"}, default="l1"
    estimator : classifier with ``predict_proba`` or None, default=None
        ``None``: ``LogisticRegression(max_iter=2000)`` (the paper's choice).
    n_splits : int, default=5
    random_state : int, default=42
        Seed of the shuffled folds.

    Returns
    -------
    ert : float
    """
    tau = check_confidence_level(confidence_level)
    X, covered = _check_covered(X, covered)
    if loss not in ("l1", "l2"):
        raise ValueError(f"loss must be 'l1' or 'l2', got {loss!r}.")
    if not isinstance(n_splits, numbers.Integral) or not 2 <= n_splits <= len(X):
        raise ValueError(f"n_splits must be an integer in [2, n_samples], got {n_splits!r}.")
    base = LogisticRegression(max_iter=2000) if estimator is None else estimator
    values = []
    for train, test in KFold(n_splits, shuffle=True, random_state=random_state).split(X):
        z_train, z = covered[train], covered[test]
        if np.unique(z_train).size < 2:  # a classifier cannot be fitted on one class
            p = np.full(len(test), z_train.mean())
        else:
            model = clone(base).fit(X[train], z_train.astype(int))
            p = model.predict_proba(X[test])[:, list(model.classes_).index(1)]
        if loss == "l1":
            values.append(np.mean(np.sign(p - tau) * (z - tau)))
        else:
            values.append(np.mean((tau - z) ** 2) - np.mean((p - z) ** 2))
    return float(np.mean(values))
