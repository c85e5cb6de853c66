"""
Tuning with GridSearchCV on set size
====================================

The conformal estimators are ordinary scikit-learn estimators, so
:class:`~sklearn.model_selection.GridSearchCV` tunes them. Their ``score`` measures
*efficiency under coverage*: minus the mean set size, with a penalty when the empirical
coverage falls below ``confidence_level``. The search therefore prefers the smallest sets that
still cover.
"""

# %%
import matplotlib.pyplot as plt
import pandas as pd
from sklearn.datasets import load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_conformal import SplitConformalClassifier
from sklearn_conformal.metrics import coverage_scorer, neg_mean_set_size_scorer
from sklearn_conformal.plotting import SetSizeDisplay

X, y = load_wine(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0)


def efficiency(estimator, X, y):
    """The estimator's own score: minus the set size, penalised below the target coverage."""
    return estimator.score(X, y)


# %%
# Search the score and the regularisation of the model
# ----------------------------------------------------
# Parameters of the wrapped model are reached with ``estimator__``. Three scorers are
# recorded; ``refit="efficiency"`` picks the candidate with the best default score.
search = GridSearchCV(
    SplitConformalClassifier(
        make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)),
        confidence_level=0.9,
        random_state=0,
    ),
    param_grid={
        "conformity_score": ["lac", "aps"],
        "estimator__logisticregression__C": [0.001, 0.01, 0.1, 1.0],
    },
    scoring={
        "efficiency": efficiency,
        "size": neg_mean_set_size_scorer,
        "coverage": coverage_scorer,
    },
    refit="efficiency",
    cv=3,
).fit(X_train, y_train)
print("best:", search.best_params_)

# %%
# Set size and coverage of every candidate
# ----------------------------------------
# The smallest sets (large ``C``) under-cover in cross-validation; the efficiency score
# penalises that, so the choice is the smallest set size among the candidates that cover.
results = pd.DataFrame(search.cv_results_)
table = results[["param_conformity_score", "param_estimator__logisticregression__C",
                 "mean_test_efficiency", "mean_test_size", "mean_test_coverage"]]
print(table.to_string(index=False))

fig, axes = plt.subplots(1, 2, figsize=(11, 4))
for score, part in results.groupby("param_conformity_score"):
    C = part["param_estimator__logisticregression__C"].astype(float)
    axes[0].semilogx(C, -part["mean_test_size"], marker="o", label=score)
    axes[1].semilogx(C, part["mean_test_coverage"], marker="o", label=score)
axes[0].set(xlabel="C of the logistic regression", ylabel="mean set size (CV)")
axes[1].axhline(0.9, color="tab:red", linestyle="--", label="target")
axes[1].set(xlabel="C of the logistic regression", ylabel="coverage (CV)")
for ax in axes:
    ax.legend(title="score")
fig.tight_layout()

# %%
# The refitted best estimator on held-out data
# --------------------------------------------
SetSizeDisplay.from_estimator(search.best_estimator_, X_test, normalize=True)
plt.show()
