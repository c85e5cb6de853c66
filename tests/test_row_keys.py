"""Content keys of test rows and the keyed uniforms drawn from them."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy import stats

from sklearn_conformal._core._row_keys import keyed_uniforms, row_keys


@pytest.fixture
def X():
    return np.random.default_rng(0).normal(size=(500, 4))


def test_keys_belong_to_the_row_not_its_position(X):
    order = np.random.default_rng(1).permutation(len(X))
    np.testing.assert_array_equal(row_keys(X[order]), row_keys(X)[order])
    np.testing.assert_array_equal(row_keys(X[7:8]), row_keys(X)[7:8])


@pytest.mark.parametrize(
    "convert",
    [
        lambda A: A.astype(np.float32).astype(np.float64),
        lambda A: pd.DataFrame(A.astype(np.float32)),
        lambda A: sp.csr_matrix(A.astype(np.float32)),
        lambda A: sp.csc_matrix(A.astype(np.float32)),
    ],
    ids=["float64", "frame", "csr", "csc"],
)
def test_the_same_numbers_get_the_same_keys_in_every_representation(X, convert):
    X32 = X.astype(np.float32)
    X32[::3, 1] = 0.0  # explicit zeros: a sparse row must key like its dense content
    np.testing.assert_array_equal(row_keys(convert(X32)), row_keys(X32))


def test_signed_zero_and_nan_payloads_are_canonical():
    a = np.array([[0.0, np.nan]])
    b = np.array([[-0.0, -np.nan]])
    np.testing.assert_array_equal(row_keys(a), row_keys(b))


def test_distinct_rows_get_distinct_keys_and_uniform_draws(X):
    keys = row_keys(np.round(X, 3))
    assert np.unique(keys).size == len(X)
    u = keyed_uniforms(row_keys(np.arange(20000.0)), seed=12345)
    assert 0.0 < u.min() and u.max() < 1.0
    assert stats.kstest(u, "uniform").pvalue > 1e-4
    # neighbouring rows and another seed give unrelated draws
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 0.05
    other = keyed_uniforms(row_keys(np.arange(20000.0)), seed=12346)
    assert abs(np.corrcoef(u, other)[0, 1]) < 0.05


def test_object_rows_are_keyed_stably():
    rows = np.array([["a", 1], ["b", 2], ["a", 1]], dtype=object)
    keys = row_keys(rows)
    assert keys[0] == keys[2] != keys[1]
    frame = pd.DataFrame({"c": ["a", "b", "a"], "n": [1, 2, 1]})
    assert row_keys(frame)[0] == row_keys(frame)[2]
