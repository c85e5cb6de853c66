"""A transformed target: the conformal estimator wraps ``TransformedTargetRegressor``.

``TransformedTargetRegressor(SplitConformalRegressor(...))`` would drop ``predict_interval``;
the working spelling puts the transformation inside, so scores, thresholds and intervals are in
the original units and the guarantee holds for the original target.
"""

import numpy as np
from sklearn.compose import TransformedTargetRegressor
from sklearn.linear_model import LinearRegression

from sklearn_conformal import SplitConformalRegressor


def test_conformal_around_a_log_target_model_covers_in_the_original_units():
    rng = np.random.default_rng(0)
    n_draws, n, level = 60, 400, 0.9
    hits = []
    for draw in range(n_draws):
        X = rng.uniform(0, 2, size=(n, 1))
        y = np.exp(X[:, 0] + 0.5 * rng.normal(size=n))  # positive, skewed: a log target
        model = TransformedTargetRegressor(LinearRegression(), func=np.log, inverse_func=np.exp)
        reg = SplitConformalRegressor(model, confidence_level=level, random_state=draw)
        reg.fit(X[:300], y[:300])
        intervals = reg.predict_interval(X[300:])
        np.testing.assert_allclose(reg.predict(X[300:]), reg.estimator_.predict(X[300:]))
        hits.append(np.mean((y[300:] >= intervals[:, 0]) & (y[300:] <= intervals[:, 1])))
    # 90 calibration points: coverage in [level, level + 1/91] on average, up to 4.5 s.e.
    se = np.sqrt((level * (1 - level) / 92 + level * (1 - level) / 100) / n_draws)
    assert level - 4.5 * se <= np.mean(hits) <= level + 1 / 91 + 4.5 * se
