"""Exact properties of the finite-sample quantile and of the LAC/APS/RAPS scores."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sklearn_conformal._core import (
    all_label_scores,
    conformal_quantile,
    conformal_rank,
    min_calibration_size,
    prediction_sets,
    true_label_scores,
)

levels = st.floats(0.01, 0.99)
score_arrays = arrays(np.float64, st.integers(0, 60), elements=st.floats(-1e3, 1e3))


@given(score_arrays, levels)
def test_quantile_is_the_smallest_score_covering_the_rank(scores, level):
    n = scores.size
    k = math.ceil((n + 1) * level - 1e-9)
    q = conformal_quantile(scores, level)
    if k > n:
        assert q == np.inf
        return
    assert q == np.sort(scores)[k - 1]
    # at least k scores are <= q, and fewer than k are strictly below it
    assert np.sum(scores <= q) >= k
    assert np.sum(scores < q) < k
    assert q == np.quantile(scores, k / n, method="inverted_cdf")


@given(st.integers(0, 10_000), levels)
def test_rank_matches_exact_rational_arithmetic(n, level):
    from fractions import Fraction

    exact = math.ceil((n + 1) * Fraction(level))
    # the tolerance only matters when (n + 1) * level is an integer up to rounding
    assert conformal_rank(n, level) in (exact, exact - 1)
    if abs((n + 1) * level - round((n + 1) * level)) > 1e-6:
        assert conformal_rank(n, level) == exact


@pytest.mark.parametrize("level, expected", [(0.5, 1), (0.8, 4), (0.9, 9), (0.95, 19), (0.99, 99)])
def test_min_calibration_size(level, expected):
    assert min_calibration_size(level) == expected
    assert conformal_quantile(np.arange(expected), level) < np.inf
    assert conformal_quantile(np.arange(expected - 1), level) == np.inf


def _probabilities(draw_ints, n, k, rng):
    # coarse values make ties between labels frequent
    raw = rng.integers(0, draw_ints, size=(n, k)).astype(float) + 1e-3
    return raw / raw.sum(axis=1, keepdims=True)


def _brute_force_scores(proba, u, k_reg, lambda_reg):
    """Score of every label from the definition, with plain Python loops."""
    n, k = proba.shape
    out = np.empty((n, k))
    for i in range(n):
        for y in range(k):
            before = [j for j in range(k) if proba[i, j] > proba[i, y]
                      or (proba[i, j] == proba[i, y] and j < y)]
            rank = len(before) + 1
            out[i, y] = (sum(proba[i, j] for j in before) + u[i] * proba[i, y]
                         + lambda_reg * max(0, rank - k_reg))
    return out


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 12), st.integers(2, 9), st.integers(0, 2**31 - 1), st.sampled_from(["aps", "raps"]))
def test_aps_raps_scores_match_the_definition(n, k, seed, score):
    rng = np.random.default_rng(seed)
    proba = _probabilities(4, n, k, rng)
    u = rng.uniform(size=n)
    k_reg, lambda_reg = (2, 0.1) if score == "raps" else (0, 0.0)
    expected = _brute_force_scores(proba, u, k_reg, lambda_reg)
    np.testing.assert_allclose(all_label_scores(proba, score, u, k_reg, lambda_reg), expected,
                               rtol=0, atol=1e-12)
    y = rng.integers(0, k, size=n)
    np.testing.assert_allclose(true_label_scores(proba, y, score, u, k_reg, lambda_reg),
                               expected[np.arange(n), y], rtol=0, atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 15), st.integers(2, 12), st.integers(0, 2**31 - 1),
       st.sampled_from(["lac", "aps", "raps"]), st.floats(0.0, 1.3))
def test_shared_threshold_sets_are_ranking_prefixes(n, k, seed, score, threshold):
    rng = np.random.default_rng(seed)
    proba = _probabilities(5, n, k, rng)
    u = rng.uniform(size=n)
    sets = prediction_sets(proba, np.full(k, threshold), score, u, 3, 0.05)
    scores = all_label_scores(proba, score, u, 3, 0.05)
    np.testing.assert_array_equal(sets, scores <= threshold)
    if score != "lac":
        # APS/RAPS: the set is the first |set| labels of the tie-broken ranking
        order = np.lexsort((np.arange(k)[None, :].repeat(n, 0), -proba), axis=1)
        ranked = np.take_along_axis(sets, order, axis=1)
        sizes = ranked.sum(axis=1)
        assert np.all(ranked == (np.arange(k)[None, :] < sizes[:, None]))


def test_per_class_thresholds_apply_per_column():
    rng = np.random.default_rng(0)
    proba = _probabilities(10, 50, 4, rng)
    u = rng.uniform(size=50)
    thresholds = np.array([0.2, 0.5, 0.9, np.inf])
    for score in ("lac", "aps", "raps"):
        sets = prediction_sets(proba, thresholds, score, u, 1, 0.2)
        np.testing.assert_array_equal(sets, all_label_scores(proba, score, u, 1, 0.2) <= thresholds)
        assert sets[:, 3].all()


@pytest.mark.parametrize("score", ["aps", "raps"])
def test_prefix_sets_at_range_boundaries_zeros_and_ones(score):
    # exact powers of two, their 7/8, 3/4, 5/8 multiples, zeros and a one-hot row hit every
    # boundary of the candidate ranges of the prefix-set kernel
    rows = np.array([
        [0.5, 0.25, 0.125, 0.125, 0.0],
        [0.4375, 0.375, 0.125, 0.0625, 0.0],
        [1.0, 0.0, 0.0, 0.0, 0.0],
        [0.25, 0.25, 0.25, 0.25, 0.0],
        [0.2, 0.2, 0.2, 0.2, 0.2],
    ])
    u = np.array([1.0, 0.5, 0.0, 1.0, 0.3])
    for threshold in (0.0, 0.125, 0.25, 0.5, 0.6, 0.75, 0.875, 1.0, 1.2):
        sets = prediction_sets(rows, np.full(5, threshold), score, u, 1, 0.1)
        np.testing.assert_array_equal(sets, all_label_scores(rows, score, u, 1, 0.1) <= threshold)
