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
from sklearn.utils.validation import check_array

from .._core import check_confidence_level
from .._numba import jit

__all__ = [
    "conditional_mae",
    "excess_risk_target_coverage",
    "mean_squared_conditional_error",
    "worst_slab_coverage",
]


def _is_int(value):
    # True is an Integral in Python but never a meaningful count here
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_covered(X, covered):
    X = np.asarray(X)
    if X.ndim == 1:
        X = X.reshape(-1, 1)
    # finite, at least one sample and one feature: NaN would poison k-means and the slab
    # projections, and zero features leave nothing to condition on
    X = check_array(X, dtype=float, input_name="X")
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
    if not _is_int(n_clusters) or not 1 <= n_clusters <= len(X):
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
    """Exact minimum mean of a contiguous window of at least ``min_size`` 0/1 entries.

    Dinkelbach iteration on the ratio ``count / length``, in integer arithmetic. With the current
    candidate ``a / b`` (the mean of some window; first the whole sample), a window of mean below
    ``a / b`` exists iff ``min_{j - i >= L} (Q_j - Q_i) < 0`` with ``Q_k = b P_k - a k`` (``P`` the
    prefix counts): an O(n) scan with a running maximum of ``Q_i``. The minimising window
    becomes the next candidate. Each step strictly lowers ``a / b`` among the finitely many
    window means, so the loop ends (after a few scans in practice) at the exact minimum. Every
    comparison is between integers (``|Q_k| <= n**2 < 2**63`` for n < 3e9), so there is no
    tolerance and no floating-point spacing to get stuck on (a bisection on a float threshold
    cannot narrow its bracket below the spacing of doubles, which exceeds ``1/n**2`` near 1 for
    n > ~4e7).
    """
    n = sorted_covered.shape[0]
    prefix = np.zeros(n + 1, dtype=np.int64)
    for k in range(n):
        prefix[k + 1] = prefix[k] + (1 if sorted_covered[k] != 0 else 0)
    a = prefix[n]  # the whole sample is a valid window
    b = np.int64(n)
    while True:
        best = np.int64(0)
        best_i = 0
        best_j = 0
        arg_max = 0
        q_max = np.int64(0)  # Q_0
        for j in range(min_size, n + 1):
            i = j - min_size
            q_i = b * prefix[i] - a * i
            if q_i > q_max:
                q_max = q_i
                arg_max = i
            value = (b * prefix[j] - a * j) - q_max
            if value < best:
                best = value
                best_i = arg_max
                best_j = j
        if best >= 0:
            return a / b
        a = prefix[best_j] - prefix[best_i]
        b = np.int64(best_j - best_i)


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
    if isinstance(delta, bool) or not isinstance(delta, numbers.Real) or not 0 < delta <= 1:
        raise ValueError(f"delta must lie in (0, 1], got {delta!r}.")
    if not _is_int(n_directions) or n_directions < 1:
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
    if not _is_int(n_splits) or not 2 <= n_splits <= len(X):
        raise ValueError(f"n_splits must be an integer in [2, n_samples], got {n_splits!r}.")
    base = LogisticRegression(max_iter=2000) if estimator is None else estimator
    if not (hasattr(base, "fit") and hasattr(base, "predict_proba")):
        raise TypeError(
            "estimator must be a classifier with fit and predict_proba (the probability of "
            f"coverage is what ERT compares), got {type(base).__name__}."
        )
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
