"""Displays of regression intervals: intervals along a feature or the truth, SpeedCP cutoffs."""

import numpy as np

from ._utils import _column, _get_ax, _legend, _style, check_matplotlib_support


def _as_1d(name, values, n=None):
    values = np.asarray(values, dtype=float).ravel()
    if n is not None and values.shape[0] != n:
        raise ValueError(f"{name} must have {n} values, got {values.shape[0]}.")
    return values


def _as_intervals(y_interval, n):
    y_interval = np.asarray(y_interval, dtype=float)
    if y_interval.shape != (n, 2):
        raise ValueError(f"y_interval must have shape ({n}, 2), got {y_interval.shape}.")
    return y_interval


class PredictionIntervalDisplay:
    """Prediction intervals against one feature or against the observed target.

    It is recommended to use :meth:`from_estimator` or :meth:`from_predictions` to create a
    display. All parameters are stored as attributes.

    With ``kind="feature"`` the samples are sorted by the feature and drawn as a filled band
    (the intervals), a line (the point predictions) and a scatter of the observed targets, those
    outside their interval highlighted. With ``kind="truth"`` each interval is a vertical segment
    at its observed target, whose marker (on the diagonal ``y = x``) is highlighted when the
    segment misses it. An optional oracle interval is drawn as two lines.

    Parameters
    ----------
    y_true : ndarray of shape (n_samples,)
        Observed targets.
    y_pred : ndarray of shape (n_samples,)
        Point predictions.
    y_interval : ndarray of shape (n_samples, 2)
        Lower and upper ends of the prediction intervals.
    x : ndarray of shape (n_samples,), default=None
        Feature values (needed for ``kind="feature"``).
    oracle : tuple of two ndarray of shape (n_samples,), default=None
        Lower and upper ends of an oracle interval (e.g. the true conditional quantiles).
    feature_name : str, default=None
        Label of the feature axis.

    Attributes
    ----------
    band_ : matplotlib PolyCollection or LineCollection
        The intervals: a filled band (``kind="feature"``) or vertical segments
        (``kind="truth"``).
    line_ : matplotlib Line2D
        The point predictions.
    scatter_ : matplotlib PathCollection
        Observed targets inside their interval.
    outside_scatter_ : matplotlib PathCollection
        Observed targets outside their interval.
    oracle_lines_ : list of matplotlib Line2D or None
        Lower and upper oracle ends, ``None`` without ``oracle``.
    coverage_ : float
        Fraction of samples inside their interval (shown in the legend).
    ax_ : matplotlib Axes
    figure_ : matplotlib Figure

    See Also
    --------
    CutoffDisplay : SpeedCP's cutoff along a feature.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_conformal import SplitConformalRegressor
    >>> from sklearn_conformal.plotting import PredictionIntervalDisplay
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(-2, 2, size=(200, 1)); y = X[:, 0] + rng.normal(size=200)
    >>> reg = SplitConformalRegressor(random_state=0).fit(X, y)
    >>> disp = PredictionIntervalDisplay.from_estimator(reg, X, y, feature=0)
    >>> disp.outside_scatter_.get_offsets().shape[1]
    2
    """

    def __init__(self, *, y_true, y_pred, y_interval, x=None, oracle=None, feature_name=None):
        self.y_true = y_true
        self.y_pred = y_pred
        self.y_interval = y_interval
        self.x = x
        self.oracle = oracle
        self.feature_name = feature_name

    def plot(
        self,
        ax=None,
        *,
        kind="feature",
        line_kw=None,
        scatter_kw=None,
        outside_kw=None,
        oracle_kw=None,
        **kwargs,
    ):
        """Draw the display.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure is created when ``None``.
        kind : {"feature", "truth"}, default="feature"
            Horizontal axis: the feature ``x`` (samples sorted by it) or the observed target.
        line_kw, scatter_kw, outside_kw, oracle_kw : dict, default=None
            Keywords of the point-prediction line, the covered and the missed observations and
            the oracle lines.
        **kwargs : dict
            Keywords of the interval artist (``fill_between`` or ``vlines``).

        Returns
        -------
        display : PredictionIntervalDisplay
        """
        if kind not in ("feature", "truth"):
            raise ValueError(f"kind must be 'feature' or 'truth', got {kind!r}.")
        y = _as_1d("y_true", self.y_true)
        n = y.shape[0]
        pred = _as_1d("y_pred", self.y_pred, n)
        lo, hi = _as_intervals(self.y_interval, n).T
        if kind == "feature":
            if self.x is None:
                raise ValueError(
                    "kind='feature' needs x (the feature values); or use kind='truth'."
                )
            h = _as_1d("x", self.x, n)
        else:
            h = y
        oracle = None
        if self.oracle is not None:
            if len(self.oracle) != 2:
                raise ValueError("oracle must be a pair (lower, upper) of arrays.")
            oracle = [_as_1d("oracle", o, n) for o in self.oracle]
        ax, fig = _get_ax(ax, f"{type(self).__name__}.plot")

        order = np.argsort(h, kind="stable")
        h, y, pred, lo, hi = h[order], y[order], pred[order], lo[order], hi[order]
        inside = (lo <= y) & (y <= hi)
        self.coverage_ = float(inside.mean()) if n else float("nan")
        label = f"Interval (coverage {self.coverage_:.3f})"
        if kind == "feature":
            band = _style({"alpha": 0.3, "color": "tab:blue", "label": label}, kwargs)
            self.band_ = ax.fill_between(h, lo, hi, **band)
            line = _style({"color": "tab:blue", "label": "Prediction"}, line_kw)
        else:
            band = _style({"alpha": 0.5, "color": "tab:blue", "label": label}, kwargs)
            self.band_ = ax.vlines(h, lo, hi, **band)
            line = _style(
                {"color": "tab:blue", "marker": "_", "linestyle": "none", "label": "Prediction"},
                line_kw,
            )
        (self.line_,) = ax.plot(h, pred, **line)
        scatter = _style({"s": 12, "color": "black", "label": "Observed (covered)"}, scatter_kw)
        self.scatter_ = ax.scatter(h[inside], y[inside], **scatter)
        outside = _style(
            {"s": 18, "color": "tab:red", "marker": "x", "label": "Observed (not covered)"},
            outside_kw,
        )
        self.outside_scatter_ = ax.scatter(h[~inside], y[~inside], **outside)
        self.oracle_lines_ = None
        if oracle is not None:
            o_lo, o_hi = oracle[0][order], oracle[1][order]
            style = {"color": "tab:green", "linestyle": "--"}
            if kind == "truth":
                style = {"color": "tab:green", "marker": "_", "linestyle": "none"}
            style = _style(style, oracle_kw)
            (low,) = ax.plot(h, o_lo, **_style(style, {"label": "Oracle"}))
            (high,) = ax.plot(h, o_hi, **style)
            self.oracle_lines_ = [low, high]
        xlabel = (self.feature_name or "Feature") if kind == "feature" else "Observed target"
        ax.set(xlabel=xlabel, ylabel="Target")
        _legend(ax, loc="best")
        self.ax_ = ax
        self.figure_ = fig
        return self

    @classmethod
    def from_estimator(
        cls,
        estimator,
        X,
        y,
        *,
        feature=0,
        kind="feature",
        confidence_level=None,
        oracle=None,
        ax=None,
        **kwargs,
    ):
        """Plot the intervals of a fitted conformal regressor.

        Parameters
        ----------
        estimator : fitted conformal regressor
            Must have ``predict`` and ``predict_interval``.
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        feature : int or str, default=0
            Column of ``X`` on the horizontal axis (``kind="feature"``): a position, or a
            name of a DataFrame column or of ``estimator.feature_names_in_``.
        kind : {"feature", "truth"}, default="feature"
        confidence_level : float in (0, 1), default=None
            Level of the intervals (the estimator's when ``None``).
        oracle : tuple of two array-like of shape (n_samples,), default=None
            Oracle lower and upper ends.
        ax : matplotlib Axes, default=None
        **kwargs : dict
            Passed to :meth:`plot`.

        Returns
        -------
        display : PredictionIntervalDisplay
        """
        check_matplotlib_support(f"{cls.__name__}.from_estimator")
        x, name = None, None
        if kind == "feature":
            x, name = _column(X, feature, getattr(estimator, "feature_names_in_", None))
        intervals = np.asarray(estimator.predict_interval(X, confidence_level))
        disp = cls(
            y_true=y,
            y_pred=estimator.predict(X),
            y_interval=intervals,
            x=x,
            oracle=oracle,
            feature_name=name,
        )
        return disp.plot(ax=ax, kind=kind, **kwargs)

    @classmethod
    def from_predictions(
        cls,
        y_true,
        y_pred,
        y_interval,
        *,
        x=None,
        kind="feature",
        oracle=None,
        feature_name=None,
        ax=None,
        **kwargs,
    ):
        """Plot given intervals and point predictions.

        Parameters
        ----------
        y_true : array-like of shape (n_samples,)
        y_pred : array-like of shape (n_samples,)
        y_interval : array-like of shape (n_samples, 2)
        x : array-like of shape (n_samples,), default=None
            Feature values, required for ``kind="feature"``.
        kind : {"feature", "truth"}, default="feature"
        oracle : tuple of two array-like of shape (n_samples,), default=None
        feature_name : str, default=None
        ax : matplotlib Axes, default=None
        **kwargs : dict
            Passed to :meth:`plot`.

        Returns
        -------
        display : PredictionIntervalDisplay
        """
        check_matplotlib_support(f"{cls.__name__}.from_predictions")
        disp = cls(
            y_true=y_true,
            y_pred=y_pred,
            y_interval=y_interval,
            x=x,
            oracle=oracle,
            feature_name=feature_name,
        )
        return disp.plot(ax=ax, kind=kind, **kwargs)


class CutoffDisplay:
    """SpeedCP's score cutoff ``S*(x)`` along one feature.

    It is recommended to use :meth:`from_estimator` or :meth:`from_predictions` to create a
    display. All parameters are stored as attributes.

    The cutoff is the half-width of the conditional interval ``[f(x) - S*(x), f(x) + S*(x)]``;
    the split-conformal cutoff, a constant, is drawn as a horizontal reference line when given.

    Parameters
    ----------
    x : ndarray of shape (n_samples,)
        Feature values.
    cutoff : ndarray of shape (n_samples,)
        Cutoffs ``S*(x)`` (``+inf`` values are not drawn).
    reference : float, default=None
        Constant split-conformal cutoff.
    feature_name : str, default=None
        Label of the feature axis.

    Attributes
    ----------
    line_ : matplotlib Line2D
        Cutoffs against the sorted feature.
    reference_line_ : matplotlib Line2D or None
        The constant reference cutoff.
    ax_ : matplotlib Axes
    figure_ : matplotlib Figure

    See Also
    --------
    PredictionIntervalDisplay : the intervals themselves.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_conformal import SpeedCPRegressor
    >>> from sklearn_conformal.plotting import CutoffDisplay
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(-2, 2, size=(200, 1)); y = X[:, 0] + rng.normal(size=200) * np.abs(X[:, 0])
    >>> reg = SpeedCPRegressor(gamma=1.0, lambda_=0.5, random_state=0).fit(X, y)
    >>> disp = CutoffDisplay.from_estimator(reg, X[:50], reference="split")
    >>> disp.line_.get_xdata().shape
    (50,)
    """

    def __init__(self, *, x, cutoff, reference=None, feature_name=None):
        self.x = x
        self.cutoff = cutoff
        self.reference = reference
        self.feature_name = feature_name

    def plot(self, ax=None, *, reference_kw=None, **kwargs):
        """Draw the display.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure is created when ``None``.
        reference_kw : dict, default=None
            Keywords of the reference line (``axhline``).
        **kwargs : dict
            Keywords of the cutoff line.

        Returns
        -------
        display : CutoffDisplay
        """
        x = _as_1d("x", self.x)
        cutoff = _as_1d("cutoff", self.cutoff, x.shape[0])
        ax, fig = _get_ax(ax, f"{type(self).__name__}.plot")
        order = np.argsort(x, kind="stable")
        (self.line_,) = ax.plot(
            x[order], cutoff[order], **_style({"color": "tab:blue", "label": "S*(x)"}, kwargs)
        )
        self.reference_line_ = None
        if self.reference is not None:
            style = {"color": "tab:gray", "linestyle": "--",
                     "label": f"Split conformal ({float(self.reference):.3g})"}
            self.reference_line_ = ax.axhline(float(self.reference), **_style(style, reference_kw))
        ax.set(xlabel=self.feature_name or "Feature", ylabel="Score cutoff")
        _legend(ax, loc="best")
        self.ax_ = ax
        self.figure_ = fig
        return self

    @classmethod
    def from_estimator(
        cls, estimator, X, *, feature=0, confidence_level=None, reference=None, ax=None, **kwargs
    ):
        """Plot the cutoffs of a fitted :class:`~sklearn_conformal.SpeedCPRegressor`.

        Parameters
        ----------
        estimator : fitted SpeedCPRegressor
            Any estimator with ``predict_cutoff(X, confidence_level)``.
        X : array-like of shape (n_samples, n_features)
        feature : int or str, default=0
            Column of ``X`` on the horizontal axis (a position or a column name).
        confidence_level : float in (0, 1), default=None
            Level of the cutoffs (the estimator's when ``None``).
        reference : float, "split" or None, default=None
            Constant cutoff drawn for comparison; ``"split"`` takes the split-conformal
            quantile of the estimator's own calibration scores ``conformity_scores_`` (the
            cutoff of the marginal method on the same scores).
        ax : matplotlib Axes, default=None
        **kwargs : dict
            Passed to :meth:`plot`.

        Returns
        -------
        display : CutoffDisplay
        """
        check_matplotlib_support(f"{cls.__name__}.from_estimator")
        if not hasattr(estimator, "predict_cutoff"):
            raise TypeError(
                f"CutoffDisplay needs an estimator with predict_cutoff (SpeedCPRegressor); "
                f"got {type(estimator).__name__}."
            )
        x, name = _column(X, feature, getattr(estimator, "feature_names_in_", None))
        cutoff = estimator.predict_cutoff(X, confidence_level)
        if isinstance(reference, str):
            if reference != "split":
                raise ValueError(f"reference must be a float, 'split' or None, got {reference!r}.")
            from .._core._quantile import conformal_quantile

            level = estimator.confidence_level if confidence_level is None else confidence_level
            reference = float(conformal_quantile(estimator.conformity_scores_, level))
        disp = cls(x=x, cutoff=cutoff, reference=reference, feature_name=name)
        return disp.plot(ax=ax, **kwargs)

    @classmethod
    def from_predictions(cls, x, cutoff, *, reference=None, feature_name=None, ax=None, **kwargs):
        """Plot given cutoffs against given feature values.

        Parameters
        ----------
        x : array-like of shape (n_samples,)
        cutoff : array-like of shape (n_samples,)
        reference : float, default=None
            Constant cutoff drawn for comparison (e.g. ``SplitConformalRegressor.quantile_``
            with the absolute score).
        feature_name : str, default=None
        ax : matplotlib Axes, default=None
        **kwargs : dict
            Passed to :meth:`plot`.

        Returns
        -------
        display : CutoffDisplay
        """
        check_matplotlib_support(f"{cls.__name__}.from_predictions")
        disp = cls(x=x, cutoff=cutoff, reference=reference, feature_name=feature_name)
        return disp.plot(ax=ax, **kwargs)
