"""SpeedCP at scale: fit time, S-path time per test point and peak memory against ``n_cal``.

Rows: the exact kernel at ``n_cal`` = 1,000 / 5,000 / 20,000 and the Nystrom kernel
(``n_components``, exact paths of the approximate kernel) at 100,000, on two problems:

* ``benign``: 2 features, heteroscedastic noise (the problem of the earlier scaling numbers);
* ``friedman``: ``make_friedman1`` with 5 features and noise 1, an ordinary multi-feature
  problem on which the cross-validated gamma is large and the paths long.

Every row is the default ``SpeedCPRegressor`` (``gamma="auto"``, ``lambda_="auto"``) around a
``LinearRegression`` trained on 2,000 other rows, run in a fresh process (peak RSS is per
process): the peak resident set size of ``fit`` above the process's size before it, the fit's
wall and CPU time, and ``predict_cutoff`` on 200 test rows (wall time per row, kernel columns
included), with the empirical coverage of the intervals on those rows.

    python -m benchmarks speedcp-scaling                      # the whole table
    python -m benchmarks speedcp-scaling --quick              # n_cal 1,000 and 5,000 (low-rank)
    python -m benchmarks speedcp-scaling --rows friedman:20000 benign:100000:200
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from ._report import table
from .bench_speedcp_memory import _reset_peak, _status_gb

ROOT = Path(__file__).resolve().parent.parent
N_TRAIN, N_TEST = 2000, 200

#: (problem, n_cal, n_components or None)
FULL = [
    ("benign", 1000, None), ("benign", 5000, None), ("benign", 20000, None),
    ("benign", 100000, 200),
    ("friedman", 1000, None), ("friedman", 5000, None), ("friedman", 20000, None),
    ("friedman", 100000, 200),
]
QUICK = [("benign", 1000, None), ("friedman", 1000, None), ("friedman", 5000, 100)]


def _data(problem, n, seed=0):
    if problem == "benign":
        rng = np.random.default_rng(seed)
        X = rng.uniform(-2, 2, size=(n, 2))
        y = X[:, 0] + rng.normal(size=n) * (0.2 + np.abs(X[:, 0]))
        return X, y
    from sklearn.datasets import make_friedman1

    return make_friedman1(n, n_features=5, noise=1.0, random_state=seed)


def _one(problem, n_cal, n_components):
    from sklearn.linear_model import LinearRegression

    from sklearn_conformal import SpeedCPRegressor

    X, y = _data(problem, N_TRAIN + n_cal + N_TEST)
    X_fit, y_fit = X[:-N_TEST], y[:-N_TEST]
    X_test, y_test = X[-N_TEST:], y[-N_TEST:]

    def make():
        return SpeedCPRegressor(LinearRegression(), calibration_size=n_cal,
                                n_components=n_components, random_state=0)

    # compile the numba kernels outside the measurement
    small = 300 + (n_components or 0)
    make().set_params(calibration_size=small - 100).fit(X_fit[:small], y_fit[:small])
    _reset_peak()  # the peak RSS (VmHWM) back to the current RSS (Linux >= 4.0)
    base = _status_gb("VmRSS")
    reg = make()
    wall, cpu = time.perf_counter(), time.process_time()
    reg.fit(X_fit, y_fit)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak = _status_gb("VmHWM") - base
    t0 = time.perf_counter()
    reg.predict_cutoff(X_test)
    per_point = (time.perf_counter() - t0) / N_TEST
    iv = reg.predict_interval(X_test)
    print(json.dumps({
        "problem": problem, "n_cal": reg.n_calibration_, "n_components": n_components,
        "fit_s": wall, "fit_cpu_s": cpu, "peak_gb": peak, "spath_ms": 1e3 * per_point,
        "gamma": reg.gamma_, "lam": reg.lam_, "breakpoints": int(reg.path_lambdas_.size),
        "elbow": int(reg.path_elbow_sizes_[-1]) if reg.path_elbow_sizes_.size else 0,
        "coverage": float(np.mean((y_test >= iv[:, 0]) & (y_test <= iv[:, 1]))),
        "length": float(np.mean(iv[:, 1] - iv[:, 0])),
    }))


def _parse_row(text):
    parts = text.split(":")
    return parts[0], int(parts[1]), (int(parts[2]) if len(parts) > 2 else None)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="three small rows (about 1 min)")
    parser.add_argument("--rows", nargs="*", type=_parse_row, default=None,
                        help="rows as problem:n_cal[:n_components]")
    parser.add_argument("--one", type=_parse_row, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one is not None:
        _one(*args.one)
        return
    todo = args.rows or (QUICK if args.quick else FULL)
    out_rows = []
    for problem, n_cal, r in todo:
        spec = f"{problem}:{n_cal}" + (f":{r}" if r else "")
        load = os.getloadavg()[0]
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.bench_speedcp_scaling", "--one", spec],
            capture_output=True, text=True, cwd=ROOT,
        )
        if out.returncode != 0:
            print(f"{spec} failed (exit {out.returncode}): {out.stderr.strip()[-400:]}")
            continue
        rec = json.loads(out.stdout.strip().splitlines()[-1])
        out_rows.append([
            problem, n_cal, "exact" if r is None else f"nystroem {r}", f"{rec['fit_s']:.1f}",
            f"{rec['fit_cpu_s']:.1f}", f"{rec['spath_ms']:.2f}", f"{rec['peak_gb']:.2f}",
            f"{rec['gamma']:.3g}", f"{rec['lam']:.3g}", rec["breakpoints"], rec["elbow"],
            f"{rec['coverage']:.3f}", f"{rec['length']:.3f}", f"{load:.1f}",
        ])
        print(json.dumps(rec), flush=True)
    print(f"\nSpeedCP scaling (default SpeedCPRegressor, {os.cpu_count()} cores; load = 1-min "
          "load average before the row: wall times on a shared machine overstate the cost)")
    table(out_rows, ["problem", "n_cal", "kernel", "fit_s", "fit_cpu_s", "spath_ms/pt",
                     "peak_GiB", "gamma", "lambda", "bp", "|E|", "cover", "length", "load"])


if __name__ == "__main__":
    main()
