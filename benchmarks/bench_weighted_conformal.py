"""Weighted conformal prediction under covariate shift: split against weighted calibration.

Source ``x ~ N(0, 1)``, target ``x ~ N(shift, 1)``, ``y = x + (0.2 + |x|) e`` with standard
normal ``e`` (the noise grows away from the source mass, so split conformal, calibrated on
source rows, under-covers the target). Methods, all ``SplitConformalRegressor`` with a linear
model and the absolute score (``--score normalized`` for the normalized one):

* ``split``: marginal calibration (``mode="marginal"``);
* ``weighted-true``: ``WeightedCalibrator(likelihood_ratio=...)`` with the true ratio
  ``exp(shift * x - shift^2 / 2)``;
* ``weighted-est``: ``WeightedCalibrator()`` with the ratio estimated by logistic regression
  from unlabeled target rows (``X_target=``; ``--n-target`` of them).

Reported per shift and method over ``--repeats`` draws: target coverage (mean, sd), the median
interval length and the fraction of infinite intervals (the weighted rule gives ``+inf`` where
the test point's own weight exceeds what the calibration mass allows).

Usage::

    python -m benchmarks weighted-conformal [--quick] [--shifts 0 0.5 1 1.5] [--repeats 100]
"""

import argparse
import time

import numpy as np

from sklearn_conformal import SplitConformalRegressor
from sklearn_conformal.calibrators import WeightedCalibrator

try:
    from ._report import summarize
except ImportError:  # run as a script
    from _report import summarize


def draw(rng, n, shift=0.0):
    x = rng.normal(shift, 1.0, size=(n, 1))
    return x, x[:, 0] + rng.normal(size=n) * (0.2 + np.abs(x[:, 0]))


class GaussianRatio:
    """The true likelihood ratio dN(shift, 1) / dN(0, 1)."""

    def __init__(self, shift):
        self.shift = shift

    def __call__(self, X):
        return np.exp(self.shift * np.asarray(X, dtype=float)[:, 0] - self.shift**2 / 2)


def run(shifts, repeats, n, n_target, n_test, level, score, seed):
    rows = []
    for shift in shifts:
        for r in range(repeats):
            rng = np.random.default_rng([seed, r])
            X, y = draw(rng, n)
            X_target, _ = draw(rng, n_target, shift)
            X_test, y_test = draw(rng, n_test, shift)
            methods = {
                "split": ("marginal", {}),
                "weighted-true": (WeightedCalibrator(likelihood_ratio=GaussianRatio(shift)), {}),
                "weighted-est": (WeightedCalibrator(), {"X_target": X_target}),
            }
            for name, (mode, meta) in methods.items():
                reg = SplitConformalRegressor(
                    confidence_level=level, conformity_score=score, mode=mode, random_state=r
                ).fit(X, y, **meta)
                interval = reg.predict_interval(X_test)
                length = interval[:, 1] - interval[:, 0]
                covered = (y_test >= interval[:, 0]) & (y_test <= interval[:, 1])
                rows.append({
                    "shift": f"{shift:g}",
                    "method": name,
                    "coverage": covered.mean(),
                    "median length": float(np.median(length)),
                    "infinite": float(np.isinf(length).mean()),
                })
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shifts", type=float, nargs="+", default=[0.0, 0.5, 1.0, 1.5])
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--n", type=int, default=2000, help="labeled source rows (30 %% calibrate)")
    parser.add_argument("--n-target", type=int, default=1000, help="unlabeled target rows")
    parser.add_argument("--n-test", type=int, default=2000)
    parser.add_argument("--level", type=float, default=0.9)
    parser.add_argument("--score", default="absolute", choices=["absolute", "normalized"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="20 repeats: a smoke run (seconds)")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats = 20
    start = time.perf_counter()
    rows = run(args.shifts, args.repeats, args.n, args.n_target, args.n_test, args.level,
               args.score, args.seed)
    print(f"covariate shift, level {args.level}, score {args.score}, n = {args.n} "
          f"(calibration {int(np.ceil(0.3 * args.n))}), {args.n_target} unlabeled target rows, "
          f"{args.repeats} draws; mean (sd) over draws")
    summarize(rows, ["coverage", "median length", "infinite"], group=("shift", "method"))
    print(f"{time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
