"""
Wrapping a pipeline with categorical data
=========================================

The conformal estimators pass ``X`` to the wrapped model as it is: a pandas DataFrame stays a
DataFrame, so a :class:`~sklearn.pipeline.Pipeline` whose
:class:`~sklearn.compose.ColumnTransformer` selects columns by name works unchanged.
"""

# %%
# A generated data set with a categorical column
# ----------------------------------------------
# House-price-like data: a numeric surface, a number of rooms and a neighbourhood whose
# level *and* noise differ.
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from sklearn_conformal import SplitConformalRegressor
from sklearn_conformal.metrics import coverage, mean_interval_length
from sklearn_conformal.plotting import CoverageDisplay, PredictionIntervalDisplay

rng = np.random.default_rng(0)
n = 2000
neighbourhoods = np.array(["centre", "suburb", "harbour", "hills"])
df = pd.DataFrame({
    "surface": rng.uniform(20, 200, n),
    "rooms": rng.integers(1, 7, n),
    "neighbourhood": rng.choice(neighbourhoods, n, p=[0.4, 0.3, 0.2, 0.1]),
})
level = df["neighbourhood"].map({"centre": 3.0, "suburb": 1.5, "harbour": 2.5, "hills": 2.0})
noise = df["neighbourhood"].map({"centre": 0.4, "suburb": 0.2, "harbour": 0.8, "hills": 0.3})
price = level * df["surface"] / 100 + 0.2 * df["rooms"] + noise * rng.standard_normal(n)

X_train, X_test, y_train, y_test = train_test_split(df, price, test_size=0.3, random_state=0)

# %%
# The pipeline and its conformal wrapper
# --------------------------------------
preprocess = ColumnTransformer([
    ("num", StandardScaler(), ["surface", "rooms"]),
    ("cat", OneHotEncoder(handle_unknown="ignore"), ["neighbourhood"]),
])
model = make_pipeline(preprocess, HistGradientBoostingRegressor(max_iter=100))
reg = SplitConformalRegressor(model, conformity_score="normalized", random_state=0)
reg.fit(X_train, y_train)
intervals = reg.predict_interval(X_test)
print(f"coverage {coverage(y_test, intervals):.3f}, "
      f"mean length {mean_interval_length(intervals):.3f}")
print("feature names seen:", list(reg.feature_names_in_))

# %%
# Coverage per neighbourhood
# --------------------------
# The guarantee is marginal; ``CoverageDisplay`` with ``groups=`` checks each neighbourhood.
# With the ``"normalized"`` score the intervals widen where the noise is large (the harbour),
# so every group is covered close to the target.
fig, axes = plt.subplots(1, 2, figsize=(12, 4))
CoverageDisplay.from_estimator(
    reg, X_test, y_test, groups=X_test["neighbourhood"].to_numpy(), ax=axes[0]
)
PredictionIntervalDisplay.from_estimator(reg, X_test, y_test, feature="surface", ax=axes[1])
fig.tight_layout()

# %%
# A ``FrozenEstimator`` (a model trained elsewhere) works the same way: the DataFrame reaches
# the pipeline's ``predict`` untouched.
plt.show()
