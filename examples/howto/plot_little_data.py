"""
What to do with little data
===========================

The conformal guarantee holds for any number of calibration samples ``n``, but two things
change when ``n`` is small:

* the threshold is the ``ceil((n + 1) * level) / n`` empirical quantile, so below
  ``n = level / (1 - level)`` (9 at level 0.9) no finite threshold exists and the sets are
  every label (intervals are infinite), with a
  :class:`~sklearn_conformal.exceptions.SmallCalibrationWarning`;
* the coverage *of one calibrated model* varies a lot from draw to draw: conditionally on the
  calibration set it follows a Beta law whose spread is about ``sqrt(level (1 - level) / n)``.
"""

# %%
# Too few calibration samples
# ---------------------------
import warnings

import matplotlib.pyplot as plt
import numpy as np
from scipy import stats
from sklearn.datasets import load_breast_cancer
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_conformal import SplitConformalClassifier
from sklearn_conformal.exceptions import SmallCalibrationWarning
from sklearn_conformal.metrics import coverage, mean_set_size
from sklearn_conformal.plotting import CoverageDisplay

X, y = load_breast_cancer(return_X_y=True)
X_fit, X_rest, y_fit, y_rest = train_test_split(X, y, train_size=200, random_state=0)
model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X_fit, y_fit)

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always", SmallCalibrationWarning)
    tiny = SplitConformalClassifier(FrozenEstimator(model), confidence_level=0.9)
    tiny.fit(X_rest[:6], y_rest[:6])
print([str(w.message)[:100] for w in caught])
print("mean set size with 6 calibration samples:", mean_set_size(tiny.predict_set(X_rest[6:])))

# %%
# Use every sample for calibration: ``FrozenEstimator``
# -----------------------------------------------------
# With little data, do not let ``fit`` split off 30 % of an already small training set:
# train the model once, wrap it in :class:`~sklearn.frozen.FrozenEstimator`, and all of
# ``fit``'s data calibrates.
#
# How much does coverage vary?
# ----------------------------
# Calibrate on ``n`` held-out samples, many times, and measure coverage on the rest.
rng = np.random.default_rng(0)
levels = {}
for n_cal in (20, 50, 150):
    covs = []
    for _ in range(200):
        idx = rng.permutation(len(y_rest))
        cal, test = idx[:n_cal], idx[n_cal:]
        clf = SplitConformalClassifier(FrozenEstimator(model), confidence_level=0.9,
                                       randomized=False)
        clf.fit(X_rest[cal], y_rest[cal])
        covs.append(coverage(y_rest[test], clf.predict_set(X_rest[test])))
    levels[n_cal] = np.array(covs)
    print(f"n_cal {n_cal:>4}: mean coverage {levels[n_cal].mean():.3f}, "
          f"5-95 % range {np.percentile(covs, 5):.3f}-{np.percentile(covs, 95):.3f}")

# %%
# The mean stays at or above 0.9 for every ``n``; the spread shrinks like ``1 / sqrt(n)``.
# The dashed curves are the theoretical Beta laws ``Beta(k, n + 1 - k)``,
# ``k = ceil((n + 1) 0.9)``, of the coverage given the calibration set (for continuous
# scores; the scores of this data set have ties, so the histograms sit slightly higher).
fig, axes = plt.subplots(1, 3, figsize=(14, 3.5), sharey=True)
grid = np.linspace(0.6, 1.0, 300)
for ax, (n_cal, covs) in zip(axes, levels.items()):
    k = int(np.ceil((n_cal + 1) * 0.9))
    ax.hist(covs, bins=np.linspace(0.6, 1.0, 33), density=True, alpha=0.6)
    ax.plot(grid, stats.beta(k, n_cal + 1 - k).pdf(grid), "k--")
    ax.axvline(0.9, color="tab:red")
    ax.set(title=f"n_cal = {n_cal}", xlabel="coverage on the test samples")
fig.tight_layout()

# %%
# Report coverage with an interval
# --------------------------------
# A coverage measured on few test samples is itself uncertain: :class:`CoverageDisplay`
# draws 95 % Wilson intervals around each class's coverage.
clf = SplitConformalClassifier(FrozenEstimator(model), confidence_level=0.9)
clf.fit(X_rest[:150], y_rest[:150])
CoverageDisplay.from_estimator(clf, X_rest[150:], y_rest[150:], by="class")
plt.show()
