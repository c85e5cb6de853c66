"""CV+ (``CrossConformalRegressor``) against split conformal prediction: length, coverage, fit time.

For each training size ``n`` in 100, 200, 500, 1000, both estimators wrap the same model and are
fitted on the same ``n`` rows; coverage and mean interval length are measured on held-out rows
and averaged over ``--runs`` draws. The split estimator calibrates on 30 % of the rows (its
default) and trains on the rest; CV+ (10 folds) trains on 90 % in every fold and calibrates on
all ``n``. Problems:

* ``synthetic``: ``y = X beta + noise`` with 20 Gaussian features (half of them irrelevant), heavy
  tailed noise, a ``Ridge`` model;
* ``bio`` (``CASP.csv`` from ``$SKCONF_DATA``, else ``../shared/data`` next to the repository):
  rows drawn at random, histogram gradient boosting (50 iterations).

Fit time: ``CrossConformalRegressor(cv=10).fit`` (``n_jobs=1``) against ten fits of the base model
on all the data (best of three), on the synthetic problem with ``n = 5000`` and gradient
boosting; the target ratio is at most 1.2 (the fold models see 90 % of the rows, and the rest is
one out-of-fold prediction per row).

Models run on ``--threads`` OpenMP / BLAS threads (1 by default).

Usage::

    python -m benchmarks cross-conformal             # 20 runs per size
    python -m benchmarks cross-conformal --quick     # 2 runs, under a minute
"""

import argparse
import time
import warnings

import numpy as np
from sklearn.base import clone
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import Ridge

from sklearn_conformal import CrossConformalRegressor, SplitConformalRegressor

from ._report import add_ratio_column, data_dir, table

LEVEL = 0.9
SIZES = (100, 200, 500, 1000)


def synthetic(n, rng):
    X = rng.normal(size=(n, 20))
    beta = np.r_[np.linspace(1.0, 0.1, 10), np.zeros(10)]
    return X, X @ beta + rng.standard_t(df=3, size=n)


def load_bio(path):
    import pandas as pd

    df = pd.read_csv(path / "CASP.csv")
    return df.drop(columns=["RMSD"]).to_numpy(dtype=float), df["RMSD"].to_numpy(dtype=float)


def one_size(problem, n, runs, n_test, model, seed=0):
    rows = {"split": [], "cv+": []}
    for run in range(runs):
        rng = np.random.default_rng([seed, n, run])
        X, y = problem(n + n_test, rng)
        X_train, y_train, X_test, y_test = X[:n], y[:n], X[n:], y[n:]
        estimators = {
            "split": SplitConformalRegressor(
                clone(model), confidence_level=LEVEL, random_state=run
            ),
            "cv+": CrossConformalRegressor(clone(model), confidence_level=LEVEL, cv=10,
                                           random_state=run),
        }
        for name, estimator in estimators.items():
            intervals = estimator.fit(X_train, y_train).predict_interval(X_test)
            covered = (y_test >= intervals[:, 0]) & (y_test <= intervals[:, 1])
            rows[name].append((covered.mean(), np.mean(intervals[:, 1] - intervals[:, 0])))
    out = {"n": n}
    for name, values in rows.items():
        values = np.asarray(values)
        out[f"{name} coverage"] = f"{values[:, 0].mean():.3f}"
        out[f"{name} length"] = values[:, 1].mean()
    return out


def fit_time(n, repeats=3):
    rng = np.random.default_rng(1)
    X, y = synthetic(n, rng)
    model = HistGradientBoostingRegressor(max_iter=50, early_stopping=False, random_state=0)
    base, cross = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(10):
            clone(model).fit(X, y)
        base.append(time.perf_counter() - start)
        start = time.perf_counter()
        CrossConformalRegressor(model, cv=10, n_jobs=1, random_state=0).fit(X, y)
        cross.append(time.perf_counter() - start)
    return min(cross), min(base)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--n-test", type=int, default=2000)
    parser.add_argument("--fit-time-n", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=1,
                        help="OpenMP / BLAS threads of the models (default 1: stable timings "
                             "on a shared machine)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--data", default=str(data_dir()),
                        help="directory of CASP.csv (default: $SKCONF_DATA, else "
                             "../shared/data next to the repository)")
    args = parser.parse_args(argv)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(args.threads):
        run(args)


def run(args):
    runs, n_test, fit_n = args.runs, args.n_test, args.fit_time_n
    if args.quick:
        runs, n_test, fit_n = 2, 1000, 2000
    warnings.filterwarnings("ignore", category=UserWarning)

    problems = {"synthetic (Ridge)": (synthetic, Ridge(alpha=1.0))}
    from pathlib import Path

    if (Path(args.data) / "CASP.csv").exists():
        X_bio, y_bio = load_bio(Path(args.data))

        def bio(n, rng):
            rows = rng.choice(len(y_bio), size=n, replace=False)
            return X_bio[rows], y_bio[rows]

        problems["bio (HGB)"] = (
            bio, HistGradientBoostingRegressor(max_iter=50, early_stopping=False, random_state=0)
        )
    else:
        print(f"skipping bio: CASP.csv not found in {args.data} (set SKCONF_DATA)")

    header = ["n", "split coverage", "cv+ coverage", "split length", "cv+ length", "cv+ / split"]
    for title, (problem, model) in problems.items():
        rows = [one_size(problem, n, runs, n_test, model) for n in SIZES]
        add_ratio_column(rows, "cv+ length", "split length", "cv+ / split", digits=3)
        for row in rows:
            row["split length"] = f"{row['split length']:.3f}"
            row["cv+ length"] = f"{row['cv+ length']:.3f}"
        table(rows, header, title=f"\n{title}: level {LEVEL}, mean over {runs} runs, "
                                  f"{n_test} test rows", left=0)

    cross, base = fit_time(fit_n)
    table(
        [[fit_n, f"{cross:.2f}", f"{base:.2f}", f"{cross / base:.2f}"]],
        ["n", "CV+ fit (s)", "10 base fits (s)", "ratio (target <= 1.2)"],
        title="\nfit time: CrossConformalRegressor(cv=10) vs 10 fits of the base model (HGB)",
        left=0,
    )


if __name__ == "__main__":
    main()
