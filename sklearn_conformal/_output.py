"""Several confidence levels in one prediction call, and the container of the predictions.

Every conformal estimator computes its intervals or sets at one level at a time; the helpers
here call that per-level computation for each requested level and return either the arrays
(``(n_samples, 2)`` / ``(n_samples, n_classes)`` for one level, with a trailing level axis for
several, as MAPIE does) or, after ``set_output(predict="pandas")``, DataFrames.
"""

import numpy as np

from ._core import check_confidence_level

_PREDICT_OUTPUTS = ("default", "pandas")


def check_levels(confidence_level, default):
    """The levels of one prediction call, and whether the caller asked for several.

    Parameters
    ----------
    confidence_level : None, float or 1-d array-like of floats
        ``None`` means ``default`` (the estimator's ``confidence_level``). A list, tuple or
        1-d array asks for several levels at once; each entry is validated as a scalar level
        is (same error).
    default : float
        The estimator's level.

    Returns
    -------
    levels : list of float
    several : bool
        False for a scalar level (2-d output), True for a sequence (3-d output).
    """
    if confidence_level is None:
        return [check_confidence_level(default)], False
    if isinstance(confidence_level, (str, bytes)) or np.ndim(confidence_level) == 0:
        # scalars, and anything that is not a sequence of levels, get the scalar error
        return [check_confidence_level(confidence_level)], False
    if np.ndim(confidence_level) != 1:
        raise ValueError(
            "confidence_level must be a float in (0, 1) or a 1-d sequence of such floats, got "
            f"an array of shape {np.shape(confidence_level)}."
        )
    levels = [check_confidence_level(level) for level in confidence_level]
    if not levels:
        raise ValueError(
            "confidence_level is an empty sequence; pass a float in (0, 1) or a non-empty "
            "sequence of such floats."
        )
    return levels, True


def check_predict_output(predict):
    """Validate the ``predict`` argument of ``set_output``."""
    if predict not in _PREDICT_OUTPUTS:
        raise ValueError(
            f"predict must be one of {list(_PREDICT_OUTPUTS)} or None, got {predict!r}."
        )
    if predict == "pandas":
        _import_pandas()
    return predict


def _import_pandas():
    try:
        import pandas as pd
    except ImportError as exc:  # pragma: no cover - pandas is installed in the test environment
        raise ImportError(
            'set_output(predict="pandas") needs pandas, which is not installed: install it '
            '(pip install pandas), or call set_output(predict="default") for NumPy arrays.'
        ) from exc
    return pd


def predict_output(estimator):
    """``"pandas"`` or ``"default"``: the container chosen with ``estimator.set_output``."""
    config = getattr(estimator, "_sklearn_output_config", None) or {}
    return config.get("predict") or "default"


def per_level(estimator, X, confidence_level, at_level, kind):
    """Predictions at every requested level, in the estimator's output container.

    Parameters
    ----------
    estimator : fitted conformal estimator
        Its ``confidence_level`` is the default level; ``classes_`` names the columns of sets.
    X : array-like or DataFrame
        The input as the user passed it (its index labels DataFrame rows).
    confidence_level : None, float or 1-d sequence of floats
    at_level : callable
        ``at_level(level) -> ndarray`` of shape ``(n_samples, 2)`` (intervals) or
        ``(n_samples, n_classes)`` (sets) at one validated level.
    kind : {"interval", "set"}

    Returns
    -------
    ndarray of shape (n_samples, m) or (n_samples, m, n_levels), or DataFrame
    """
    levels, several = check_levels(confidence_level, estimator.confidence_level)
    if several:
        out = np.stack([at_level(level) for level in levels], axis=-1)
    else:
        out = at_level(levels[0])
    if predict_output(estimator) == "pandas":
        columns = ["lower", "upper"] if kind == "interval" else list(estimator.classes_)
        names = "bound" if kind == "interval" else "class"
        return to_frame(out, X, levels if several else None, columns, names)
    return out


def to_frame(out, X, levels, columns, name):
    """DataFrame of ``out`` with the index of ``X`` (a RangeIndex when ``X`` has none).

    ``levels`` None: ``out`` is 2-d and the columns are ``columns``. Otherwise ``out`` is
    ``(n, m, n_levels)`` and the columns are the MultiIndex ``(confidence_level, name)``.
    """
    pd = _import_pandas()
    n = out.shape[0]
    index = getattr(X, "index", None)
    if not isinstance(index, pd.Index) or len(index) != n:
        index = pd.RangeIndex(n)
    if levels is None:
        return pd.DataFrame(out, index=index, columns=pd.Index(columns, name=name))
    flat = np.transpose(out, (0, 2, 1)).reshape(n, -1)
    multi = pd.MultiIndex.from_product([levels, columns], names=["confidence_level", name])
    return pd.DataFrame(flat, index=index, columns=multi)


class ConformalOutputMixin:
    """``set_output(predict="pandas")``: DataFrames from ``predict_interval`` / ``predict_set``."""

    def set_output(self, *, transform=None, predict=None):
        """Choose the container of the conformal predictions.

        Parameters
        ----------
        transform : {"default", "pandas", "polars"} or None, default=None
            Accepted and ignored (the estimator has no ``transform``), so that
            ``Pipeline.set_output(transform=...)`` works with it as any step.
        predict : {"default", "pandas"} or None, default=None
            ``"pandas"``: ``predict_interval`` returns a DataFrame with columns ``lower`` and
            ``upper``, and ``predict_set`` a boolean DataFrame with one column per class of
            ``classes_``; several levels give MultiIndex columns ``(confidence_level, ...)``.
            Rows carry the index of ``X`` when it is a DataFrame (a RangeIndex otherwise).
            ``"default"``: NumPy arrays. ``None``: unchanged.

        Returns
        -------
        self : estimator

        Examples
        --------
        >>> import numpy as np
        >>> import pandas as pd
        >>> from sklearn.linear_model import LinearRegression
        >>> from sklearn_conformal import SplitConformalRegressor
        >>> rng = np.random.default_rng(0)
        >>> X = pd.DataFrame(rng.normal(size=(200, 2)), columns=["a", "b"])
        >>> y = X["a"].to_numpy() + rng.normal(size=200)
        >>> reg = SplitConformalRegressor(LinearRegression(), random_state=0).fit(X, y)
        >>> reg.predict_interval(X.iloc[:3], confidence_level=[0.8, 0.9]).shape
        (3, 2, 2)
        >>> reg.set_output(predict="pandas").predict_interval(X.iloc[:3]).columns.tolist()
        ['lower', 'upper']
        >>> reg.predict_interval(X.iloc[:3], [0.8, 0.9]).columns.tolist()
        [(0.8, 'lower'), (0.8, 'upper'), (0.9, 'lower'), (0.9, 'upper')]
        """
        if predict is None:
            return self
        predict = check_predict_output(predict)
        config = dict(getattr(self, "_sklearn_output_config", None) or {})
        config["predict"] = predict
        self._sklearn_output_config = config
        return self
