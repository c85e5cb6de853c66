"""Peak memory of ``SpeedCPRegressor.fit`` against the size of one calibration kernel matrix.

Each size runs in a fresh process (peak RSS is per process); the table gives the peak resident
set size of the fit above the process's resident size just before it, in GiB and in units of one
``n_cal x n_cal`` float64 matrix, plus the memory the fitted estimator keeps (its pickle size).

    python -m benchmarks speedcp-memory 5000 10000 20000
    python -m benchmarks speedcp-memory --quick     # 1000 and 2000: seconds

The fit uses a frozen linear model (all ``n`` points calibrate), ``gamma="auto"`` over a
three-value grid (so the cross-validation is included) and the default ``n_jobs``.
"""

import argparse
import json
import pickle
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from ._report import ratio, table

ROOT = Path(__file__).resolve().parent.parent


def _status_gb(field):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 2**20
    return float("nan")


def _rss_gb():
    return _status_gb("VmRSS")


def _reset_peak():
    """Reset the peak RSS (VmHWM) to the current RSS (Linux >= 4.0); False when unavailable."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _one(n):
    from sklearn.frozen import FrozenEstimator
    from sklearn.linear_model import LinearRegression

    from sklearn_conformal import SpeedCPRegressor

    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, size=(n, 2))
    y = X[:, 0] + rng.normal(size=n) * (0.2 + np.abs(X[:, 0]))
    lr = LinearRegression().fit(X, y)
    reg = SpeedCPRegressor(FrozenEstimator(lr), gamma_grid=[0.3, 1.0, 3.0], random_state=0)
    reg.fit(X[:50], y[:50])  # compile the numba kernels outside the measurement
    reset = _reset_peak()
    base = _rss_gb()
    t0 = time.perf_counter()
    reg.fit(X, y)
    seconds = time.perf_counter() - t0
    if reset:
        peak = _status_gb("VmHWM")
    else:  # lifetime peak of the process (an upper bound of the fit's)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GB
    kept = len(pickle.dumps(reg)) / 2**30
    resident = _rss_gb()
    print(json.dumps({"n": n, "peak_gb": peak - base, "fit_s": seconds, "pickle_gb": kept,
                      "rss_after_gb": resident - base}))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", type=int, help="n_cal values (default 5000 10000)")
    parser.add_argument("--quick", action="store_true", help="n_cal 1000 and 2000")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # one size, in this process
    args = parser.parse_args(argv)
    if args.one is not None:
        _one(args.one)
        return
    sizes = args.sizes or ([1000, 2000] if args.quick else [5000, 10000])
    rows = []
    for n in sizes:
        # a fresh process per size: peak RSS is per process
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.bench_speedcp_memory", "--one", str(n)],
            capture_output=True, text=True, cwd=ROOT,
        )
        if out.returncode != 0:
            print(f"{n:>7} failed (exit {out.returncode}): {out.stderr.strip()[-300:]}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        k = n * n * 8 / 2**30
        rows.append([n, f"{k:.2f}", f"{r['peak_gb']:.2f}", f"{ratio(r['peak_gb'], k):.2f}",
                     f"{r['rss_after_gb']:.2f}", f"{r['fit_s']:.1f}"])
    table(rows, ["n_cal", "one kernel (GiB)", "peak (GiB)", "peak/kernel",
                 "kept after fit (GiB)", "fit (s)"])


if __name__ == "__main__":
    main()
