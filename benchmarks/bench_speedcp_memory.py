"""Peak memory of ``SpeedCPRegressor.fit`` against the size of one calibration kernel matrix.

Each size runs in a fresh process (peak RSS is per process); the table gives the peak resident
set size of the fit above the process's resident size just before it, in GiB and in units of one
``n_cal x n_cal`` float64 matrix, plus the memory the fitted estimator keeps (its pickle size).

    python benchmarks/bench_speedcp_memory.py 5000 10000 20000

The fit uses a frozen linear model (all ``n`` points calibrate), ``gamma="auto"`` over a
three-value grid (so the cross-validation is included) and the default ``n_jobs``.
"""

import json
import pickle
import resource
import subprocess
import sys
import time

import numpy as np


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


def main(sizes):
    kernel = "one kernel (GiB)"
    print(f"{'n_cal':>7} {kernel:>16} {'peak (GiB)':>10} {'peak/kernel':>12} "
          f"{'kept after fit (GiB)':>20} {'fit (s)':>8}")
    for n in sizes:
        out = subprocess.run([sys.executable, __file__, "--one", str(n)], capture_output=True,
                             text=True)
        if out.returncode != 0:
            print(f"{n:>7} failed (exit {out.returncode}): {out.stderr.strip()[-300:]}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        k = n * n * 8 / 2**30
        print(f"{n:>7} {k:>16.2f} {r['peak_gb']:>10.2f} {r['peak_gb'] / k:>12.2f} "
              f"{r['rss_after_gb']:>20.2f} {r['fit_s']:>8.1f}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--one":
        _one(int(sys.argv[2]))
    else:
        main([int(a) for a in sys.argv[1:]] or [5000, 10000])
