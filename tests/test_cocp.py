"""CoCPRegressor: coverage guarantee, algorithmic identities, estimator contract (tiny budgets)."""

import pickle
import warnings

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_conformal._core import SmallCalibrationWarning
from sklearn_conformal._training._cocp import FoldedPinballLoss, SoftCoverageLoss
from sklearn_conformal._training._networks import CoCPMLP, RadiusHead
from sklearn_conformal._training._phases import fit_fold, predict_module, train_phase
from sklearn_conformal.datasets import make_heteroscedastic_regression
from sklearn_conformal.regression import CoCPRegressor

from ._expected_failures import expected_failed_checks

# small enough for a few hundred points to train in well under a second per fit
TINY = dict(n_folds=2, n_alternations=1, hidden_layer_sizes=(16, 16), max_epochs=8, patience=3)


def _data(n, seed, noise="exponential"):
    return make_heteroscedastic_regression(n, noise=noise, random_state=seed)


# --------------------------------------------------------------------------------------------
# the guarantee
# --------------------------------------------------------------------------------------------
def test_marginal_coverage_over_repeated_fits():
    # each repetition draws fresh data, fits (calibration n = 100) and tests on 2000 new points;
    # the per-fit coverage given the calibration set is Beta(k, n + 1 - k) with
    # k = ceil(0.9 (n + 1)) = 91, so the mean over repetitions must sit in
    # [0.9, 0.9 + 1/(n+1)] up to 3 standard errors
    n_rep, n_cal, n_test = 16, 100, 2000
    k = int(np.ceil(0.9 * (n_cal + 1)))
    beta_law = stats.beta(k, n_cal + 1 - k)
    per_fit_sd = np.sqrt(beta_law.var() + 0.09 / n_test)
    covs = []
    for rep in range(n_rep):
        X, y = _data(400 + n_test, 1000 + rep)
        model = CoCPRegressor(calibration_size=n_cal, random_state=rep, **TINY)
        model.fit(X[:400], y[:400])
        assert len(model.conformity_scores_) == n_cal
        iv = model.predict_interval(X[400:])
        covs.append(np.mean((y[400:] >= iv[:, 0]) & (y[400:] <= iv[:, 1])))
    se = per_fit_sd / np.sqrt(n_rep)
    assert 0.9 - 3 * se <= np.mean(covs) <= beta_law.mean() + 3 * se


def test_interval_is_centred_and_uses_the_conformal_order_statistic():
    X, y = _data(600, 0)
    model = CoCPRegressor(random_state=0, **TINY).fit(X, y)
    iv = model.predict_interval(X)
    centre, radius = model.predict(X), model.predict_radius(X)
    assert np.all(radius > 0)
    np.testing.assert_allclose(iv.mean(axis=1), centre, rtol=0, atol=1e-12)
    scores = np.sort(model.conformity_scores_)
    k = int(np.ceil((len(scores) + 1) * 0.9))
    assert model.quantile_ == scores[k - 1]
    np.testing.assert_allclose(iv[:, 1] - centre, scores[k - 1] * radius, rtol=1e-12)
    # per-call override recomputes q from the stored scores
    iv80 = model.predict_interval(X, confidence_level=0.8)
    k80 = int(np.ceil((len(scores) + 1) * 0.8))
    np.testing.assert_allclose(iv80[:, 1] - centre, scores[k80 - 1] * radius, rtol=1e-12)
    np.testing.assert_array_equal(model.predict_set(X), iv)


# --------------------------------------------------------------------------------------------
# algorithmic identities
# --------------------------------------------------------------------------------------------
def test_t0_is_the_mse_centre_with_a_folded_quantile_radius():
    # rebuild one fold from the building blocks: MSE warm start, then the folded pinball radius on
    # |y - m(x)|, with the same seed; fit_fold with n_alternations=0 must give the same networks
    X, y = _data(500, 3)
    idx_m, idx_h = np.arange(0, 300), np.arange(300, 400)
    Xv, yv = X[400:], y[400:]
    params = dict(
        confidence_level=0.9, n_alternations=0, beta=0.005, beta_end=None, centre_module=None,
        radius_module=None, hidden_layer_sizes=(16, 16), lr=1e-3, lr_min=0.0,
        weight_decay=1e-5, gradient_clip=5.0, batch_size=64, max_epochs=15, patience=4, min_delta=1e-6,
        radius_floor=1e-6, device="cpu",
    )
    centre, radius, history, _ = fit_fold(0, 1, (X, y, Xv, yv), (idx_m, idx_h, None), params,
                                           seed=17, torch_threads=1, verbose=0)
    assert [rec["phase"] for rec in history] == ["warm", "radius final"]

    t = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
    common = dict(lr=1e-3, batch_size=64, max_epochs=15, patience=4)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(17)
        m = CoCPMLP(1, (16, 16))
        h = RadiusHead(CoCPMLP(1, (16, 16)), floor=1e-6)
        train_phase(m, torch.nn.MSELoss(), t(X[idx_m]), t(y[idx_m]), t(Xv), t(yv), phase="w",
                    **common)
        r_h = torch.abs(t(y[idx_h]) - predict_module(m, t(X[idx_h])))
        r_v = torch.abs(t(yv) - predict_module(m, t(Xv)))
        train_phase(h, FoldedPinballLoss(0.9), t(X[idx_h]), r_h, t(Xv), r_v, phase="h", **common)
    grid = t(np.linspace(-2, 2, 101)[:, None])
    assert torch.equal(predict_module(centre, grid), predict_module(m, grid))
    assert torch.equal(predict_module(radius, grid), predict_module(h, grid))


def test_staged_models_equal_separate_fits_with_fewer_alternations():
    X, y = _data(500, 4)
    kw = dict(TINY, n_alternations=2, random_state=5)
    full = CoCPRegressor(**kw).fit(X, y)
    stages = list(full.staged_predict_interval(X))
    assert len(stages) == 3
    for t in (0, 1):
        single = CoCPRegressor(**dict(kw, n_alternations=t)).fit(X, y)
        np.testing.assert_array_equal(stages[t], single.predict_interval(X))
    np.testing.assert_array_equal(stages[2], full.predict_interval(X))
    # T = 0 never runs a centre step, so beta cannot matter
    a = CoCPRegressor(**dict(kw, n_alternations=0, beta=0.5)).fit(X, y)
    np.testing.assert_array_equal(a.predict_interval(X), stages[0])


def test_centre_step_gradient_vanishes_away_from_the_boundary():
    beta = 0.01
    loss = SoftCoverageLoss(beta)
    h = torch.tensor([1.0, 1.0, 1.0, 1.0], dtype=torch.float64)
    y = torch.tensor([0.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    # |y - m| - h = -0.9 (deep inside), +2 (far outside), 0.002 and -0.004 (at the boundary)
    m = torch.tensor([0.1, 3.0, 1.002, -0.996], dtype=torch.float64, requires_grad=True)
    loss(m, torch.stack([y, h], dim=1)).backward()
    u = (h - torch.abs(y - m.detach())) / beta
    sig = torch.sigmoid(u)
    analytic = sig * (1 - sig) * torch.sign(m.detach() - y) / beta / len(m)
    np.testing.assert_allclose(m.grad.numpy(), analytic.numpy(), rtol=1e-12, atol=0)
    assert abs(m.grad[0]) < 1e-35 and abs(m.grad[1]) < 1e-35
    assert abs(m.grad[2]) > 1.0 and abs(m.grad[3]) > 1.0
    # the frozen radius in the target receives no gradient, and the radius step only sees
    # residual values (no graph back into the centre)
    assert not torch.stack([y, h], dim=1).requires_grad
    centre_net = CoCPMLP(1, (4,))
    residual = torch.abs(torch.zeros(3) - predict_module(centre_net, torch.zeros(3, 1)))
    assert not residual.requires_grad


def test_folded_pinball_minimiser_is_the_residual_quantile():
    # a constant radius minimising the folded pinball loss is the tau-quantile of the residuals
    r = torch.as_tensor(np.random.default_rng(0).exponential(size=999))
    grid = torch.linspace(0, 5, 5001, dtype=torch.float64)
    losses = torch.stack([FoldedPinballLoss(0.9)(g.expand(999), r) for g in grid])
    best = grid[torch.argmin(losses)].item()
    assert best == pytest.approx(np.quantile(r.numpy(), 0.9, method="inverted_cdf"), abs=1e-3)


def test_large_beta_leaves_the_centre_at_its_warm_start():
    # with beta huge the soft-coverage objective is flat (changes ~ 1/beta << min_delta), so no
    # centre epoch is accepted and the centre is exactly the MSE warm start
    X, y = _data(500, 6)
    kw = dict(TINY, n_alternations=2, random_state=2)
    flat = CoCPRegressor(**dict(kw, beta=1e7)).fit(X, y)
    warm = CoCPRegressor(**dict(kw, n_alternations=0)).fit(X, y)
    np.testing.assert_array_equal(flat.predict(X), warm.predict(X))
    for fold in flat.history_:
        assert all(rec["best_epoch"] == 0 for rec in fold if rec["phase"].startswith("centre"))
    # a small beta does move it
    moved = CoCPRegressor(**dict(kw, beta=0.005, max_epochs=30, patience=30)).fit(X, y)
    assert not np.array_equal(moved.predict(X), warm.predict(X))


def test_beta_schedule_and_target_scale():
    X, y = _data(400, 7)
    kw = dict(TINY, random_state=3)
    # scaling by a power of two is exact in floating point: identical training, scaled outputs
    a = CoCPRegressor(target_scale=None, **kw).fit(X, y / 4.0)
    b = CoCPRegressor(target_scale=4.0, **kw).fit(X, y)
    np.testing.assert_array_equal(4.0 * a.predict_interval(X), b.predict_interval(X))
    c = CoCPRegressor(target_scale="mean_abs", **kw).fit(X, y)
    assert c.y_scale_ > 0
    sched = CoCPRegressor(beta=0.05, beta_end=0.005, **kw).fit(X, y)
    assert np.all(np.isfinite(sched.predict_interval(X)))


def test_paper_validation_scheme():
    X, y = _data(500, 8)
    model = CoCPRegressor(val_scheme="fold", **dict(TINY, n_folds=3), random_state=0).fit(X, y)
    assert len(model.centres_) == 3
    with pytest.raises(ValueError, match="n_folds >= 3"):
        CoCPRegressor(val_scheme="fold", **TINY).fit(X, y)


# --------------------------------------------------------------------------------------------
# estimator contract
# --------------------------------------------------------------------------------------------
@parametrize_with_checks(
    [CoCPRegressor(random_state=0, **dict(TINY, max_epochs=3))],
    expected_failed_checks=expected_failed_checks,
)
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallCalibrationWarning)
        check(estimator)


def test_pickle_roundtrip_on_cpu():
    X, y = _data(400, 9)
    model = CoCPRegressor(random_state=0, **TINY).fit(X, y)
    clone = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(clone.predict_interval(X), model.predict_interval(X))
    for net in clone.centres_ + clone.radii_:
        assert all(p.device.type == "cpu" for p in net.parameters())


def test_determinism_and_parallel_folds_give_identical_results():
    X, y = _data(400, 10)
    state = torch.random.get_rng_state()
    a = CoCPRegressor(random_state=11, **TINY).fit(X, y)
    assert torch.equal(state, torch.random.get_rng_state())  # the global stream is untouched
    b = CoCPRegressor(random_state=11, **TINY).fit(X, y)
    c = CoCPRegressor(random_state=11, n_jobs=2, **TINY).fit(X, y)
    np.testing.assert_array_equal(a.predict_interval(X), b.predict_interval(X))
    np.testing.assert_array_equal(a.predict_interval(X), c.predict_interval(X))
    d = CoCPRegressor(random_state=12, **TINY).fit(X, y)
    assert not np.array_equal(a.predict_interval(X), d.predict_interval(X))


def test_user_modules_and_verbose_output(capsys):
    X, y = _data(300, 11)

    def factory(n_features):
        return torch.nn.Sequential(torch.nn.Linear(n_features, 8), torch.nn.Tanh(),
                                   torch.nn.Linear(8, 1))

    model = CoCPRegressor(centre_module=factory, radius_module=factory(1), verbose=1,
                          random_state=0, **TINY).fit(X, y)
    out = capsys.readouterr().out
    assert "warm start" in out and "radius final" in out and "centre 1" in out
    assert np.all(np.isfinite(model.predict_interval(X)))
    with pytest.raises(TypeError, match="torch.nn.Module"):
        CoCPRegressor(centre_module=lambda d: "not a module", **TINY).fit(X, y)


# --------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------
def test_constant_target_gives_finite_valid_intervals():
    rng = np.random.default_rng(0)
    X, X_new = rng.normal(size=(400, 2)), rng.normal(size=(2000, 2))
    y = np.full(400, 3.0)
    model = CoCPRegressor(random_state=0, **TINY).fit(X, y)
    iv = model.predict_interval(X_new)
    assert np.all(np.isfinite(iv)) and np.all(iv[:, 1] >= iv[:, 0])
    assert np.all(model.predict_radius(X_new) >= model.radius_floor)
    # exchangeable new points (all equal to 3) are covered at the calibrated rate; with 100
    # calibration points the conditional coverage is below 0.8 with probability < 1e-3
    assert np.mean((iv[:, 0] <= 3.0) & (iv[:, 1] >= 3.0)) >= 0.8


def test_too_few_calibration_points_give_infinite_intervals_with_a_warning():
    X, y = _data(200, 12)
    with pytest.warns(SmallCalibrationWarning):
        model = CoCPRegressor(calibration_size=5, random_state=0, **TINY).fit(X, y)
    with pytest.warns(SmallCalibrationWarning):
        iv = model.predict_interval(X[:4])
    assert np.all(np.isneginf(iv[:, 0])) and np.all(np.isposinf(iv[:, 1]))
    # a lower level that 5 points can certify is finite
    assert np.all(np.isfinite(model.predict_interval(X[:4], confidence_level=0.8)))


def test_non_finite_loss_raises_a_clear_error():
    X, y = _data(200, 13)
    with pytest.raises(FloatingPointError, match="non-finite"):
        CoCPRegressor(random_state=0, target_scale=None, **TINY).fit(X, y * 1e30)


def test_too_little_data_and_bad_parameters():
    X, y = _data(8, 14)
    with pytest.raises(ValueError, match="n_samples=8"):
        CoCPRegressor(**dict(TINY, n_folds=6)).fit(X, y)
    X, y = _data(100, 14)
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        CoCPRegressor(**dict(TINY, hidden_layer_sizes=(0, 4))).fit(X, y)
    with pytest.raises(ValueError, match="beta"):
        CoCPRegressor(beta=0.0, **{k: v for k, v in TINY.items()}).fit(X, y)
    with pytest.raises(ValueError, match="val_scheme"):
        CoCPRegressor(val_scheme="paper").fit(X, y)


# --------------------------------------------------------------------------------------------
# float64 inference, float32 training range
# --------------------------------------------------------------------------------------------
def test_predictions_do_not_depend_on_row_order_or_batch():
    # float32 inference rounds by batch shape (~1e-7 under subsetting); the float64 copies ~1e-16
    X, y = _data(400, 12)
    X = np.column_stack([X, np.random.RandomState(1).normal(size=(len(X), 4))])
    model = CoCPRegressor(random_state=0, **TINY).fit(X, y)
    for method in (model.predict, model.predict_interval, model.predict_radius):
        full = method(X)
        perm = np.random.RandomState(0).permutation(len(X))
        assert np.max(np.abs(method(X[perm]) - full[perm])) <= 1e-12
        for batch in (1, 7, 33):
            parts = np.concatenate([method(X[i : i + batch]) for i in range(0, len(X), batch)])
            assert np.max(np.abs(parts - full)) <= 1e-12
    for net in model.centres_ + model.radii_ + model.stages_[0][0] + model.stages_[0][1]:
        assert all(p.dtype == torch.float64 for p in net.parameters())


def test_huge_finite_inputs():
    X, y = _data(400, 13)
    huge = X.copy()
    huge[0, 0] = 1e39  # finite in float64, inf in float32
    with pytest.raises(ValueError, match=r"X has values of magnitude up to 1e\+39.*StandardScaler"):
        CoCPRegressor(random_state=0, **TINY).fit(huge, y)
    with pytest.raises(ValueError, match=r"y \(after target_scale\) has values.*target_scale"):
        CoCPRegressor(random_state=0, target_scale=None, **TINY).fit(X, y * 1e40)
    # y scaled into range trains
    model = CoCPRegressor(random_state=0, target_scale="mean_abs", **TINY).fit(X, y * 1e40)
    assert np.all(np.isfinite(model.predict_interval(X)))
    # predictions on inputs beyond float32 are finite (they overflowed to inf/NaN in float32)
    model = CoCPRegressor(random_state=0, **TINY).fit(X, y)
    iv = model.predict_interval(huge)
    assert np.all(np.isfinite(iv)) and np.all(iv[:, 0] <= iv[:, 1])
    np.testing.assert_array_equal(iv[1:], model.predict_interval(X)[1:])


# --------------------------------------------------------------------------------------------
# random streams: per fit, thread-safe, the global torch generator untouched
# --------------------------------------------------------------------------------------------
def _dropout_factory(n_features):
    return torch.nn.Sequential(
        torch.nn.Linear(n_features, 16), torch.nn.ReLU(), torch.nn.Dropout(0.2),
        torch.nn.Linear(16, 1),
    )


@pytest.mark.parametrize("centre_module", [None, _dropout_factory])
def test_fits_in_threads_equal_serial_fits_bit_for_bit(centre_module):
    # torch.manual_seed under fork_rng seeds one process-wide generator: concurrent fits
    # interleaved their draws; each fold now owns its generators
    from concurrent.futures import ThreadPoolExecutor

    X, y = _data(400, 14)

    def fit(seed):
        model = CoCPRegressor(centre_module=centre_module, random_state=seed, **TINY)
        return model.fit(X, y).predict_interval(X)

    serial = {seed: fit(seed) for seed in (0, 1)}
    assert not np.array_equal(serial[0], serial[1])
    for seeds in [(0, 0), (0, 1)]:
        with ThreadPoolExecutor(2) as pool:
            for seed, iv in zip(seeds, pool.map(fit, seeds)):
                np.testing.assert_array_equal(iv, serial[seed])


def test_parallel_fold_fits_in_threads_equal_serial_fits():
    # fits with n_jobs in concurrent threads (different sizes: each borrows a worker pool of
    # its size, none shut down under another) give the serial fits' intervals
    from concurrent.futures import ThreadPoolExecutor

    X, y = _data(400, 15)
    params = dict(TINY, n_folds=4)
    serial = CoCPRegressor(random_state=5, **params).fit(X, y).predict_interval(X)

    def fit(n_jobs):
        model = CoCPRegressor(random_state=5, n_jobs=n_jobs, **params)
        return model.fit(X, y).predict_interval(X)

    with ThreadPoolExecutor(3) as pool:
        for iv in pool.map(fit, (2, 3, 2)):
            np.testing.assert_array_equal(iv, serial)


def test_fit_and_predictions_neither_read_nor_advance_the_global_torch_generator():
    X, y = _data(300, 15)
    torch.manual_seed(123)
    np.random.seed(7)
    np_state = np.random.get_state()[1].copy()
    state = torch.get_rng_state()
    model = CoCPRegressor(centre_module=_dropout_factory, random_state=0, **TINY).fit(X, y)
    assert torch.equal(state, torch.get_rng_state())
    assert np.array_equal(np_state, np.random.get_state()[1])  # nor numpy's
    iv = model.predict_interval(X)
    model.predict(X)
    list(model.staged_predict_interval(X))
    assert torch.equal(state, torch.get_rng_state())
    torch.manual_seed(456)  # another global state: the same fit
    again = CoCPRegressor(centre_module=_dropout_factory, random_state=0, **TINY).fit(X, y)
    np.testing.assert_array_equal(again.predict_interval(X), iv)


def test_overlapping_fits_in_threads_leave_torch_thread_setting_unchanged():
    # each fit saved and restored torch.set_num_threads; a fit starting while another held the
    # limit saved the limit and restored it last, leaving the process at torch_threads=1
    import threading
    import time

    X, y = _data(400, 16)
    original = torch.get_num_threads()
    if original == 1:
        torch.set_num_threads(2)
    try:
        expected = torch.get_num_threads()
        started = threading.Event()

        def first():
            started.set()
            CoCPRegressor(random_state=0, **TINY).fit(X, y)

        def second():
            CoCPRegressor(random_state=1, **dict(TINY, max_epochs=30, patience=30)).fit(X, y)

        a = threading.Thread(target=first)
        a.start()
        started.wait()
        time.sleep(0.2)  # the first fit holds the limit
        b = threading.Thread(target=second)
        b.start()
        a.join()
        b.join()
        seen = {}
        probe = threading.Thread(target=lambda: seen.update(n=torch.get_num_threads()))
        probe.start()
        probe.join()
        assert seen["n"] == expected
        assert torch.get_num_threads() == expected
    finally:
        torch.set_num_threads(original)


@pytest.mark.parametrize(
    "device, match",
    [
        ("gpu", r"device must be 'cpu', 'cuda', 'cuda:N'.*got 'gpu'"),
        (3, r"device must be 'cpu', 'cuda'"),
        pytest.param(
            "cuda", r"torch.cuda.is_available\(\) is False.*use device='cpu'",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible"),
        ),
        pytest.param(
            "cuda:1", r"torch.cuda.is_available\(\) is False.*use device='cpu'",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible"),
        ),
        pytest.param(
            "mps", r"torch.backends.mps.is_available\(\) is False.*use device='cpu'",
            marks=pytest.mark.skipif(torch.backends.mps.is_available(), reason="MPS available"),
        ),
    ],
)
def test_bad_or_unavailable_device_is_rejected_in_fit(device, match):
    X, y = _data(200, 17)
    model = CoCPRegressor(device=device, **TINY)  # the constructor only stores it
    with pytest.raises(ValueError, match=match):
        model.fit(X, y)


def test_device_object_equals_device_string():
    X, y = _data(300, 18)
    a = CoCPRegressor(device=torch.device("cpu"), random_state=0, **TINY).fit(X, y)
    b = CoCPRegressor(device="cpu", random_state=0, **TINY).fit(X, y)
    np.testing.assert_array_equal(a.predict_interval(X), b.predict_interval(X))


def test_fit_does_not_depend_on_torch_default_dtype():
    # with torch.set_default_dtype(torch.float64) the default networks were built in float64 and
    # the float32 training tensors failed ("mat1 and mat2 must have the same dtype")
    X, y = _data(300, 19)
    ref = CoCPRegressor(random_state=0, **TINY).fit(X, y).predict_interval(X)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        got = CoCPRegressor(random_state=0, **TINY).fit(X, y).predict_interval(X)
        assert torch.get_default_dtype() == torch.float64  # the caller's setting is kept
    finally:
        torch.set_default_dtype(previous)
    np.testing.assert_array_equal(got, ref)


def test_module_that_cannot_run_in_float64_predicts_in_float32_with_a_warning():
    from sklearn_conformal.exceptions import Float32InferenceWarning

    class Float32Only(torch.nn.Module):
        def __init__(self, n_features):
            super().__init__()
            self.lin = torch.nn.Linear(n_features, 1)

        def forward(self, X):
            return self.lin(X.float()).to(X.dtype)

    X, y = _data(300, 20)
    with pytest.warns(Float32InferenceWarning, match="does not run in float64"):
        model = CoCPRegressor(centre_module=Float32Only, random_state=0, **TINY).fit(X, y)
    iv = model.predict_interval(X)
    assert np.all(np.isfinite(iv)) and np.all(iv[:, 0] < iv[:, 1])
    assert next(model.centres_[0].parameters()).dtype == torch.float32
    assert next(model.radii_[0].parameters()).dtype == torch.float64


def test_folds_in_joblib_threads_equal_sequential_folds():
    # under a threading backend the folds of one fit train concurrently in one process
    from joblib import parallel_backend

    X, y = _data(400, 21)
    ref = CoCPRegressor(random_state=3, **TINY).fit(X, y).predict_interval(X)
    with parallel_backend("threading"):
        got = CoCPRegressor(random_state=3, n_jobs=2, **TINY).fit(X, y).predict_interval(X)
    np.testing.assert_array_equal(got, ref)


def test_folds_in_backend_processes_equal_sequential_folds():
    # n_jobs runs the folds in threads unless the caller sets a backend: under a process
    # backend (loky here, dask in a cluster) the same tasks are pickled to its workers
    from joblib import parallel_backend

    X, y = _data(400, 22)
    ref = CoCPRegressor(random_state=4, **TINY).fit(X, y).predict_interval(X)
    with parallel_backend("loky", n_jobs=2):
        got = CoCPRegressor(random_state=4, n_jobs=2, **TINY).fit(X, y).predict_interval(X)
    np.testing.assert_array_equal(got, ref)


def test_default_networks_train_folds_in_threads_user_networks_in_processes(monkeypatch):
    # the compiled epochs release the GIL: n_jobs runs the default networks' folds in threads
    # of this process (no worker to start); torch-trained user networks go to worker processes
    from sklearn_conformal.regression import _cocp as cocp_module

    calls = []
    real = cocp_module.run_here_and_in_processes

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(cocp_module, "run_here_and_in_processes", counting)
    X, y = _data(300, 23)
    ref = CoCPRegressor(random_state=2, **TINY).fit(X, y).predict_interval(X)
    got = CoCPRegressor(random_state=2, n_jobs=2, **TINY).fit(X, y).predict_interval(X)
    np.testing.assert_array_equal(got, ref)
    assert calls == []
    user = dict(TINY, centre_module=_dropout_factory, random_state=2)
    ref = CoCPRegressor(**user).fit(X, y).predict_interval(X)
    got = CoCPRegressor(n_jobs=2, **user).fit(X, y).predict_interval(X)
    np.testing.assert_array_equal(got, ref)
    assert calls == [1]


def test_non_deterministic_tag_follows_the_device():
    assert not CoCPRegressor().__sklearn_tags__().non_deterministic
    assert not CoCPRegressor(device=torch.device("cpu")).__sklearn_tags__().non_deterministic
    assert CoCPRegressor(device="cuda:0").__sklearn_tags__().non_deterministic


def test_common_names_and_the_optimizer_object():
    """CoCP spells the shared training parameters as CaCT does; the former names still work
    (same fit, with a FutureWarning) and ``optimizer__lr_min`` is a nested parameter."""
    from sklearn.base import clone

    from sklearn_conformal.classification import CaCTClassifier
    from sklearn_conformal.regression import AdamWOptimizer

    shared = {"lr", "batch_size", "max_epochs", "hidden_layer_sizes", "weight_decay",
              "gradient_clip", "optimizer", "device", "random_state", "verbose"}
    assert shared <= set(CoCPRegressor().get_params()) & set(CaCTClassifier().get_params())

    X, y = _data(300, 5)
    base = dict(n_folds=2, n_alternations=1, max_epochs=6, patience=3, random_state=0)
    new = CoCPRegressor(hidden_layer_sizes=(8,), gradient_clip=0.0,
                        optimizer=AdamWOptimizer(lr_min=1e-4), **base).fit(X, y)
    with pytest.warns(FutureWarning, match="hidden_sizes was renamed"):
        old = CoCPRegressor(hidden_sizes=(8,), grad_clip=0.0, lr_min=1e-4, **base).fit(X, y)
    np.testing.assert_array_equal(new.predict_interval(X), old.predict_interval(X))
    none = CoCPRegressor(hidden_layer_sizes=(8,), gradient_clip=None,
                         optimizer=AdamWOptimizer(lr_min=1e-4), **base).fit(X, y)
    np.testing.assert_array_equal(new.predict_interval(X), none.predict_interval(X))

    model = CoCPRegressor(optimizer=AdamWOptimizer())
    assert model.get_params()["optimizer__lr_min"] == 0.0
    assert clone(model).set_params(optimizer__lr_min=1e-3).optimizer.lr_min == 1e-3
    assert model.optimizer.lr_min == 0.0
    with pytest.raises(ValueError, match="lr_min"):
        CoCPRegressor(optimizer=AdamWOptimizer(lr_min=-1.0), **base).fit(X, y)
