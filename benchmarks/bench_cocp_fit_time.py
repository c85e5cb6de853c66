"""Fit time of CoCPRegressor at n = 20,000 (exponential family, T = 5, the default settings).

Wall time depends on what else runs on the machine, so with ``--n-jobs 1`` (every fold in this
process, one torch thread) the script also reports the CPU time of the fit; with ``--n-jobs 2``
the default networks' folds train in two threads of this process (their compiled epochs release
the GIL), each taking the next fold when free, and the script reports each fold's training
seconds. A fold's phases run in sequence, so the slowest fold bounds the wall time.

Usage::

    python -m benchmarks cocp-fit-time [--n-jobs 1] [--n-alternations 5]
"""

import argparse
import os
import time

from sklearn_conformal.datasets import make_heteroscedastic_regression
from sklearn_conformal.regression import CoCPRegressor


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-jobs", type=int, default=1)
    parser.add_argument("--n-alternations", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true",
                        help="n = 2,000, T = 1, at most 50 epochs per step: a smoke test")
    args = parser.parse_args(argv)
    n, params = 20000, {}
    if args.quick:
        n, args.n_alternations, params = 2000, 1, {"max_epochs": 50, "patience": 10}
    X, y = make_heteroscedastic_regression(n, noise="exponential", random_state=args.seed)
    n_fit = 4 * n // 5  # 80 %: 50 % train / 10 % validation / 20 % calibration inside fit
    load = os.getloadavg()
    wall, cpu = time.perf_counter(), time.process_time()
    model = CoCPRegressor(n_alternations=args.n_alternations, n_jobs=args.n_jobs,
                          random_state=args.seed, **params).fit(X[:n_fit], y[:n_fit])
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    per_fold = [sum(rec["seconds"] for rec in fold) for fold in model.history_]
    epochs = [sum(rec["epochs"] for rec in fold) for fold in model.history_]
    print(f"n={n} (fit on {n_fit}), T={args.n_alternations}, n_jobs={args.n_jobs}")
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          f"after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    if args.n_jobs == 1:
        print(f"wall {wall:.1f} s, CPU {cpu:.1f} s (all training ran in this process; two free "
              f"cores with n_jobs=2 -> about {cpu / 2:.1f} s wall)")
    else:
        print(f"wall {wall:.1f} s (the folds train in n_jobs threads; the per-fold wall "
              "seconds below are their training times)")
    print("per-fold wall seconds:", [round(s, 1) for s in per_fold], "epochs:", epochs)


if __name__ == "__main__":
    main()
