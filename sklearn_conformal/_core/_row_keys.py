"""Test-time uniforms that belong to a row's content, not to its position in a batch.

Randomised conformal sets (APS/RAPS, SpeedCP's randomised cutoff) need one uniform per test
point, independent across points and of the point's label. Drawing them from a generator in row
order makes a row's set depend on where it sits in the batch, and a one-row-at-a-time server then
reuses the first uniform for every request. Instead each row gets ``u = H(seed, content)``: a
keyed 64-bit hash of the row's values and a seed drawn at fit. The same row gives the same set
however rows are batched, ordered or split across calls; distinct rows get uniforms that behave
as independent draws (the seed is independent of the data, and the hash mixes every bit).
"""

import hashlib

import numpy as np
import scipy.sparse as sp

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix(z):
    """SplitMix64's finaliser, element-wise on uint64 arrays (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def _hash_words(words, n_columns):
    """Hash each row of a ``(n, d)`` uint64 array into one uint64."""
    h = _mix(np.full(words.shape[0], np.uint64(n_columns) + _GOLDEN, dtype=np.uint64))
    for j in range(words.shape[1]):
        with np.errstate(over="ignore"):
            h = _mix(h ^ words[:, j] + _GOLDEN)
    return h


def _float_words(values):
    """Bits of ``values`` as float64, with ``-0.0`` and every NaN made canonical."""
    values = np.array(values, dtype=np.float64, copy=True) + 0.0  # -0.0 + 0.0 == +0.0
    values[np.isnan(values)] = np.nan
    return values.view(np.uint64)


def _object_keys(rows):
    """Keys of rows of arbitrary Python objects (strings, categories), stable across processes."""
    keys = np.empty(len(rows), dtype=np.uint64)
    for i, row in enumerate(rows):
        digest = hashlib.blake2b(repr(tuple(row)).encode(), digest_size=8).digest()
        keys[i] = np.frombuffer(digest, dtype=np.uint64)[0]
    return keys


def row_keys(X):
    """One 64-bit content key per row of ``X``.

    Numeric rows are keyed by their values as float64, so float32 and float64 copies of the same
    numbers, a numeric DataFrame and its array, and a sparse matrix and its dense array get the
    same keys.

    Parameters
    ----------
    X : array-like, sparse matrix or DataFrame of shape (n_samples, ...)

    Returns
    -------
    keys : ndarray of uint64, shape (n_samples,)
    """
    if sp.issparse(X):
        # keyed by the dense content, so a row gets the same key sparse or dense; densified in
        # blocks of about a million entries to bound the memory
        X = sp.csr_matrix(X)
        block = max(1, 2**20 // max(X.shape[1], 1))
        return np.concatenate(
            [row_keys(X[lo : lo + block].toarray()) for lo in range(0, X.shape[0], block)]
            or [np.empty(0, dtype=np.uint64)]
        )
    if hasattr(X, "iloc"):  # a DataFrame: numeric as an array, otherwise value by value
        try:
            X = X.to_numpy(dtype=np.float64)
        except (TypeError, ValueError):
            return _object_keys(list(X.itertuples(index=False, name=None)))
    X = np.asarray(X)
    if X.ndim == 1:
        X = X.reshape(-1, 1)
    X = X.reshape(X.shape[0], -1)
    if X.dtype.kind in "biuf":
        return _hash_words(_float_words(X), X.shape[1])
    return _object_keys(X.tolist())


def keyed_uniforms(keys, seed):
    """Uniforms in (0, 1), one per key, from a keyed hash with ``seed``.

    Parameters
    ----------
    keys : ndarray of uint64, shape (n,)
        Row keys from :func:`row_keys`.
    seed : int
        Non-negative seed drawn at fit time.

    Returns
    -------
    u : ndarray of float64, shape (n,)
    """
    keys = np.asarray(keys, dtype=np.uint64)
    salt = _mix(np.array([np.uint64(seed) ^ _GOLDEN], dtype=np.uint64))[0]
    z = _mix(_mix(keys ^ salt) + _GOLDEN)
    # 53 random bits, offset by half a step so that u is never 0 or 1
    return ((z >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53
