"""``predict_set`` throughput: sklearn_conformal against MAPIE 1.6 on the same probabilities.

One process, one pre-trained model (a softmax of ``X`` read as logits), both libraries
calibrated on the same ``(X_cal, y_cal)`` and timed on the same ``X_test`` (``predict_proba`` of
the model included in both timings). Each timing is the best of ``--repeats`` calls after one
warm-up call (numba compiles, or loads its cache, on first use).

Rows, with the settings matched as far as MAPIE's API allows:

* ``LAC``: ``conformity_score="lac"`` in both. The sets must be identical; the script prints the
  number of differing rows and, if any, where they come from (MAPIE compares
  ``(1 - p) - q <= 1e-8``, ours ``1 - p <= q``).
* ``APS``: ours ``randomized=False`` against MAPIE's default ``include_last_label=True``;
  ``APS-rand``: ours ``randomized=True`` against ``include_last_label="randomized"``.
  MAPIE always calibrates APS with randomized scores ``cumsum - u * p_y``, and
  ``include_last_label=True`` keeps every label whose mass ranked strictly before it is below
  the threshold (``u = 0`` at prediction, conservative); ours with ``randomized=False`` keeps
  the same labels (those whose score ranked just before is at most the threshold, Romano et
  al. 2020) but also calibrates on that score (``u = 0``, the penalty of the previous rank),
  so its threshold is lower than MAPIE's. Both are valid, but the deterministic rows do not
  give the same sets (ours are typically smaller), so compare their times with the set sizes in
  mind.
* ``RAPS`` / ``RAPS-rand``: MAPIE tunes ``k_star`` and ``lambda_star`` on its own stratified
  20 % split of the calibration data (``size_raps=0.2``) and calibrates on the other 80 %; it
  redoes the ``lambda`` search inside every ``predict_set`` call. Ours is given MAPIE's tuned
  ``k_star`` and ``lambda_star`` as ``k_reg`` / ``lambda_reg`` and calibrates on all of
  ``X_cal``.

Usage::

    python -m benchmarks split-mapie                      # 100,000 x 100, 10,000 calibration
    python -m benchmarks split-mapie --quick              # 10,000 x 20, seconds
    python -m benchmarks split-mapie --n-test 20000 --n-classes 50 --repeats 5
    python -m benchmarks split-mapie --margin 3           # harder: sets of ~20-30 labels
    python -m benchmarks split-mapie --numba-threads 1    # ours on one thread, like MAPIE
"""

import argparse
import time
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.frozen import FrozenEstimator

from sklearn_conformal import SplitConformalClassifier

from ._report import add_ratio_column, table

CONFIDENCE_LEVEL = 0.9
MAPIE_EPSILON = 1e-8  # mapie._machine_precision.EPSILON


class SoftmaxOfLogits(ClassifierMixin, BaseEstimator):
    """A "pre-trained" classifier whose features are its logits: ``predict_proba = softmax(X)``."""

    def fit(self, X, y=None):
        X = np.asarray(X)
        self.n_features_in_ = X.shape[1]
        self.classes_ = np.arange(X.shape[1])
        return self

    def predict_proba(self, X):
        logits = np.asarray(X, dtype=np.float64)
        proba = logits - logits.max(axis=1, keepdims=True)  # a new array: X is never modified
        np.exp(proba, out=proba)
        proba /= proba.sum(axis=1, keepdims=True)
        return proba

    def predict(self, X):
        return self.classes_[np.argmax(np.asarray(X), axis=1)]


def make_logits(n_samples, n_classes, margin, rng):
    """Standard normal logits plus a true-class margin ``N(margin, 1.5)``: easy and hard samples.

    With 100 classes, ``margin=4`` gives top-1 accuracy ~0.79 and LAC sets of ~3 labels at 90 %
    (a CIFAR-100-like regime); ``margin=3`` gives ~0.60 and sets of ~20 labels (hard).
    """
    y = rng.integers(n_classes, size=n_samples)
    logits = rng.normal(size=(n_samples, n_classes))
    logits[np.arange(n_samples), y] += rng.normal(margin, 1.5, size=n_samples)
    return logits, y


def best_time(func, repeats):
    """Result of one warm-up call, and the best wall time of ``repeats`` further calls."""
    result = func()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return result, min(times)


def coverage_and_size(sets, y):
    return float(sets[np.arange(len(y)), y].mean()), float(sets.sum(axis=1).mean())


def mapie_classifier(score, model, X_cal, y_cal):
    from mapie.classification import SplitConformalClassifier as MapieSplitConformalClassifier

    mapie = MapieSplitConformalClassifier(
        estimator=model,
        confidence_level=CONFIDENCE_LEVEL,
        conformity_score=score,
        prefit=True,
        random_state=0,
    )
    return mapie.conformalize(X_cal, y_cal)


def run_row(name, score, randomized, model, data, repeats):
    X_cal, y_cal, X_test, y_test = data
    include_last_label = "randomized" if randomized else True

    mapie = mapie_classifier(score, model, X_cal, y_cal)

    def mapie_sets():
        _, sets = mapie.predict_set(
            X_test, conformity_score_params={"include_last_label": include_last_label}
        )
        return sets[:, :, 0]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mapie_result, mapie_time = best_time(mapie_sets, repeats)
    cs = mapie._mapie_classifier.conformity_score_function_

    params = {}
    note = ""
    if score == "raps":
        k_star, lambda_star = int(np.ravel(cs.k_star)[0]), float(np.ravel(cs.lambda_star)[0])
        params = {"k_reg": k_star, "lambda_reg": lambda_star}
        note = f"k_reg={k_star}, lambda_reg={lambda_star:g} (MAPIE's tuned k_star, lambda_star)"
    ours = SplitConformalClassifier(
        FrozenEstimator(model),
        confidence_level=CONFIDENCE_LEVEL,
        conformity_score=score,
        randomized=randomized,
        random_state=0,
        **params,
    ).fit(X_cal, y_cal)
    ours_result, ours_time = best_time(lambda: ours.predict_set(X_test), repeats)

    row = {
        "method": name,
        "ours_s": ours_time,
        "mapie_s": mapie_time,
        "ratio": mapie_time / ours_time,
        "ours": coverage_and_size(ours_result, y_test),
        "mapie": coverage_and_size(mapie_result, y_test),
        "note": note,
    }
    if score == "lac":
        row["lac_check"] = compare_lac(ours, ours_result, mapie, mapie_result, model, X_test)
    return row


def compare_lac(ours, ours_sets, mapie, mapie_sets, model, X_test):
    """Identity of the LAC sets and, where they differ, the reason."""
    differing_rows = int(np.any(ours_sets != mapie_sets, axis=1).sum())
    q_ours = float(ours.thresholds_[0])
    q_mapie = float(np.ravel(mapie._mapie_classifier.conformity_score_function_.quantiles_)[0])
    lines = [
        f"LAC sets identical: {differing_rows == 0}  (differing rows: {differing_rows} of "
        f"{len(ours_sets)})",
        f"  thresholds: ours {q_ours!r}, MAPIE {q_mapie!r} (equal: {q_ours == q_mapie})",
    ]
    if differing_rows:
        scores = 1.0 - model.predict_proba(X_test)
        only_mapie = int((mapie_sets & ~ours_sets).sum())
        only_ours = int((ours_sets & ~mapie_sets).sum())
        in_tolerance = int(((scores > q_ours) & (scores - q_mapie <= MAPIE_EPSILON)).sum())
        lines.append(
            f"  labels only in MAPIE's sets: {only_mapie}, only in ours: {only_ours}; labels with "
            f"q < 1 - p <= q + 1e-8 (MAPIE's tolerance): {in_tolerance}"
        )
    return lines


def print_table(rows, args):
    print(
        f"\npredict_set, {args.n_test:,} test x {args.n_classes} classes, {args.n_cal:,} "
        f"calibration, margin {args.margin:g}, confidence {CONFIDENCE_LEVEL}; best of "
        f"{args.repeats} after a warm-up"
    )
    cells = [{
        "method": r["method"], "ours (s)": f"{r['ours_s']:.3f}", "MAPIE (s)": f"{r['mapie_s']:.3f}",
        "ours_s": r["ours_s"], "mapie_s": r["mapie_s"],
        "cov ours": f"{r['ours'][0]:.4f}", "cov MAPIE": f"{r['mapie'][0]:.4f}",
        "size ours": f"{r['ours'][1]:.2f}", "size MAPIE": f"{r['mapie'][1]:.2f}",
    } for r in rows]
    add_ratio_column(cells, "mapie_s", "ours_s", "MAPIE/ours")
    table(cells, ["method", "ours (s)", "MAPIE (s)", "MAPIE/ours", "cov ours", "cov MAPIE",
                  "size ours", "size MAPIE"])
    for r in rows:
        if r["note"]:
            print(f"{r['method']}: {r['note']}")
        for line in r.get("lac_check", []):
            print(line)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-test", type=int, default=100_000)
    parser.add_argument("--n-classes", type=int, default=100)
    parser.add_argument("--n-cal", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", default="lac,aps,aps-rand,raps,raps-rand")
    parser.add_argument("--numba-threads", type=int, default=None)
    parser.add_argument("--margin", type=float, default=4.0, help="mean true-class logit margin")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="10,000 x 20, 2,000 calibration")
    args = parser.parse_args(argv)
    try:
        import mapie  # noqa: F401
    except ImportError:
        raise SystemExit("split-mapie needs MAPIE: pip install -e '.[bench]'") from None
    if args.quick:
        args.n_test, args.n_classes, args.n_cal = 10_000, 20, 2_000
    if args.numba_threads is not None:
        import numba

        numba.set_num_threads(args.numba_threads)

    rng = np.random.default_rng(args.seed)
    X_cal, y_cal = make_logits(args.n_cal, args.n_classes, args.margin, rng)
    X_test, y_test = make_logits(args.n_test, args.n_classes, args.margin, rng)
    model = SoftmaxOfLogits().fit(X_cal, y_cal)
    data = (X_cal, y_cal, X_test, y_test)

    _, proba_time = best_time(lambda: model.predict_proba(X_test), args.repeats)
    top1 = float((model.predict(X_test) == y_test).mean())
    print(f"model: top-1 accuracy {top1:.3f}; predict_proba alone {proba_time:.3f} s")

    specs = {
        "lac": ("LAC", "lac", False),
        "aps": ("APS", "aps", False),
        "aps-rand": ("APS-rand", "aps", True),
        "raps": ("RAPS", "raps", False),
        "raps-rand": ("RAPS-rand", "raps", True),
    }
    rows = []
    for key in args.methods.split(","):
        name, score, randomized = specs[key.strip()]
        rows.append(run_row(name, score, randomized, model, data, args.repeats))
        print(f"  done {name}", flush=True)
    print_table(rows, args)


if __name__ == "__main__":
    main()
