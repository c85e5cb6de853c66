"""SpeedCPRegressor at predict time: per-row randomisation, no state mutation, bounded memory."""

import numpy as np
import pytest
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LinearRegression

from sklearn_conformal import SpeedCPRegressor


def _hetero(rng, n):
    X = rng.uniform(-2, 2, size=(n, 1))
    return X, X[:, 0] + rng.normal(size=n) * (0.2 + np.abs(X[:, 0]))


def _fitted(seed=0, n_cal=150, **kw):
    rng = np.random.default_rng(seed)
    X, y = _hetero(rng, n_cal)
    lr = LinearRegression().fit(*_hetero(np.random.default_rng(10_000 + seed), 50))
    params = dict(gamma=1.0, lambda_=1.0, random_state=seed)
    params.update(kw)
    return SpeedCPRegressor(FrozenEstimator(lr), **params).fit(X, y)


# --------------------------------------------------------------------------------------------
# the randomised cutoff belongs to the row, not to its position in the batch
# --------------------------------------------------------------------------------------------
def test_randomised_interval_of_a_row_does_not_depend_on_the_batch():
    reg = _fitted()
    Xt, _ = _hetero(np.random.default_rng(1), 40)
    full = reg.predict_interval(Xt)
    one_by_one = np.vstack([reg.predict_interval(Xt[i:i + 1]) for i in range(len(Xt))])
    chunks = np.vstack([reg.predict_interval(Xt[i:i + 7]) for i in range(0, len(Xt), 7)])
    perm = np.random.default_rng(2).permutation(len(Xt))
    np.testing.assert_array_equal(one_by_one, full)
    np.testing.assert_array_equal(chunks, full)
    np.testing.assert_array_equal(reg.predict_interval(Xt[perm]), full[perm])
    np.testing.assert_array_equal(reg.predict_interval(Xt.astype(np.float32)),
                                  reg.predict_interval(Xt.astype(np.float32).astype(float)))
    # distinct rows still get distinct uniforms: the cutoffs are not all at one quantile level
    cut = reg.predict_cutoff(Xt)
    assert np.unique(np.round(cut, 12)).size > len(Xt) // 2


def _one_row_coverage(seed, n_cal, n_test):
    reg = _fitted(seed=seed, n_cal=n_cal)
    Xt, yt = _hetero(np.random.default_rng(50_000 + seed), n_test)
    iv = np.vstack([reg.predict_interval(Xt[i:i + 1]) for i in range(n_test)])
    return np.mean((yt >= iv[:, 0]) & (yt <= iv[:, 1]))


def _check_one_row_coverage(n_fits, n_cal, n_test, level=0.9):
    cov = np.array([_one_row_coverage(s, n_cal, n_test) for s in range(n_fits)])
    # each fit: binomial over its test points plus the calibration-conditional spread (4 sd)
    sd_fit = np.sqrt(level * (1 - level) * (1.0 / n_test + 1.0 / n_cal))
    assert np.all(np.abs(cov - level) <= 4 * sd_fit), cov
    sd_all = np.sqrt(level * (1 - level) * (1.0 / (n_fits * n_test) + 1.0 / (n_fits * n_cal)))
    assert abs(cov.mean() - level) <= 4 * sd_all, cov.mean()


def test_one_row_at_a_time_coverage_small():
    """Serving one row per call keeps coverage in every fit (not one shared uniform per fit)."""
    _check_one_row_coverage(n_fits=5, n_cal=150, n_test=120)


@pytest.mark.slow
def test_one_row_at_a_time_coverage_over_repeated_fits():
    _check_one_row_coverage(n_fits=40, n_cal=200, n_test=200)
