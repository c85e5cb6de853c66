"""
Class-adaptive conformal training with CaCTClassifier
=====================================================

:class:`~sklearn_conformal.CaCTClassifier` trains a torch network (through skorch) so that its
conformal prediction sets are small *class by class*: after cross-entropy pre-training,
fine-tuning adds one Lagrange multiplier per class on the class-mean set size, updated by an
augmented-Lagrangian rule. The sets are then calibrated as usual, so coverage holds whatever
the training did.

A tiny configuration (15 pre-training epochs, 5 fine-tuning epochs, one hidden layer of 32
units) keeps this example fast.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np

from sklearn_conformal import CaCTClassifier
from sklearn_conformal.datasets import make_long_tailed_classification
from sklearn_conformal.metrics import class_coverage_gap, coverage, mean_set_size
from sklearn_conformal.plotting import CaCTTraceDisplay, CoverageDisplay

X, y, X_bal, y_bal = make_long_tailed_classification(
    n_samples=2000, n_classes=6, n_features=10, n_balanced_per_class=200, random_state=0
)
print("training class sizes:", np.bincount(y).tolist())
X_val, y_val = X_bal[:300], y_bal[:300]
X_cal, y_cal = X_bal[300:700], y_bal[300:700]
X_test, y_test = X_bal[700:], y_bal[700:]

# %%
# Fit with explicit (balanced) validation and calibration sets
# ------------------------------------------------------------
clf = CaCTClassifier(
    hidden_layer_sizes=(32,),
    pretrain_epochs=15,
    max_epochs=5,
    confidence_level=0.9,
    random_state=0,
).fit(X, y, validation_data=(X_val, y_val), calibration_data=(X_cal, y_cal))
sets = clf.predict_set(X_test)
print(f"coverage {coverage(y_test, sets):.3f}, mean set size {mean_set_size(sets):.2f}, "
      f"CovGap {class_coverage_gap(y_test, sets, 0.9):.2f}")
print("final multipliers:", np.round(clf.multipliers_, 3).tolist())

# %%
# The coverage of one calibrated model on one test set fluctuates around the target: with
# 400 calibration samples its spread is about ``sqrt(0.9 * 0.1 / 400)`` = 0.015 (see
# :ref:`sphx_glr_auto_examples_howto_plot_little_data.py`); the guarantee is on average over
# calibration draws.

# %%
# Multiplier and constraint traces
# --------------------------------
# :class:`CaCTTraceDisplay` shows each class's multiplier after every update (left) and its
# normalised size constraint on the validation set (right; feasible at or below zero).
CaCTTraceDisplay.from_estimator(clf)

# %%
# Coverage per class
# ------------------
CoverageDisplay.from_estimator(clf, X_test, y_test, by="class")
plt.show()
