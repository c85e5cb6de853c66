"""scikit-learn's estimator contract for the split and cross conformal estimators."""

from sklearn.linear_model import QuantileRegressor
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_conformal import (
    CrossConformalClassifier,
    CrossConformalRegressor,
    SplitConformalClassifier,
    SplitConformalRegressor,
)

from ._expected_failures import expected_failed_checks


@parametrize_with_checks(
    [
        SplitConformalClassifier(random_state=0),
        SplitConformalClassifier(conformity_score="aps", mode="class", random_state=0),
        SplitConformalClassifier(conformity_score="raps", mode="cluster", random_state=0),
        SplitConformalRegressor(random_state=0),
        SplitConformalRegressor(conformity_score="normalized", random_state=0),
        # a linear quantile regressor keeps the many CQR checks fast (the default is boosting)
        SplitConformalRegressor(
            QuantileRegressor(alpha=0.0), conformity_score="cqr", random_state=0
        ),
        CrossConformalClassifier(random_state=0),
        CrossConformalClassifier(conformity_score="aps", cv=3, random_state=0),
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
