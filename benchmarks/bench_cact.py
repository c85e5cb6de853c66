"""CaCT benchmark: long-tailed digits (linear model), balanced digits, a 50-class long-tailed problem.

Protocol (a small CPU stand-in for CaCT's MNIST-LT set-up, design notes section 12):

* training data long-tailed (imbalance 0.1: the rarest class has 10x fewer samples than the head),
  ALM-validation / calibration / test data balanced and disjoint;
* one cross-entropy model is pre-trained per seed; every method fine-tunes a copy of it for the same
  number of epochs (so "CE fine-tuned" is the budget-matched baseline);
* every trained model is calibrated with THR(LAC)/APS/RAPS x Split/Label/Cluster CP at 0.9 on the
  same calibration set and evaluated on the same test set.

Methods: CE (pre-trained only), CE-ft (same budget), CE-cb (class-balanced CE fine-tune), ConfTr
for each lambda of the paper's grid, CaCT-HR, CaCT-ALM (estimator defaults), CaCT-ALM-cb (class-
balanced primal), CALS. Reports size, coverage, CovGap (x100), top-1/top-3 accuracy, paired per-seed
win counts, fine-tune epoch time relative to CE-ft, and plots the multipliers per class over epochs.

Usage::

    python -m benchmarks cact --quick              # 2 seeds, short grid (smoke run)
    python -m benchmarks cact --seeds 5            # the reported run
    python -m benchmarks cact --problems digits-lt --seeds 5

CPU only; run it in the background with a log (``nohup ... > benchmarks/results/cact.log &``).
"""

import argparse
import json
import os
import time
import warnings

import numpy as np

from ._report import ratio

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
LEVEL = 0.9
CONFTR_GRID = (0.001, 0.005, 0.01, 0.05, 0.1, 0.2)
SCORES = ("lac", "aps", "raps")
MODES = ("marginal", "class", "cluster")


def _split_balanced(Xb, yb, n_val, n_cal, rng):
    """Per class: n_val validation, n_cal calibration, the rest test (all balanced)."""
    val, cal, test = [], [], []
    for k in np.unique(yb):
        idx = rng.permutation(np.flatnonzero(yb == k))
        val.append(idx[:n_val])
        cal.append(idx[n_val : n_val + n_cal])
        test.append(idx[n_val + n_cal :])
    v, c, t = (rng.permutation(np.concatenate(p)) for p in (val, cal, test))
    return (Xb[v], yb[v]), (Xb[c], yb[c]), (Xb[t], yb[t])


def load_problem(name, seed):
    from sklearn_conformal.datasets import make_long_tailed_classification, make_long_tailed_digits

    rng = np.random.default_rng(seed)
    if name in ("digits-lt", "digits-bal"):
        gamma = 0.1 if name == "digits-lt" else 1.0
        X, y, Xb, yb = make_long_tailed_digits(gamma, n_balanced_per_class=90, random_state=seed)
        val, cal, test = _split_balanced(Xb, yb, 9, 36, rng)
        train = dict(hidden_layer_sizes=(), pretrain_epochs=100, max_epochs=50, lr=0.05)
    elif name == "synth50-lt":
        X, y, Xb, yb = make_long_tailed_classification(
            n_samples=4000, n_classes=50, n_features=24, class_sep=1.1, imbalance=0.1,
            n_balanced_per_class=130, random_state=seed,
        )
        val, cal, test = _split_balanced(Xb, yb, 10, 60, rng)
        train = dict(hidden_layer_sizes=(64,), pretrain_epochs=30, max_epochs=15, lr=0.05)
    else:
        raise ValueError(name)
    return (X.astype(np.float32), y), val, cal, test, train


def methods(quick):
    from sklearn_conformal.classification import ConfTrObjective

    grid = (0.01, 0.1) if quick else CONFTR_GRID
    # every method names its class weights: the rows without "-cb" are unweighted whatever the
    # estimator's default (class-balanced since the grid benchmark's tuning run)
    out = {
        "CE-ft": dict(objective="ce", class_weight=None),
        "CE-cb": dict(objective="ce", class_weight="balanced"),
    }
    for lam in grid:
        out[f"ConfTr-{lam:g}"] = dict(objective=ConfTrObjective(size_weight=lam),
                                      class_weight=None)
    out.update(
        {
            "CaCT-HR": dict(objective="cact", multipliers="hr", class_weight=None),
            "CaCT-ALM": dict(objective="cact", class_weight=None),
            "CaCT-ALM-cb": dict(objective="cact", class_weight="balanced"),
            "CALS": dict(objective="cals", class_weight=None),
        }
    )
    return out


def evaluate(clf, cal, test, seed):
    from sklearn.frozen import FrozenEstimator

    from sklearn_conformal import SplitConformalClassifier
    from sklearn_conformal.metrics import class_coverage_gap, coverage, mean_set_size

    p_test = clf.predict_proba(test[0])
    y_cal, y_test = cal[1], test[1]
    rank = np.argsort(-p_test, axis=1)
    row = {
        "top1": float(np.mean(rank[:, 0] == y_test)),
        "top3": float(np.mean((rank[:, :3] == y_test[:, None]).any(axis=1))),
    }
    for score in SCORES:
        for mode in MODES:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                # the trained network, frozen: every calibration sample calibrates
                conf = SplitConformalClassifier(
                    FrozenEstimator(clf), confidence_level=LEVEL, conformity_score=score,
                    mode=mode, random_state=seed,
                ).fit(cal[0], y_cal)
                sets = conf.predict_set(test[0])
            key = f"{score}/{mode}"
            row[key] = dict(
                size=mean_set_size(sets),
                cov=coverage(y_test, sets),
                gap=class_coverage_gap(y_test, sets, LEVEL),
                full=float(np.mean(sets.all(axis=1))),
            )
    return row


def run(problems, seeds, quick, out_dir):
    import torch

    from sklearn_conformal.classification import CaCTClassifier

    torch.set_num_threads(1)  # shared 2-core machine: one thread, timings comparable across methods
    records = {}
    histories = {}
    for problem in problems:
        for seed in seeds:
            (X, y), val, cal, test, train = load_problem(problem, seed)
            common = dict(
                batch_size=500, random_state=seed, hidden_layer_sizes=train["hidden_layer_sizes"],
                lr=train["lr"],
            )
            fit_kw = dict(validation_data=val, calibration_data=cal)
            t0 = time.time()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                base = CaCTClassifier(
                    objective="ce", class_weight=None, pretrain_epochs=train["pretrain_epochs"],
                    max_epochs=0, **common,
                ).fit(X, y, **fit_kw)
            start = base.net_.module_
            rec = {"CE": evaluate(base, cal, test, seed)}
            rec["CE"]["epoch_s"] = float(np.median([r["dur"] for r in base.history_]))
            for name, kw in methods(quick).items():
                t1 = time.time()
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    clf = CaCTClassifier(
                        module=start, pretrain_epochs=0, max_epochs=train["max_epochs"],
                        **common, **kw,
                    ).fit(X, y, **fit_kw)
                r = evaluate(clf, cal, test, seed)
                r["epoch_s"] = float(np.median([h["dur"] for h in clf.history_]))
                r["fit_s"] = time.time() - t1
                r["warnings"] = sorted({type(w.message).__name__ for w in caught})
                if clf.multipliers_ is not None:
                    r["lambda_final"] = clf.multipliers_.tolist()
                    r["lambda_max_seen"] = float(np.max(clf.multiplier_history_))
                    r["target_size"] = clf.target_size_
                    histories[f"{problem}/{name}/{seed}"] = clf.multiplier_history_.tolist()
                rec[name] = r
            rec["_class_counts"] = np.bincount(y, minlength=len(np.unique(y))).tolist()
            records[f"{problem}/{seed}"] = rec
            print(f"[{problem} seed {seed}] done in {time.time() - t0:.0f}s", flush=True)
            with open(os.path.join(out_dir, f"cact_results_{'+'.join(problems)}.json"), "w") as fh:
                json.dump({"records": records, "histories": histories}, fh)
    return records, histories


def _mean(records, problem, seeds, method, key, field):
    vals = [records[f"{problem}/{s}"][method][key][field] for s in seeds]
    return float(np.mean(vals)), vals


def report(records, histories, problems, seeds, quick, out_dir):
    names = ["CE"] + list(methods(quick))
    lines = []

    def emit(s=""):
        print(s)
        lines.append(s)

    for problem in problems:
        emit(f"\n=== {problem}: mean over {len(seeds)} seeds (size / coverage / CovGap x100), level {LEVEL}")
        emit(f"{'method':14s} {'top1':>6s} {'top3':>6s} | " + " | ".join(f"{s.upper()+'-Split':^20s}" for s in SCORES) + f" | {'THR-Label':^20s} | {'THR-Cluster':^20s} | full-sets")
        for m in names:
            top1 = np.mean([records[f"{problem}/{s}"][m]["top1"] for s in seeds])
            top3 = np.mean([records[f"{problem}/{s}"][m]["top3"] for s in seeds])
            cells = []
            for key in [f"{sc}/marginal" for sc in SCORES] + ["lac/class", "lac/cluster"]:
                size = _mean(records, problem, seeds, m, key, "size")[0]
                cov = _mean(records, problem, seeds, m, key, "cov")[0]
                gap = _mean(records, problem, seeds, m, key, "gap")[0]
                cells.append(f"{size:5.2f}/{cov:5.3f}/{gap:5.2f}")
            full = max(records[f"{problem}/{s}"][m]["lac/marginal"]["full"] for s in seeds)
            emit(f"{m:14s} {top1:6.3f} {top3:6.3f} | " + " | ".join(f"{c:^20s}" for c in cells) + f" | {full:.3f}")
        # best ConfTr lambda: by mean THR-Split set size (the paper's selection criterion), and by
        # CovGap; both chosen on the test results, which favours the baseline
        conftr = [m for m in names if m.startswith("ConfTr")]
        best = min(conftr, key=lambda m: _mean(records, problem, seeds, m, "lac/marginal", "size")[0])
        best_gap = min(conftr, key=lambda m: _mean(records, problem, seeds, m, "lac/marginal", "gap")[0])
        emit(f"best ConfTr by THR size (paper's criterion): {best}; by THR CovGap: {best_gap}")
        for sc in SCORES:
            key = f"{sc}/marginal"
            emit(f"  paired wins of CaCT-ALM ({sc.upper()}-Split), seeds where CaCT is strictly better:")
            for other in dict.fromkeys(("CE-ft", best, best_gap, "CE")):
                g_c, gc = _mean(records, problem, seeds, "CaCT-ALM", key, "gap")
                g_o, go = _mean(records, problem, seeds, other, key, "gap")
                s_c, sc_ = _mean(records, problem, seeds, "CaCT-ALM", key, "size")
                s_o, so = _mean(records, problem, seeds, other, key, "size")
                wg = sum(a < b for a, b in zip(gc, go))
                ws = sum(a < b for a, b in zip(sc_, so))
                emit(f"    vs {other:12s}: CovGap {g_c:5.2f} vs {g_o:5.2f} (wins {wg}/{len(seeds)}), size {s_c:5.3f} vs {s_o:5.3f} ({100 * (s_c / s_o - 1):+.1f}%, wins {ws}/{len(seeds)})")
        key = "lac/marginal"
        for a, b in (("CaCT-ALM-cb", "CE-cb"),):
            g_a, ga = _mean(records, problem, seeds, a, key, "gap")
            g_b, gb = _mean(records, problem, seeds, b, key, "gap")
            s_a, sa = _mean(records, problem, seeds, a, key, "size")
            s_b, sb = _mean(records, problem, seeds, b, key, "size")
            emit(f"  stretch {a} vs {b} (THR-Split): CovGap {g_a:5.2f} vs {g_b:5.2f} (wins {sum(x < z for x, z in zip(ga, gb))}/{len(seeds)}), size {s_a:5.3f} vs {s_b:5.3f} (wins {sum(x < z for x, z in zip(sa, sb))}/{len(seeds)})")
        ratios = [
            ratio(records[f"{problem}/{s}"]["CaCT-ALM"]["epoch_s"],
                  records[f"{problem}/{s}"]["CE-ft"]["epoch_s"])
            for s in seeds
        ]
        emit(f"  CaCT-ALM fine-tune epoch / CE-ft epoch: median {np.median(ratios):.2f} (per seed {np.round(ratios, 2).tolist()}; shared CPU, noisy)")
        lam_max = max(records[f"{problem}/{s}"]["CaCT-ALM"]["lambda_max_seen"] for s in seeds)
        warns = sorted({w for s in seeds for w in records[f"{problem}/{s}"]["CaCT-ALM"]["warnings"]})
        emit(f"  CaCT-ALM: max lambda over all epochs/seeds {lam_max:.3g}; warnings {warns}")
        # multipliers vs rarity
        corrs = []
        for s in seeds:
            lam = np.asarray(records[f"{problem}/{s}"]["CaCT-ALM"]["lambda_final"])
            counts = np.asarray(records[f"{problem}/{s}"]["_class_counts"], float)
            if np.std(lam) > 0 and np.std(counts) > 0:
                corrs.append(np.corrcoef(lam, 1.0 / counts)[0, 1])
        if corrs:
            emit(f"  corr(final lambda, 1/class count): mean {np.mean(corrs):.2f} over seeds")
        # regimes of Fig. 5: multipliers rise, then settle (small late changes) or fall back
        peaked, late = [], []
        for s in seeds:
            hist = np.asarray(histories.get(f"{problem}/CaCT-ALM/{s}", []))
            if hist.size == 0:
                continue
            tail = max(3, hist.shape[0] // 5)
            peaked.append(np.mean(np.argmax(hist, axis=0) < hist.shape[0] - 1))
            rise = hist.max(axis=0) - hist[0]
            late_change = np.abs(hist[-1] - hist[-tail]) / np.maximum(rise, 1e-12)
            late.append(np.median(late_change))
        if peaked:
            emit(f"  multiplier regimes: share of classes whose lambda peaked before the last epoch {np.mean(peaked):.2f}; median |change over the last 20% of epochs| / total rise {np.mean(late):.2f}")
    with open(os.path.join(out_dir, f"cact_report_{'+'.join(problems)}.txt"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    plot(records, histories, problems, seeds, out_dir)


def plot(records, histories, problems, seeds, out_dir):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # plotting is optional
        return
    fig, axes = plt.subplots(1, len(problems), figsize=(5 * len(problems), 3.6), squeeze=False)
    for ax, problem in zip(axes[0], problems):
        key = f"{problem}/CaCT-ALM/{seeds[0]}"
        if key not in histories:
            continue
        hist = np.asarray(histories[key])
        counts = np.asarray(records[f"{problem}/{seeds[0]}"]["_class_counts"], float)
        order = np.argsort(-counts)
        cmap = plt.get_cmap("viridis")
        for rank, k in enumerate(order):
            ax.plot(hist[:, k], color=cmap(rank / max(len(order) - 1, 1)), lw=1)
        ax.set_title(f"{problem}: lambda per class (yellow = rarest)")
        ax.set_xlabel("fine-tuning epoch")
        ax.set_ylabel("multiplier")
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, f"cact_multipliers_{'+'.join(problems)}.png"), dpi=110)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 seeds, short ConfTr grid")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--seed-offset", type=int, default=0)
    parser.add_argument("--problems", default="digits-lt,digits-bal,synth50-lt")
    parser.add_argument("--report-only", action="store_true", help="re-print from saved JSON")
    args = parser.parse_args(argv)
    n = 2 if args.quick and args.seeds == 5 else args.seeds
    seeds = list(range(args.seed_offset, args.seed_offset + n))
    problems = args.problems.split(",")
    os.makedirs(RESULTS, exist_ok=True)
    if args.report_only:
        # merge every saved run (problems may have been run by separate processes)
        import glob

        records, histories = {}, {}
        for path in sorted(glob.glob(os.path.join(RESULTS, "cact_results_*.json"))):
            with open(path) as fh:
                data = json.load(fh)
            records.update(data["records"])
            histories.update(data["histories"])
    else:
        records, histories = run(problems, seeds, args.quick, RESULTS)
    report(records, histories, problems, seeds, args.quick, RESULTS)


if __name__ == "__main__":
    main()
