"""
Conditional coverage with SpeedCPRegressor
==========================================

:class:`~sklearn_conformal.SpeedCPRegressor` calibrates the residuals ``|y - f(x)|`` of a
point regressor with a kernel quantile regression, so that the cutoff ``S*(x)`` (the
half-width of the interval) follows ``x``: coverage then holds approximately *conditionally*
on ``x``, not only on average. The cutoffs are computed on exact solution paths.
"""

# %%
# Fit
# ---
# A fixed kernel bandwidth (``gamma=1.0``) keeps the fit fast; ``gamma="auto"`` (the default)
# cross-validates it. ``lambda_="auto"`` picks the penalty on the exact regularisation path.
import matplotlib.pyplot as plt
from sklearn.ensemble import HistGradientBoostingRegressor

from sklearn_conformal import SpeedCPRegressor
from sklearn_conformal.datasets import make_heteroscedastic_regression
from sklearn_conformal.metrics import coverage, mean_interval_length
from sklearn_conformal.plotting import CutoffDisplay, PredictionIntervalDisplay

X, y = make_heteroscedastic_regression(800, noise="normal", random_state=0)
X_test, y_test = make_heteroscedastic_regression(400, noise="normal", random_state=1)

reg = SpeedCPRegressor(
    HistGradientBoostingRegressor(max_iter=50),
    gamma=1.0,
    confidence_level=0.9,
    random_state=0,
).fit(X, y)
intervals = reg.predict_interval(X_test)
print(f"coverage {coverage(y_test, intervals):.3f}, "
      f"mean length {mean_interval_length(intervals):.3f}")
print(f"lambda chosen on the path: {reg.lam_:.3g} ({reg.path_lambdas_.size} breakpoints)")

# %%
# The coverage of one calibrated model on one test set fluctuates around the target: with
# 240 calibration samples its spread is about ``sqrt(0.9 * 0.1 / 240)`` = 0.019 (see
# :ref:`sphx_glr_auto_examples_howto_plot_little_data.py`); the guarantee is on average over
# calibration draws.

# %%
# The cutoff along the feature
# ----------------------------
# :class:`CutoffDisplay` draws ``S*(x)`` against the feature; ``reference="split"`` adds the
# constant cutoff that split conformal gets from the same calibration scores. SpeedCP's cutoff
# is small near ``x = 0``, where the noise is small, and large at the edges.
fig, axes = plt.subplots(1, 2, figsize=(12, 4))
CutoffDisplay.from_estimator(reg, X_test, reference="split", ax=axes[0])
PredictionIntervalDisplay.from_estimator(reg, X_test, y_test, ax=axes[1])
fig.tight_layout()

# %%
# The cutoffs are randomised (the theory's exact coverage needs it): two neighbouring points
# may get slightly different cutoffs, but a given row always gets the same interval.
plt.show()
