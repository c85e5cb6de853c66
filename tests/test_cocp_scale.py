"""CoCPRegressor's default is scale-equivariant: y * c gives intervals * c."""

import numpy as np
import pytest

from sklearn_conformal.datasets import make_heteroscedastic_regression
from sklearn_conformal.regression import CoCPRegressor

TINY = dict(n_folds=2, n_alternations=1, hidden_layer_sizes=(16, 16), max_epochs=8, patience=3)


@pytest.fixture(scope="module")
def fitted_unit():
    X, y = make_heteroscedastic_regression(500, noise="exponential", random_state=0)
    return X, y, CoCPRegressor(random_state=0, **TINY).fit(X, y)


@pytest.mark.parametrize("c", [1e-6, 1.0, 1e6])
def test_default_intervals_scale_with_the_target(fitted_unit, c):
    X, y, unit = fitted_unit
    scaled = CoCPRegressor(random_state=0, **TINY).fit(X, y * c)
    np.testing.assert_allclose(
        scaled.predict_interval(X), c * unit.predict_interval(X), rtol=1e-9, atol=0
    )
    np.testing.assert_allclose(scaled.quantile_, unit.quantile_, rtol=1e-12)
    assert scaled.y_scale_ == pytest.approx(c * unit.y_scale_, rel=1e-12)


def test_a_fixed_scale_is_not_equivariant():
    # what the default fixes: with target_scale=None the networks see the raw target, whose
    # scale changes the training (the centre step's sigmoid saturates on large targets)
    X, y = make_heteroscedastic_regression(500, noise="exponential", random_state=0)
    a = CoCPRegressor(target_scale=None, random_state=0, **TINY).fit(X, y)
    b = CoCPRegressor(target_scale=None, random_state=0, **TINY).fit(X, y * 1e5)
    assert not np.allclose(b.predict_interval(X), 1e5 * a.predict_interval(X), rtol=1e-3)
