"""CoCP on the paper's synthetic families (Su, Zhou & Luo 2026, Table 1 and Table 4).

Sections (``--sections``):

* ``table1``: normal / log-normal / exponential, n = 20,000 drawn afresh per run, 50/10/20/20
  (the estimators get 80 % and split off validation and calibration themselves; 20 % is the
  test set). Coverage as the empirical hit rate and as the mean exact conditional coverage
  ``c_i = F_x(u) - F_x(l)`` (what the paper reports), mean length and
  ConMAE = mean |c_i - 0.9|, for the oracle HDI, Split (MLP mean), CQR (two MLP quantile
  regressors) and CoCP (the authors' code settings). CoCP's fit time is printed too.
* The T-ablation comes for free from every CoCP fit: ``staged_predict_interval`` yields exactly
  the models a fit with T = 0..5 would give.
* ``beta``: beta in {0.0025, 0.005, 0.01, 0.02, 0.05} on the exponential family, next to the
  beta-soft-oracle lengths (the population fixed point of CoCP, computed by
  ``HeteroscedasticOracle.mean_soft_oracle_length``; ``design/cocp.md`` section 7 / E3 lists
  the same values).

Usage::

    python -m benchmarks cocp-synthetic --runs 10                # everything
    python -m benchmarks cocp-synthetic --quick                  # smoke test, minutes
    python -m benchmarks cocp-synthetic --sections beta --runs 3
    python -m benchmarks cocp-synthetic --paired before.jsonl after.jsonl   # two releases
"""

import argparse
import ast
import json
import time
from pathlib import Path

import numpy as np

from sklearn_conformal.datasets import HeteroscedasticOracle, make_heteroscedastic_regression
from sklearn_conformal.metrics import conditional_mae
from sklearn_conformal.regression import CoCPRegressor

from ._cocp_common import cqr_baseline, split_baseline
from ._report import summarize

LEVEL = 0.9
FAMILIES = ("normal", "lognormal", "exponential")
PAPER = {  # Table 1: (coverage, length, ConMAE)
    ("normal", "Oracle"): (0.9, 1.5922, 0.0), ("normal", "Split"): (0.8989, 1.8735, 0.112),
    ("normal", "CQR"): (None, 1.5989, None), ("normal", "CoCP"): (None, 1.5962, 0.0066),
    ("lognormal", "Oracle"): (0.9, 0.9591, 0.0), ("lognormal", "Split"): (None, 1.2377, 0.096),
    ("lognormal", "CQR"): (None, 1.1110, None), ("lognormal", "CoCP"): (0.9007, 0.9621, 0.0064),
    ("exponential", "Oracle"): (0.9, 1.1145, 0.0),
    ("exponential", "Split"): (0.8989, 1.5679, 0.0937),
    ("exponential", "CQR"): (0.8975, 1.4222, 0.0172),
    ("exponential", "CoCP"): (0.8973, 1.1351, 0.0069),
}


def evaluate(oracle, X, y, intervals):
    c = oracle.conditional_coverage(X, intervals)
    hit = (y >= intervals[:, 0]) & (y <= intervals[:, 1])
    return {
        "coverage": float(hit.mean()),
        "cond_coverage": float(c.mean()),
        "length": float(np.mean(intervals[:, 1] - intervals[:, 0])),
        "conmae": conditional_mae(c, LEVEL),
        # the centre alone: the length a perfectly calibrated radius would need around it
        "centre_length": float(np.mean(oracle.exact_coverage_length(
            X, intervals.mean(axis=1), LEVEL))),
    }


def one_run(family, run, n, cocp_params, methods, log):
    X, y, oracle = make_heteroscedastic_regression(
        n, noise=family, random_state=run + 123, return_oracle=True
    )
    perm = np.random.RandomState(run + 999).permutation(n)
    n_test = n // 5
    te, fi = perm[:n_test], perm[n_test:]
    rows = []
    base = {"family": family, "run": run, "n": n}

    def emit(row):
        rows.append(row)
        log.write(json.dumps(row) + "\n")
        log.flush()
        brief = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()
                 if k != "staged"}
        print(brief, flush=True)

    if "Oracle" in methods:
        emit({**base, "method": "Oracle", **evaluate(oracle, X[te], y[te],
                                                      oracle.hdi(X[te], LEVEL))})
    for name, make in (("Split", split_baseline), ("CQR", cqr_baseline)):
        if name in methods:
            tic = time.perf_counter()
            model = make(run).fit(X[fi], y[fi])
            emit({**base, "method": name, "fit_s": time.perf_counter() - tic,
                  **evaluate(oracle, X[te], y[te], model.predict_interval(X[te]))})
    if "CoCP" in methods:
        tic = time.perf_counter()
        model = CoCPRegressor(random_state=run, **cocp_params).fit(X[fi], y[fi])
        fit_s = time.perf_counter() - tic
        extra = {k: v for k, v in cocp_params.items()
                 if k not in ("n_jobs", "n_alternations", "beta")}
        row = {**base, "method": "CoCP", "beta": model.beta, **extra, "fit_s": fit_s,
               "q": model.quantile_, **evaluate(oracle, X[te], y[te], model.predict_interval(X[te]))}
        row["staged"] = [evaluate(oracle, X[te], y[te], iv)
                         for iv in model.staged_predict_interval(X[te])]
        emit(row)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--first-run", type=int, default=0)
    parser.add_argument("--quick", action="store_true",
                        help="n=4000, 2 runs, 2 folds, T=2, 200 epochs: a smoke test")
    parser.add_argument("--sections", default="table1,beta")
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--methods", default="Oracle,Split,CQR,CoCP")
    parser.add_argument("--betas", default="0.0025,0.005,0.01,0.02,0.05")
    parser.add_argument("--n-jobs", type=int, default=2, help="CoCP folds trained in parallel")
    parser.add_argument("--n-alternations", type=int, default=5,
                        help="CoCP's T (the staged models give every smaller T as well)")
    parser.add_argument("--set", action="append", default=[], metavar="PARAM=VALUE",
                        help="extra CoCPRegressor parameter, e.g. --set batch_size=2048")
    parser.add_argument("--n", type=int, default=20000,
                        help="rows per run (the paper's 20,000; a fifth is the test set)")
    parser.add_argument("--log", default="benchmarks/results/cocp_synthetic.jsonl")
    parser.add_argument("--report", nargs="*", metavar="JSONL",
                        help="only print the tables of earlier runs' logs")
    parser.add_argument("--paired", nargs=2, metavar=("BEFORE", "AFTER"),
                        help="only compare two logs of the same runs (e.g. two releases)")
    args = parser.parse_args(argv)
    if args.paired:
        paired_report(*args.paired)
        return
    if args.report is not None:
        rows = [json.loads(line) for f in (args.report or [args.log]) for line in open(f)]
        report([r for r in rows if r.get("beta", 0.005) == 0.005],
               [r for r in rows if r["method"] == "CoCP" and r["family"] == "exponential"])
        return

    n, runs = args.n, args.runs
    cocp_params = {"n_jobs": args.n_jobs, "n_alternations": args.n_alternations}
    for item in args.set:
        key, _, value = item.partition("=")
        cocp_params[key] = ast.literal_eval(value)
    if args.quick:
        n, runs = 4000, min(runs, 2)
        cocp_params.update(n_folds=2, n_alternations=2, max_epochs=200, patience=20)
    Path(args.log).parent.mkdir(parents=True, exist_ok=True)
    sections = args.sections.split(",")
    methods = args.methods.split(",")
    rows = []
    with open(args.log, "a") as log:
        if "table1" in sections:
            # runs outermost, so that a stopped benchmark still covers every family
            for run in range(args.first_run, args.first_run + runs):
                for family in args.families.split(","):
                    rows += one_run(family, run, n, cocp_params, methods, log)
        beta_rows = []
        if "beta" in sections:
            for beta in (float(b) for b in args.betas.split(",")):
                for run in range(args.first_run, args.first_run + runs):
                    beta_rows += one_run("exponential", run, n, {**cocp_params, "beta": beta},
                                         ["CoCP"], log)
    report(rows, beta_rows)


def _sd(values):
    return values.std(ddof=1) if len(values) > 1 else float("nan")


def paired_report(before, after):
    """Table 1 of two logs run by run (same data, splits and seeds): each side's mean (sd) and
    the paired difference with its standard error, for every family and method both hold."""

    def load(path):
        rows = (json.loads(line) for line in open(path))
        return {(r["family"], r["method"], r["run"]): r for r in rows if r.get("beta", 0.005)
                == 0.005}

    a, b = load(before), load(after)
    common = sorted(set(a) & set(b))
    print(f"paired Table 1: {before} -> {after}")
    print(f"{'family':12s} {'method':7s} {'metric':14s} {'n':>3s} {'before mean (sd)':>19s} "
          f"{'after mean (sd)':>19s} {'after - before (se)':>21s}")
    for family in FAMILIES:
        for method in sorted({k[1] for k in common if k[0] == family}):
            keys = [k for k in common if k[:2] == (family, method)]
            for metric in ("coverage", "cond_coverage", "length", "conmae", "fit_s"):
                x = np.array([a[k][metric] for k in keys])
                y = np.array([b[k][metric] for k in keys])
                d = y - x
                print(f"{family:12s} {method:7s} {metric:14s} {len(keys):3d} "
                      f"{x.mean():9.4f} ({_sd(x):.4f}) {y.mean():9.4f} ({_sd(y):.4f}) "
                      f"{d.mean():+10.4f} ({_sd(d) / np.sqrt(len(d)):.4f})")


def report(rows, beta_rows):
    keys = ["coverage", "cond_coverage", "length", "conmae"]
    if rows:
        print("\n=== Table 1 (mean (sd) over runs; paper values below) ===")
        for family in FAMILIES:
            fam = [r for r in rows if r["family"] == family]
            if not fam:
                continue
            print(f"\n--- {family} ---")
            summarize(fam, keys + ["fit_s"])
            for (f, m), (cov, length, conmae) in PAPER.items():
                if f == family:
                    print(f"  paper {m:<7s} coverage {cov}  length {length}  ConMAE {conmae}")
        print("\n=== T-ablation (staged CoCP models, T = 0..5) ===")
        for family in FAMILIES:
            cocp = [r for r in rows if r["family"] == family and r["method"] == "CoCP"]
            if not cocp:
                continue
            print(f"\n--- {family} ---")
            staged = [{"method": f"T={t}", **s} for r in cocp for t, s in enumerate(r["staged"])]
            summarize(staged, keys)
    if beta_rows:
        # T of a fit = its number of staged models - 1 (logs from --n-alternations runs mix)
        beta_rows = sorted(({**r, "T": len(r["staged"]) - 1} for r in beta_rows),
                           key=lambda r: (r["T"], r["beta"], r["run"]))
        print("\n=== beta sensitivity, exponential ===")
        summarize(beta_rows, keys + ["centre_length", "fit_s"], group=("T", "beta"))
        # paired by run (same data, same seeds): the beta effect without the run-to-run noise
        by_fit = {}
        for r in beta_rows:
            by_fit.setdefault((r["T"], r["beta"]), {})[r["run"]] = r
        # the population fixed point of CoCP at each beta (exact, by quadrature): the notes predict
        # length(beta) = soft oracle(beta) + a roughly constant estimation offset
        oracle = HeteroscedasticOracle("exponential")
        soft = {beta: oracle.mean_soft_oracle_length(beta, LEVEL)
                for beta in sorted({b for _, b in by_fit} | {0.005})}
        for key, title in (("length", "length"),
                           ("centre_length", "length at exact conditional coverage")):
            rows_of = {k: {run: r for run, r in v.items() if key in r} for k, v in by_fit.items()}
            if not any(rows_of.values()):
                continue
            print(f"\n{title}: mean, soft oracle, offset; paired difference to beta = 0.005 "
                  "(same data and seeds): measured (se) vs the soft oracle's")
            for (T, beta), runs_of in sorted(rows_of.items()):
                if not runs_of:
                    continue
                mean = np.mean([r[key] for r in runs_of.values()])
                line = (f"T={T:<3d} beta {beta:<7g} n={len(runs_of):<3d} {mean:7.4f} "
                        f"{soft[beta]:7.4f} {mean - soft[beta]:+7.4f}")
                ref = rows_of.get((T, 0.005), {})
                runs = sorted(set(runs_of) & set(ref))
                if beta != 0.005 and len(runs) >= 2:
                    d = np.array([runs_of[k][key] - ref[k][key] for k in runs])
                    line += (f"   {d.mean():+.4f} ({d.std(ddof=1) / np.sqrt(d.size):.4f}) over "
                             f"{len(runs)} runs vs {soft[beta] - soft[0.005]:+.4f}")
                print(line)
        # the staged models show whether the alternation has reached its fixed point by T
        # (the soft oracle is that fixed point): smaller beta converges more slowly
        t_max = max(T for T, _ in by_fit)
        print("\n=== beta x t: mean length of the staged models t = 0..T (per fitted T) ===")
        print(f"{'T':>3s} {'beta':>7s} {'n':>3s} " + " ".join(f"{f't={t}':>7s}"
                                                          for t in range(t_max + 1)))
        for (T, beta), runs_of in sorted(by_fit.items()):
            staged = np.array([[s["length"] for s in r["staged"]] for r in runs_of.values()])
            print(f"{T:>3d} {beta:>7g} {len(runs_of):>3d} "
                  + " ".join(f"{v:7.4f}" for v in staged.mean(axis=0)))

if __name__ == "__main__":
    main()
