"""Demo: every estimator of the package on generated data, with coverage and efficiency tables.

Run with ``python -m sklearn_conformal`` (or ``./run.sh demo``); ``--quick`` shrinks the data.
"""

import argparse
import time
import warnings

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from . import metrics
from .datasets import make_heteroscedastic_regression, make_long_tailed_classification
from .exceptions import ClusteringFallbackWarning

LEVEL = 0.9


def _table(title, header, rows):
    print(f"\n{title}")
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    print(line.format(*header))
    print(line.format(*["-" * w for w in widths]))
    for row in rows:
        print(line.format(*row))


def classification_demo(quick):
    from .classification import CaCTClassifier, SplitConformalClassifier

    X, y = make_long_tailed_classification(
        n_samples=3000 if quick else 8000, n_classes=10, n_features=20, imbalance=0.1,
        random_state=0,
    )
    X_fit, X_test, y_fit, y_test = train_test_split(X, y, test_size=0.3, stratify=y,
                                                    random_state=0)
    logistic = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    candidates = [
        (f"Split {score.upper()} / {mode}", SplitConformalClassifier(
            logistic, confidence_level=LEVEL, conformity_score=score, mode=mode, random_state=0))
        for score in ("lac", "aps", "raps") for mode in ("marginal", "class", "cluster")
    ]
    candidates.append(("CaCT (ALM) LAC / marginal", CaCTClassifier(
        confidence_level=LEVEL, pretrain_epochs=10 if quick else 30,
        max_epochs=10 if quick else 30, random_state=0)))
    rows = []
    for name, estimator in candidates:
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ClusteringFallbackWarning)
            estimator.fit(X_fit, y_fit)
        if any(issubclass(w.category, ClusteringFallbackWarning) for w in caught):
            # too few calibration points in the rarest class (e.g. --quick): say so in the table
            name += " (no clusters: marginal)"
        sets = estimator.predict_set(X_test)
        y_idx = np.searchsorted(estimator.classes_, y_test)
        rows.append((name, f"{metrics.coverage(y_idx, sets):.3f}",
                     f"{metrics.mean_set_size(sets):.2f}",
                     f"{metrics.class_coverage_gap(y_idx, sets, LEVEL):.2f}",
                     f"{time.perf_counter() - start:.2f}"))
    _table(f"Classification: long-tailed (imbalance 0.1), 10 classes, {len(y_test)} test points, "
           f"target coverage {LEVEL}",
           ("method", "coverage", "mean size", "CovGap x100", "time (s)"), rows)


def regression_demo(quick):
    from sklearn.linear_model import QuantileRegressor, Ridge
    from sklearn.preprocessing import SplineTransformer

    from .regression import CoCPRegressor, SpeedCPRegressor, SplitConformalRegressor

    n = 4000 if quick else 10000
    X, y, oracle = make_heteroscedastic_regression(
        n, noise="exponential", random_state=0, return_oracle=True)
    X_fit, X_test, y_fit, y_test = train_test_split(X, y, test_size=0.25, random_state=0)
    splines = make_pipeline(SplineTransformer(n_knots=8), Ridge(alpha=1e-3))
    alpha = 1 - LEVEL
    quantiles = tuple(
        make_pipeline(SplineTransformer(n_knots=8), QuantileRegressor(quantile=q, alpha=0.0))
        for q in (alpha / 2, 1 - alpha / 2)
    )
    candidates = [
        ("Split absolute", SplitConformalRegressor(splines, confidence_level=LEVEL,
                                                   random_state=0)),
        ("Split normalized", SplitConformalRegressor(
            splines, confidence_level=LEVEL, conformity_score="normalized", random_state=0)),
        ("Split CQR", SplitConformalRegressor(
            quantiles, confidence_level=LEVEL, conformity_score="cqr", random_state=0)),
        ("SpeedCP (RKHS conditional)", SpeedCPRegressor(
            splines, confidence_level=LEVEL, calibration_size=300 if quick else 600,
            random_state=0)),
        ("CoCP", CoCPRegressor(confidence_level=LEVEL, max_epochs=100 if quick else 300,
                               patience=20, n_alternations=2 if quick else 3, random_state=0)),
    ]
    oracle_interval = oracle.hdi(X_test, LEVEL)
    rows = [("Oracle HDI (population)", f"{metrics.coverage(y_test, oracle_interval):.3f}",
             f"{oracle.conditional_coverage(X_test, oracle_interval).mean():.3f}",
             f"{metrics.mean_interval_length(oracle_interval):.3f}", "-")]
    for name, estimator in candidates:
        start = time.perf_counter()
        intervals = estimator.fit(X_fit, y_fit).predict_interval(X_test)
        rows.append((name, f"{metrics.coverage(y_test, intervals):.3f}",
                     f"{oracle.conditional_coverage(X_test, intervals).mean():.3f}",
                     f"{metrics.mean_interval_length(intervals):.3f}",
                     f"{time.perf_counter() - start:.2f}"))
    _table(f"Regression: skewed heteroscedastic (exponential noise), {len(y_test)} test points, "
           f"target coverage {LEVEL}",
           ("method", "coverage", "exact cond. coverage", "mean length", "time (s)"), rows)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m sklearn_conformal", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller data and budgets")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=UserWarning)
    classification_demo(args.quick)
    regression_demo(args.quick)


if __name__ == "__main__":
    main()
