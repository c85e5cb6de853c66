"""calibration_size as a scikit-learn splitter: the first split's (train, test) is (train, cal)."""


import numpy as np
import pytest
from scipy import stats
import copy
from sklearn.base import is_regressor
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import GroupShuffleSplit, KFold, PredefinedSplit, ShuffleSplit

from sklearn_conformal import SplitConformalClassifier, SplitConformalRegressor
from sklearn_conformal._estimator_utils import split_indices
from sklearn_conformal.classification import CaCTClassifier
from sklearn_conformal.regression import CoCPRegressor, SpeedCPRegressor


def _regression(n, seed):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, size=(n, 2))
    y = X[:, 0] + rng.normal(size=n) * (0.5 + np.abs(X[:, 1]))
    return X, y


def _predefined(n, cal):
    test_fold = np.full(n, -1)
    test_fold[cal] = 0
    return PredefinedSplit(test_fold)


# ------------------------------------------------------------------------------- the helper
def test_group_splitter_puts_whole_groups_on_one_side():
    X, y = _regression(300, 0)
    groups = np.repeat(np.arange(30), 10)
    train, cal = split_indices(
        y, GroupShuffleSplit(n_splits=1, test_size=0.3, random_state=0), None, X=X,
        groups=groups,
    )
    assert len(train) and len(cal) and not np.intersect1d(train, cal).size
    assert not np.intersect1d(groups[train], groups[cal]).size
    assert len(train) + len(cal) == 300


def test_predefined_split_gives_its_rows_and_only_the_first_split_is_used():
    y = np.arange(20.0)
    cal = np.array([1, 4, 7, 19])
    train, got = split_indices(y, _predefined(20, cal), 0)
    np.testing.assert_array_equal(got, cal)
    np.testing.assert_array_equal(train, np.setdiff1d(np.arange(20), cal))
    # a multi-split splitter: the first split only
    first = next(KFold(4).split(y))
    train, got = split_indices(y, KFold(4), 0)
    np.testing.assert_array_equal(train, first[0])
    np.testing.assert_array_equal(got, first[1])


class _BadSplitter:
    def __init__(self, pairs):
        self.pairs = pairs

    def split(self, X, y=None, groups=None):
        yield from self.pairs


@pytest.mark.parametrize(
    "pairs, match",
    [
        ([], "yielded no split"),
        ([(np.arange(5), np.arange(4, 10))], "overlapping"),
        ([(np.arange(10), np.array([], dtype=int))], "empty calibration"),
        ([(np.array([], dtype=int), np.arange(10))], "empty training"),
        ([(np.arange(5), np.arange(5, 12))], "outside"),
        ([(np.arange(5), np.array([5.0, 6.0]))], "integer"),
    ],
)
def test_a_splitter_must_give_disjoint_non_empty_parts(pairs, match):
    X, y = _regression(10, 0)
    with pytest.raises(ValueError, match=f"calibration_size=_BadSplitter.*{match}"):
        split_indices(y, _BadSplitter(pairs), 0, X=X)
    with pytest.raises(ValueError, match="calibration_size"):
        SpeedCPRegressor(calibration_size=_BadSplitter(pairs), gamma=1.0).fit(X, y)


def test_group_splitter_without_groups_is_an_error():
    X, y = _regression(50, 0)
    with pytest.raises(ValueError, match="calibration_size=GroupShuffleSplit.*groups=groups"):
        SpeedCPRegressor(calibration_size=GroupShuffleSplit(n_splits=1)).fit(X, y)


def test_estimators_with_a_splitter_clone_and_search():
    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV

    X, y = _regression(200, 12)
    splitter = ShuffleSplit(n_splits=1, test_size=0.3, random_state=0)
    reg = SpeedCPRegressor(calibration_size=splitter, gamma=1.0, random_state=0)
    assert clone(reg).calibration_size is not splitter
    search = GridSearchCV(reg, {"confidence_level": [0.8, 0.9]}, cv=2).fit(X, y)
    assert len(search.best_estimator_.conformity_scores_) == 60


def test_groups_without_a_splitter_are_refused():
    X, y = _regression(60, 0)
    groups = np.arange(60) % 6
    for est in (SpeedCPRegressor(gamma=1.0), CoCPRegressor(), CaCTClassifier()):
        target = y if is_regressor(est) else (y > 0).astype(int)
        with pytest.raises(ValueError, match="groups.*GroupShuffleSplit"):
            est.fit(X, target, groups=groups)


def test_wrong_length_groups_is_an_error_naming_groups():
    X, y = _regression(60, 0)
    splitter = GroupShuffleSplit(n_splits=1, test_size=0.3, random_state=0)
    with pytest.raises(ValueError, match="groups has 59 samples, but X has 60"):
        SpeedCPRegressor(calibration_size=splitter).fit(X, y, groups=np.arange(59) % 5)
    with pytest.raises(ValueError, match="groups has 59 samples"):
        CoCPRegressor(calibration_size=splitter).fit(X, y, groups=np.arange(59) % 5)


# ------------------------------------------------------------- the split estimators (params)
def test_split_regressor_with_predefined_split_equals_an_explicit_split():
    X, y = _regression(400, 1)
    cal = np.random.default_rng(0).choice(400, size=120, replace=False)
    train = np.setdiff1d(np.arange(400), cal)
    reg = SplitConformalRegressor(calibration_size=_predefined(400, cal), random_state=0)
    reg.fit(X, y)
    model = LinearRegression().fit(X[train], y[train])
    ref = SplitConformalRegressor(FrozenEstimator(model)).fit(X[cal], y[cal])
    assert reg.quantile_ == ref.quantile_
    np.testing.assert_array_equal(np.sort(reg.conformity_scores_), np.sort(ref.conformity_scores_))
    np.testing.assert_array_equal(reg.predict_interval(X), ref.predict_interval(X))


def test_split_classifier_with_predefined_split_equals_an_explicit_split():
    X, y = _regression(400, 2)
    y = np.digitize(y, [-1, 0.5])
    cal = np.random.default_rng(1).choice(400, size=150, replace=False)
    train = np.setdiff1d(np.arange(400), cal)
    clf = SplitConformalClassifier(calibration_size=_predefined(400, cal), random_state=0)
    clf.fit(X, y)
    model = LogisticRegression().fit(X[train], y[train])
    ref = SplitConformalClassifier(FrozenEstimator(model), random_state=0).fit(X[cal], y[cal])
    np.testing.assert_array_equal(clf.thresholds_, ref.thresholds_)
    np.testing.assert_array_equal(clf.predict_set(X), ref.predict_set(X))


def test_shuffle_split_sets_the_calibration_size():
    X, y = _regression(200, 3)
    reg = SplitConformalRegressor(
        calibration_size=ShuffleSplit(n_splits=1, test_size=50, random_state=0)
    ).fit(X, y)
    assert len(reg.conformity_scores_) == 50


# ----------------------------------------------------------------------------- SpeedCP
def test_speedcp_predefined_split_equals_an_explicit_split():
    X, y = _regression(300, 4)
    cal = np.sort(np.random.default_rng(2).choice(300, size=100, replace=False))
    train = np.setdiff1d(np.arange(300), cal)
    kw = dict(gamma=1.0, lambda_=0.5, randomized=False)
    reg = SpeedCPRegressor(calibration_size=_predefined(300, cal), random_state=0, **kw)
    reg.fit(X, y)
    model = LinearRegression().fit(X[train], y[train])
    ref = SpeedCPRegressor(FrozenEstimator(model), random_state=0, **kw).fit(X[cal], y[cal])
    np.testing.assert_array_equal(reg.conformity_scores_, ref.conformity_scores_)
    assert reg.lam_ == ref.lam_
    np.testing.assert_array_equal(reg.predict_interval(X[:50]), ref.predict_interval(X[:50]))


def test_speedcp_group_splitter_calibrates_on_whole_groups():
    X, y = _regression(300, 5)
    groups = np.repeat(np.arange(30), 10)
    splitter = GroupShuffleSplit(n_splits=1, test_size=0.3, random_state=0)
    train, cal = next(copy.deepcopy(splitter).split(X, y, groups))
    assert not np.intersect1d(groups[train], groups[cal]).size
    kw = dict(gamma=1.0, random_state=0)
    reg = SpeedCPRegressor(calibration_size=splitter, **kw).fit(X, y, groups=groups)
    ref = SpeedCPRegressor(calibration_size=_predefined(300, cal), **kw).fit(X, y)
    np.testing.assert_array_equal(reg.conformity_scores_, ref.conformity_scores_)
    np.testing.assert_array_equal(reg.predict_interval(X[:40]), ref.predict_interval(X[:40]))


# ----------------------------------------------------------------------------- CoCP, CaCT
TINY_COCP = dict(n_folds=2, n_alternations=1, hidden_layer_sizes=(8,), max_epochs=3, patience=2)


def test_cocp_group_splitter_calibrates_on_whole_groups():
    X, y = _regression(240, 6)
    groups = np.repeat(np.arange(24), 10)
    splitter = GroupShuffleSplit(n_splits=1, test_size=0.25, random_state=0)
    _, cal = next(copy.deepcopy(splitter).split(X, y, groups))
    model = CoCPRegressor(calibration_size=splitter, random_state=0, **TINY_COCP)
    model.fit(X, y, groups=groups)
    ref = CoCPRegressor(calibration_size=_predefined(240, cal), random_state=0, **TINY_COCP)
    ref.fit(X, y)
    assert len(model.conformity_scores_) == len(cal)
    np.testing.assert_array_equal(model.conformity_scores_, ref.conformity_scores_)


TINY_CACT = dict(pretrain_epochs=2, max_epochs=1, batch_size=64, hidden_layer_sizes=(8,))


def _classification(n, seed):
    X, y = _regression(n, seed)
    return X, np.digitize(y, [-1, 0.5])


def test_cact_calibration_data_is_a_predefined_split_of_the_concatenation():
    # (a fractional validation_size is a share of X's rows, so it is given as a number here)
    X, y = _classification(500, 7)
    Xc, yc = _classification(150, 8)
    kw = dict(TINY_CACT, validation_size=75, random_state=0)
    a = CaCTClassifier(**kw).fit(X, y, calibration_data=(Xc, yc))
    both_X, both_y = np.concatenate([X, Xc]), np.concatenate([y, yc])
    b = CaCTClassifier(calibration_size=_predefined(650, np.arange(500, 650)), **kw)
    b.fit(both_X, both_y)
    np.testing.assert_array_equal(a.thresholds_, b.thresholds_)
    np.testing.assert_array_equal(a.conformity_scores_, b.conformity_scores_)
    np.testing.assert_array_equal(a.predict_proba(X[:20]), b.predict_proba(X[:20]))


def test_cact_calibration_data_and_a_splitter_are_exclusive():
    X, y = _classification(200, 9)
    clf = CaCTClassifier(calibration_size=ShuffleSplit(n_splits=1, random_state=0), **TINY_CACT)
    with pytest.raises(ValueError, match="calibration_data and calibration_size=ShuffleSplit"):
        clf.fit(X, y, calibration_data=(X[:20], y[:20]))


def test_cact_group_splitter_calibrates_on_whole_groups():
    X, y = _classification(400, 10)
    groups = np.repeat(np.arange(40), 10)
    splitter = GroupShuffleSplit(n_splits=1, test_size=0.25, random_state=0)
    _, cal = next(copy.deepcopy(splitter).split(X, y, groups))
    a = CaCTClassifier(calibration_size=splitter, random_state=0, **TINY_CACT)
    a.fit(X, y, groups=groups)
    b = CaCTClassifier(calibration_size=_predefined(400, cal), random_state=0, **TINY_CACT)
    b.fit(X, y)
    assert len(a.conformity_scores_) == len(cal)
    np.testing.assert_array_equal(a.thresholds_, b.thresholds_)


# ----------------------------------------------------------------------------- guarantee
def test_coverage_with_a_splitter_over_repeated_splits():
    # calibration n = 50 drawn by ShuffleSplit; given the calibration set, coverage is
    # Beta(k, n + 1 - k), k = ceil(0.9 (n + 1)); the mean over repetitions of the test
    # coverage (1000 new points each) stays within 4 standard errors of its expectation
    n_rep, n_cal, n_test = 200, 50, 1000
    k = int(np.ceil(0.9 * (n_cal + 1)))
    law = stats.beta(k, n_cal + 1 - k)
    covs = []
    for rep in range(n_rep):
        X, y = _regression(150 + n_test, 100 + rep)
        reg = SplitConformalRegressor(
            calibration_size=ShuffleSplit(n_splits=1, test_size=n_cal, random_state=rep)
        ).fit(X[:150], y[:150])
        iv = reg.predict_interval(X[150:])
        covs.append(np.mean((y[150:] >= iv[:, 0]) & (y[150:] <= iv[:, 1])))
    se = np.sqrt(law.var() + law.mean() * (1 - law.mean()) / n_test) / np.sqrt(n_rep)
    assert abs(np.mean(covs) - law.mean()) <= 4 * se


def test_routed_groups_reach_a_group_splitter():
    import sklearn

    X, y = _regression(200, 11)
    groups = np.repeat(np.arange(20), 10)
    splitter = GroupShuffleSplit(n_splits=1, test_size=0.3, random_state=0)
    plain = SpeedCPRegressor(calibration_size=splitter, gamma=1.0, random_state=0)
    plain.fit(X, y, groups=groups)
    with sklearn.config_context(enable_metadata_routing=True):
        routed = SpeedCPRegressor(calibration_size=splitter, gamma=1.0, random_state=0)
        routed.fit(X, y, groups=groups)
        cocp = CoCPRegressor(calibration_size=splitter, random_state=0, **TINY_COCP)
        cocp.fit(X, y, groups=groups)
    np.testing.assert_array_equal(plain.conformity_scores_, routed.conformity_scores_)
    assert len(cocp.conformity_scores_) == len(plain.conformity_scores_)


@pytest.mark.parametrize("kind", ["regressor", "classifier"])
def test_split_estimators_pass_groups_to_a_group_splitter(kind):
    from sklearn.model_selection import GroupShuffleSplit

    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(40), 10)
    X = rng.normal(size=(400, 3))
    splitter = GroupShuffleSplit(n_splits=1, test_size=0.3, random_state=0)
    if kind == "regressor":
        y = X[:, 0] + rng.normal(size=400)
        est = SplitConformalRegressor(calibration_size=splitter).fit(X, y, groups=groups)
    else:
        y = (X[:, 0] > 0).astype(int)
        est = SplitConformalClassifier(calibration_size=splitter).fit(X, y, groups=groups)
    train, cal = next(splitter.split(X, y, groups))
    assert set(groups[train]).isdisjoint(groups[cal])
    assert len(est.conformity_scores_) == len(cal)


def test_one_groups_argument_feeds_the_splitter_and_a_mondrian_calibrator():
    from sklearn.model_selection import GroupShuffleSplit

    from sklearn_conformal.calibrators import MondrianCalibrator

    rng = np.random.default_rng(1)
    site = np.repeat(np.arange(60), 10)
    X = rng.normal(size=(600, 2))
    y = X[:, 0] + (1 + site % 3) * rng.normal(size=600)
    reg = SplitConformalRegressor(
        mode=MondrianCalibrator(lambda X: np.zeros(len(X), dtype=int)),
        calibration_size=GroupShuffleSplit(n_splits=1, test_size=0.5, random_state=0),
    ).fit(X, y, groups=site)
    # a callable-grouped Mondrian leaves groups= to the splitter alone
    _, cal = next(GroupShuffleSplit(n_splits=1, test_size=0.5, random_state=0).split(X, y, site))
    assert len(reg.conformity_scores_) == len(cal)
    by_site = SplitConformalRegressor(
        mode=MondrianCalibrator(),
        calibration_size=GroupShuffleSplit(n_splits=1, test_size=0.5, random_state=0),
    ).fit(X, y, groups=site % 3)
    # the same three groups split the rows: the calibrator sees those the splitter held out
    _, cal = next(
        GroupShuffleSplit(n_splits=1, test_size=0.5, random_state=0).split(X, y, site % 3)
    )
    assert by_site.calibrator_.groups_.tolist() == np.unique(site[cal] % 3).tolist()
