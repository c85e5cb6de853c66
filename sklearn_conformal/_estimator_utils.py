"""Helpers shared by the estimators: the calibration split and pre-trained models."""

import numbers

import numpy as np
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.utils import _safe_indexing, get_tags
from sklearn.utils.metadata_routing import MethodMapping, _routing_enabled, process_routing
from sklearn.utils.validation import _check_method_params, _num_samples, has_fit_parameter

from ._core import check_confidence_level


# sparse formats handed to the wrapped model (others, e.g. DIA, are converted to CSR)
SPARSE_FORMATS = ("csr", "csc")


def keep_frame(X, X_checked):
    """The validated array, except that DataFrames stay DataFrames (for column transformers)."""
    return X if hasattr(X, "iloc") else X_checked


def pop_calibration_groups(calibrator, fit_params, n_samples):
    """``(fit_params, groups)``: the ``groups=`` metadata taken out for a calibrator using it.

    A calibrator that conditions on metadata groups (``uses_groups_metadata``, e.g.
    ``MondrianCalibrator(groups=None)``) needs one group per row; other calibrators leave
    ``groups`` to the wrapped models.
    """
    if not getattr(calibrator, "uses_groups_metadata", False):
        return fit_params, None
    fit_params = dict(fit_params)
    groups = fit_params.pop("groups", None)
    if groups is None:
        raise ValueError(
            f"{type(calibrator).__name__}(groups=None) calibrates on the groups= metadata; pass "
            "fit(X, y, groups=...) with one group per row, or give the calibrator a column or a "
            "callable of X."
        )
    groups = np.asarray(groups)
    if groups.shape != (n_samples,):
        raise ValueError(
            f"groups must hold one group per row of X ({n_samples}), got shape {groups.shape}."
        )
    return fit_params, groups


def pop_calibration_metadata(calibrator, fit_params):
    """``(fit_params, metadata)``: the fit metadata a calibrator consumes, taken out.

    A calibrator names the ``fit`` metadata it reads in ``calibration_metadata`` (a tuple of
    names, e.g. ``WeightedCalibrator``'s ``("X_target",)``); those are passed to it whole, not
    split like per-sample metadata, and not routed to the wrapped models. ``metadata`` is None
    for a calibrator that declares none: only declaring calibrators also receive the training
    rows and the model (``CalibrationData.X_train`` / ``predict_proba``), so that the others
    do not keep them alive.
    """
    names = tuple(getattr(calibrator, "calibration_metadata", ()) or ())
    if not names:
        return fit_params, None
    fit_params = dict(fit_params)
    metadata = {name: fit_params.pop(name) for name in names if name in fit_params}
    return fit_params, metadata


def calibration_extras(metadata, **fields):
    """The :class:`CalibrationData` fields of a calibrator declaring metadata (else none)."""
    return {} if metadata is None else {"metadata": metadata, **fields}


def is_frozen(estimator):
    """Whether ``estimator`` is a pre-trained model wrapped in ``FrozenEstimator``."""
    return isinstance(estimator, FrozenEstimator)


def is_splitter(calibration_size):
    """Whether ``calibration_size`` is a splitter object (it has ``split``), not a size."""
    return hasattr(calibration_size, "split") and callable(calibration_size.split)


def split_calibration(X, y, calibration_size, random_state, stratify=False, groups=None):
    """Split ``(X, y)`` into a training and a calibration part.

    Parameters
    ----------
    X : array-like or DataFrame
        Indexed with :func:`sklearn.utils._safe_indexing`, so DataFrames stay DataFrames.
    y : ndarray of shape (n_samples,)
    calibration_size : float in (0, 1), int or splitter
        Fraction or number of samples used for calibration, or a scikit-learn splitter (see
        :func:`split_indices`).
    random_state : int, RandomState or None
    stratify : bool
        Stratify on ``y`` when every class has at least two samples (classifiers), so that
        each class reaches both parts where possible.
    groups : array-like of shape (n_samples,) or None
        Passed to a splitter's ``split``.

    Returns
    -------
    X_train, X_cal, y_train, y_cal
    """
    train, cal = split_indices(
        y, calibration_size, random_state, stratify=stratify, X=X, groups=groups
    )
    return _safe_indexing(X, train), _safe_indexing(X, cal), y[train], y[cal]


def split_indices(y, calibration_size, random_state, stratify=False, *, X=None, groups=None):
    """Indices ``(train, cal)`` of the split made by :func:`split_calibration`.

    ``calibration_size`` is a fraction in (0, 1), a number of samples, or a scikit-learn
    splitter with ``split(X, y, groups)`` (``ShuffleSplit(n_splits=1)``, ``GroupShuffleSplit``,
    ``PredefinedSplit``, ...): its first ``(train, test)`` pair becomes ``(train, cal)``, with
    the splitter's own randomness (``random_state`` and ``stratify`` are not used then). The
    two parts must be disjoint and non-empty; otherwise a ValueError names ``calibration_size``.
    """
    if is_splitter(calibration_size):
        return _splitter_indices(calibration_size, X, y, groups)
    indices = np.arange(len(y))
    labels = None
    if stratify:
        _, counts = np.unique(y, return_counts=True)
        n_cal = (
            calibration_size
            if isinstance(calibration_size, numbers.Integral)
            else int(np.ceil(calibration_size * len(y)))
        )
        if counts.min() >= 2 and n_cal >= counts.size and len(y) - n_cal >= counts.size:
            labels = y
    return train_test_split(
        indices, test_size=calibration_size, random_state=random_state, stratify=labels
    )


def _splitter_indices(splitter, X, y, groups):
    n = len(y)
    name = type(splitter).__name__
    if X is None:
        X = np.zeros((n, 1))
    try:
        first = next(iter(splitter.split(X, y, groups)))
    except StopIteration:
        raise ValueError(
            f"calibration_size={name} yielded no split; it must yield at least one "
            "(train, calibration) pair of index arrays."
        ) from None
    except ValueError as exc:
        hint = (
            " Pass the groups to fit (fit(X, y, groups=groups)); with metadata routing enabled "
            "the splitter requests them itself."
            if groups is None and "groups" in str(exc)
            else ""
        )
        raise ValueError(f"calibration_size={name} could not split the data: {exc}{hint}") from exc
    try:
        train, cal = first
    except (TypeError, ValueError):
        raise ValueError(
            f"calibration_size={name}.split must yield (train, calibration) pairs of index "
            f"arrays; its first item is {first!r}."
        ) from None
    parts = []
    for what, idx in (("training", train), ("calibration", cal)):
        idx = np.asarray(idx)
        if idx.dtype == bool:
            if idx.shape != (n,):
                raise ValueError(
                    f"calibration_size={name} gave a boolean {what} mask of shape "
                    f"{idx.shape}; expected ({n},)."
                )
            idx = np.flatnonzero(idx)
        if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
            raise ValueError(
                f"calibration_size={name} gave {what} indices that are not a 1-d integer array."
            )
        if idx.size == 0:
            raise ValueError(
                f"calibration_size={name} gave an empty {what} part; its first split must "
                "give both the training and the calibration part at least one sample."
            )
        if idx.min() < -n or idx.max() >= n:
            raise ValueError(
                f"calibration_size={name} gave {what} indices outside [0, {n}) for "
                f"{n} samples."
            )
        idx = idx % n
        if np.unique(idx).size != idx.size:
            raise ValueError(f"calibration_size={name} repeats {what} indices.")
        parts.append(idx)
    train, cal = parts
    shared = np.intersect1d(train, cal)
    if shared.size:
        raise ValueError(
            f"calibration_size={name} gave overlapping training and calibration parts "
            f"({shared.size} shared samples, e.g. index {int(shared[0])}); they must be "
            "disjoint for the coverage guarantee."
        )
    return train, cal


def add_splitter_routing(router, calibration_size):
    """Add a splitter ``calibration_size`` to ``router`` (``fit`` metadata to its ``split``,
    e.g. ``groups`` for group splitters), as ``GridSearchCV`` routes to its ``cv``."""
    if is_splitter(calibration_size) and hasattr(calibration_size, "get_metadata_routing"):
        router.add(
            splitter=calibration_size,
            method_mapping=MethodMapping().add(caller="fit", callee="split"),
        )
    return router


def splitter_params(meta_estimator, fit_params, n_samples):
    """Metadata for the calibration splitter's ``split`` (``groups``), or ``{}``.

    With metadata routing enabled it is what the splitter requests (group splitters request
    ``groups``), routed by :func:`add_splitter_routing`; without routing, ``groups=`` of ``fit``
    goes to it. ``groups`` needs one value per sample of ``X``.
    """
    splitter = getattr(meta_estimator, "calibration_size", None)
    if not is_splitter(splitter):
        return {}
    if _routing_enabled():
        routed = process_routing(meta_estimator, "fit", **fit_params)
        params = dict(routed.splitter.split) if "splitter" in routed else {}
    else:
        params = {} if fit_params.get("groups") is None else {"groups": fit_params["groups"]}
    groups = params.get("groups")
    if groups is not None and _num_samples(groups) != n_samples:
        raise ValueError(
            f"groups has {_num_samples(groups)} samples, but X has {n_samples}; groups needs "
            "one group label per sample of X."
        )
    return params


def calibration_split_groups(meta_estimator, fit_params, calibrator_groups, n_samples):
    """The ``groups`` of the calibration splitter, given those a calibrator took already.

    ``groups=`` of ``fit`` means one thing, the group of each row: a Mondrian calibrator on
    metadata (:func:`pop_calibration_groups`) and a group splitter ``calibration_size`` both
    read it.
    """
    if calibrator_groups is not None:
        fit_params = {**fit_params, "groups": calibrator_groups}
    return splitter_params(meta_estimator, fit_params, n_samples).get("groups")


def check_groups_use(meta_estimator, fit_params):
    """Reject ``groups`` that no splitter reads (``calibration_size`` is a size): silently
    ignoring them would let a user believe the calibration split respects the groups."""
    if (
        not _routing_enabled()
        and fit_params.get("groups") is not None
        and not is_splitter(getattr(meta_estimator, "calibration_size", None))
    ):
        raise ValueError(
            f"groups was passed to {type(meta_estimator).__name__}.fit, but calibration_size="
            f"{meta_estimator.calibration_size!r} is a size, which ignores groups. Pass a group "
            "splitter, e.g. calibration_size=GroupShuffleSplit(n_splits=1, test_size=0.3), to "
            "keep every group on one side of the calibration split."
        )


def refuse_fit_metadata(meta_estimator, fit_params, remedy):
    """For estimators that train their own networks unweighted: ``fit`` metadata other than
    ``groups`` (which a splitter ``calibration_size`` reads) is an error naming it, with
    ``remedy``; so is ``groups`` without a splitter to read it."""
    refused = sorted(set(fit_params) - {"groups"})
    if refused:
        raise TypeError(
            f"{type(meta_estimator).__name__}.fit does not take {', '.join(refused)}: "
            f"{remedy}"
        )
    if fit_params.get("groups") is not None and not is_splitter(
        getattr(meta_estimator, "calibration_size", None)
    ):
        raise ValueError(
            f"groups was passed to {type(meta_estimator).__name__}.fit, but calibration_size="
            f"{meta_estimator.calibration_size!r} is a size, which ignores groups. Pass a group "
            "splitter, e.g. calibration_size=GroupShuffleSplit(n_splits=1, test_size=0.3), to "
            "keep every group on one side of the calibration split."
        )


def route_fit_params(meta_estimator, fit_params, models, n_samples, splitter_groups=False):
    """Fit metadata of each wrapped model, by role, for all ``n_samples`` rows (not yet split).

    With metadata routing enabled (``sklearn.set_config(enable_metadata_routing=True)``),
    ``fit_params`` are routed by scikit-learn's mechanism: a wrapped model receives what it
    requested with ``set_fit_request``, and metadata that no model requests is an error.
    Without routing, only ``sample_weight`` is accepted, as in ``CalibratedClassifierCV``: it
    is passed to every model that is fitted, each of which must take ``sample_weight`` in its
    ``fit`` (otherwise an error asks to enable routing). Frozen models ignore it, as
    ``FrozenEstimator.fit`` does.

    Parameters
    ----------
    meta_estimator : estimator with ``get_metadata_routing``
    fit_params : dict
    models : dict of role -> model
        The roles of ``meta_estimator.get_metadata_routing()``.
    n_samples : int
    splitter_groups : bool, default=False
        Whether ``meta_estimator`` hands ``groups`` to a splitter ``calibration_size`` (see
        :func:`splitter_params`); without routing, ``groups`` is then accepted and goes to no
        model.

    Returns
    -------
    dict of role -> dict of fit parameters
    """
    if _routing_enabled():
        routed = process_routing(meta_estimator, "fit", **fit_params)
        params = {role: dict(getattr(routed, role).fit) for role in models}
    else:
        accepted = {"sample_weight", "groups"} if splitter_groups else {"sample_weight"}
        unexpected = sorted(set(fit_params) - accepted)
        if unexpected:
            raise TypeError(
                f"{type(meta_estimator).__name__}.fit got {unexpected}: without metadata "
                "routing only sample_weight is accepted. Enable it with "
                "sklearn.set_config(enable_metadata_routing=True) and request the metadata on "
                "the wrapped model (e.g. model.set_fit_request(groups=True))."
            )
        sample_weight = fit_params.get("sample_weight")
        params = {role: {} for role in models}
        if sample_weight is not None:
            for role, model in models.items():
                if is_frozen(model):
                    continue
                if not has_fit_parameter(model, "sample_weight"):
                    raise ValueError(
                        f"sample_weight was passed to {type(meta_estimator).__name__}.fit, but "
                        f"the {role} {type(model).__name__} does not take sample_weight in its "
                        "fit. Enable metadata routing "
                        "(sklearn.set_config(enable_metadata_routing=True)) and request it where "
                        "it applies (e.g. the last step of a Pipeline: "
                        "model.set_fit_request(sample_weight=True))."
                    )
                params[role] = {"sample_weight": sample_weight}
    for role_params in params.values():
        weights = role_params.get("sample_weight")
        if weights is not None and not np.isscalar(weights) and _num_samples(weights) != n_samples:
            raise ValueError(
                f"sample_weight has {_num_samples(weights)} samples, but X has {n_samples}; "
                "sample_weight needs one weight per sample of X."
            )
    return params


def split_fit_params(X, params, train):
    """The training rows of per-sample metadata (length ``n_samples``); the rest as it is."""
    return _check_method_params(X, params, indices=train)


def resolve_confidence_level(estimator, confidence_level):
    """The per-call level if given, else the estimator's; validated either way."""
    if confidence_level is None:
        return estimator.confidence_level
    return check_confidence_level(confidence_level)


def tags_or_none(model):
    """Tags of ``model``, or None when it has none readable.

    A meta-estimator's tags are read by scikit-learn's checks and ``clone`` on objects that are
    not yet validated, so a model whose tags cannot be read (an odd user object, a broken
    ``__sklearn_tags__``) must not make ours raise.
    """
    try:
        return get_tags(model)
    except Exception:  # noqa: BLE001 - any failure reading foreign tags means "no tags"
        return None


def wrapped_input_tag(models, name):
    """Whether every model in ``models`` sets the input tag ``name`` (e.g. ``"sparse"``);
    never raises (a model without readable tags does not set it)."""
    for model in models:
        tags = tags_or_none(model)
        if tags is None or not bool(getattr(tags.input_tags, name, False)):
            return False
    return True


def model_allows_nan(model):
    """Whether ``model`` takes NaN in ``X``; never raises.

    A pipeline's own tag does not say (scikit-learn leaves it False), but its first step is the
    one that sees ``X``: an imputer there makes the pipeline NaN-capable. A frozen model is
    asked through the model it wraps.
    """
    if is_frozen(model):
        return model_allows_nan(model.estimator)
    if isinstance(model, Pipeline):
        try:
            steps = [step for _, step in model.steps if step is not None and step != "passthrough"]
        except (TypeError, ValueError):  # malformed steps: the pipeline's own fit will say so
            return False
        return bool(steps) and model_allows_nan(steps[0])
    return wrapped_input_tag([model], "allow_nan")


def wrapped_allows_nan(models):
    """Whether every wrapped model accepts NaN in ``X`` (see :func:`model_allows_nan`).

    Meta-estimators validate ``X`` with ``ensure_all_finite="allow-nan"`` when this holds, so
    that NaN-capable models (``HistGradientBoostingRegressor``) see their missing values.
    """
    return all(model_allows_nan(model) for model in models)
