"""CoCP on the paper's real data sets bike / bio / homes (Su, Zhou & Luo 2026, Table 3).

Reads ``bike_train.csv``, ``CASP.csv`` and ``kc_house_data.csv`` from ``--data`` (default: the
directory in the environment variable ``SKCONF_DATA``, else ``../shared/data`` next to the
repository; see ``benchmarks/README.md``). Preprocessing as in the paper
(App. C.1): one random 50/10/20/20 split per run (the estimators get 80 % and split off
validation and calibration themselves), X standardised and y divided by ``mean|y|`` on the 80 %
fit part, so lengths are in units of ``mean|y|`` like the paper's. Metrics on the 20 % test part:
coverage, mean length, MSCE (10 k-means clusters), WSC (delta 0.1, 1000 directions) and the
l1/l2-ERT with a logistic regression, all from ``sklearn_conformal.metrics``.

Usage::

    python -m benchmarks cocp-real --runs 10
    python -m benchmarks cocp-real --quick            # bike only, 1 run, short training
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np

from sklearn_conformal.metrics import (
    excess_risk_target_coverage,
    mean_squared_conditional_error,
    worst_slab_coverage,
)
from sklearn_conformal.regression import CoCPRegressor

from ._cocp_common import cqr_baseline, split_baseline
from ._report import data_dir, summarize

LEVEL = 0.9
PAPER = {  # Table 3: (coverage, length) of Split, CQR, CoCP
    "bike": {"Split": (0.8980, 0.7700), "CQR": (0.8993, 0.7856), "CoCP": (0.8996, 0.6606)},
    "bio": {"Split": (0.9032, 1.7584), "CQR": (0.8986, 1.5251), "CoCP": (0.9017, 1.4140)},
    "homes": {"Split": (0.9000, 0.5964), "CQR": (0.9034, 0.5664), "CoCP": (0.9024, 0.5257)},
}


def load(name, data_dir):
    import pandas as pd

    if name == "bike":
        df = pd.read_csv(data_dir / "bike_train.csv")
        dt = pd.to_datetime(df["datetime"])
        X = df.drop(columns=["datetime", "casual", "registered", "count", "season", "weather"])
        X = X.assign(hour=dt.dt.hour, dayofweek=dt.dt.day_of_week, month=dt.dt.month,
                     year=dt.dt.year)
        X = pd.concat([X, pd.get_dummies(df["season"], prefix="season"),
                       pd.get_dummies(df["weather"], prefix="weather")], axis=1)
        y = df["count"]
    elif name == "bio":
        df = pd.read_csv(data_dir / "CASP.csv")
        X, y = df.drop(columns=["RMSD"]), df["RMSD"]
    elif name == "homes":
        df = pd.read_csv(data_dir / "kc_house_data.csv")
        X, y = df.drop(columns=["id", "date", "price"]), df["price"]
    else:
        raise ValueError(name)
    return X.to_numpy(dtype=float), y.to_numpy(dtype=float)


def metrics(X, y, intervals):
    covered = ((y >= intervals[:, 0]) & (y <= intervals[:, 1])).astype(float)
    return {
        "coverage": float(covered.mean()),
        "length": float(np.mean(intervals[:, 1] - intervals[:, 0])),
        "msce": mean_squared_conditional_error(X, covered, LEVEL),
        "wsc": worst_slab_coverage(X, covered, delta=0.1),
        "ert_l1": excess_risk_target_coverage(X, covered, LEVEL, loss="l1"),
        "ert_l2": excess_risk_target_coverage(X, covered, LEVEL, loss="l2"),
    }


def one_run(name, X, y, run, methods, cocp_params, log):
    n = len(X)
    perm = np.random.RandomState(run + 999).permutation(n)
    n_test = n // 5
    te, fi = perm[:n_test], perm[n_test:]
    mu, sd = X[fi].mean(0), X[fi].std(0)
    sd[sd == 0] = 1.0
    Xs = (X - mu) / sd
    ys = y / np.mean(np.abs(y[fi]))
    rows = []
    for method in methods:
        if method == "Split":
            model = split_baseline(run)
        elif method == "CQR":
            model = cqr_baseline(run)
        else:
            model = CoCPRegressor(random_state=run, **cocp_params)
        tic = time.perf_counter()
        model.fit(Xs[fi], ys[fi])
        fit_s = time.perf_counter() - tic
        row = {"dataset": name, "run": run, "method": method, "fit_s": fit_s,
               **metrics(Xs[te], ys[te], model.predict_interval(Xs[te]))}
        rows.append(row)
        log.write(json.dumps(row) + "\n")
        log.flush()
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()},
              flush=True)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--first-run", type=int, default=0)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--datasets", default="bike,homes,bio")
    parser.add_argument("--methods", default="Split,CQR,CoCP")
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--data", default=str(data_dir()),
                        help="directory of the CSV files (default: $SKCONF_DATA, else "
                             "../shared/data next to the repository)")
    parser.add_argument("--log", default="benchmarks/results/cocp_real.jsonl")
    parser.add_argument("--report", nargs="*", metavar="JSONL",
                        help="only print the tables of earlier runs' logs")
    args = parser.parse_args(argv)
    if args.report is not None:
        report([json.loads(line) for f in (args.report or [args.log]) for line in open(f)])
        return
    data_path = Path(args.data)
    # the authors' real-data settings: no gradient clipping, cosine floor 2e-4
    from sklearn_conformal.regression import AdamWOptimizer

    cocp_params = {
        "n_jobs": args.n_jobs, "gradient_clip": 0.0, "optimizer": AdamWOptimizer(lr_min=2e-4)
    }
    datasets, runs = args.datasets.split(","), args.runs
    if args.quick:
        datasets, runs = ["bike"], 1
        cocp_params.update(n_folds=2, n_alternations=2, max_epochs=100, patience=10)
    Path(args.log).parent.mkdir(parents=True, exist_ok=True)
    rows = []
    with open(args.log, "a") as log:
        for name in datasets:
            if not (data_path / {"bike": "bike_train.csv", "bio": "CASP.csv",
                                "homes": "kc_house_data.csv"}[name]).exists():
                print(f"skipping {name}: not found in {data_path} (set SKCONF_DATA)")
                continue
            X, y = load(name, data_path)
            print(f"{name}: n={len(X)} d={X.shape[1]}", flush=True)
            for run in range(args.first_run, args.first_run + runs):
                rows += one_run(name, X, y, run, args.methods.split(","), cocp_params, log)
    report(rows)


def report(rows):
    keys = ["coverage", "length", "msce", "wsc", "ert_l1", "ert_l2", "fit_s"]
    for name in PAPER:
        sub = [r for r in rows if r["dataset"] == name]
        if not sub:
            continue
        print(f"\n--- {name} (mean (sd) over runs) ---")
        summarize(sub, keys)
        for method, (cov, length) in PAPER[name].items():
            print(f"  paper {method:<6s} coverage {cov}  length {length}")


if __name__ == "__main__":
    main()
