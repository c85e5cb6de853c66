"""SpeedCP benchmarks: admixture experiment, scaling in n, per-test-point time vs CondConf.

(a) ``admixture``: the SpeedCP paper's synthetic study (appendix D.1): 600 training / 300
    calibration points from the symmetric latent mixture, 100 test points from the shifted one
    (``--layout code``: 1200 / 600 / 200, the default ``n = 2000`` of the paper's simulation
    script); linear-regression and MLP predictors; kernel on the row-standardised clr of the
    true topic weights, ``phi`` = one-hot dominant topic; gamma by 5-fold CV over 30 values,
    lambda by SIC. Reports marginal and per-topic coverage, the paper's "prediction set size"
    (the mean cutoff S*(x), i.e. the half-width of ``[f - S*, f + S*]``), the mean interval
    length and time, against split CP and, when installed, ``conditionalconformal`` (CondConf
    0.0.5, with its threshold-scaling bug patched: the bracketing score of its bisection is
    returned) on a few test points.
(b) ``scaling``: n_cal in 300, 1000, 2000, 5000: tuning time, S-path time per test point, number
    of breakpoints and mean elbow size of the selected lambda path.
(d) ``friedman``: the defaults on ordinary multi-feature data: ``SpeedCPRegressor()`` on
    ``make_friedman1(5000, n_features=5, noise=1)`` with ``calibration_size=1500``: fit time,
    selected gamma, CV paths evaluated and mean interval length of the early-stopped gamma
    search (``gamma_patience=3``, the default) against the whole grid (``gamma_patience=None``).
(e) ``classification``: the conditional conformal paper's classification set-up on offline
    data: ``load_digits`` features, a ``LogisticRegression`` (``--predictors logistic,mlp`` adds an
    ``MLPClassifier``) trained on 600 rows and frozen, 600 calibration and 597 test rows per
    draw; ``SpeedCPClassifier(phi="predicted_label")`` (LAC, gamma by CV, lambda by SIC, and
    ``lambda_=100``: a nearly vanishing kernel part) and ``phi="intercept"`` against
    ``SplitConformalClassifier`` marginal, ``mode="class"`` and Mondrian on the predicted
    label, at level 0.9 (``--quick``: 3 draws, 3-fold gamma cross-validation): coverage within
    each predicted label (worst group, mean absolute gap to the level), within each true class
    (worst), marginal coverage, mean set size (and its range over draws), time.
(c) ``condconf``: time per test point of our S-path against CondConf at the same n, gamma and
    lambda (``lambda_CondConf = lambda / (n + 1)``), and the agreement of the cutoffs.

Usage::

    python -m benchmarks speedcp [admixture|scaling|friedman|condconf|classification|all] [--quick]

Private imports: (b) times the S-path alone and (c) compares cutoffs with CondConf at the same
``gamma`` and ``lambda``, so both reach into the fitted estimator (``_solver``, ``_kernel_cal``,
``_embed``, ``_Z_cal``, ``_phi_transform``, ``_phi_basis``) and the path solvers of
``sklearn_conformal._kqr``; (a) uses public names only.
"""

import argparse
import os
import time
import warnings

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LinearRegression
from sklearn.neural_network import MLPRegressor

from sklearn_conformal import SpeedCPRegressor
from sklearn_conformal.datasets import make_latent_mixture

from ._report import fmt_ratio, ratio, table

PAPER_GAMMA_GRID = np.logspace(0, 2, 30)


def split_quantile(scores, level):
    """Split-conformal cutoff: the ``ceil((n + 1) level)``-th smallest score (inf if > n)."""
    scores = np.sort(np.asarray(scores, dtype=float))
    k = int(np.ceil((scores.size + 1) * level))
    return scores[k - 1] if k <= scores.size else np.inf


def latent_features(W, eps=np.finfo(float).eps):
    """Row-standardised centred log-ratio of topic weights (the paper's kernel embedding)."""
    L = np.log(np.asarray(W, dtype=float) + eps)
    L -= L.mean(axis=1, keepdims=True)
    sd = L.std(axis=1, keepdims=True)
    sd[sd == 0] = 1.0
    return L / sd


class _Cols:
    """A fitted regressor applied to the first ``p`` columns."""

    def __init__(self, model, p):
        self.model, self.p = model, p

    def fit(self, X, y):
        return self

    def predict(self, X):
        return self.model.predict(np.asarray(X)[:, : self.p])


def admixture_draw(seed, n_train=600, n_cal=300, n_test=100, n_words=1000):
    X, y, W, topic = make_latent_mixture(
        n_train + n_cal, n_shifted=n_test, n_words=n_words, random_state=seed
    )
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n_train + n_cal)
    tr, ca = perm[:n_train], perm[n_train:]
    te = np.arange(n_train + n_cal, n_train + n_cal + n_test)
    Xf = np.column_stack([X, latent_features(W), topic])
    return Xf, y, topic, tr, ca, te, X.shape[1]


def make_predictor(kind, seed):
    if kind == "linear":
        return LinearRegression()
    return MLPRegressor(hidden_layer_sizes=(100, 100), max_iter=500, random_state=seed)


def speedcp_for(predictor, p, gamma="auto", lambda_="auto", seed=0, **kw):
    emb = ColumnTransformer([("z", "passthrough", slice(p, p + 3))])
    return SpeedCPRegressor(
        FrozenEstimator(_Cols(predictor, p)), embedding=emb, phi=p + 3, gamma=gamma,
        lambda_=lambda_, gamma_grid=PAPER_GAMMA_GRID if gamma == "auto" else None,
        random_state=seed, **kw,
    )


LAYOUTS = {"text": (600, 300, 100), "code": (1200, 600, 200)}


def run_admixture(n_draws, predictors, cc_points, layout="text"):
    n_train, n_cal, n_test = LAYOUTS[layout]
    cc = _condconf()
    rows = []
    for kind in predictors:
        res = {m: {"cov": [], "topic": {k: [] for k in range(3)}, "size": [], "cutoff": [],
                   "time": []}
               for m in ("SpeedCP", "SplitCP", "CondConf")}
        for d in range(n_draws):
            seed = 214 + d
            Xf, y, topic, tr, ca, te, p = admixture_draw(seed, n_train, n_cal, n_test)
            model = make_predictor(kind, seed).fit(Xf[tr, :p], y[tr])
            # SpeedCP
            t0 = time.perf_counter()
            reg = speedcp_for(model, p, seed=seed).fit(Xf[ca], y[ca])
            iv = reg.predict_interval(Xf[te])
            t_sp = time.perf_counter() - t0
            _record(res["SpeedCP"], y[te], iv, topic[te], t_sp)
            # split CP
            t0 = time.perf_counter()
            pred_cal = model.predict(Xf[ca, :p])
            q = split_quantile(np.abs(y[ca] - pred_cal), 0.9)
            pred = model.predict(Xf[te, :p])
            iv_s = np.column_stack([pred - q, pred + q])
            _record(res["SplitCP"], y[te], iv_s, topic[te], time.perf_counter() - t0)
            if cc is not None and cc_points > 0:
                idx = np.arange(min(cc_points, te.size))
                Z = Xf[:, p:p + 3]
                Phi = np.eye(3)[topic]
                S_cal = np.abs(y[ca] - pred_cal)
                t0 = time.perf_counter()
                cuts = cc(Z[ca], Phi[ca], S_cal, Z[te[idx]], Phi[te[idx]], reg.gamma_, reg.lam_)
                t_cc = (time.perf_counter() - t0) / idx.size * te.size  # extrapolated
                iv_c = np.column_stack([pred[idx] - cuts, pred[idx] + cuts])
                _record(res["CondConf"], y[te[idx]], iv_c, topic[te[idx]], t_cc)
        for m, r in res.items():
            if not r["cov"]:
                continue
            per_topic = [np.mean(np.concatenate(r["topic"][k])) if r["topic"][k] else np.nan
                         for k in range(3)]
            cov_draws = np.array(r["cov"])
            rows.append([
                kind, m, len(cov_draws), f"{np.mean(cov_draws):.3f}+-{np.std(cov_draws):.3f}",
                *[f"{c:.3f}" for c in per_topic],
                f"{np.mean(r['cutoff']):.3f}+-{np.std(r['cutoff']):.3f}",
                f"{np.mean(r['size']):.3f}+-{np.std(r['size']):.3f}",
                f"{np.mean(r['time']):.3f}",
            ])
    print(f"\n(a) admixture: {n_train} train / {n_cal} calibration / {n_test} shifted test, "
          "level 0.9")
    table(rows, ["predictor", "method", "draws", "coverage", "topic0", "topic1", "topic2",
                  "cutoff", "length", "time_s"])
    print("per-topic coverage pools the test points of all draws (CondConf: first "
          f"{cc_points} test points per draw, time extrapolated to {n_test}); cutoff = mean "
          "S*(x), the paper's 'prediction set size' (Table 1: 2.074 +- 0.14 linear, 0.804 "
          "+- 0.06 MLP; Table 4: 1.376 at n = 1000, 2.053 at n = 2000); length = 2 x cutoff")


def _record(r, y, iv, topic, t):
    hit = (y >= iv[:, 0]) & (y <= iv[:, 1])
    r["cov"].append(hit.mean())
    for k in range(3):
        r["topic"][k].append(hit[topic == k])
    length = np.mean(iv[:, 1] - iv[:, 0])
    r["size"].append(length)
    r["cutoff"].append(length / 2)  # intervals are f(x) -+ S*(x)
    r["time"].append(t)


def run_scaling(ns, n_test=100):
    from sklearn_conformal._kqr import kernel_matrix  # private: the S-path alone is timed

    rows = []
    for n in ns:
        X, y, W, topic = make_latent_mixture(n + 600, n_shifted=n_test, n_words=200,
                                             random_state=n)
        Xf = np.column_stack([X, latent_features(W), topic])
        p = X.shape[1]
        model = LinearRegression().fit(Xf[:600, :p], y[:600])
        cal = slice(600, 600 + n)
        te = slice(600 + n, 600 + n + n_test)
        t0, c0 = time.perf_counter(), time.process_time()
        reg = speedcp_for(model, p).fit(Xf[cal], y[cal])
        t_fit, c_fit = time.perf_counter() - t0, time.process_time() - c0
        t0 = time.perf_counter()
        reg.predict_interval(Xf[te])
        t_pred = time.perf_counter() - t0
        # S-path alone (kernel rows precomputed), per test point
        solver = reg._solver(reg._kernel_cal(), 1.0 - reg.confidence_level)
        Zt = reg._embed(Xf[te])
        Kt = kernel_matrix(Zt, reg._Z_cal, reg.kernel, reg.gamma_)
        Phi_t = reg._phi_transform(Xf[te]) @ reg._phi_basis
        U = np.random.default_rng(0).uniform(-0.1, 0.9, n_test)
        best = np.inf
        for _ in range(3):
            t0 = time.perf_counter()
            _, steps, mel, _ = solver.cutoffs(Kt, np.ones(n_test), Phi_t, U)
            best = min(best, time.perf_counter() - t0)
        rows.append([
            n, f"{t_fit:.2f}", f"{c_fit:.2f}", f"{t_pred:.3f}", f"{1e3 * best / n_test:.4f}",
            reg.path_lambdas_.size, f"{np.mean(reg.path_elbow_sizes_):.1f}",
            f"{np.mean(reg.cv_n_breakpoints_):.0f}", f"{np.mean(reg.cv_mean_elbow_):.1f}",
            f"{np.mean(steps):.1f}", f"{np.mean(mel):.1f}",
        ])
    print(f"\n(b) scaling in n_cal ({n_test} test points, 30 gammas x 5 folds, "
          f"{os.cpu_count()} cores)")
    print("fit_cpu_s is the process CPU time (all threads): on a machine shared with other jobs "
          "wall time overstates the cost")
    table(rows, ["n_cal", "fit_s", "fit_cpu_s", "predict_s", "spath_ms/pt", "bp", "mean|E|",
                  "cv_bp", "cv_mean|E|", "s_steps", "s_mean|E|"])


# ----------------------------------------------------------------------------------------------
def _condconf():
    """CondConf (conditionalconformal 0.0.5) cutoffs with the threshold-scaling bug patched."""
    try:
        from conditionalconformal import CondConf
        from conditionalconformal.condconf import binary_search, finish_dual_setup
    except ImportError:
        print("conditionalconformal is not installed: CondConf rows skipped")
        return None

    eps = 1e-8  # Phi columns ride along in x scaled by eps, so the kernel sees the embedding only

    def cutoffs(Z_cal, Phi_cal, S_cal, Z_test, Phi_test, gamma, lam, U=None):
        n = S_cal.shape[0]
        zdim, d = Z_cal.shape[1], Phi_cal.shape[1]
        cond = CondConf(
            score_fn=lambda x, s: np.asarray(s, dtype=float),
            Phi_fn=lambda x: np.asarray(x)[:, zdim:zdim + d] / eps,
            infinite_params={"kernel": "rbf", "gamma": gamma, "lambda": lam / (n + 1)},
        )
        cond.setup_problem(np.column_stack([Z_cal, eps * Phi_cal]), S_cal)
        out = []
        for t in range(Z_test.shape[0]):
            xt = np.column_stack([Z_test[t:t + 1], eps * Phi_test[t:t + 1]])
            thr = 0.9 if U is None else U[t]

            def f(S, xt=xt, thr=thr):
                prob = finish_dual_setup(cond.cvx_problem, S, xt, 0.9, cond.Phi_fn(xt),
                                         cond.x_calib, cond.infinite_params)
                # CLARABEL: OSQP's parameter updates fail silently here (design notes, sec. 11)
                prob.solve(solver="CLARABEL")
                return prob.var_dict["weights"].value[-1] - thr

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                # CondConf's own bisection (tol 1e-3); its predict() would then return
                # Phi beta + K eta, which lacks the dual scaling: the bracket end is the cutoff
                _, upper = binary_search(f, float(np.min(S_cal)), 2 * float(np.max(S_cal)))
            out.append(upper)
        return np.asarray(out)

    return cutoffs


def run_condconf(n=300, n_points=5, seed=214):
    # private: the exact S-path at the same gamma and lambda as CondConf
    from sklearn_conformal._kqr import SPathSolver, kernel_matrix, lambda_path

    cc = _condconf()
    Xf, y, topic, tr, ca, te, p = admixture_draw(seed, n_cal=n)
    model = LinearRegression().fit(Xf[tr, :p], y[tr])
    reg = speedcp_for(model, p, randomized=False, seed=seed).fit(Xf[ca], y[ca])
    Z = Xf[:, p:p + 3]
    Phi = np.eye(3)[topic]
    S_cal = np.abs(y[ca] - model.predict(Xf[ca, :p]))
    K = kernel_matrix(Z[ca], Z[ca], "rbf", reg.gamma_)
    res = lambda_path(K, Phi[ca], S_cal, 0.1, lam_stop=reg.lam_)
    solver = SPathSolver(K, Phi[ca], S_cal, 0.1, reg.lam_, res.state, res.v)
    Kt = kernel_matrix(Z[te], Z[ca], "rbf", reg.gamma_)
    # a fixed threshold inside the box (CondConf's bisection cannot cross v_t = 1 - alpha)
    U = np.full(te.size, 0.5)
    best = np.inf
    for _ in range(5):
        t0 = time.perf_counter()
        ours, _, _, _ = solver.cutoffs(Kt, np.ones(te.size), Phi[te], U, n_jobs=1)
        best = min(best, time.perf_counter() - t0)
    ours_pt = best / te.size
    print(f"\n(c) per test point, n={n}, gamma={reg.gamma_:.4g}, lambda={reg.lam_:.4g} "
          f"(CondConf lambda {reg.lam_ / (n + 1):.4g}), U = 0.5, 1 thread")
    print(f"SpeedCP exact S-path: {1e3 * ours_pt:.4f} ms per test point")
    if cc is None:
        return
    idx = np.arange(n_points)
    t0 = time.perf_counter()
    theirs = cc(Z[ca], Phi[ca], S_cal, Z[te[idx]], Phi[te[idx]], reg.gamma_, reg.lam_, U[idx])
    cc_pt = (time.perf_counter() - t0) / n_points
    print(f"CondConf (bisection, tol 1e-3): {1e3 * cc_pt:.1f} ms per test point "
          f"-> ratio {fmt_ratio(ratio(cc_pt, ours_pt), 0)}")
    rel = np.abs(theirs - ours[idx]) / np.abs(ours[idx])
    print("cutoffs ours   :", np.round(ours[idx], 4))
    print("cutoffs CondConf:", np.round(theirs, 4), f"(max rel diff {rel.max():.2e}; "
          "CondConf bisection tolerance 1e-3)")


def run_friedman(n_total=5000, n_cal=1500, n_test=1000):
    from sklearn.datasets import make_friedman1

    X, y = make_friedman1(n_total + n_test, n_features=5, noise=1.0, random_state=0)
    X_test, y_test = X[n_total:], y[n_total:]
    X, y = X[:n_total], y[:n_total]
    # compile outside the timings
    SpeedCPRegressor(calibration_size=100, random_state=0).fit(X[:300], y[:300])
    rows, lengths, times = [], {}, {}
    for patience in (3, None):
        t0, c0 = time.perf_counter(), time.process_time()
        reg = SpeedCPRegressor(
            calibration_size=n_cal, gamma_patience=patience, random_state=0
        ).fit(X, y)
        times[patience], c_fit = time.perf_counter() - t0, time.process_time() - c0
        iv = reg.predict_interval(X_test)
        lengths[patience] = np.mean(iv[:, 1] - iv[:, 0])
        cover = np.mean((iv[:, 0] <= y_test) & (y_test <= iv[:, 1]))
        rows.append([
            "3 (default)" if patience else "None (full grid)", f"{times[patience]:.1f}",
            f"{c_fit:.1f}", f"{reg.gamma_:.4g}",
            f"{np.isfinite(reg.cv_loss_).sum()}/{reg.cv_loss_.size}",
            f"{lengths[patience]:.4f}", f"{cover:.3f}",
        ])
    print(f"\n(d) defaults on friedman1 (5 features, n_cal = {n_cal}, {n_test} test points, "
          f"{os.cpu_count()} cores)")
    table(rows, ["gamma_patience", "fit_s", "fit_cpu_s", "gamma", "gammas run", "mean length",
                 "coverage"])
    print(f"fit time full grid / early stop: {times[None] / times[3]:.1f}x; mean length early "
          f"stop / full grid: {lengths[3] / lengths[None]:.4f}")


def _predicted_label_groups(model):
    """Groups of rows for the Mondrian baseline: the frozen model's predicted label."""
    return lambda X: model.predict(X)


def run_classification(n_draws=20, predictors=("logistic",), level=0.9, n_train=600, n_cal=600,
                       n_folds=5):
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    from sklearn_conformal import SpeedCPClassifier, SplitConformalClassifier
    from sklearn_conformal.calibrators import MondrianCalibrator

    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    classes = np.unique(y)
    models = {
        "logistic": lambda seed: LogisticRegression(C=0.05, max_iter=2000),
        "mlp": lambda seed: MLPClassifier((64,), alpha=1e-2, max_iter=300, random_state=seed),
    }
    methods = {
        "SpeedCP phi=predicted_label": lambda model, seed: SpeedCPClassifier(
            FrozenEstimator(model), phi="predicted_label", confidence_level=level,
            n_folds=n_folds, random_state=seed,
        ),
        # lambda by SIC (the classifier's default is "cv", from the gamma cross-validation)
        "SpeedCP phi=predicted_label lambda_=auto": lambda model, seed: SpeedCPClassifier(
            FrozenEstimator(model), phi="predicted_label", lambda_="auto",
            confidence_level=level, n_folds=n_folds, random_state=seed,
        ),
        # a nearly vanishing kernel part: the randomised Mondrian method on the predicted label
        "SpeedCP phi=predicted_label lambda_=100": lambda model, seed: SpeedCPClassifier(
            FrozenEstimator(model), phi="predicted_label", lambda_=100.0,
            confidence_level=level, n_folds=n_folds, random_state=seed,
        ),
        "SpeedCP phi=intercept": lambda model, seed: SpeedCPClassifier(
            FrozenEstimator(model), confidence_level=level, n_folds=n_folds, random_state=seed,
        ),
        "split marginal": lambda model, seed: SplitConformalClassifier(
            FrozenEstimator(model), confidence_level=level, random_state=seed,
        ),
        'split mode="class"': lambda model, seed: SplitConformalClassifier(
            FrozenEstimator(model), mode="class", confidence_level=level, random_state=seed,
        ),
        "split Mondrian(predicted label)": lambda model, seed: SplitConformalClassifier(
            FrozenEstimator(model), mode=MondrianCalibrator(_predicted_label_groups(model)),
            confidence_level=level, random_state=seed,
        ),
    }
    # compile the path solvers outside the timings
    warm = LogisticRegression(max_iter=500).fit(X[:300], y[:300])
    SpeedCPClassifier(FrozenEstimator(warm), gamma=0.1, random_state=0).fit(
        X[300:500], y[300:500]).predict_set(X[:5])
    for kind in predictors:
        # per method: covered (test rows) by predicted label / true class, sizes, times
        per_pred = {m: {k: [] for k in classes} for m in methods}
        per_true = {m: {k: [] for k in classes} for m in methods}
        cover, size, secs = ({m: [] for m in methods} for _ in range(3))
        accuracy = []
        for draw in range(n_draws):
            order = np.random.default_rng(draw).permutation(len(y))
            tr, cal, te = order[:n_train], order[n_train:n_train + n_cal], order[n_train + n_cal:]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the MLP's max_iter ConvergenceWarning
                model = models[kind](draw).fit(X[tr], y[tr])
            pred = model.predict(X[te])
            accuracy.append(np.mean(pred == y[te]))
            for name, make in methods.items():
                t0 = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    est = make(model, draw).fit(X[cal], y[cal])
                    sets = np.asarray(est.predict_set(X[te]))
                secs[name].append(time.perf_counter() - t0)
                hit = sets[np.arange(len(te)), np.searchsorted(est.classes_, y[te])]
                cover[name].append(hit.mean())
                size[name].append(sets.sum(axis=1).mean())
                for k in classes:
                    per_pred[name][k].append(hit[pred == k])
                    per_true[name][k].append(hit[y[te] == k])
        rows = []
        for name in methods:
            by_pred = np.array([np.concatenate(per_pred[name][k]).mean() for k in classes])
            by_true = np.array([np.concatenate(per_true[name][k]).mean() for k in classes])
            rows.append([
                name, f"{np.mean(cover[name]):.3f}", f"{by_pred.min():.3f}",
                f"{by_pred.max():.3f}", f"{np.mean(np.abs(by_pred - level)):.3f}",
                f"{by_true.min():.3f}", f"{np.mean(size[name]):.3f}",
                f"{np.min(size[name]):.2f}-{np.max(size[name]):.2f}",
                f"{np.mean(secs[name]):.2f}",
            ])
        print(f"\n(e) classification: digits, {kind} (accuracy {np.mean(accuracy):.3f}), "
              f"{n_train} train / {n_cal} calibration / {len(y) - n_train - n_cal} test, "
              f"level {level}, {n_draws} draws")
        table(rows, ["method", "coverage", "min cov|pred", "max cov|pred", "mean |gap| pred",
                     "min cov|class", "mean size", "size range (draws)", "fit+predict s"])
        print("coverage within each predicted label (pooled over draws):")
        prow = []
        for name in methods:
            prow.append([name] + [
                f"{np.concatenate(per_pred[name][k]).mean():.3f}" for k in classes
            ])
        n_rows = [int(sum(len(h) for h in per_pred[next(iter(methods))][k])) for k in classes]
        prow.append(["(test rows)"] + [str(n) for n in n_rows])
        table(prow, ["method"] + [f"pred={k}" for k in classes])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", nargs="?", default="all",
                    choices=["admixture", "scaling", "friedman", "condconf", "classification",
                             "all"])
    ap.add_argument("--quick", action="store_true", help="small runs")
    ap.add_argument("--draws", type=int, default=None)
    ap.add_argument("--layout", choices=sorted(LAYOUTS), default="text",
                    help="admixture sizes: 'text' 600/300/100 (paper appendix D.1), 'code' "
                         "1200/600/200 (the paper script's default n = 2000)")
    ap.add_argument("--predictors", default=None,
                    help="comma list of linear,mlp (admixture) or logistic,mlp (classification)")
    ap.add_argument("--condconf-points", type=int, default=None,
                    help="test points per draw for CondConf in (a) (0 skips it)")
    args = ap.parse_args(argv)
    quick = args.quick
    if args.what in ("admixture", "all"):
        draws = args.draws or (3 if quick else 20)
        ccp = args.condconf_points if args.condconf_points is not None else (0 if quick else 3)
        preds = args.predictors.split(",") if args.predictors else (
            ["linear"] if quick else ["linear", "mlp"])
        run_admixture(draws, preds, ccp, args.layout)
    if args.what in ("scaling", "all"):
        run_scaling([300, 1000] if quick else [300, 1000, 2000, 5000])
    if args.what in ("friedman", "all"):
        if quick:
            run_friedman(n_total=1500, n_cal=500, n_test=500)
        else:
            run_friedman()
    if args.what in ("condconf", "all"):
        run_condconf(n_points=2 if quick else 5)
    if args.what in ("classification", "all"):
        preds = args.predictors.split(",") if args.predictors and args.what == "classification" \
            else ["logistic"]
        run_classification(args.draws or (3 if quick else 20), preds, n_folds=3 if quick else 5)


if __name__ == "__main__":
    main()
