"""CaCT on a sampled grid of long-tailed problems: does it hold where it was not tuned?

``bench_cact`` compares CaCT with its baselines on three hand-picked problems. This benchmark
instead *samples* problems from a grid and reports how often CaCT wins, so that a default which
only works on the problems it was developed on shows up as such.

Grid (a cell is one point of it):

* feature family: ``gauss`` (Gaussian clusters, ``make_long_tailed_classification``, 24 features,
  ``class_sep`` 1.1) or ``digits`` (scikit-learn's digits, ``make_long_tailed_digits``; only
  10 classes exist, so the digits cells with K > 10 are not available and are skipped);
* K in {10, 20, 50, 100} classes;
* imbalance (tail / head class size, exponential profile) in {0.01, 0.1, 0.5};
* model: ``linear`` (``hidden_layer_sizes=()``) or ``mlp`` (``(64,)``).

Protocol per cell and seed: long-tailed training data; balanced, disjoint validation /
calibration / test sets; one cross-entropy model pre-trained, then every method fine-tunes a copy
of it for the *same* number of epochs (``bench_cact``'s protocol, its ``_split_balanced``).
Methods: CE (pre-trained only), CE-ft (budget-matched CE fine-tune), CE-cb (class-balanced CE),
focal, ConfTr-tuned (``size_weight`` picked per run on the validation split only: the validation
set is halved, one half calibrates THR, the other measures coverage and size; among the settings
with validation coverage >= level - 0.02 the smallest validation size wins, else the highest
coverage) and CaCT (estimator defaults: the class-balanced primal since the tuning-seed run
below). The baselines other than CE-cb are unweighted. ``--candidates`` adds CaCT settings
(``CANDIDATES``: the class-balanced primal, with a matched training level, and the unweighted
previous default). Test metrics: THR (LAC, split, marginal) size,
coverage, CovGap (``class_coverage_gap``, in points: x100) and top-1 accuracy.

Seeds: *tuning* seeds (100, 101, ...) are for developing CaCT's defaults; *reporting* seeds
(0, 1, ...) are for the numbers one quotes. They are disjoint and the output names which set a
run used (``--seed-set``).

Report: per cell and overall, mean size / coverage / CovGap / accuracy per method; paired
differences (CaCT - other) and win rates (CaCT strictly lower) against CE-ft, CE-cb, focal and
ConfTr-tuned on CovGap and size; and the acceptance fraction: cells whose (seed-mean) CaCT CovGap
is below both CE-ft's and ConfTr-tuned's while its size is <= 1.05 x the smaller of their sizes.

Usage::

    python -m benchmarks cact-grid --quick               # 3 sampled cells, 1 seed, few epochs
    python -m benchmarks cact-grid --cells 8 --cell-seed 1 --seeds 3
    python -m benchmarks cact-grid --seeds 3             # every available cell (30)
    python -m benchmarks cact-grid --seed-set tuning     # the same on the tuning seeds
    python -m benchmarks cact-grid --report-only results/cact_grid_....json

CPU only, one torch thread. JSON goes to ``benchmarks/results/cact_grid_<seed-set>_<tag>.json``.
"""

import argparse
import itertools
import json
import os
import time
import warnings

import numpy as np

from ._report import table
from .bench_cact import LEVEL, RESULTS, _split_balanced

FAMILIES = ("gauss", "digits")
KS = (10, 20, 50, 100)
IMBALANCES = (0.01, 0.1, 0.5)
MODELS = {"linear": (), "mlp": (64,)}
CONFTR_GRID = (0.01, 0.05, 0.2)
CONFTR_GRID_QUICK = (0.01, 0.1)
COVERAGE_SLACK = 0.02  # ConfTr tuning: admissible if validation coverage >= LEVEL - slack
SIZE_TOL = 1.05  # acceptance: CaCT size <= SIZE_TOL x min(CE-ft, ConfTr-tuned)
TUNING_SEED0, REPORTING_SEED0 = 100, 0
# epochs: (pre-training, fine-tuning); the fine-tuning budget is the same for every method
EPOCHS = {"full": (200, 50), "quick": (60, 15)}
BASELINES = ("CE-ft", "CE-cb", "focal", "ConfTr-tuned")
METHOD_ORDER = ("CE", "CE-ft", "CE-cb", "focal", "ConfTr-tuned", "CaCT")


def grid_cells():
    """Every available cell as a dict, and the unavailable ones (digits with K > 10)."""
    cells, skipped = [], []
    for family, k, imb, model in itertools.product(FAMILIES, KS, IMBALANCES, MODELS):
        cell = dict(family=family, K=k, imbalance=imb, model=model)
        (skipped if family == "digits" and k > 10 else cells).append(cell)
    return cells, skipped


def cell_name(cell):
    return f"{cell['family']}-K{cell['K']}-imb{cell['imbalance']:g}-{cell['model']}"


def load_cell(cell, seed):
    """Training data, balanced validation / calibration / test sets for one cell and seed."""
    from sklearn_conformal.datasets import make_long_tailed_classification, make_long_tailed_digits

    rng = np.random.default_rng(seed)
    if cell["family"] == "digits":
        X, y, Xb, yb = make_long_tailed_digits(
            cell["imbalance"], n_balanced_per_class=90, random_state=seed
        )
        val, cal, test = _split_balanced(Xb, yb, 10, 35, rng)
    else:
        k = cell["K"]
        X, y, Xb, yb = make_long_tailed_classification(
            n_samples=80 * k, n_classes=k, n_features=24, class_sep=1.1,
            imbalance=cell["imbalance"], n_balanced_per_class=80, random_state=seed,
        )
        val, cal, test = _split_balanced(Xb, yb, 10, 30, rng)
    f32 = lambda d: (d[0].astype(np.float32), d[1])  # noqa: E731
    return f32((X, y)), f32(val), f32(cal), f32(test)


# candidate CaCT settings evaluated next to the default (``--candidates``), for choosing defaults
# on the tuning seeds: the class-balanced primal (the default since that choice), with it a
# training level equal to the test level instead of 0.99, and the unweighted former default
CANDIDATES = {
    "CaCT-cb": dict(objective="cact", class_weight="balanced"),
    "CaCT-cb-match": dict(objective="cact", class_weight="balanced", train_confidence_level=LEVEL),
    "CaCT-unweighted": dict(objective="cact", class_weight=None),
}


def fine_tune_methods(candidates=()):
    """Fine-tuning methods (name -> CaCTClassifier keywords); ConfTr is tuned separately.

    The baselines name their class weights, so they stay what the issue defines (budget-matched
    cross-entropy is unweighted) whatever the estimator's defaults; "CaCT" is the defaults.
    """
    methods = {
        "CE-ft": dict(objective="ce", class_weight=None),
        "CE-cb": dict(objective="ce", class_weight="balanced"),
        "focal": dict(objective="focal", class_weight=None),
        "CaCT": dict(objective="cact"),
    }
    methods.update({name: CANDIDATES[name] for name in candidates})
    return methods


def thr_metrics(clf, cal, test, seed):
    """THR (LAC) split marginal CP at LEVEL: size, coverage, CovGap x100, top-1 accuracy.

    (``bench_cact.evaluate`` gives the full score x mode table; this grid needs one column.)
    """
    from sklearn.frozen import FrozenEstimator

    from sklearn_conformal import SplitConformalClassifier
    from sklearn_conformal.metrics import class_coverage_gap, coverage, mean_set_size

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        conf = SplitConformalClassifier(
            FrozenEstimator(clf), confidence_level=LEVEL, conformity_score="lac",
            mode="marginal", random_state=seed,
        ).fit(cal[0], cal[1])
        sets = conf.predict_set(test[0])
        acc = float(np.mean(clf.predict(test[0]) == test[1]))
    return dict(
        size=float(mean_set_size(sets)), cov=float(coverage(test[1], sets)),
        gap=float(class_coverage_gap(test[1], sets, LEVEL)), acc=acc,  # already x100
    )


def _halve(data, seed):
    """Split a balanced set into two class-stratified halves (for validation-only tuning)."""
    X, y = data
    rng = np.random.default_rng(seed + 7919)
    a, b = [], []
    for k in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == k))
        a.append(idx[: len(idx) // 2])
        b.append(idx[len(idx) // 2 :])
    a, b = np.concatenate(a), np.concatenate(b)
    return (X[a], y[a]), (X[b], y[b])


def pick_conftr(val_scores):
    """The tuned ConfTr setting from ``{size_weight: validation THR metrics}``."""
    ok = [lam for lam, m in val_scores.items() if m["cov"] >= LEVEL - COVERAGE_SLACK]
    if ok:
        return min(ok, key=lambda lam: (val_scores[lam]["size"], lam))
    return max(val_scores, key=lambda lam: val_scores[lam]["cov"])


def run_one(cell, seed, epochs, conftr_grid, candidates=()):
    import torch

    from sklearn_conformal.classification import CaCTClassifier, ConfTrObjective

    torch.set_num_threads(1)
    (X, y), val, cal, test = load_cell(cell, seed)
    pre_epochs, ft_epochs = epochs
    common = dict(
        batch_size=500, random_state=seed, hidden_layer_sizes=MODELS[cell["model"]], lr=0.05
    )
    fit_kw = dict(validation_data=val, calibration_data=cal)
    val_a, val_b = _halve(val, seed)
    rec = {"_class_counts": np.bincount(y, minlength=cell["K"]).tolist()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base = CaCTClassifier(
            objective="ce", class_weight=None, pretrain_epochs=pre_epochs, max_epochs=0, **common
        ).fit(X, y, **fit_kw)
        start = base.net_.module_
        rec["CE"] = thr_metrics(base, cal, test, seed)

        def tune(**kw):
            t0 = time.time()
            clf = CaCTClassifier(
                module=start, pretrain_epochs=0, max_epochs=ft_epochs, **common, **kw
            ).fit(X, y, **fit_kw)
            return clf, time.time() - t0

        for name, kw in fine_tune_methods(candidates).items():
            clf, secs = tune(**kw)
            rec[name] = thr_metrics(clf, cal, test, seed)
            rec[name]["fit_s"] = secs
        val_scores, test_scores = {}, {}
        for lam in conftr_grid:
            clf, secs = tune(objective=ConfTrObjective(size_weight=lam), class_weight=None)
            val_scores[lam] = thr_metrics(clf, val_a, val_b, seed)  # validation only
            test_scores[lam] = thr_metrics(clf, cal, test, seed)
            test_scores[lam]["fit_s"] = secs
    chosen = pick_conftr(val_scores)
    rec["ConfTr-tuned"] = dict(test_scores[chosen], size_weight=chosen)
    rec["_conftr"] = {
        f"{lam:g}": dict(val=val_scores[lam], test=test_scores[lam]) for lam in conftr_grid
    }
    return rec


# --------------------------------------------------------------------------- report


def _cell_means(records, name, seeds, method, field):
    return float(np.mean([records[name][str(s)][method][field] for s in seeds]))


def _paired(records, names, seeds, other, field, method="CaCT"):
    """method - other over every (cell, seed) pair: mean difference, win rate, pairs."""
    diffs = np.array(
        [records[n][str(s)][method][field] - records[n][str(s)][other][field]
         for n in names for s in seeds]
    )
    return float(diffs.mean()), float(np.mean(diffs < 0)), len(diffs)


def accepted(records, name, seeds, method="CaCT"):
    """The issue's acceptance criterion on one cell (seed means) for ``method``."""
    m = {meth: {f: _cell_means(records, name, seeds, meth, f) for f in ("gap", "size")}
         for meth in (method, "CE-ft", "ConfTr-tuned")}
    gap_ok = m[method]["gap"] < min(m["CE-ft"]["gap"], m["ConfTr-tuned"]["gap"])
    size_ok = m[method]["size"] <= SIZE_TOL * min(m["CE-ft"]["size"], m["ConfTr-tuned"]["size"])
    return bool(gap_ok and size_ok)


def stretch(records, name, seeds, method="CaCT"):
    """The stretch goal on one cell: CovGap and size both below class-balanced CE's."""
    m = {meth: {f: _cell_means(records, name, seeds, meth, f) for f in ("gap", "size")}
         for meth in (method, "CE-cb")}
    return bool(m[method]["gap"] < m["CE-cb"]["gap"] and m[method]["size"] < m["CE-cb"]["size"])


def report(data):
    records, seeds, names = data["records"], data["seeds"], data["cells"]
    print(f"\nseed set: {data['seed_set']} (seeds {seeds}); tuning seeds start at "
          f"{TUNING_SEED0}, reporting seeds at {REPORTING_SEED0} (disjoint)")
    print(f"epochs: pre-train {data['epochs'][0]}, fine-tune {data['epochs'][1]} (every method); "
          f"ConfTr size_weight grid {data['conftr_grid']}; level {LEVEL}")
    if data.get("skipped"):
        print(f"not available (digits has 10 classes): {len(data['skipped'])} digits cells with "
              "K > 10 skipped")
    fields = ("size", "cov", "gap", "acc")

    candidates = list(data.get("candidates", ()))
    cact_methods = ["CaCT"] + candidates

    def method_table(cells, title):
        rows = []
        for meth in METHOD_ORDER + tuple(candidates):
            vals = [np.mean([_cell_means(records, n, seeds, meth, f) for n in cells])
                    for f in fields]
            rows.append([meth] + [f"{v:.3f}" if f != "gap" else f"{v:.2f}"
                                  for v, f in zip(vals, fields)])
        table(rows, ["method", "THR size", "coverage", "CovGap", "top-1"], title=title)

    def paired_table(cells, title):
        rows = []
        for method in cact_methods:
            for other in BASELINES:
                dg, wg, n = _paired(records, cells, seeds, other, "gap", method)
                ds, ws, _ = _paired(records, cells, seeds, other, "size", method)
                rows.append([f"{method} vs {other}", f"{dg:+.2f}", f"{wg:.2f}", f"{ds:+.3f}",
                             f"{ws:.2f}", n])
        table(rows, ["pair", "dCovGap", "win", "dsize", "win", "pairs"], title=title)

    for name in names:
        tuned = [records[name][str(s)]["ConfTr-tuned"]["size_weight"] for s in seeds]
        print()
        verdicts = ", ".join(f"{m} {accepted(records, name, seeds, m)}" for m in cact_methods)
        method_table([name], f"=== {name}  (ConfTr size_weight picked: {tuned}; "
                             f"accepted: {verdicts})")
        paired_table([name], None)
    print()
    method_table(names, f"=== overall: mean over {len(names)} cells x {len(seeds)} seeds")
    paired_table(names, "paired CaCT - other over (cell, seed) pairs; win = CaCT strictly lower")
    for method in cact_methods:
        acc = [accepted(records, n, seeds, method) for n in names]
        beyond = [stretch(records, n, seeds, method) for n in names]
        print(f"\nacceptance of {method}: CovGap < CE-ft and ConfTr-tuned, size <= {SIZE_TOL} x "
              f"the smaller: {sum(acc)}/{len(acc)} cells ({np.mean(acc):.2f}); stretch (CovGap "
              f"and size below CE-cb): {sum(beyond)}/{len(beyond)} cells")
    return float(np.mean([accepted(records, n, seeds) for n in names]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="3 sampled cells, 1 seed, 60+15 epochs, 2 ConfTr settings")
    parser.add_argument("--cells", type=int, default=None,
                        help="sample this many cells (default: every available cell)")
    parser.add_argument("--cell-seed", type=int, default=0, help="seed of the cell sample")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per cell (default 3)")
    parser.add_argument("--seed-set", choices=("reporting", "tuning"), default="reporting",
                        help=f"reporting seeds start at {REPORTING_SEED0}, tuning seeds at "
                             f"{TUNING_SEED0}")
    parser.add_argument("--report-only", metavar="JSON", help="re-print a saved run")
    parser.add_argument("--candidates", default="",
                        help="comma-separated extra CaCT settings to evaluate next to the "
                             f"defaults: {', '.join(CANDIDATES)}")
    args = parser.parse_args(argv)
    if args.report_only:
        with open(args.report_only) as fh:
            report(json.load(fh))
        return
    candidates = [c for c in args.candidates.split(",") if c]
    unknown = sorted(set(candidates) - set(CANDIDATES))
    if unknown:
        parser.error(f"unknown candidates {unknown}; choose from {sorted(CANDIDATES)}")
    cells, skipped = grid_cells()
    n_cells = args.cells if args.cells is not None else (3 if args.quick else None)
    if n_cells is not None:
        pick = np.random.default_rng(args.cell_seed).choice(
            len(cells), size=min(n_cells, len(cells)), replace=False)
        cells = [cells[i] for i in sorted(pick)]
    n_seeds = args.seeds if args.seeds is not None else (1 if args.quick else 3)
    seed0 = TUNING_SEED0 if args.seed_set == "tuning" else REPORTING_SEED0
    seeds = list(range(seed0, seed0 + n_seeds))
    epochs = EPOCHS["quick" if args.quick else "full"]
    conftr_grid = CONFTR_GRID_QUICK if args.quick else CONFTR_GRID
    tag = ("quick" if args.quick else "full") + (
        f"_cells{n_cells}_s{args.cell_seed}" if n_cells is not None else "_all") + (
        "_" + "+".join(candidates) if candidates else "")
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, f"cact_grid_{args.seed_set}_{tag}.json")
    names = [cell_name(c) for c in cells]
    data = dict(
        seed_set=args.seed_set, seeds=seeds, tuning_seed0=TUNING_SEED0,
        reporting_seed0=REPORTING_SEED0, epochs=list(epochs), conftr_grid=list(conftr_grid),
        level=LEVEL, cells=names, cell_params={cell_name(c): c for c in cells},
        cell_seed=args.cell_seed, skipped=[cell_name(c) for c in skipped], records={},
        candidates=candidates,
    )
    print(f"{len(cells)} cells x {len(seeds)} {args.seed_set} seeds {seeds}: {', '.join(names)}",
          flush=True)
    for cell, name in zip(cells, names):
        data["records"][name] = {}
        for seed in seeds:
            t0 = time.time()
            data["records"][name][str(seed)] = run_one(
                cell, seed, epochs, conftr_grid, candidates)
            print(f"[{name} seed {seed}] {time.time() - t0:.0f}s", flush=True)
            with open(path, "w") as fh:
                json.dump(data, fh)
    data["acceptance_fraction"] = report(data)
    with open(path, "w") as fh:
        json.dump(data, fh)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
