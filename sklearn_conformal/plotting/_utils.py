"""Shared helpers of the displays: the matplotlib check, axes, style keywords, binomial bars."""

import numpy as np
from scipy.stats import norm


def check_matplotlib_support(caller_name):
    """Raise an actionable ``ImportError`` when matplotlib is not installed.

    Every display calls this before importing matplotlib, so the package itself never needs it.

    Parameters
    ----------
    caller_name : str
        Name of the caller, used in the message (e.g. ``"CoverageDisplay.plot"``).

    Raises
    ------
    ImportError
        If matplotlib cannot be imported.
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"{caller_name} requires matplotlib. You can install matplotlib with "
            "`pip install sklearn-conformal[plot]` (or `pip install matplotlib`)."
        ) from exc


def _get_ax(ax, caller_name):
    """``(ax, figure)``: the given axes, or a new figure's single axes."""
    check_matplotlib_support(caller_name)
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots()
    return ax, ax.figure


def _style(defaults, user):
    """``defaults`` updated by the user's keywords (``None`` keeps the defaults)."""
    out = dict(defaults)
    out.update(user or {})
    return out


def _legend(ax, **kwargs):
    """Draw the legend when some artist has a label (matplotlib warns otherwise)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kwargs)


def wilson_interval(coverage, n, ci_level=0.95):
    """Wilson score interval of a binomial proportion.

    Preferred to the normal approximation ``p +- z sqrt(p (1 - p) / n)`` because coverages sit
    close to 1, where the normal interval collapses to zero width (at ``p = 1``) or leaves
    ``[0, 1]``; the Wilson interval stays inside ``[0, 1]`` and keeps a sensible width.

    Parameters
    ----------
    coverage : array-like of float
        Observed proportions.
    n : array-like of int
        Number of trials behind each proportion (``> 0``).
    ci_level : float in (0, 1), default=0.95
        Confidence level of the interval.

    Returns
    -------
    lower, upper : ndarray of float
        Interval bounds, ``lower <= coverage <= upper``.
    """
    p = np.asarray(coverage, dtype=float)
    n = np.asarray(n, dtype=float)
    z = norm.ppf(0.5 + ci_level / 2.0)
    denom = 1.0 + z**2 / n
    centre = (p + z**2 / (2.0 * n)) / denom
    half = z / denom * np.sqrt(p * (1.0 - p) / n + z**2 / (4.0 * n**2))
    # guard the rounding at p = 0 or 1 so the error-bar lengths are never negative
    return np.minimum(centre - half, p), np.maximum(centre + half, p)


def _check_ci_level(ci_level):
    if ci_level is None:
        return None
    if not 0.0 < float(ci_level) < 1.0:
        raise ValueError(f"ci_level must be in (0, 1) or None, got {ci_level!r}.")
    return float(ci_level)


def _column(X, feature, feature_names=None):
    """``(values, name)`` of one column of ``X`` chosen by position or by name."""
    if isinstance(feature, str):
        columns = getattr(X, "columns", None)
        if columns is not None and feature in list(columns):
            return np.asarray(X[feature]), feature
        names = [] if feature_names is None else list(feature_names)
        if feature in names:
            return np.asarray(X)[:, names.index(feature)], feature
        raise ValueError(
            f"feature {feature!r} is not a column name of X (pass a DataFrame or an estimator "
            "fitted with feature names, or give the column position)."
        )
    if isinstance(feature, (int, np.integer)) and not isinstance(feature, bool):
        values = np.asarray(X)
        if values.ndim != 2 or not -values.shape[1] <= feature < values.shape[1]:
            raise ValueError(f"feature={feature} is out of range for X of shape {values.shape}.")
        columns = getattr(X, "columns", None)
        if columns is not None:
            name = str(columns[feature])
        elif feature_names is not None:
            name = str(feature_names[feature])
        else:
            name = f"Feature {feature}"
        return values[:, feature], name
    raise TypeError(f"feature must be an int or a str, got {type(feature).__name__}.")
