"""
CaCT: class-wise set sizes on long-tailed data
==============================================

Class-adaptive conformal training (CaCT) targets long-tailed classification: trained with
cross-entropy on a long-tailed sample, a network is unsure about its tail classes, whose
conformal sets are then larger than the head classes'. CaCT fine-tunes the network with one
augmented-Lagrangian multiplier per class on the class-mean set size, which shrinks the tail
classes' sets while calibration keeps the coverage guarantee.

A small stand-in for the paper's protocol: ten Gaussian-cluster classes whose training sizes
decay tenfold from head to tail
(:func:`~sklearn_conformal.datasets.make_long_tailed_classification`, imbalance 0.1), and
balanced validation, calibration and test parts from the same distribution. The default run
uses a small network and few epochs; ``SKCONF_GALLERY_FULL=1`` uses a larger sample and the
estimator's default training.
"""

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

from sklearn_conformal import CaCTClassifier
from sklearn_conformal.datasets import make_long_tailed_classification
from sklearn_conformal.metrics import class_coverage_gap, coverage, mean_set_size
from sklearn_conformal.plotting import CoverageDisplay

FULL = os.environ.get("SKCONF_GALLERY_FULL") == "1"
N_SAMPLES, N_BALANCED = (12000, 600) if FULL else (3000, 150)
TRAINING = {} if FULL else dict(
    hidden_layer_sizes=(32,), pretrain_epochs=30, max_epochs=15, batch_size=128
)

X, y, X_bal, y_bal = make_long_tailed_classification(
    n_samples=N_SAMPLES, n_classes=10, n_features=20, imbalance=0.1,
    n_balanced_per_class=N_BALANCED, random_state=0,
)
counts = np.bincount(y)
print("training samples per class:", counts.tolist())
n_val, n_cal = 2 * N_BALANCED, 10 * N_BALANCED // 3
val, cal, test = slice(0, n_val), slice(n_val, n_val + n_cal), slice(n_val + n_cal, None)
y_test = y_bal[test]

# %%
# Cross-entropy training against CaCT
# -----------------------------------
# ``objective="ce"`` fine-tunes with cross-entropy only (the baseline); ``"cact"`` adds the
# class-wise size constraints. Both use the estimator's default class-balanced cross-entropy
# term (``class_weight="balanced"``; ``class_weight=None`` gives plain cross-entropy) and
# calibrate on the same balanced calibration set.
fitted = {}
for objective in ("ce", "cact"):
    clf = CaCTClassifier(objective=objective, confidence_level=0.9, random_state=0, **TRAINING)
    clf.fit(X, y, validation_data=(X_bal[val], y_bal[val]),
            calibration_data=(X_bal[cal], y_bal[cal]))
    sets = clf.predict_set(X_bal[test])
    fitted[objective] = clf
    print(f"{objective:>5}: coverage {coverage(y_test, sets):.3f}, "
          f"mean set size {mean_set_size(sets):.3f}, "
          f"CovGap {class_coverage_gap(y_test, sets, 0.9):.2f}")

# %%
# Mean set size per class, head to tail
# -------------------------------------
# Class 0 is the head, class 9 the tail. The cross-entropy sets grow towards the tail, and
# CaCT's class-wise multipliers push against that. On this small, fairly easy problem the two
# stay close (with ``SKCONF_GALLERY_FULL=1`` too): compare the bars class by class, and see
# the :doc:`CaCT page </cact>` for the benchmark on harder long-tailed problems.
fig, ax = plt.subplots(figsize=(8, 4))
width = 0.4
for i, (objective, clf) in enumerate(fitted.items()):
    sets = clf.predict_set(X_bal[test])
    sizes = [sets[y_test == k].sum(axis=1).mean() for k in range(10)]
    ax.bar(np.arange(10) + (i - 0.5) * width, sizes, width, label=objective)
ax.set_xticks(np.arange(10), [f"{k}\n({counts[k]})" for k in range(10)])
ax.set(xlabel="class (training samples)", ylabel="mean set size on the test part")
ax.legend(title="objective")

# %%
# Coverage per class
# ------------------
# Calibration holds the marginal guarantee for both; per class, coverage stays close to 0.9.
fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
for ax, (objective, clf) in zip(axes, fitted.items()):
    CoverageDisplay.from_estimator(clf, X_bal[test], y_test, by="class", ax=ax)
    ax.set_title(objective)
fig.tight_layout()
plt.show()
