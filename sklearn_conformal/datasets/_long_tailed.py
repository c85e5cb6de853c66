"""Long-tailed classification problems (exponentially decaying class sizes, as in CaCT's LT protocol)."""

import numpy as np
from sklearn.datasets import load_digits, make_classification
from sklearn.utils import check_random_state


def long_tailed_counts(n_max, n_classes, imbalance):
    """Per-class counts ``round(n_max * imbalance ** (k / (K - 1)))``, ``k = 0..K-1`` (head first).

    ``imbalance`` is the ratio of the smallest to the largest class (``gamma``; 1 is balanced).
    """
    k = np.arange(n_classes)
    exponent = k / max(n_classes - 1, 1)
    return np.maximum(np.round(n_max * imbalance**exponent).astype(int), 1)


def make_long_tailed_classification(
    n_samples=2000,
    n_classes=10,
    n_features=20,
    *,
    imbalance=0.1,
    n_informative=None,
    class_sep=1.0,
    n_balanced_per_class=0,
    random_state=None,
):
    """Gaussian-cluster classes (``make_classification``) with exponentially decaying class sizes.

    Class ``k`` gets about ``n_max * imbalance ** (k / (K - 1))`` samples, so class 0 is the head
    and class ``K - 1`` the tail, ``imbalance`` times smaller (the long-tailed protocol of Cao et
    al. 2019 used by CaCT with ``imbalance = 0.1``). Optionally a balanced sample from the *same*
    distribution is returned too, for validation, calibration and class-wise evaluation.

    Parameters
    ----------
    n_samples : int, default=2000
        Approximate size of the long-tailed sample (rounding per class).
    n_classes : int, default=10
    n_features : int, default=20
    imbalance : float in (0, 1], default=0.1
        Smallest over largest class size.
    n_informative : int or None, default=None
        Informative features (``None``: ``min(n_features, max(2, ceil(log2(2 n_classes)) + 2))``,
        enough for ``make_classification``'s hypercube to hold every class).
    class_sep : float, default=1.0
        Separation of the class clusters (larger is easier).
    n_balanced_per_class : int, default=0
        If positive, also return this many samples per class drawn from the same classes.
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    X : ndarray of shape (n, n_features)
    y : ndarray of shape (n,)
        Integer labels ``0..n_classes-1``, class 0 the most frequent.
    X_balanced, y_balanced : ndarrays
        Only when ``n_balanced_per_class > 0``.

    Examples
    --------
    >>> from sklearn_conformal.datasets import make_long_tailed_classification
    >>> X, y = make_long_tailed_classification(n_samples=500, n_classes=5, random_state=0)
    >>> [int(c) for c in __import__("numpy").bincount(y)]
    [232, 130, 73, 41, 23]
    """
    if not (0 < imbalance <= 1):
        raise ValueError(f"imbalance must lie in (0, 1], got {imbalance!r}.")
    if n_classes < 2:
        raise ValueError(f"n_classes must be at least 2, got {n_classes!r}.")
    rng = check_random_state(random_state)
    shape = imbalance ** (np.arange(n_classes) / (n_classes - 1))
    n_max = n_samples / shape.sum()
    counts = long_tailed_counts(n_max, n_classes, imbalance)
    if n_informative is None:
        n_informative = min(n_features, max(2, int(np.ceil(np.log2(2 * n_classes))) + 2))
    per_class = int(counts.max()) + int(n_balanced_per_class)
    X_pool, y_pool = make_classification(
        n_samples=per_class * n_classes,
        n_features=n_features,
        n_informative=n_informative,
        n_redundant=0,
        n_repeated=0,
        n_classes=n_classes,
        n_clusters_per_class=1,
        class_sep=class_sep,
        flip_y=0.0,
        shuffle=False,
        random_state=rng,
    )
    lt_idx, bal_idx = [], []
    for k in range(n_classes):
        idx = rng.permutation(np.flatnonzero(y_pool == k))
        lt_idx.append(idx[: counts[k]])
        bal_idx.append(idx[counts[k] : counts[k] + n_balanced_per_class])
    lt = rng.permutation(np.concatenate(lt_idx))
    X, y = X_pool[lt], y_pool[lt]
    if n_balanced_per_class <= 0:
        return X, y
    bal = rng.permutation(np.concatenate(bal_idx))
    return X, y, X_pool[bal], y_pool[bal]


def make_long_tailed_digits(imbalance=0.1, n_balanced_per_class=90, *, random_state=None):
    """scikit-learn's bundled digits split into a long-tailed training part and a balanced part.

    For each digit, ``n_balanced_per_class`` images go to the balanced part (validation,
    calibration and test); the long-tailed part keeps ``round(n_rest * imbalance ** (k / 9))``
    of the rest for the ``k``-th digit of a random class order, with ``n_rest`` the smallest number
    of remaining images of any digit (a small stand-in for CaCT's MNIST-LT protocol). Features are
    scaled to [0, 1].

    Parameters
    ----------
    imbalance : float in (0, 1], default=0.1
    n_balanced_per_class : int, default=90
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    X_lt, y_lt, X_balanced, y_balanced : ndarrays
    """
    if not (0 < imbalance <= 1):
        raise ValueError(f"imbalance must lie in (0, 1], got {imbalance!r}.")
    rng = check_random_state(random_state)
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    classes = np.unique(y)
    n_rest = min(int((y == c).sum()) for c in classes) - n_balanced_per_class
    if n_rest < 1:
        raise ValueError(f"n_balanced_per_class={n_balanced_per_class} leaves no training images.")
    order = rng.permutation(classes)  # which digit is the head is itself random
    counts = long_tailed_counts(n_rest, len(classes), imbalance)
    lt_idx, bal_idx = [], []
    for rank, c in enumerate(order):
        idx = rng.permutation(np.flatnonzero(y == c))
        bal_idx.append(idx[:n_balanced_per_class])
        lt_idx.append(idx[n_balanced_per_class : n_balanced_per_class + counts[rank]])
    lt = rng.permutation(np.concatenate(lt_idx))
    bal = rng.permutation(np.concatenate(bal_idx))
    return X[lt], y[lt], X[bal], y[bal]
