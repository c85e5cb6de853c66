"""Helpers shared by the estimators: the calibration split and pre-trained models."""

import numbers

import numpy as np
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.utils import _safe_indexing, get_tags
from sklearn.utils.metadata_routing import _routing_enabled, process_routing
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


def split_calibration(X, y, calibration_size, random_state, stratify=False):
    """Split ``(X, y)`` into a training and a calibration part.

    Parameters
    ----------
    X : array-like or DataFrame
        Indexed with :func:`sklearn.utils._safe_indexing`, so DataFrames stay DataFrames.
    y : ndarray of shape (n_samples,)
    calibration_size : float in (0, 1) or int
        Fraction or number of samples used for calibration.
    random_state : int, RandomState or None
    stratify : bool
        Stratify on ``y`` when every class has at least two samples (classifiers), so that
        each class reaches both parts where possible.

    Returns
    -------
    X_train, X_cal, y_train, y_cal
    """
    train, cal = split_indices(y, calibration_size, random_state, stratify=stratify)
    return _safe_indexing(X, train), _safe_indexing(X, cal), y[train], y[cal]


def split_indices(y, calibration_size, random_state, stratify=False):
    """Indices ``(train, cal)`` of the split made by :func:`split_calibration`."""
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


def route_fit_params(meta_estimator, fit_params, models, n_samples):
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

    Returns
    -------
    dict of role -> dict of fit parameters
    """
    if _routing_enabled():
        routed = process_routing(meta_estimator, "fit", **fit_params)
        params = {role: dict(getattr(routed, role).fit) for role in models}
    else:
        unexpected = sorted(set(fit_params) - {"sample_weight"})
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
