"""Tests of CaCTClassifier: estimator contract, objectives, calibration guarantee, bad input."""

import pickle
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("skorch")

from sklearn.base import clone  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from sklearn_conformal._core import SmallCalibrationWarning  # noqa: E402
from sklearn_conformal._training._multipliers import InfeasibleConstraintWarning  # noqa: E402
from sklearn_conformal.classification import (  # noqa: E402
    ALMMultipliers,
    CaCTClassifier,
    CaCTObjective,
    ConfTrObjective,
    FocalObjective,
    HRMultipliers,
    SGDOptimizer,
)
from sklearn_conformal.classification._cact import EmptyClassWarning  # noqa: E402
from sklearn_conformal.datasets import make_long_tailed_classification  # noqa: E402
from sklearn_conformal.metrics import coverage  # noqa: E402

from ._expected_failures import expected_failed_checks  # noqa: E402

TINY = dict(
    pretrain_epochs=15, max_epochs=3, batch_size=32, lr=0.1, hidden_layer_sizes=(16,), random_state=0
)


# data tests: enough training for sensible sets, small enough for a shared 2-core machine
DATA = dict(pretrain_epochs=6, max_epochs=3, batch_size=200, hidden_layer_sizes=(16,), random_state=0)


def _data_fast(**kw):
    params = dict(DATA)
    params.update(kw)
    return CaCTClassifier(**params)


def _fast(**kw):
    params = dict(TINY)
    params.update(kw)
    return CaCTClassifier(**params)


@parametrize_with_checks([_fast()], expected_failed_checks=expected_failed_checks)
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        # tiny check data leave classes out of the ALM-validation split; that is the documented
        # fallback, not a failure of the check
        warnings.simplefilter("ignore", EmptyClassWarning)
        warnings.simplefilter("ignore", SmallCalibrationWarning)
        warnings.simplefilter("ignore", InfeasibleConstraintWarning)
        check(estimator)


@pytest.fixture(scope="module")
def lt_data():
    X, y, Xb, yb = make_long_tailed_classification(
        n_samples=900, n_classes=5, n_features=8, class_sep=1.5, n_balanced_per_class=300,
        random_state=0,
    )
    return X.astype(np.float32), y, Xb.astype(np.float32), yb


@pytest.mark.parametrize(
    "params",
    [
        dict(objective="ce"),
        dict(objective=ConfTrObjective(size_weight=0.05)),
        dict(objective="cact", multipliers="alm"),
        dict(objective="cact", multipliers="hr", soft_quantile="neuralsort"),
        dict(
            objective="cact", multipliers=ALMMultipliers(penalty="p3", validation_sizes="soft"),
            soft_quantile="hard",
        ),
        dict(objective=CaCTObjective(target_size=1.5), class_weight="balanced"),
        dict(objective="cals"),
        dict(objective="cals", multipliers="hr"),
        dict(objective="focal", class_weight="balanced"),
    ],
)
def test_every_objective_trains_and_calibrates(lt_data, params):
    X, y, Xb, yb = lt_data
    clf = CaCTClassifier(
        pretrain_epochs=6, max_epochs=4, batch_size=200, hidden_layer_sizes=(16,), random_state=0,
        **params,
    ).fit(X, y)
    sets = clf.predict_set(Xb)
    assert sets.shape == (len(yb), 5) and sets.dtype == bool
    assert np.isfinite(clf.predict_proba(Xb)).all()
    phases = [row["phase"] for row in clf.history_]
    assert phases == ["pretrain"] * 6 + ["finetune"] * 4
    objective = getattr(params["objective"], "name", params["objective"])
    if objective in ("cact", "cals"):
        lambda_max = ALMMultipliers().lambda_max
        assert clf.multipliers_.shape == (5,)
        assert clf.multiplier_history_.shape == (5, 5)
        assert np.all(clf.multiplier_history_ <= lambda_max)
        assert "lambda_max" in clf.history_[-1]
    else:
        assert clf.multipliers_ is None
    if objective == "cact" and params.get("objective") == "cact":
        # the relative target: at least 1 and at most target_ratio x the possible size
        assert 1.0 <= clf.target_size_ <= 5


def test_string_labels_round_trip(lt_data):
    X, y, Xb, yb = lt_data
    names = np.array(["ant", "bee", "cat", "dog", "eel"])
    clf = _data_fast().fit(X, names[y])
    assert list(clf.classes_) == sorted(names)
    pred = clf.predict(Xb)
    assert set(pred) <= set(names)
    assert clf.predict_set(Xb).shape == (len(yb), 5)
    assert (pred == names[yb]).mean() > 0.5
    assert np.isfinite(clf.score(Xb, names[yb]))


def test_determinism_and_pickle_to_cpu(lt_data):
    X, y, Xb, _ = lt_data
    a = _data_fast().fit(X, y)
    b = _data_fast().fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(Xb), b.predict_proba(Xb))
    np.testing.assert_array_equal(a.predict_set(Xb), b.predict_set(Xb))
    np.testing.assert_array_equal(a.multiplier_history_, b.multiplier_history_)
    c = _data_fast(random_state=1).fit(X, y)
    assert not np.array_equal(a.predict_proba(Xb), c.predict_proba(Xb))
    loaded = pickle.loads(pickle.dumps(a))
    assert str(loaded.net_.device) == "cpu"
    assert next(loaded.net_.module_.parameters()).device.type == "cpu"
    np.testing.assert_array_equal(loaded.predict_set(Xb), a.predict_set(Xb))
    # the clone is unfitted and keeps the parameters
    assert clone(a).get_params() == a.get_params()


@pytest.mark.parametrize("mode", ["marginal", "class"])
def test_coverage_within_binomial_bounds_over_seeds(lt_data, mode):
    """Coverage of the calibrated sets on fresh data, over seeds (exchangeable cal/test).

    With n_cal calibration points the coverage of a split-conformal set is Beta distributed with mean
    >= level; averaged over seeds and 1,500 test points each, it must lie in
    [level - 3 sd, level + 1 / (n_cal + 1) + 3 sd].
    """
    X, y, Xb, yb = lt_data
    level, covs = 0.9, []
    for seed in range(4):
        rng = np.random.default_rng(seed)
        idx = rng.permutation(len(yb))
        cal, test = idx[:300], idx[300:]
        clf = CaCTClassifier(
            pretrain_epochs=4, max_epochs=2, batch_size=200, hidden_layer_sizes=(16,), mode=mode,
            random_state=seed,
        ).fit(X, y, calibration_data=(Xb[cal], yb[cal]))
        covs.append(coverage(yb[test], clf.predict_set(Xb[test])))
        if mode == "class":
            from sklearn_conformal.metrics import class_coverages

            _, per_class = class_coverages(yb[test], clf.predict_set(Xb[test]))
            # 60 calibration points per class: each class coverage is Beta with sd ~0.04
            assert np.all(per_class > level - 0.15)
    n_cal = 300 if mode == "marginal" else 60
    # sd of the mean of 4 Beta(k, n+1-k) coverages plus test-set binomial noise
    sd = np.sqrt(level * (1 - level) * (1 / (n_cal + 2) + 1 / 1200) / 4)
    assert level - 3 * sd <= np.mean(covs) <= level + 1 / (n_cal + 1) + 3 * sd


def test_predict_set_level_override_is_nested(lt_data):
    X, y, Xb, _ = lt_data
    clf = _data_fast().fit(X, y)
    small, big = clf.predict_set(Xb, confidence_level=0.5), clf.predict_set(Xb, confidence_level=0.99)
    assert np.all(small <= big) and big.sum() > small.sum()


def test_module_width_mismatch_raises(lt_data):
    X, y, _, _ = lt_data
    with pytest.raises(ValueError, match="module must output"):
        _data_fast(module=lambda n_in, n_out: torch.nn.Linear(n_in, n_out + 1)).fit(X, y)


def test_user_module_instance_is_not_modified(lt_data):
    X, y, _, _ = lt_data
    torch.manual_seed(0)
    mod = torch.nn.Linear(X.shape[1], 5)
    before = mod.weight.detach().clone()
    clf = _data_fast(module=mod).fit(X, y)
    assert torch.equal(mod.weight, before)
    assert clf.predict_set(X).shape == (len(y), 5)


def test_classes_without_validation_or_calibration_samples_warn(lt_data):
    X, y, Xb, yb = lt_data
    keep = yb != 4
    with pytest.warns(EmptyClassWarning, match="ALM-validation"):
        clf = _data_fast().fit(X, y, validation_data=(Xb[keep][:100], yb[keep][:100]))
    # the multiplier of the class without validation data never moved from its initial value
    assert np.all(clf.multiplier_history_[:, 4] == clf.multiplier_history_[0, 4])
    with pytest.warns(EmptyClassWarning, match="calibration"):
        with pytest.warns(SmallCalibrationWarning):
            clf = _data_fast(mode="class").fit(
                X, y, calibration_data=(Xb[keep][:200], yb[keep][:200])
            )
    # class mode: no calibration data for class 4 -> it is in every set (trivial, valid)
    assert clf.predict_set(Xb)[:, 4].all()


def test_too_small_calibration_gives_trivial_sets(lt_data):
    X, y, Xb, yb = lt_data
    with pytest.warns(SmallCalibrationWarning):
        clf = _data_fast().fit(X, y, calibration_data=(Xb[:5], yb[:5]))
    assert clf.predict_set(Xb).all()


def test_non_finite_loss_raises_clear_error(lt_data):
    X, y, _, _ = lt_data

    class Exploding(torch.nn.Module):
        def __init__(self, n_in, n_out):
            super().__init__()
            self.lin = torch.nn.Linear(n_in, n_out)

        def forward(self, x):
            return self.lin(x) * float("inf")

    with pytest.raises(FloatingPointError, match="non-finite training loss"):
        _data_fast(module=Exploding).fit(X, y)


def test_single_class_and_bad_params_rejected(lt_data):
    X, y, _, _ = lt_data
    with pytest.raises(ValueError, match="one class"):
        _fast().fit(X[:20], np.zeros(20))
    with pytest.raises(ValueError, match="objective"):
        _fast(objective="nonsense").fit(X, y)
    with pytest.raises(ValueError, match="target_size"):
        _fast(objective=CaCTObjective(target_size=-1.0)).fit(X, y)
    with pytest.raises(ValueError, match="rho_init"):
        _fast(multipliers=ALMMultipliers(rho_init=0.0)).fit(X, y)
    with pytest.raises(ValueError, match="multipliers"):
        _fast(multipliers=CaCTObjective()).fit(X, y)


def test_literal_settings_blow_up_and_defaults_stay_bounded():
    """The paper's literal settings drive every multiplier up; the defaults keep them bounded."""
    X, y, Xb, yb = make_long_tailed_classification(
        n_samples=1000, n_classes=10, n_features=12, class_sep=0.8, n_balanced_per_class=30,
        random_state=1,
    )
    common = dict(batch_size=250, random_state=0, validation_data=None)
    common.pop("validation_data")
    literal = CaCTClassifier(
        pretrain_epochs=0, max_epochs=12, objective=CaCTObjective(target_size=1.0),
        multipliers=ALMMultipliers(
            rho_init=1.0, lambda_max=1e6, rho_max=None, validation_sizes="soft"
        ),
        gradient_clip=None, temperature=0.1, **common,
    )
    with pytest.warns(InfeasibleConstraintWarning):
        literal.fit(X, y, validation_data=(Xb[:300], yb[:300]))
    hist = literal.multiplier_history_
    assert np.all(np.diff(hist[1:], axis=0) >= 0)  # no class ever became feasible
    assert hist[-1].min() > 10
    default = CaCTClassifier(pretrain_epochs=8, max_epochs=12, **common)
    default.fit(X, y, validation_data=(Xb[:300], yb[:300]))
    assert default.multiplier_history_.max() <= ALMMultipliers().lambda_max
    assert default.multipliers_.max() < hist[-1].min()


def test_predict_proba_does_not_depend_on_row_order_or_batch():
    # float32 inference rounds by batch shape (~1e-7 differences under row reordering, more than
    # sklearn's rtol=1e-7 invariance checks allow); the float64 copy agrees to ~1e-16
    rng = np.random.RandomState(0)
    X = 3 * rng.uniform(size=(120, 5))
    y = (X[:, 0] + X[:, 1] > 3).astype(int) + (X[:, 2] > 1.5)
    clf = _fast().fit(X, y)
    proba = clf.predict_proba(X)
    assert proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    for seed in range(3):
        perm = np.random.RandomState(seed).permutation(len(X))
        assert np.max(np.abs(clf.predict_proba(X[perm]) - proba[perm])) <= 1e-12
    for batch in (1, 7, 33):
        parts = [clf.predict_proba(X[i : i + batch]) for i in range(0, len(X), batch)]
        assert np.max(np.abs(np.vstack(parts) - proba)) <= 1e-12
    # the float64 copy is the trained float32 network (same weights, float64 arithmetic)
    assert next(clf.net_.module_.parameters()).dtype == torch.float32
    for p32, p64 in zip(clf.net_.module_.parameters(), clf.inference_module_.parameters()):
        assert p64.dtype == torch.float64
        np.testing.assert_array_equal(p64.numpy(), p32.detach().cpu().double().numpy())
    assert np.max(np.abs(clf.net_.predict_proba(X.astype(np.float32)) - proba)) < 1e-5


def test_inputs_beyond_float32_are_rejected_in_fit_and_predicted_in_float64(lt_data):
    X, y, Xb, _ = lt_data
    X64 = X.astype(np.float64)
    huge = X64.copy()
    huge[0, 0] = 1e39  # finite in float64, inf in float32
    with pytest.raises(ValueError, match=r"X has values of magnitude up to 1e\+39.*StandardScaler"):
        _data_fast().fit(huge, y)
    with pytest.raises(ValueError, match=r"calibration_data\[0\] has values of magnitude"):
        _data_fast().fit(X64, y, calibration_data=(huge[:50], y[:50]))
    clf = _data_fast().fit(X64, y)
    proba = clf.predict_proba(Xb.astype(np.float64) * 1e38)
    assert np.all(np.isfinite(proba))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    # float32 and float64 copies of the same data give the same fit
    np.testing.assert_array_equal(_data_fast().fit(X, y).predict_proba(Xb), clf.predict_proba(Xb))


class _DropoutNet(torch.nn.Module):
    def __init__(self, n_features, n_classes):
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Linear(n_features, 16), torch.nn.ReLU(), torch.nn.Dropout(0.3),
            torch.nn.Linear(16, n_classes),
        )

    def forward(self, X):
        return self.body(X)


def _thread_data():
    rng = np.random.RandomState(0)
    X = 3 * rng.uniform(size=(300, 5))
    return X, (X[:, 0] + X[:, 1] > 3).astype(int) + (X[:, 2] > 1.5)


@pytest.mark.parametrize("module", [None, _DropoutNet])
def test_fits_in_threads_equal_serial_fits_bit_for_bit(module):
    # torch.manual_seed seeds one process-wide generator: concurrent fits interleaved their
    # draws (max |proba difference| 0.075 against the serial fit); each fit now owns its streams
    from concurrent.futures import ThreadPoolExecutor

    X, y = _thread_data()

    def fit(seed):
        clf = CaCTClassifier(
            module, pretrain_epochs=4, max_epochs=2, batch_size=32, hidden_layer_sizes=(16,),
            objective="conftr", random_state=seed,
        )
        return clf.fit(X, y).predict_proba(X)

    serial = {seed: fit(seed) for seed in (0, 1)}
    assert not np.array_equal(serial[0], serial[1])
    for seeds in [(0, 0), (0, 1)]:
        with ThreadPoolExecutor(2) as pool:
            for seed, proba in zip(seeds, pool.map(fit, seeds)):
                np.testing.assert_array_equal(proba, serial[seed])


def test_fit_and_predictions_neither_read_nor_advance_the_global_torch_generator():
    X, y = _thread_data()
    torch.manual_seed(123)
    np.random.seed(7)
    np_state = np.random.get_state()[1].copy()
    state = torch.get_rng_state()
    clf = _fast(module=_DropoutNet, pretrain_epochs=3, max_epochs=1).fit(X, y)
    assert torch.equal(state, torch.get_rng_state())
    assert np.array_equal(np_state, np.random.get_state()[1])  # nor numpy's
    proba = clf.predict_proba(X)
    clf.predict_set(X)
    clf.predict(X)
    assert torch.equal(state, torch.get_rng_state())
    torch.manual_seed(456)  # another global state: the same fit
    np.testing.assert_array_equal(
        _fast(module=_DropoutNet, pretrain_epochs=3, max_epochs=1).fit(X, y).predict_proba(X), proba
    )


@pytest.mark.parametrize(
    "device, match",
    [
        ("gpu", r"device must be 'cpu', 'cuda', 'cuda:N'.*got 'gpu'"),
        (torch.device("meta"), r"device must be 'cpu', 'cuda'"),
        pytest.param(
            "cuda", r"torch.cuda.is_available\(\) is False.*use device='cpu'",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible"),
        ),
        pytest.param(
            "cuda:0", r"torch.cuda.is_available\(\) is False.*use device='cpu'",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible"),
        ),
        pytest.param(
            "mps", r"torch.backends.mps.is_available\(\) is False.*use device='cpu'",
            marks=pytest.mark.skipif(torch.backends.mps.is_available(), reason="MPS available"),
        ),
    ],
)
def test_bad_or_unavailable_device_is_rejected_in_fit(device, match):
    X, y = _thread_data()
    clf = _fast(device=device)  # the constructor only stores it (sklearn convention)
    with pytest.raises(ValueError, match=match):
        clf.fit(X, y)


def test_device_object_equals_device_string():
    X, y = _thread_data()
    a = _fast(pretrain_epochs=2, max_epochs=1, device=torch.device("cpu")).fit(X, y)
    b = _fast(pretrain_epochs=2, max_epochs=1, device="cpu").fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert not a.__sklearn_tags__().non_deterministic


@pytest.mark.parametrize(
    "labels, match",
    [
        (np.array([1, "a"] * 150, dtype=object), r"y mixes label types: strings \(e.g. 'a'\) and"),
        (np.array(["a", None] * 150, dtype=object), r"y contains missing labels \(None, 150 in"),
        (np.array(["a", np.nan] * 150, dtype=object), r"y contains missing labels \(nan"),
        (np.array([0.0, np.nan] * 150), r"y contains missing labels \(nan"),
        (np.linspace(0, 1, 300), r"y must hold class labels.*continuous.*conformal regressor"),
    ],
)
def test_unusable_labels_raise_an_error_naming_y(labels, match):
    X, _ = _thread_data()
    with pytest.raises(ValueError, match=match):
        _fast(pretrain_epochs=1, max_epochs=0).fit(X, labels)


def test_object_integer_labels_and_mismatched_calibration_labels():
    X, y = _thread_data()
    # object arrays of ints (e.g. a pandas object column) are plain int labels
    a = _fast(pretrain_epochs=2, max_epochs=1).fit(X, y.astype(object))
    b = _fast(pretrain_epochs=2, max_epochs=1).fit(X, y)
    np.testing.assert_array_equal(a.classes_, b.classes_)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    names = np.array(["a", "b", "c"])
    with pytest.raises(ValueError, match=r"calibration_data\[1\] holds numeric labels but y"):
        _fast().fit(X[:200], names[y[:200]], calibration_data=(X[200:], y[200:]))
    mixed = np.array([1, "a"] * 50, dtype=object)
    with pytest.raises(ValueError, match=r"validation_data\[1\] mixes label types"):
        _fast().fit(X[:200], names[y[:200]], validation_data=(X[200:], mixed))


def test_fit_does_not_depend_on_torch_default_dtype():
    # with torch.set_default_dtype(torch.float64) the default MLP was built in float64 and the
    # float32 training batches failed ("mat1 and mat2 must have the same dtype")
    X, y = _thread_data()
    ref = _fast(pretrain_epochs=2, max_epochs=2).fit(X, y).predict_proba(X)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        got = _fast(pretrain_epochs=2, max_epochs=2).fit(X, y).predict_proba(X)
        assert torch.get_default_dtype() == torch.float64  # the caller's setting is kept
    finally:
        torch.set_default_dtype(previous)
    np.testing.assert_array_equal(got, ref)


class _Float32OnlyNet(torch.nn.Module):
    def __init__(self, n_features, n_classes):
        super().__init__()
        self.lin = torch.nn.Linear(n_features, n_classes)

    def forward(self, X):
        return self.lin(X.float()).to(X.dtype)  # cannot run once the weights are float64


def test_module_that_cannot_run_in_float64_predicts_in_float32_with_a_warning():
    from sklearn_conformal.exceptions import Float32InferenceWarning

    X, y = _thread_data()
    with pytest.warns(Float32InferenceWarning, match="does not run in float64"):
        clf = _fast(module=_Float32OnlyNet, pretrain_epochs=2, max_epochs=1).fit(X, y)
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(proba, clf.net_.predict_proba(X.astype(np.float32)), atol=1e-6)


def test_training_warnings_are_public_conformal_warnings():
    from sklearn_conformal import exceptions
    from sklearn_conformal._training import _conformal_losses, _multipliers
    from sklearn_conformal.classification import _cact

    assert _cact.EmptyClassWarning is exceptions.EmptyClassWarning
    assert _multipliers.InfeasibleConstraintWarning is exceptions.InfeasibleConstraintWarning
    assert _conformal_losses.SmallBatchWarning is exceptions.SmallBatchWarning
    for name in ("EmptyClassWarning", "InfeasibleConstraintWarning", "SmallBatchWarning",
                 "Float32InferenceWarning"):
        assert name in exceptions.__all__
        assert issubclass(getattr(exceptions, name), exceptions.ConformalWarning)


def test_score_and_calibrator_objects_work_in_cact():
    """A user score equal to LAC gives LAC's sets; a Mondrian calibrator on a column covers."""
    from sklearn.datasets import load_digits

    from sklearn_conformal.calibrators import MondrianCalibrator
    from sklearn_conformal.conformity_scores import BaseClassificationScore

    class UserLAC(BaseClassificationScore):
        def label_scores(self, proba, u=None):
            return 1.0 - proba

    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    reference = _data_fast().fit(X, y).predict_set(X)
    user = _data_fast(conformity_score=UserLAC()).fit(X, y).predict_set(X)
    np.testing.assert_array_equal(user, reference)
    mondrian = _data_fast(mode=MondrianCalibrator(lambda X: X[:, 10] > 0.5)).fit(X, y)
    assert mondrian.conformalizer_.calibrator_.groups_.tolist() == [False, True]


def test_docstring_names_the_authors_and_the_actual_defaults():
    """The paragraph on defaults quotes ``name=value`` pairs: each must be the real default."""
    import re

    doc = CaCTClassifier.__doc__
    assert "Marani" in doc and "Dolz" in doc
    paragraph = doc[doc.index("The defaults therefore") : doc.index("The literal settings")]
    quoted = dict(re.findall(r"``(\w+)=([^`]+)``", paragraph))
    assert {"rho_init", "lambda_max", "rho_max", "target_ratio"} <= set(quoted)
    # top-level defaults and those of the default parameter objects (``multipliers__rho_init``)
    nested = CaCTClassifier(objective=CaCTObjective(), multipliers=ALMMultipliers()).get_params()
    defaults = {key.split("__")[-1]: value for key, value in nested.items()}
    for name, value in quoted.items():
        value = value.strip("\"'")
        default = defaults[name]
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            assert default == float(value), (name, value, default)
        else:
            assert str(default) == value, (name, value, default)


def test_parameter_objects_are_nested_parameters_and_strings_their_shortcuts(lt_data):
    """``multipliers__rho_init`` reaches the multiplier object (set_params, GridSearchCV); the
    string shortcuts stay strings until fit and train exactly like their objects."""
    from sklearn.model_selection import GridSearchCV

    X, y, _, _ = lt_data
    X, y = X[:400], y[:400]
    fast = dict(pretrain_epochs=3, max_epochs=3, batch_size=100, hidden_layer_sizes=(8,),
                random_state=0)
    clf = CaCTClassifier(**fast)
    assert clf.get_params()["multipliers"] == "alm"
    assert clf.get_params()["objective"] == "cact" and clf.get_params()["optimizer"] == "sgd"
    shortcut = clone(clf).fit(X, y)
    assert clf.multipliers == "alm"  # resolved in fit, never stored back
    explicit = CaCTClassifier(
        objective=CaCTObjective(), multipliers=ALMMultipliers(), optimizer=SGDOptimizer(), **fast
    ).fit(X, y)
    np.testing.assert_array_equal(shortcut.predict_proba(X), explicit.predict_proba(X))
    np.testing.assert_array_equal(shortcut.multiplier_history_, explicit.multiplier_history_)

    params = explicit.get_params(deep=True)
    assert params["multipliers__rho_init"] == 0.01
    assert params["objective__target_ratio"] == 0.6
    assert params["optimizer__momentum"] == 0.9
    faster = clone(explicit).set_params(multipliers__rho_init=0.5, multipliers__lambda_max=5.0)
    assert faster.multipliers.rho_init == 0.5 and explicit.multipliers.rho_init == 0.01
    faster.fit(X, y)
    assert not np.array_equal(faster.multiplier_history_, explicit.multiplier_history_)

    search = GridSearchCV(
        CaCTClassifier(multipliers=ALMMultipliers(), **fast),
        {"multipliers__rho_init": [0.01, 0.5]},
        cv=2,
        scoring=lambda est, X_, y_: float(est.predict_proba(X_).max(axis=1).mean()),
    ).fit(X, y)
    assert set(search.cv_results_["param_multipliers__rho_init"]) == {0.01, 0.5}

    hr = clone(clf).set_params(multipliers=HRMultipliers(mu=2.0)).fit(X, y)
    assert hr.rho_history_ is None  # the heuristic rule has no penalty parameters
    ratios = hr.multiplier_history_[1:] / hr.multiplier_history_[:-1]
    assert np.all(np.isclose(ratios, 1.0) | np.isclose(ratios, 2.0) | np.isclose(ratios, 0.5)
                  | (hr.multiplier_history_[1:] == 0.5) | (hr.multiplier_history_[1:] == 1e-6))


def test_focal_objective_trains_with_its_gamma(lt_data):
    """``objective="focal"`` fine-tunes with the focal loss; ``gamma`` is the objective's
    nested parameter and ``gamma=0`` is the cross-entropy fine-tune."""
    X, y, Xb, _ = lt_data
    fast = dict(pretrain_epochs=3, max_epochs=3, batch_size=100, hidden_layer_sizes=(8,),
                random_state=0)
    ce = CaCTClassifier(objective="ce", **fast).fit(X, y)
    focal = CaCTClassifier(objective="focal", **fast).fit(X, y)
    assert focal.multipliers_ is None and focal.target_size_ is None
    assert not np.allclose(focal.predict_proba(Xb), ce.predict_proba(Xb))
    flat = CaCTClassifier(objective=FocalObjective(), **fast)
    assert flat.get_params()["objective__gamma"] == 2.0
    flat.set_params(objective__gamma=0.0).fit(X, y)
    np.testing.assert_allclose(flat.predict_proba(Xb), ce.predict_proba(Xb), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="gamma"):
        CaCTClassifier(objective=FocalObjective(gamma=-1.0), **fast).fit(X, y)


def test_cals_with_the_heuristic_rule(lt_data):
    """``objective="cals", multipliers="hr"`` is CALS-HR: multiplicative steps of ``mu`` on the
    validation margin violations, a linear penalty, no ``rho``."""
    X, y, _, _ = lt_data
    fast = dict(pretrain_epochs=3, max_epochs=6, batch_size=100, hidden_layer_sizes=(8,),
                random_state=0)
    alm = CaCTClassifier(objective="cals", **fast).fit(X, y)
    hr = CaCTClassifier(objective="cals", multipliers=HRMultipliers(mu=2.0), **fast).fit(X, y)
    assert hr.rho_history_ is None and alm.rho_history_ is not None
    hist = hr.multiplier_history_
    assert hist.shape == (7, 5)
    np.testing.assert_allclose(hist[0], 0.01)
    steps = hist[1:] / hist[:-1]
    at_bound = np.isclose(hist[1:], 0.5) | np.isclose(hist[1:], 1e-6)
    assert np.all(np.isclose(steps, 1.0) | np.isclose(steps, 2.0) | np.isclose(steps, 0.5)
                  | at_bound)
    assert not np.allclose(hist[-1], hist[0])  # the rule moved the multipliers
    assert not np.allclose(hist, alm.multiplier_history_)


def test_fine_tuning_keeps_the_epoch_of_smallest_validation_size(lt_data):
    """select_epoch: the fitted network's validation size, recomputed here from the net, is
    the smallest of the starting network's and every epoch's, so never worse than the start."""
    from sklearn_conformal._training._callbacks import validation_set_sizes
    from sklearn_conformal._training._nets import module_logits

    X, y, Xb, yb = lt_data
    X_val, y_val = Xb[:300], yb[:300]
    clf = _data_fast(max_epochs=6).fit(X, y, validation_data=(X_val, y_val))
    sizes = clf.validation_sizes_
    assert sizes.shape == (7,)
    assert clf.selected_epoch_ == int(np.argmin(sizes))
    assert sizes[clf.selected_epoch_] <= sizes[0]
    logits = module_logits(clf.net_, np.asarray(X_val, dtype=np.float32))
    y_idx = np.searchsorted(clf.classes_, y_val)
    final = validation_set_sizes(logits, y_idx, clf.confidence_level).mean()
    assert final == pytest.approx(sizes[clf.selected_epoch_], abs=1e-12)
    # off: the last epoch, as the paper trains
    last = _data_fast(max_epochs=6, select_epoch=False).fit(X, y, validation_data=(X_val, y_val))
    assert last.selected_epoch_ is None and last.validation_sizes_ is None
    logits = module_logits(last.net_, np.asarray(X_val, dtype=np.float32))
    last_size = validation_set_sizes(logits, y_idx, clf.confidence_level).mean()
    assert last_size == pytest.approx(sizes[-1], abs=1e-12)


@pytest.mark.parametrize("batch_size", [200, 2000])
def test_epoch_end_callbacks_read_the_validation_pass_logits_bit_for_bit(lt_data, batch_size, monkeypatch):
    """The multiplier update and the epoch selection read the logits of the epoch's validation
    pass when it ran in one batch (batch_size 2000), a fresh pass otherwise (200): either way
    the multipliers, the validation sizes and the fitted network are those of fresh passes."""
    from sklearn_conformal._training import _callbacks, _nets

    X, y, Xb, yb = lt_data
    val = (Xb[:400], yb[:400])
    params = dict(objective="cact", batch_size=batch_size, max_epochs=4)
    calls = []
    fresh_pass = _nets.module_logits

    def spy(net, X):
        calls.append(len(X))
        return fresh_pass(net, X)

    monkeypatch.setattr(_callbacks, "module_logits", spy)
    monkeypatch.setattr(_nets, "module_logits", spy)
    shared = _data_fast(**params).fit(X, y, validation_data=val)
    n_shared = len(calls)
    monkeypatch.setattr(_nets.ConformalNet, "validation_logits", spy)
    fresh = _data_fast(**params).fit(X, y, validation_data=val)
    # fresh passes: the selection's start, then two per fine-tuning epoch (pre-training
    # epochs record the multiplier diagnostics too)
    n_epochs = DATA["pretrain_epochs"] + params["max_epochs"]
    n_fresh = 1 + n_epochs + params["max_epochs"]
    assert len(calls) - n_shared == n_fresh
    assert n_shared == (1 if batch_size == 2000 else n_fresh)
    assert np.array_equal(shared.multiplier_history_, fresh.multiplier_history_)
    assert np.array_equal(shared.validation_sizes_, fresh.validation_sizes_)
    assert np.array_equal(shared.predict_proba(Xb[400:]), fresh.predict_proba(Xb[400:]))
    assert not hasattr(shared.net_, "_validation_outputs")  # not kept in the fitted net
