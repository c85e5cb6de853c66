"""
Choosing a conformity score and a calibration mode
==================================================

:class:`~sklearn_conformal.SplitConformalClassifier` has three conformity scores and three
calibration modes:

* ``conformity_score="lac"`` (also called THR) keeps the labels whose probability exceeds a
  threshold: the smallest sets on average, but hard samples get small sets and easy ones
  sometimes empty sets;
* ``"aps"`` adds labels by decreasing probability until their mass reaches a threshold: larger
  sets, more even coverage across easy and hard samples;
* ``"raps"`` is APS with a penalty on long sets (``k_reg``, ``lambda_reg``);

and ``mode="marginal"`` (coverage on average), ``"class"`` (coverage within every class) or
``"cluster"`` (classes with similar score distributions share a threshold).
"""

# %%
# Nine combinations on the digits data
# ------------------------------------
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from sklearn_conformal import SplitConformalClassifier
from sklearn_conformal.metrics import class_coverage_gap, coverage, mean_set_size
from sklearn_conformal.plotting import CoverageDisplay, SetSizeDisplay

X, y = load_digits(return_X_y=True)
X = X / 16.0
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.4, random_state=0)
y_idx = np.searchsorted(np.unique(y), y_test)

fitted = {}
print(f"{'score':>5} {'mode':>9} {'coverage':>9} {'size':>6} {'CovGap':>7}")
for score in ("lac", "aps", "raps"):
    for mode in ("marginal", "class", "cluster"):
        clf = SplitConformalClassifier(
            LogisticRegression(C=0.1, max_iter=300),
            conformity_score=score,
            mode=mode,
            confidence_level=0.9,
            random_state=0,
        ).fit(X_train, y_train)
        sets = clf.predict_set(X_test)
        fitted[score, mode] = clf
        print(f"{score:>5} {mode:>9} {coverage(y_idx, sets):9.3f} {mean_set_size(sets):6.2f} "
              f"{class_coverage_gap(y_idx, sets, 0.9):7.2f}")

# %%
# Every combination covers about 90 % on average. CovGap (the mean absolute deviation of the
# class-wise coverages from the target, times 100) is what the modes change: ``"class"``
# calibrates each class on its own samples, at the price of noisier thresholds when classes
# are small.
#
# Set sizes and coverage by set size
# ----------------------------------
# ``by="size"`` groups the test samples by the size of their set: LAC under-covers the
# samples that get a single label (or none) and over-covers the rest; APS is more even.
fig, axes = plt.subplots(2, 2, figsize=(11, 8))
for col, score in enumerate(("lac", "aps")):
    clf = fitted[score, "marginal"]
    SetSizeDisplay.from_estimator(clf, X_test, normalize=True, ax=axes[0, col])
    CoverageDisplay.from_estimator(clf, X_test, y_test, by="size", ax=axes[1, col])
    axes[0, col].set_title(f"{score}, marginal")
fig.tight_layout()

# %%
# Rules of thumb: LAC for the smallest sets when only marginal coverage matters; APS or RAPS
# when hard and easy samples should be treated alike; ``mode="class"`` when every class must
# be covered (and classes have a few hundred calibration samples), ``"cluster"`` in between.
plt.show()
