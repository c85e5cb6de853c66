"""Latent-mixture (admixture / topic-model) regression data on a simplex, with covariate shift.

This reproduces the synthetic set-up of the SpeedCP paper (Jung et al., 2025, appendix D.1),
written from its description:

* every document ``i`` has latent topic weights ``W_i`` on the ``(K-1)``-simplex. For the
  *symmetric* (training / calibration) distribution, ``W_i ~ Dirichlet(concentration)`` with its
  largest-concentration coordinate moved to a uniformly chosen topic and the other coordinates
  permuted at random, so the density is symmetric across the vertices; ``K`` documents are pure
  (one vertex each). For the *shifted* (test) distribution the Dirichlet draws are not permuted,
  except for a fraction ``shift_shuffle_fraction`` of rows, so most mass sits near vertex 0;
* a topic-word matrix ``A`` (``n_words x K``, columns on the simplex) has uniform entries and
  ``K`` anchor words; document ``i`` has ``doc_length`` words drawn from
  ``Multinomial(doc_length, A W_i)`` and its covariates are the word frequencies;
* the response is ``y = W beta + sin(2 pi W_0) + W_1^2 + noise`` with ``beta`` uniform on
  ``[1, 10]`` normalised to sum 1, and Gaussian noise whose standard deviation depends on the
  dominant topic ``argmax_k W_ik`` (``noise_scale[k]``). The default levels are the ones the
  paper's simulation code applies: 0.1 on topic 1 and 0.3 elsewhere, so the shifted test rows,
  which mostly sit near vertex 0, are in a high-noise region. (The paper's formulas did not
  survive in our copy; with these levels our SpeedCP reproduces its Table 4 cutoff at 600 / 300
  / 100 rows, 1.38 against 1.376.)

Coverage conditional on the dominant topic is the quantity of interest; the latent weights are
returned so it can be measured, and :func:`latent_features` gives the embedding the paper feeds to
the kernel (centred log-ratio of ``W``, standardised per row).
"""

import numbers

import numpy as np
from sklearn.utils import check_random_state

__all__ = ["make_latent_mixture", "latent_features"]


def _check_int(value, name, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def make_latent_mixture(
    n_samples=900,
    *,
    n_shifted=0,
    n_topics=3,
    n_words=1000,
    doc_length=1000,
    concentration=None,
    noise_scale=None,
    shift_shuffle_fraction=0.3,
    random_state=None,
):
    """Generate admixture regression data, optionally followed by covariate-shifted rows.

    Parameters
    ----------
    n_samples : int, default=900
        Rows from the symmetric distribution (training and calibration data).
    n_shifted : int, default=0
        Rows from the shifted distribution (concentrated near the first topic), appended after
        the ``n_samples`` symmetric rows. Both parts share the topic-word matrix and the
        regression function.
    n_topics : int, default=3
        Number of latent topics ``K`` (at least 2).
    n_words : int, default=1000
        Vocabulary size, i.e. the number of covariates.
    doc_length : int, default=1000
        Words per document (multinomial total count).
    concentration : array-like of shape (n_topics,), default=None
        Dirichlet parameters; the default is ``(2, 1, ..., 1)`` as in the paper.
    noise_scale : array-like of shape (n_topics,), default=None
        Noise standard deviation per dominant topic; default ``0.3`` for every topic except
        ``0.1`` for topic 1, i.e. ``(0.3, 0.1, 0.3)`` for three topics.
    shift_shuffle_fraction : float, default=0.3
        Fraction of shifted rows whose topic weights are randomly permuted (the rest keep the
        heavy coordinate on topic 0).
    random_state : int, RandomState instance or None, default=None
        Seed for reproducibility.

    Returns
    -------
    X : ndarray of shape (n_samples + n_shifted, n_words)
        Word frequencies (rows sum to 1).
    y : ndarray of shape (n_samples + n_shifted,)
        Responses.
    W : ndarray of shape (n_samples + n_shifted, n_topics)
        Latent topic weights.
    topic : ndarray of shape (n_samples + n_shifted,)
        Dominant topic ``argmax_k W_ik``.

    Examples
    --------
    >>> from sklearn_conformal.datasets import make_latent_mixture
    >>> X, y, W, topic = make_latent_mixture(300, n_shifted=100, random_state=0)
    >>> X.shape, y.shape, W.shape, topic.shape
    ((400, 1000), (400,), (400, 3), (400,))
    """
    n_samples = _check_int(n_samples, "n_samples", 0)
    n_shifted = _check_int(n_shifted, "n_shifted", 0)
    K = _check_int(n_topics, "n_topics", 2)
    n_words = _check_int(n_words, "n_words", K)
    doc_length = _check_int(doc_length, "doc_length", 1)
    if n_samples + n_shifted < 1:
        raise ValueError("n_samples + n_shifted must be at least 1.")
    if concentration is None:
        concentration = np.array([2.0] + [1.0] * (K - 1))
    concentration = np.asarray(concentration, dtype=float)
    if concentration.shape != (K,) or np.any(concentration <= 0):
        raise ValueError("concentration must hold n_topics positive values.")
    if noise_scale is None:
        noise_scale = np.full(K, 0.3)
        noise_scale[1] = 0.1
    noise_scale = np.asarray(noise_scale, dtype=float)
    if noise_scale.shape != (K,) or np.any(noise_scale < 0):
        raise ValueError("noise_scale must hold n_topics non-negative values.")
    if not 0.0 <= shift_shuffle_fraction <= 1.0:
        raise ValueError("shift_shuffle_fraction must lie in [0, 1].")
    rng = check_random_state(random_state)

    # symmetric part: heavy coordinate on a random topic, the others permuted
    W_sym = np.zeros((n_samples, K))
    if n_samples:
        probs = rng.dirichlet(concentration, size=n_samples)
        topics = rng.randint(K, size=n_samples)
        for i in range(n_samples):
            others = rng.permutation(np.arange(1, K))
            order = np.empty(K, dtype=int)
            order[topics[i]] = 0
            order[np.arange(K) != topics[i]] = others
            W_sym[i] = probs[i, order]
        anchors = rng.choice(n_samples, size=min(K, n_samples), replace=False)
        W_sym[anchors] = np.eye(K)[: anchors.size]
    # shifted part: unpermuted draws, a fraction shuffled
    W_shift = rng.dirichlet(concentration, size=n_shifted) if n_shifted else np.zeros((0, K))
    n_shuffle = int(shift_shuffle_fraction * n_shifted)
    for i in rng.choice(n_shifted, size=n_shuffle, replace=False) if n_shuffle else []:
        W_shift[i] = rng.permutation(W_shift[i])
    W = np.vstack([W_sym, W_shift])
    W /= W.sum(axis=1, keepdims=True)

    A = rng.uniform(0.0, 1.0, size=(n_words, K))
    A[rng.choice(n_words, size=K, replace=False)] = np.eye(K)
    A /= A.sum(axis=0, keepdims=True)
    P = W @ A.T
    P /= P.sum(axis=1, keepdims=True)
    D = np.vstack([rng.multinomial(doc_length, p) for p in P])
    X = D / doc_length

    beta = rng.uniform(1.0, 10.0, size=K)
    beta /= beta.sum()
    f = W @ beta + np.sin(2 * np.pi * W[:, 0]) + W[:, 1] ** 2
    topic = np.argmax(W, axis=1)
    y = f + rng.normal(size=W.shape[0]) * noise_scale[topic]
    return X, y, W, topic


def latent_features(W, eps=None):
    """Row-standardised centred log-ratio of topic weights (the kernel embedding of SpeedCP).

    Parameters
    ----------
    W : array-like of shape (n_samples, n_topics)
        Rows on the simplex.
    eps : float, default=None
        Added before the logarithm; machine epsilon by default.

    Returns
    -------
    Z : ndarray of shape (n_samples, n_topics)
    """
    W = np.asarray(W, dtype=float)
    eps = np.finfo(float).eps if eps is None else eps
    L = np.log(W + eps)
    L -= L.mean(axis=1, keepdims=True)
    sd = L.std(axis=1, keepdims=True)
    sd[sd == 0] = 1.0
    return (L - L.mean(axis=1, keepdims=True)) / sd
