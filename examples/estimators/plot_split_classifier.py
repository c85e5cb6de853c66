"""
Prediction sets with SplitConformalClassifier
=============================================

:class:`~sklearn_conformal.SplitConformalClassifier` turns any classifier with
``predict_proba`` into a set-valued predictor: at ``confidence_level=0.9`` the set contains the
true label for at least 90 % of exchangeable test samples, whatever the model.
"""

# %%
# Fit on the digits data
# ----------------------
# ``fit`` holds out ``calibration_size`` (30 %) of the data to calibrate the threshold of the
# conformity score and fits the wrapped model on the rest.
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_conformal import SplitConformalClassifier
from sklearn_conformal.metrics import coverage, mean_set_size
from sklearn_conformal.plotting import CoverageDisplay, SetSizeDisplay

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.4, random_state=0)

clf = SplitConformalClassifier(
    make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=500)),
    confidence_level=0.9,
    random_state=0,
).fit(X_train, y_train)

# %%
# Prediction sets
# ---------------
# ``predict_set`` returns a boolean array of shape ``(n_samples, n_classes)``, its columns in
# ``classes_`` order. Most sets hold a single digit; ambiguous images get two or more.
sets = clf.predict_set(X_test)
for row in range(5):
    print(f"true {y_test[row]}  set {clf.classes_[sets[row]].tolist()}")

# %%
# The metrics take the true labels as column indices.
y_idx = np.searchsorted(clf.classes_, y_test)
print(f"coverage {coverage(y_idx, sets):.3f}, mean set size {mean_set_size(sets):.2f}")

# %%
# Coverage per class and the distribution of set sizes
# ----------------------------------------------------
# The guarantee is *marginal*: on average over the classes. :class:`CoverageDisplay` shows
# the coverage of each class with 95 % Wilson intervals, :class:`SetSizeDisplay` how often
# each set size occurs.
fig, axes = plt.subplots(1, 2, figsize=(11, 4))
CoverageDisplay.from_estimator(clf, X_test, y_test, by="class", ax=axes[0])
SetSizeDisplay.from_estimator(clf, X_test, normalize=True, ax=axes[1])
fig.tight_layout()

# %%
# Another level without refitting
# -------------------------------
# The calibration scores are kept, so any level is one call away.
for level in (0.8, 0.9, 0.95, 0.99):
    s = clf.predict_set(X_test, confidence_level=level)
    print(f"level {level:.2f}: coverage {coverage(y_idx, s):.3f}, size {mean_set_size(s):.2f}")
