"""
Kernel quantile regression and its exact path
=============================================

:class:`~sklearn_conformal.KernelQuantileRegressor` is the solver inside SpeedCP, usable on its
own: a quantile regression in a reproducing-kernel Hilbert space, fitted for *every* penalty
``lambda`` at once along the exact, piecewise-linear solution path.
"""

# %%
# Three quantiles
# ---------------
import matplotlib.pyplot as plt
import numpy as np

from sklearn_conformal import KernelQuantileRegressor
from sklearn_conformal.datasets import make_heteroscedastic_regression
from sklearn_conformal.plotting import PredictionIntervalDisplay

X, y = make_heteroscedastic_regression(300, noise="normal", random_state=0)
X_test, y_test = make_heteroscedastic_regression(300, noise="normal", random_state=1)

fits = {q: KernelQuantileRegressor(quantile=q, gamma=1.0).fit(X, y) for q in (0.05, 0.5, 0.95)}
for q, kqr in fits.items():
    share = np.mean(y_test <= kqr.predict(X_test))
    print(f"quantile {q:.2f}: lambda {kqr.lam_:.3g}, test share below the fit {share:.3f}")

# %%
# The 5 % and 95 % quantiles make a 90 % interval (not calibrated: no conformal guarantee);
# :class:`PredictionIntervalDisplay` draws it from predictions, with the true conditional
# quantiles as the oracle.
from sklearn_conformal.datasets import HeteroscedasticOracle  # noqa: E402

oracle = HeteroscedasticOracle("normal").equal_tailed_interval(X_test, 0.9)
PredictionIntervalDisplay.from_predictions(
    y_test,
    fits[0.5].predict(X_test),
    np.column_stack([fits[0.05].predict(X_test), fits[0.95].predict(X_test)]),
    x=X_test[:, 0],
    oracle=(oracle[:, 0], oracle[:, 1]),
    feature_name="x",
)

# %%
# The regularisation path
# -----------------------
# ``lambdas_`` holds the breakpoints of the path, ``sic_`` the Schwarz information criterion
# used by ``lambda_="auto"`` and ``elbow_sizes_`` the number of points interpolated by the fit;
# ``predict_path`` evaluates the fit at every breakpoint.
kqr = fits[0.95]
fig, axes = plt.subplots(1, 2, figsize=(12, 4))
axes[0].semilogx(kqr.lambdas_, kqr.sic_, marker=".")
axes[0].axvline(kqr.lam_, color="tab:red", linestyle="--", label="SIC choice")
axes[0].set(xlabel="lambda", ylabel="SIC", title="Selection on the exact path")
axes[0].legend()
order = np.argsort(X_test[:, 0])
path = kqr.predict_path(X_test[order])
for j in np.linspace(0, path.shape[1] - 1, 6).astype(int):
    axes[1].plot(X_test[order, 0], path[:, j], label=f"lambda = {kqr.lambdas_[j]:.2g}")
axes[1].scatter(X_test[:, 0], y_test, s=5, color="gray")
axes[1].set(xlabel="x", ylabel="0.95-quantile", title="Fits along the path")
axes[1].legend(fontsize=7)
fig.tight_layout()
