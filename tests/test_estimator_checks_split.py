"""scikit-learn's estimator contract for the split and cross conformal estimators."""

import numpy as np
from sklearn.linear_model import QuantileRegressor
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_conformal import (
    CrossConformalClassifier,
    CrossConformalRegressor,
    SplitConformalClassifier,
    SplitConformalRegressor,
)
from sklearn_conformal.calibrators import MondrianCalibrator
from sklearn_conformal.conformity_scores import CQRScore, RAPSScore, SAPSScore, TopKScore

from ._expected_failures import expected_failed_checks


class FirstFeatureSign:
    """Groups for the Mondrian instance: the sign of the first feature.

    A module-level class, so the estimator pickles, with a fixed ``repr``: test ids hold the
    estimator's repr, and pytest-xdist needs them equal in every worker (a function's repr
    holds its address).
    """

    def __call__(self, X):
        first = X[:, [0]].toarray() if hasattr(X, "toarray") else np.asarray(X)[:, [0]]
        return first.ravel() > 0

    def __repr__(self):
        return "FirstFeatureSign()"


@parametrize_with_checks(
    [
        SplitConformalClassifier(random_state=0),
        SplitConformalClassifier(conformity_score="aps", mode="class", random_state=0),
        SplitConformalClassifier(conformity_score="raps", mode="cluster", random_state=0),
        # score objects, with the tuned RAPS that spends part of the calibration data
        SplitConformalClassifier(
            conformity_score=RAPSScore(k_reg="auto", lambda_reg="auto"), random_state=0
        ),
        SplitConformalClassifier(conformity_score=SAPSScore(), random_state=0),
        SplitConformalClassifier(conformity_score=TopKScore(), random_state=0),
        SplitConformalRegressor(random_state=0),
        SplitConformalRegressor(conformity_score="normalized", random_state=0),
        # Mondrian on groups of rows: the sign of the first feature
        SplitConformalRegressor(mode=MondrianCalibrator(FirstFeatureSign()), random_state=0),
        SplitConformalRegressor(
            QuantileRegressor(alpha=0.0), conformity_score=CQRScore(symmetric=False),
            random_state=0,
        ),
        # a linear quantile regressor keeps the many CQR checks fast (the default is boosting)
        SplitConformalRegressor(
            QuantileRegressor(alpha=0.0), conformity_score="cqr", random_state=0
        ),
        CrossConformalClassifier(random_state=0),
        CrossConformalClassifier(conformity_score="aps", cv=3, random_state=0),
        CrossConformalClassifier(conformity_score="raps", mode="class", cv=3, random_state=0),
        CrossConformalRegressor(random_state=0),
        CrossConformalRegressor(method="minmax", cv="bootstrap", n_resamplings=5, random_state=0),
        CrossConformalRegressor(conformity_score="normalized", cv=3, random_state=0),
        CrossConformalRegressor(
            QuantileRegressor(alpha=0.0), conformity_score="cqr", cv=3, random_state=0
        ),
    ],
    expected_failed_checks=expected_failed_checks,
)
def test_sklearn_estimator_contract(estimator, check):
    check(estimator)
