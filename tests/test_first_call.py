"""Cold-start cost: each numba kernel compiles one specialisation; the sorts it uses are exact."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sklearn_conformal._core._classification_scores import (
    all_label_scores,
    prediction_sets,
    true_label_scores,
)
from sklearn_conformal._core._merge_sort import merge_sort_indices

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("kind", ["random", "ties", "nan_and_signed_zeros", "zeros"])
def test_merge_sort_matches_numpy_stable_argsort(kind):
    rng = np.random.default_rng(hash(kind) % 2**32)
    for _ in range(300):
        K = int(rng.integers(1, 120))
        if kind == "random":
            row = rng.random(K)
        elif kind == "ties":
            row = rng.integers(0, 4, K) / 4.0
        elif kind == "nan_and_signed_zeros":
            row = rng.random(K)
            row[rng.random(K) < 0.2] = np.nan
            row[rng.random(K) < 0.1] = 0.0
            row[rng.random(K) < 0.1] = -0.0
        else:
            row = np.where(rng.random(K) < 0.5, 0.0, -0.0)
        count = int(rng.integers(0, K + 1))
        labels = np.sort(rng.permutation(K)).astype(np.int64)
        expect = labels.copy()
        expect[:count] = labels[:count][np.argsort(-row[labels[:count]], kind="mergesort")]
        got = labels.copy()
        merge_sort_indices(row, got, count, -1.0)  # the rank sort: decreasing probability
        np.testing.assert_array_equal(got, expect)


@pytest.mark.parametrize("n_classes", [10, 60])  # insertion sort, merge sort (> 24 candidates)
@pytest.mark.parametrize("score", ["aps", "raps"])
def test_aps_sets_equal_the_all_label_scores(score, n_classes):
    rng = np.random.default_rng(n_classes)
    proba = rng.dirichlet(np.full(n_classes, 0.3), size=300)
    proba[:20] = np.round(proba[:20], 2)  # ties
    y = rng.integers(0, n_classes, 300)
    u = rng.random(300)
    kw = dict(k_reg=2, lambda_reg=0.01)
    scores = all_label_scores(proba, score, u, **kw)
    np.testing.assert_array_equal(
        true_label_scores(proba, y, score, u, **kw), scores[np.arange(300), y]
    )
    for q in np.quantile(scores, [0.1, 0.5, 0.9]):
        np.testing.assert_array_equal(
            prediction_sets(proba, np.full(n_classes, q), score, u, **kw), scores <= q
        )


_COMPILE_ONCE = """
import json
import numpy as np
from numba.core.registry import CPUDispatcher
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LinearRegression

from sklearn_conformal._core import _classification_scores as cs
from sklearn_conformal._kqr import _core
from sklearn_conformal.regression import SpeedCPRegressor

rng = np.random.default_rng(0)
# int32 labels, non-contiguous probabilities and thresholds: normalised at the call sites
proba = np.asfortranarray(rng.dirichlet(np.ones(30), size=50))
y = rng.integers(0, 30, 50).astype(np.int32)
thresholds = np.linspace(0.1, 0.9, 60)[::2]
for score in ("lac", "aps", "raps"):
    cs.true_label_scores(proba, y, score, None)
    cs.true_label_scores(proba, y.astype(np.int64), score, rng.random(50))
    cs.prediction_sets(proba, thresholds, score, None)
    cs.prediction_sets(proba, np.full(30, 0.5), score, None)
    cs.all_label_scores(proba, score, None)

X = rng.uniform(-2, 2, size=(120, 1))
y = X[:, 0] + rng.normal(size=120) * (0.2 + np.abs(X[:, 0]))
model = FrozenEstimator(LinearRegression().fit(X, y))
SpeedCPRegressor(model, gamma_grid=[0.5, 2.0], random_state=0).fit(X, y).predict_interval(X[:30])
SpeedCPRegressor(model, gamma=1.0, randomized=False, random_state=0).fit(X, y).predict(X[:5])

multiple = {}
for module in (cs, _core):
    for name, obj in vars(module).items():
        if isinstance(obj, CPUDispatcher) and len(obj.signatures) > 1:
            multiple[module.__name__ + "." + name] = [str(s) for s in obj.signatures]
print(json.dumps(multiple))
"""


def test_kernels_compile_one_specialisation(tmp_path):
    # a cold numba cache (a kernel loaded from the cache never types its callees, so their
    # specialisations only show when everything compiles): every kernel the classification
    # scores and SpeedCP use compiles once. A second specialisation (a literal argument, int32
    # labels, a non-contiguous array) would compile the kernel and its callees again.
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-c", _COMPILE_ONCE], capture_output=True, text=True,
                         env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {}
