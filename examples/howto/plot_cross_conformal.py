"""
Every sample trains and calibrates: CV+ and jackknife+
======================================================

Split conformal prediction sets aside part of the data for calibration: with 150 samples and
the default 30 %, the model sees 105 of them and the threshold is read from 45 scores.
:class:`~sklearn_conformal.CrossConformalRegressor` uses every sample for both: one model per
fold is fitted on the other folds, and each sample is scored by the model that did not see it
(CV+, Barber et al. 2021). ``cv=LeaveOneOut()`` gives the jackknife+, ``cv="bootstrap"`` the
jackknife+-after-bootstrap (Kim et al. 2020).

The guarantee of CV+ is ``1 - 2 alpha`` in the worst case; for ordinary models its coverage
is close to ``1 - alpha``, as below.
"""

# %%
# Split CP, CV+, jackknife+ and jackknife+-after-bootstrap on 150 samples
# -----------------------------------------------------------------------
import matplotlib.pyplot as plt
import numpy as np
from sklearn.linear_model import Ridge
from sklearn.model_selection import LeaveOneOut
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import PolynomialFeatures

from sklearn_conformal import CrossConformalRegressor, SplitConformalRegressor


def draw(n, rng):
    x = rng.uniform(-3, 3, size=(n, 1))
    return x, np.sin(x[:, 0]) * 2 + rng.normal(scale=0.6, size=n)


rng = np.random.default_rng(0)
X, y = draw(150, rng)
X_test, y_test = draw(5000, rng)
model = make_pipeline(PolynomialFeatures(5), Ridge(alpha=1e-3))

estimators = {
    "split (30 % calibration)": SplitConformalRegressor(model, random_state=0),
    "CV+ (10 folds)": CrossConformalRegressor(model, cv=10, random_state=0),
    "jackknife+": CrossConformalRegressor(model, cv=LeaveOneOut()),
    "jackknife+-after-bootstrap": CrossConformalRegressor(
        model, cv="bootstrap", n_resamplings=30, random_state=0
    ),
}
grid = np.linspace(-3, 3, 200)[:, None]
fig, axes = plt.subplots(1, 4, figsize=(14, 3.2), sharey=True)
for ax, (name, estimator) in zip(axes, estimators.items()):
    estimator.fit(X, y)
    test = estimator.predict_interval(X_test)
    cover = np.mean((y_test >= test[:, 0]) & (y_test <= test[:, 1]))
    width = np.mean(test[:, 1] - test[:, 0])
    band = estimator.predict_interval(grid)
    ax.fill_between(grid[:, 0], band[:, 0], band[:, 1], alpha=0.3)
    ax.plot(grid[:, 0], estimator.predict(grid), color="C0")
    ax.scatter(X[:, 0], y, s=6, color="k")
    ax.set_title(f"{name}\ncoverage {cover:.3f}, width {width:.2f}", fontsize=9)
    print(f"{name:<28s} coverage {cover:.3f}  mean width {width:.3f}")
fig.tight_layout()

# %%
# Coverage and width over repeated draws
# --------------------------------------
# One draw says little: repeat the experiment and average. CV+ typically gives narrower
# intervals than split CP at this size, since its models see 90 % of the data and its
# threshold is read from all 150 scores.
results = {"split": [], "CV+": []}
for seed in range(20):
    rng = np.random.default_rng(seed + 1)
    X, y = draw(150, rng)
    X_test, y_test = draw(2000, rng)
    for name, estimator in (
        ("split", SplitConformalRegressor(model, random_state=seed)),
        ("CV+", CrossConformalRegressor(model, cv=10, random_state=seed)),
    ):
        test = estimator.fit(X, y).predict_interval(X_test)
        results[name].append(
            (
                np.mean((y_test >= test[:, 0]) & (y_test <= test[:, 1])),
                np.mean(test[:, 1] - test[:, 0]),
            )
        )
for name, values in results.items():
    values = np.asarray(values)
    print(f"{name:<6s} mean coverage {values[:, 0].mean():.3f}", end="  ")
    print(f"mean width {values[:, 1].mean():.3f}")
