"""CoCP's temperature beta at one x: the finite-sample fixed point against the beta-soft oracle.

The design notes predict that CoCP's length follows the beta-soft-oracle curve (the population
fixed point of the alternation) plus a roughly constant estimation offset. This script isolates
one x of the exponential family (``Z ~ Exp(1)``, standardised units, so the temperature is
``beta / s(x)``) and runs the alternation on ``n`` draws with no network at all:

* radius step: ``h`` = the empirical ``level``-quantile of ``|z - c|``;
* centre step: ``c`` = the global maximiser of the empirical soft coverage
  ``sum_i sigmoid((h - |z_i - c|) / b)`` over a window around the current centre (a grid of
  step b / 3, polished on the continuous objective);

from the sample mean until the centre stops moving. Its length is then scored exactly,
``2 psi(c)`` with ``psi`` the population radius holding ``level`` (what conformal calibration
at this x would give). The table shows the mean length over repeated draws, its offset from the
soft oracle ``2 h_b``, and, per ``n``, the paired difference to ``b = 0.005`` (same draws).

The HDI's lower end sits on the support's edge, where the density jumps from 0 to its maximum.
There a boundary error of ``d`` costs length at first order (``d`` outside the support, about
``9 d`` inside it at level 0.9), and the centre step sees only the ``~ n b`` points within a
few ``b`` of the ends, so the boundary error grows as ``b`` shrinks: the offset is not constant
in ``b`` unless ``n b`` is large.

Usage::

    python -m benchmarks cocp-beta                # n = 1000, 4000: ~3 min
    python -m benchmarks cocp-beta --sizes 16000  # ~10 min (idle machine)
"""

import argparse
import time

import numpy as np
from scipy import optimize
from scipy.special import expit

from sklearn_conformal.datasets import HeteroscedasticOracle

LEVEL = 0.9
# sigmoid((h - t) / b) is within 3e-7 of 0 or 1 beyond 15 temperatures from the boundary
REACH = 15.0


def soft_coverage(z, centres, h, b):
    """``sum_i sigmoid((h - |z_i - c|) / b)`` for each ``c`` in ``centres`` (``z`` sorted).

    Points deeper than ``REACH * b`` inside the interval count 1, those further outside 0; only
    the two boundary slices are evaluated, gathered into one ragged array.
    """
    w = REACH * b
    if h > w:
        inside = np.searchsorted(z, centres + h - w) - np.searchsorted(z, centres - h + w)
        starts = np.concatenate([np.searchsorted(z, centres - h - w),
                                 np.searchsorted(z, centres + h - w)])
        stops = np.concatenate([np.searchsorted(z, centres - h + w),
                                np.searchsorted(z, centres + h + w)])
        owner = np.concatenate([centres, centres])
    else:  # the two boundary slices overlap: evaluate every point within reach
        inside = np.zeros(len(centres))
        starts = np.searchsorted(z, centres - h - w)
        stops = np.searchsorted(z, centres + h + w)
        owner = centres
    lengths = stops - starts
    segment = np.repeat(np.arange(len(owner)), lengths)
    idx = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
    values = expit((h - np.abs(z[idx] - owner[segment])) / b)
    sums = np.bincount(segment, weights=values, minlength=len(owner))
    return inside + sums[: len(centres)] + (sums[len(centres):] if h > w else 0.0)


def fixed_point(z, b, window=0.2, tol=1e-6, max_iter=200):
    """Empirical CoCP alternation at one x from the sample mean; returns the centre.

    Each centre step takes the best point of a grid (step ``b / 3``) over the window around the
    current centre, then polishes it on the continuous objective within one grid step.
    """
    z = np.sort(z)
    c = float(z.mean())
    step = b / 3
    for _ in range(max_iter):
        h = float(np.quantile(np.abs(z - c), LEVEL))
        grid = c + np.arange(-window, window + step / 2, step)
        values = soft_coverage(z, grid, h, b)
        best = float(grid[np.argmax(values)])
        polished = optimize.minimize_scalar(
            lambda g: -soft_coverage(z, np.array([g]), h, b)[0],
            bounds=(best - step, best + step), method="bounded", options={"xatol": tol / 10},
        )
        c_new = float(polished.x) if -polished.fun >= values.max() else best
        if abs(c_new - c) < tol:
            return c_new
        c = c_new
    return c


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,4000")
    parser.add_argument("--betas", default="0.0025,0.005,0.01,0.02,0.05",
                        help="temperatures in standardised units (beta / s(x))")
    parser.add_argument("--reps", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true",
                        help="n = 1000, three temperatures, 10 draws: a smoke test")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.betas, args.reps = "1000", "0.005,0.01,0.02", 10
    sizes = [int(v) for v in args.sizes.split(",")]
    betas = [float(v) for v in args.betas.split(",")]

    oracle = HeteroscedasticOracle("exponential")
    soft = {b: 2 * oracle.standardized_soft_oracle(b, LEVEL)[1] for b in betas}
    hdi = np.subtract(*oracle.standardized_hdi(LEVEL)[::-1])
    print(f"exponential noise, level {LEVEL}: HDI length {hdi:.4f}; {args.reps} draws per n; "
          "the same draws for every b")
    print(f"{'n':>6s} {'b':>7s} {'length':>8s} {'(se)':>8s} {'soft':>8s} {'offset':>8s} "
          f"{'paired vs b=0.005':>18s} {'soft vs b=0.005':>16s}")
    for n in sizes:
        tic = time.perf_counter()
        rng = np.random.default_rng([args.seed, n])
        draws = [rng.standard_exponential(n) for _ in range(args.reps)]
        lengths = {b: np.array([2 * oracle.symmetric_radius(fixed_point(z, b), LEVEL)
                                for z in draws]) for b in betas}
        for b in betas:
            mean, se = lengths[b].mean(), lengths[b].std(ddof=1) / np.sqrt(args.reps)
            line = (f"{n:>6d} {b:>7g} {mean:8.4f} {f'({se:.4f})':>8s} {soft[b]:8.4f} "
                    f"{mean - soft[b]:+8.4f}")
            if 0.005 in lengths and b != 0.005:
                d = lengths[b] - lengths[0.005]
                paired = f"{d.mean():+.4f} ({d.std(ddof=1) / np.sqrt(d.size):.4f})"
                line += f" {paired:>18s} {soft[b] - soft[0.005]:+16.4f}"
            print(line, flush=True)
        print(f"{'':>6s} ({time.perf_counter() - tic:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
