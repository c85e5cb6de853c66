"""SpeedCP with any conformity score: the regressor's scores and the classifier.

The conditional cutoff ``S*(x)`` is checked against an independent dense QP (bisection on the
test point's dual weight, tests/_qp_reference.py) for each score; the absolute score is today's
regressor bit for bit; the classifier with the predicted label as ``Phi`` covers within every
predicted label.
"""

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_digits, make_classification
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LinearRegression, LogisticRegression, QuantileRegressor
from sklearn.preprocessing import OneHotEncoder

from sklearn_conformal import SpeedCPClassifier, SpeedCPRegressor, SplitConformalClassifier
from sklearn_conformal._core import SmallCalibrationWarning
from sklearn_conformal._core._row_keys import keyed_uniforms, row_keys
from sklearn_conformal._kqr import kernel_matrix
from sklearn_conformal.conformity_scores import (
    AbsoluteScore,
    APSScore,
    CQRScore,
    LACScore,
    NormalizedScore,
)

LEVEL = 0.9


def _hetero(seed, n):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, size=(n, 2))
    return X, X[:, 0] + rng.normal(size=n) * (0.2 + np.abs(X[:, 0]))


# --------------------------------------------------------------------------------------------
# exactness against the QP reference
# --------------------------------------------------------------------------------------------
def _check_against_qp(est, X, bisect):
    """The rows' cutoffs against the augmented dense QP (randomised ``U``, strictly inside
    ``(-alpha, 1 - alpha)``), and the largest absolute difference.

    ``bisect=False``: the QP's test dual weight is at most ``U`` just below the cutoff and at
    least ``U`` just above it (``1e-6`` relative): since it is non-decreasing in the imputed
    score, the exact cutoff lies within ``1e-6`` of ours (two QPs per row). ``bisect=True``:
    the reference cutoff by bisection (about 40 QPs per row) and the difference itself.
    """
    pytest.importorskip("cvxpy")
    from . import _qp_reference as qp

    alpha = 1.0 - est.confidence_level_
    K = kernel_matrix(est._Z_cal, None, est.kernel, est.gamma_)
    Kt = kernel_matrix(est._embed(X), est._Z_cal, est.kernel, est.gamma_)
    Phi_t = est._phi_transform(X) @ est._phi_basis
    U = keyed_uniforms(row_keys(X), est._u_seed) - alpha
    cut = est.predict_cutoff(X)
    assert np.all(np.isfinite(cut))
    diff = 0.0
    for t in range(len(X)):
        K_aug = np.block([[K, Kt[t][:, None]], [Kt[t][None, :], np.ones((1, 1))]])
        Phi_aug = np.vstack([est._Phi, Phi_t[t]])

        def v_t(s):
            return qp.qp_test_dual(K_aug, Phi_aug, est._S, s, alpha, est.lam_)

        if not bisect:
            delta = 1e-6 * max(1.0, abs(cut[t]))
            # the QP's own accuracy on v_t is ~1e-8
            assert v_t(cut[t] - delta) <= U[t] + 1e-7
            assert v_t(cut[t] + delta) >= U[t] - 1e-7
            continue
        width = max(1.0, abs(cut[t]))
        lo, hi = cut[t] - width, cut[t] + width
        assert v_t(lo) <= U[t] <= v_t(hi)
        ref = qp.bisect_cutoff(K_aug, Phi_aug, est._S, alpha, est.lam_, U[t], lo, hi, tol=1e-11)
        assert abs(cut[t] - ref) <= 1e-6 * max(1.0, abs(ref)), (cut[t], ref)
        diff = max(diff, abs(cut[t] - ref))
    return diff


REGRESSION_SCORES = [
    ("normalized", None),
    (NormalizedScore(), LinearRegression()),
    ("cqr", QuantileRegressor(alpha=0.0)),
    (CQRScore(), (QuantileRegressor(quantile=0.1, alpha=0.0),
                  QuantileRegressor(quantile=0.9, alpha=0.0))),
]
REGRESSION_IDS = ["normalized", "normalized-object", "cqr", "cqr-pair"]


def _fitted_regressor(score, estimator):
    X, y = _hetero(0, 150)
    return SpeedCPRegressor(estimator, conformity_score=score, gamma=1.0, calibration_size=0.4,
                            random_state=0).fit(X, y)


@pytest.mark.parametrize("score, estimator", REGRESSION_SCORES, ids=REGRESSION_IDS)
def test_regressor_cutoff_matches_qp(score, estimator):
    reg = _fitted_regressor(score, estimator)
    X_test, _ = _hetero(1, 2)
    _check_against_qp(reg, X_test, bisect=False)
    # the interval is the score's interval at the per-row cutoff
    cut = reg.predict_cutoff(X_test)
    np.testing.assert_array_equal(
        reg.predict_interval(X_test),
        reg.conformity_score_.intervals(cut, reg._score_parts(X_test)),
    )


@pytest.mark.slow
@pytest.mark.parametrize("score, estimator", REGRESSION_SCORES, ids=REGRESSION_IDS)
def test_regressor_cutoff_matches_qp_bisection(score, estimator):
    reg = _fitted_regressor(score, estimator)
    diff = _check_against_qp(reg, _hetero(1, 4)[0], bisect=True)
    print(f"QP max abs diff {REGRESSION_IDS[[s for s, _ in REGRESSION_SCORES].index(score)]}: "
          f"{diff:.2e}")


def _classification(seed=0, n=200):
    return make_classification(
        n_samples=n, n_features=5, n_informative=4, n_redundant=0, n_classes=3,
        n_clusters_per_class=1, class_sep=1.0, random_state=seed,
    )


CLASSIFICATION_CASES = [
    ("lac", "intercept"),
    ("lac", "predicted_label"),
    (APSScore(randomized=False), "predicted_label"),
    ("aps", "intercept"),
]
CLASSIFICATION_IDS = ["lac", "lac-predicted-label", "aps-non-randomised", "aps-randomised"]


def _fitted_classifier(score, phi):
    X, y = _classification()
    return SpeedCPClassifier(conformity_score=score, phi=phi, gamma=0.5, calibration_size=0.4,
                             random_state=0).fit(X, y)


@pytest.mark.parametrize("score, phi", CLASSIFICATION_CASES, ids=CLASSIFICATION_IDS)
def test_classifier_cutoff_matches_qp_and_sets_cut_the_label_scores(score, phi):
    clf = _fitted_classifier(score, phi)
    X_test, _ = _classification(seed=1, n=2)
    _check_against_qp(clf, X_test, bisect=False)
    # the set: every label whose score at the row is at most the row's cutoff
    cut = clf.predict_cutoff(X_test)
    score_ = clf.conformity_score_
    u = (
        keyed_uniforms(row_keys(X_test), clf._score_seed) if score_.uses_uniforms else None
    )
    label_scores = score_.label_scores(clf.predict_proba(X_test), u)
    np.testing.assert_array_equal(clf.predict_set(X_test), label_scores <= cut[:, None])


@pytest.mark.slow
@pytest.mark.parametrize("score, phi", CLASSIFICATION_CASES, ids=CLASSIFICATION_IDS)
def test_classifier_cutoff_matches_qp_bisection(score, phi):
    clf = _fitted_classifier(score, phi)
    diff = _check_against_qp(clf, _classification(seed=1, n=4)[0], bisect=True)
    print(f"QP max abs diff {score!r} phi={phi}: {diff:.2e}")


# --------------------------------------------------------------------------------------------
# the absolute score is the regressor of before, bit for bit
# --------------------------------------------------------------------------------------------
def test_absolute_score_is_the_default_bit_for_bit():
    X, y = _hetero(2, 300)
    X_test, _ = _hetero(3, 40)
    kw = dict(gamma=1.0, random_state=0)
    default = SpeedCPRegressor(**kw).fit(X, y)
    for score in ("absolute", AbsoluteScore()):
        other = SpeedCPRegressor(conformity_score=score, **kw).fit(X, y)
        np.testing.assert_array_equal(other.predict_interval(X_test),
                                      default.predict_interval(X_test))
        assert other.lam_ == default.lam_
    # intervals f(x) -/+ max(S*(x), 0), as before scores were pluggable
    cut = np.maximum(default.predict_cutoff(X_test), 0.0)
    center = default.predict(X_test)
    np.testing.assert_array_equal(
        default.predict_interval(X_test), np.column_stack([center - cut, center + cut])
    )
    assert np.all(default.conformity_scores_ >= 0)


def test_regressor_refuses_multi_part_scores_naming_conformity_score():
    X, y = _hetero(4, 120)
    reg = SpeedCPRegressor(QuantileRegressor(alpha=0.0), conformity_score=CQRScore(symmetric=False),
                           gamma=1.0)
    with pytest.raises(ValueError, match="conformity_score=CQRScore"):
        reg.fit(X, y)


def test_regressor_cqr_and_normalized_cover_and_adapt():
    """Marginal coverage over draws with each score; CQR/normalized widths follow the noise."""
    covered = {"normalized": [], "cqr": []}
    widths = {"normalized": [], "cqr": []}
    for seed in range(4):
        X, y = _hetero(10 + seed, 400)
        X_test, y_test = _hetero(100 + seed, 200)
        for score, est in (("normalized", None), ("cqr", QuantileRegressor(alpha=0.0))):
            reg = SpeedCPRegressor(est, conformity_score=score, gamma=1.0, lambda_=1.0,
                                   random_state=seed).fit(X, y)
            iv = reg.predict_interval(X_test)
            covered[score].append((iv[:, 0] <= y_test) & (y_test <= iv[:, 1]))
            widths[score].append(np.column_stack([np.abs(X_test[:, 0]), iv[:, 1] - iv[:, 0]]))
    for score in covered:
        cov = np.mean(np.concatenate(covered[score]))
        assert abs(cov - LEVEL) < 0.05, (score, cov)
        w = np.concatenate(widths[score])
        # heteroscedastic noise 0.2 + |x0|: the width grows with |x0|
        assert np.corrcoef(w[:, 0], w[:, 1])[0, 1] > 0.5, score


# --------------------------------------------------------------------------------------------
# the classifier: predicted-label Phi, group columns, transformers
# --------------------------------------------------------------------------------------------
_DIGITS = {}


def _digits():
    if not _DIGITS:
        X, y = load_digits(return_X_y=True)
        X = X / 16.0
        rng = np.random.default_rng(0)
        order = rng.permutation(len(y))
        train, rest = order[:500], order[500:]
        model = LogisticRegression(C=0.05, max_iter=1000).fit(X[train], y[train])
        sq = ((X[rest[:200], None, :] - X[None, rest[:200], :]) ** 2).sum(-1)
        _DIGITS.update(X=X[rest], y=y[rest], model=model, gamma=1.0 / np.median(sq[sq > 0]))
    return _DIGITS


def _per_group_coverage(n_reps, n_cal=400, level=LEVEL):
    """Coverage within every predicted label of digits, over random calibration/test splits
    (the trained model is frozen; each repetition calibrates anew)."""
    d = _digits()
    X, y, model = d["X"], d["y"], d["model"]
    hits = {k: [] for k in range(10)}
    sizes = []
    for rep in range(n_reps):
        order = np.random.default_rng(rep).permutation(len(y))
        cal, test = order[:n_cal], order[n_cal:]
        clf = SpeedCPClassifier(
            FrozenEstimator(model), phi="predicted_label", gamma=d["gamma"], lambda_=1.0,
            confidence_level=level, random_state=rep,
        ).fit(X[cal], y[cal])
        sets = clf.predict_set(X[test])
        pred = clf.predict(X[test])
        ok = sets[np.arange(len(test)), y[test]]
        for k in range(10):
            hits[k].append(ok[pred == k])
        sizes.append(sets.sum(axis=1).mean())
    return {k: np.concatenate(v) for k, v in hits.items()}, float(np.mean(sizes))


def _assert_within_binomial_bounds(hits, n_reps, n_cal, level=LEVEL):
    for k, h in hits.items():
        n_test = h.size
        # calibration-conditional coverage varies like a Beta with ~n_cal/10 points per group
        # (shared by the test rows of one repetition), the test rows add binomial noise
        var = level * (1 - level) * (1.0 / n_test + 1.0 / (n_reps * (n_cal / 10.0 + 1)))
        assert abs(h.mean() - level) <= 4 * np.sqrt(var), (k, h.mean(), n_test)


def test_classifier_covers_within_each_predicted_label():
    n_reps, n_cal = 4, 400
    hits, size = _per_group_coverage(n_reps, n_cal)
    _assert_within_binomial_bounds(hits, n_reps, n_cal)
    assert size < 2.0


@pytest.mark.slow
def test_classifier_covers_within_each_predicted_label_many_splits():
    n_reps, n_cal = 40, 400
    hits, _ = _per_group_coverage(n_reps, n_cal)
    _assert_within_binomial_bounds(hits, n_reps, n_cal)


def test_classifier_group_column_and_transformer_phi_agree():
    """A group column (by name or position) and a one-hot ColumnTransformer give one class."""
    X, y = _classification(seed=5, n=240)
    groups = (X[:, 0] > 0).astype(int)
    df = pd.DataFrame(np.column_stack([X, groups]), columns=[f"x{i}" for i in range(5)] + ["g"])
    kw = dict(gamma=0.5, lambda_=1.0, random_state=0)
    onehot = ColumnTransformer([("g", OneHotEncoder(), ["g"])])
    by_name = SpeedCPClassifier(phi="g", **kw).fit(df, y)
    by_pos = SpeedCPClassifier(phi=5, **kw).fit(df.to_numpy(), y)
    by_transformer = SpeedCPClassifier(phi=onehot, **kw).fit(df, y)
    assert list(by_name.phi_categories_) == [0.0, 1.0]
    assert by_transformer.phi_ is not None and by_transformer.phi_ is not onehot
    cut = by_name.predict_cutoff(df.iloc[:30])
    np.testing.assert_allclose(by_pos.predict_cutoff(df.to_numpy()[:30]), cut, atol=1e-9)
    np.testing.assert_allclose(by_transformer.predict_cutoff(df.iloc[:30]), cut, atol=1e-8)


def test_classifier_unseen_predicted_label_gets_every_label():
    X, y = _classification(seed=6, n=200)
    model = LogisticRegression().fit(X, y)
    pred = model.predict(X)
    # calibrate only on rows predicted 0 or 1: predicted label 2 is never seen
    keep = pred != 2
    clf = SpeedCPClassifier(FrozenEstimator(model), phi="predicted_label", gamma=0.5,
                            lambda_=1.0, random_state=0).fit(X[keep], y[keep])
    assert list(clf.phi_categories_) == [0, 1]
    with pytest.warns(SmallCalibrationWarning, match="sets hold every label"):
        sets = clf.predict_set(X[~keep][:5])
    assert sets.all()


def test_classifier_sets_are_row_wise_and_follow_the_level():
    X, y = _classification(seed=7, n=300)
    clf = SpeedCPClassifier(conformity_score="aps", gamma=0.5, random_state=0).fit(X, y)
    X_test, _ = _classification(seed=8, n=20)
    sets = clf.predict_set(X_test)
    # a row's set does not depend on its batch (keyed uniforms)
    np.testing.assert_array_equal(
        np.vstack([clf.predict_set(X_test[i:i + 1]) for i in range(5)]), sets[:5]
    )
    np.testing.assert_array_equal(clf.predict_set(X_test[::-1])[::-1], sets)
    # more labels at a higher level on average
    assert clf.predict_set(X_test, 0.97).sum() >= clf.predict_set(X_test, 0.7).sum()
    assert clf.predict(X_test).shape == (20,)
    assert isinstance(clf.score(X_test, _classification(seed=8, n=20)[1]), float)


# --------------------------------------------------------------------------------------------
# several levels and DataFrame output
# --------------------------------------------------------------------------------------------
LEVELS = [0.8, 0.9, 0.95]


def _fitted_estimators():
    Xc, yc = _classification(seed=9, n=240)
    Xr, yr = _hetero(9, 240)
    return [
        (SpeedCPClassifier(phi="predicted_label", gamma=0.5, random_state=0).fit(Xc, yc),
         _classification(seed=10, n=25)[0], "set"),
        (SpeedCPRegressor(QuantileRegressor(alpha=0.0), conformity_score="cqr", gamma=1.0,
                          random_state=0).fit(Xr, yr), _hetero(10, 25)[0], "interval"),
        (SpeedCPRegressor(conformity_score="normalized", gamma=1.0, random_state=0).fit(Xr, yr),
         _hetero(11, 25)[0], "interval"),
    ]


def _predict(est, X, level=None):
    if hasattr(est, "predict_interval"):
        return est.predict_interval(X, confidence_level=level)
    return est.predict_set(X, confidence_level=level)


def test_several_levels_and_pandas_output():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallCalibrationWarning)
        fitted = _fitted_estimators()
    for est, X_test, kind in fitted:
        out = _predict(est, X_test, LEVELS)
        width = 2 if kind == "interval" else len(est.classes_)
        assert out.shape == (len(X_test), width, len(LEVELS))
        for j, level in enumerate(LEVELS):
            np.testing.assert_array_equal(out[:, :, j], _predict(est, X_test, level))
        index = pd.Index([f"r{i}" for i in range(len(X_test))], name="id")
        frame = pd.DataFrame(X_test, index=index)
        one = _predict(est, X_test)
        est.set_output(predict="pandas")
        df = _predict(est, frame)
        assert isinstance(df, pd.DataFrame) and df.index.equals(index)
        labels = ["lower", "upper"] if kind == "interval" else list(est.classes_)
        assert list(df.columns) == labels
        np.testing.assert_array_equal(df.to_numpy(), one)
        many = _predict(est, frame, LEVELS)
        assert list(many.columns) == [(lv, lab) for lv in LEVELS for lab in labels]
        np.testing.assert_array_equal(many.to_numpy().reshape(out.shape[0], -1),
                                      out.transpose(0, 2, 1).reshape(out.shape[0], -1))
        est.set_output(predict="default")


def test_classifier_split_reference_with_intercept_only_is_close_to_split_cp():
    """With Phi = intercept and a very smooth kernel part, SpeedCP is split CP's marginal
    method: the sets agree with SplitConformalClassifier's on most rows."""
    X, y = _classification(seed=11, n=600)
    X_test, _ = _classification(seed=12, n=200)
    kw = dict(calibration_size=0.5, random_state=0)
    speed = SpeedCPClassifier(gamma=1e-6, lambda_=1e6, randomized=False, **kw).fit(X, y)
    split = SplitConformalClassifier(LogisticRegression(), **kw).fit(X, y)
    np.testing.assert_array_equal(speed.conformity_scores_, split.conformity_scores_)
    agree = np.all(speed.predict_set(X_test) == split.predict_set(X_test), axis=1).mean()
    assert agree > 0.95
    assert isinstance(speed.conformity_score_, LACScore)
