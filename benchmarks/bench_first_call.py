"""Time of a first call in a fresh process: import, first APS predict_set, first SpeedCP fit.

Each case runs in its own fresh Python process, twice: first with ``NUMBA_CACHE_DIR`` pointed at
a new empty folder (cold: every numba kernel it uses compiles), then again with that folder
reused (warm: the kernels load from the cache). The cases:

* ``import``: ``import sklearn_conformal`` (and a check that torch was not imported);
* ``import-estimators``: importing the two estimators (loads numpy, scipy, scikit-learn and
  numba; the kernels compile at their first call, not at import);
* ``aps``: ``SplitConformalClassifier(conformity_score="aps").fit`` + ``predict_set`` on the
  digits;
* ``speedcp``: ``SpeedCPRegressor(gamma=1.0).fit`` + ``predict_interval`` (500 points, 100
  test points);
* ``speedcp-default``: the same with the default ``SpeedCPRegressor()`` (gamma by 5-fold
  cross-validation over 30 candidates).

For the estimator cases the time is that of the estimator's import plus fit plus prediction
(the data, scikit-learn and numpy are loaded before the clock starts).

    python -m benchmarks first-call             # every case, 3 repeats (minimum reported)
    python -m benchmarks first-call --quick     # every case once
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ._report import table

ROOT = Path(__file__).resolve().parent.parent

# case -> (one line, target for the cold time in seconds)
CASES = {
    "import": ("import sklearn_conformal", 0.3),
    "import-estimators": ("from sklearn_conformal import SplitConformalClassifier, "
                          "SpeedCPRegressor (numpy, scipy, scikit-learn, numba included)", None),
    "aps": ('first SplitConformalClassifier("aps") fit + predict_set, digits', 3.0),
    "speedcp": ("first SpeedCPRegressor(gamma=1.0) fit + predict_interval, n=500", 10.0),
    "speedcp-default": ("first SpeedCPRegressor() fit + predict_interval, n=500", 10.0),
}


def _regression_data():
    import numpy as np

    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, size=(600, 1))
    y = X[:, 0] + rng.normal(size=600) * (0.2 + np.abs(X[:, 0]))
    return X[:500], y[:500], X[500:]


def _one(case):
    """Run one case in this (fresh) process; print a JSON line."""
    out = {"case": case}
    if case == "import":
        t0 = time.perf_counter()
        import sklearn_conformal  # noqa: F401

        out["seconds"] = time.perf_counter() - t0
    elif case == "import-estimators":
        t0 = time.perf_counter()
        from sklearn_conformal import SpeedCPRegressor, SplitConformalClassifier  # noqa: F401

        out["seconds"] = time.perf_counter() - t0
    elif case == "aps":
        import numpy as np
        from sklearn.datasets import load_digits
        from sklearn.linear_model import LogisticRegression  # noqa: F401 (loaded before)

        X, y = load_digits(return_X_y=True)
        X = X / 16.0
        t0 = time.perf_counter()
        from sklearn_conformal import SplitConformalClassifier

        clf = SplitConformalClassifier(conformity_score="aps", random_state=0)
        clf.fit(X[:1500], y[:1500])
        sets = clf.predict_set(X[1500:])
        out["seconds"] = time.perf_counter() - t0
        out["mean_size"] = float(np.asarray(sets).sum(axis=1).mean())
    else:
        import numpy as np
        from sklearn.linear_model import LinearRegression  # noqa: F401 (loaded before)

        X, y, X_test = _regression_data()
        t0 = time.perf_counter()
        from sklearn_conformal import SpeedCPRegressor

        params = {"gamma": 1.0} if case == "speedcp" else {}
        reg = SpeedCPRegressor(random_state=0, **params).fit(X, y)
        interval = reg.predict_interval(X_test)
        out["seconds"] = time.perf_counter() - t0
        out["mean_width"] = float(np.mean(interval[:, 1] - interval[:, 0]))
    out["torch_imported"] = "torch" in sys.modules
    print(json.dumps(out))


def _run(case, cache_dir):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir))
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_first_call", "--one", case],
        capture_output=True, text=True, cwd=ROOT, env=env,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{case} failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(cases, repeats=1):
    """``{case: (cold seconds, warm seconds, torch imported)}``, minimum over ``repeats``."""
    results = {}
    for case in cases:
        cold, warm, torch_seen = [], [], False
        for _ in range(repeats):
            with tempfile.TemporaryDirectory(prefix="skconf-numba-") as cache:
                c = _run(case, cache)  # empty cache: everything compiles
                w = _run(case, cache)  # the same cache again
            cold.append(c["seconds"])
            warm.append(w["seconds"])
            torch_seen |= c["torch_imported"] or w["torch_imported"]
        results[case] = (min(cold), min(warm), torch_seen)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*",
                        help=f"cases to run (default all: {', '.join(CASES)})")
    parser.add_argument("--quick", action="store_true", help="each case once")
    parser.add_argument("--repeats", type=int, default=3, help="fresh caches per case (min)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # one case, in this process
    args = parser.parse_args(argv)
    if args.one is not None:
        _one(args.one)
        return
    cases = args.cases or list(CASES)
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {unknown}; one of: {', '.join(CASES)}")
    repeats = 1 if args.quick else args.repeats
    results = measure(cases, repeats)
    rows = []
    for case in cases:
        cold, warm, torch_seen = results[case]
        target = CASES[case][1]
        met = "-" if target is None else ("yes" if cold <= target else "no")
        rows.append([case, f"{cold:.2f}", f"{warm:.2f}",
                     "-" if target is None else f"<= {target:g}", met,
                     "yes" if torch_seen else "no"])
    table(rows, ["case", "cold (s)", "warm (s)", "target (cold)", "met", "torch imported"],
          title=f"first call, fresh process each (minimum of {repeats})")
    for case in cases:
        print(f"  {case}: {CASES[case][0]}")


if __name__ == "__main__":
    main()
