"""Displays of training diagnostics: CaCT multiplier/constraint traces, CoCP staged lengths."""

import numpy as np

from ._utils import _get_ax, _legend, _style, check_matplotlib_support


def _panel_axes(ax, n_panels, caller_name):
    """``(axes, figure)``: ``n_panels`` new side-by-side axes, or the given ones."""
    check_matplotlib_support(caller_name)
    import matplotlib.pyplot as plt

    if ax is None:
        fig, axes = plt.subplots(1, n_panels, figsize=(5 * n_panels, 4), squeeze=False)
        return axes.ravel(), fig
    axes = np.asarray(ax, dtype=object).ravel()
    if axes.shape[0] != n_panels:
        raise ValueError(
            f"ax must hold {n_panels} matplotlib Axes (multipliers"
            f"{', constraints' if n_panels == 2 else ''}), got {axes.shape[0]}."
        )
    return axes, axes[0].figure


class CaCTTraceDisplay:
    """Class-wise multipliers and constraints of CaCT's augmented-Lagrangian updates.

    It is recommended to use :meth:`from_estimator` or :meth:`from_predictions` to create a
    display. All parameters are stored as attributes.

    The left axes shows the multiplier ``lambda_k`` of every class after each update (update 0:
    the initial values), the right axes the normalised constraint ``d_k / eta - 1`` measured on
    the validation split at each update (feasible at or below 0, drawn as a dotted line). With
    more than ``max_classes`` classes, the mean and the maximum over the classes are drawn
    instead of one line per class.

    Parameters
    ----------
    multiplier_history : ndarray of shape (n_updates + 1, n_classes)
        Multipliers after every update (first row: initial values).
    constraint_history : ndarray of shape (n_updates, n_classes), default=None
        Normalised constraint per update; ``None`` draws the multipliers only.
    class_labels : array-like of shape (n_classes,), default=None
        Legend names of the classes (``0, ..., n_classes - 1`` when ``None``).

    Attributes
    ----------
    multiplier_lines_ : list of matplotlib Line2D
        One line per class, or the mean and the maximum.
    constraint_lines_ : list of matplotlib Line2D or None
        Same for the constraints; ``None`` without ``constraint_history``.
    zero_line_ : matplotlib Line2D or None
        Feasibility boundary ``0`` of the constraints.
    axes_ : ndarray of matplotlib Axes
        The multiplier axes, then the constraint axes when drawn.
    figure_ : matplotlib Figure

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_conformal.plotting import CaCTTraceDisplay
    >>> multipliers = np.array([[0.0, 0.0, 0.0], [0.1, 0.0, 0.2], [0.15, 0.0, 0.1]])
    >>> constraints = np.array([[0.3, -0.2, 0.5], [0.1, -0.1, -0.2]])
    >>> disp = CaCTTraceDisplay.from_predictions(multipliers, constraints)
    >>> len(disp.multiplier_lines_), len(disp.axes_)
    (3, 2)
    """

    def __init__(self, *, multiplier_history, constraint_history=None, class_labels=None):
        self.multiplier_history = multiplier_history
        self.constraint_history = constraint_history
        self.class_labels = class_labels

    def plot(self, ax=None, *, max_classes=10, constraint_kw=None, **kwargs):
        """Draw the display.

        Parameters
        ----------
        ax : array-like of matplotlib Axes, default=None
            Two axes (multipliers, constraints), or one when there is no constraint history; a
            new figure is created when ``None``.
        max_classes : int, default=10
            Above this many classes, the mean and maximum are drawn instead of every class.
        constraint_kw : dict, default=None
            Keywords of the constraint lines.
        **kwargs : dict
            Keywords of the multiplier lines.

        Returns
        -------
        display : CaCTTraceDisplay
        """
        mult = np.asarray(self.multiplier_history, dtype=float)
        if mult.ndim != 2:
            raise ValueError(
                f"multiplier_history must have shape (n_updates + 1, n_classes), got {mult.shape}."
            )
        n_classes = mult.shape[1]
        cons = None
        if self.constraint_history is not None:
            cons = np.asarray(self.constraint_history, dtype=float)
            if cons.ndim != 2 or cons.shape[1] != n_classes:
                raise ValueError(
                    f"constraint_history must have shape (n_updates, {n_classes}), "
                    f"got {cons.shape}."
                )
        labels = (np.arange(n_classes) if self.class_labels is None
                  else np.asarray(self.class_labels))
        if labels.shape[0] != n_classes:
            raise ValueError(f"class_labels must have {n_classes} entries, got {labels.shape[0]}.")
        axes, fig = _panel_axes(ax, 1 if cons is None else 2, f"{type(self).__name__}.plot")
        from matplotlib.ticker import MaxNLocator
        per_class = n_classes <= max_classes

        def draw(axis, steps, values, style):
            if per_class:
                curves = [(values[:, k], {"label": f"Class {labels[k]}"}) for k in range(n_classes)]
            else:
                curves = [
                    (values.mean(axis=1), {"label": "Mean over classes"}),
                    (values.max(axis=1), {"label": "Max over classes", "linestyle": "--"}),
                ]
            return [axis.plot(steps, v, **_style(default, style))[0] for v, default in curves]

        self.multiplier_lines_ = draw(axes[0], np.arange(mult.shape[0]), mult, kwargs)
        axes[0].set(xlabel="Update", ylabel="Multiplier", title="Class-wise multipliers")
        axes[0].xaxis.set_major_locator(MaxNLocator(integer=True))
        _legend(axes[0], loc="best", fontsize="small")
        self.constraint_lines_ = self.zero_line_ = None
        if cons is not None:
            self.constraint_lines_ = draw(axes[1], np.arange(1, cons.shape[0] + 1), cons,
                                          constraint_kw)
            self.zero_line_ = axes[1].axhline(0.0, color="black", linestyle=":", linewidth=1)
            axes[1].set(xlabel="Update", ylabel="Normalised constraint (feasible <= 0)",
                        title="Class-wise constraints")
            axes[1].xaxis.set_major_locator(MaxNLocator(integer=True))
            _legend(axes[1], loc="best", fontsize="small")
        self.axes_ = axes
        self.figure_ = fig
        return self

    @classmethod
    def from_estimator(cls, estimator, *, max_classes=10, ax=None, **kwargs):
        """Plot the traces of a fitted :class:`~sklearn_conformal.CaCTClassifier`.

        Parameters
        ----------
        estimator : fitted CaCTClassifier
            Fitted with a multiplier objective (``objective="cact"`` or ``"cals"``) and
            ``max_epochs > 0``, so that ``multiplier_history_`` is recorded.
        max_classes : int, default=10
        ax : array-like of matplotlib Axes, default=None
        **kwargs : dict
            Passed to :meth:`plot`.

        Returns
        -------
        display : CaCTTraceDisplay

        Raises
        ------
        ValueError
            If the estimator recorded no multiplier traces.
        """
        check_matplotlib_support(f"{cls.__name__}.from_estimator")
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(estimator)
        history = getattr(estimator, "multiplier_history_", None)
        if history is None:
            raise ValueError(
                f"{type(estimator).__name__} has no multiplier traces (multiplier_history_ is "
                f"missing or None, objective={getattr(estimator, 'objective', None)!r}); they "
                "are recorded by CaCTClassifier with objective='cact' or 'cals' and "
                "max_epochs > 0."
            )
        disp = cls(
            multiplier_history=history,
            constraint_history=getattr(estimator, "constraint_history_", None),
            class_labels=getattr(estimator, "classes_", None),
        )
        return disp.plot(ax=ax, max_classes=max_classes, **kwargs)

    @classmethod
    def from_predictions(cls, multiplier_history, constraint_history=None, *, class_labels=None,
                         max_classes=10, ax=None, **kwargs):
        """Plot given multiplier (and constraint) traces.

        Parameters
        ----------
        multiplier_history : array-like of shape (n_updates + 1, n_classes)
        constraint_history : array-like of shape (n_updates, n_classes), default=None
        class_labels : array-like of shape (n_classes,), default=None
        max_classes : int, default=10
        ax : array-like of matplotlib Axes, default=None
        **kwargs : dict
            Passed to :meth:`plot`.

        Returns
        -------
        display : CaCTTraceDisplay
        """
        check_matplotlib_support(f"{cls.__name__}.from_predictions")
        disp = cls(multiplier_history=multiplier_history, constraint_history=constraint_history,
                   class_labels=class_labels)
        return disp.plot(ax=ax, max_classes=max_classes, **kwargs)


class StagedLengthDisplay:
    """Mean interval length (and coverage) of CoCP after ``t = 0, ..., T`` alternations.

    It is recommended to use :meth:`from_estimator` or :meth:`from_predictions` to create a
    display. All parameters are stored as attributes.

    The mean length is drawn on the left axis; the coverage, when given, on a twin right axis
    with the target ``confidence_level`` as a dashed line.

    Parameters
    ----------
    mean_lengths : ndarray of shape (n_stages,)
        Mean interval length of each stage (stage ``t``: ``t`` alternations).
    coverages : ndarray of shape (n_stages,), default=None
        Empirical coverage of each stage.
    confidence_level : float, default=None
        Target coverage, drawn when ``coverages`` is given.

    Attributes
    ----------
    line_ : matplotlib Line2D
        Mean lengths against the stage.
    coverage_line_ : matplotlib Line2D or None
        Coverages against the stage (on ``coverage_ax_``).
    target_line_ : matplotlib Line2D or None
        Horizontal line at ``confidence_level`` (on ``coverage_ax_``).
    ax_ : matplotlib Axes
        Axes of the lengths.
    coverage_ax_ : matplotlib Axes or None
        Twin axes of the coverages.
    figure_ : matplotlib Figure

    Examples
    --------
    >>> from sklearn_conformal.plotting import StagedLengthDisplay
    >>> disp = StagedLengthDisplay(mean_lengths=[3.1, 2.6, 2.4], coverages=[0.91, 0.9, 0.9],
    ...                            confidence_level=0.9).plot()
    >>> disp.line_.get_xdata().tolist()
    [0, 1, 2]
    """

    def __init__(self, *, mean_lengths, coverages=None, confidence_level=None):
        self.mean_lengths = mean_lengths
        self.coverages = coverages
        self.confidence_level = confidence_level

    def plot(self, ax=None, *, coverage_kw=None, target_kw=None, **kwargs):
        """Draw the display.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes of the lengths (the coverage axis is its twin); a new figure is created when
            ``None``.
        coverage_kw : dict, default=None
            Keywords of the coverage line.
        target_kw : dict, default=None
            Keywords of the target line.
        **kwargs : dict
            Keywords of the length line.

        Returns
        -------
        display : StagedLengthDisplay
        """
        lengths = np.asarray(self.mean_lengths, dtype=float).ravel()
        stages = np.arange(lengths.shape[0])
        coverages = None
        if self.coverages is not None:
            coverages = np.asarray(self.coverages, dtype=float).ravel()
            if coverages.shape != lengths.shape:
                raise ValueError("coverages must have one value per stage, like mean_lengths.")
        ax, fig = _get_ax(ax, f"{type(self).__name__}.plot")
        (self.line_,) = ax.plot(
            stages, lengths,
            **_style({"color": "tab:blue", "marker": "o", "label": "Mean length"}, kwargs),
        )
        ax.set(xlabel="Alternations", ylabel="Mean interval length")
        ax.set_xticks(stages)
        handles = [self.line_]
        self.coverage_ax_ = self.coverage_line_ = self.target_line_ = None
        if coverages is not None:
            self.coverage_ax_ = ax.twinx()
            style = {"color": "tab:orange", "marker": "s", "label": "Coverage"}
            (self.coverage_line_,) = self.coverage_ax_.plot(
                stages, coverages, **_style(style, coverage_kw)
            )
            handles.append(self.coverage_line_)
            if self.confidence_level is not None:
                style = {"color": "tab:red", "linestyle": "--",
                         "label": f"Target {float(self.confidence_level):g}"}
                self.target_line_ = self.coverage_ax_.axhline(
                    float(self.confidence_level), **_style(style, target_kw)
                )
                handles.append(self.target_line_)
            self.coverage_ax_.set_ylabel("Coverage")
        ax.legend(handles=handles, loc="best")
        self.ax_ = ax
        self.figure_ = fig
        return self

    @classmethod
    def from_estimator(cls, estimator, X, y, *, confidence_level=None, ax=None, **kwargs):
        """Plot the stages of a fitted :class:`~sklearn_conformal.CoCPRegressor`.

        Uses ``estimator.staged_predict_interval(X)``: stage ``t`` is the model after ``t``
        alternations, calibrated on the same calibration set.

        Parameters
        ----------
        estimator : fitted CoCPRegressor
            Any estimator with ``staged_predict_interval(X, confidence_level)``.
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        confidence_level : float in (0, 1), default=None
            Level of the intervals (the estimator's when ``None``).
        ax : matplotlib Axes, default=None
        **kwargs : dict
            Passed to :meth:`plot`.

        Returns
        -------
        display : StagedLengthDisplay
        """
        check_matplotlib_support(f"{cls.__name__}.from_estimator")
        if not hasattr(estimator, "staged_predict_interval"):
            raise TypeError(
                "StagedLengthDisplay needs an estimator with staged_predict_interval "
                f"(CoCPRegressor); got {type(estimator).__name__}."
            )
        level = estimator.confidence_level if confidence_level is None else confidence_level
        staged = [np.asarray(s) for s in estimator.staged_predict_interval(X, confidence_level)]
        return cls.from_predictions(y, staged, confidence_level=level, ax=ax, **kwargs)

    @classmethod
    def from_predictions(cls, y_true, staged_intervals, *, confidence_level=None, ax=None,
                         **kwargs):
        """Plot the mean length and the coverage of given intervals per stage.

        Parameters
        ----------
        y_true : array-like of shape (n_samples,) or None
            Targets; ``None`` draws the lengths only.
        staged_intervals : sequence of array-like of shape (n_samples, 2)
            Intervals of each stage.
        confidence_level : float, default=None
            Target coverage line.
        ax : matplotlib Axes, default=None
        **kwargs : dict
            Passed to :meth:`plot`.

        Returns
        -------
        display : StagedLengthDisplay
        """
        check_matplotlib_support(f"{cls.__name__}.from_predictions")
        from ..metrics import coverage, mean_interval_length

        staged = [np.asarray(iv, dtype=float) for iv in staged_intervals]
        lengths = [mean_interval_length(iv) for iv in staged]
        coverages = None
        if y_true is not None:
            y_true = np.asarray(y_true, dtype=float)
            coverages = [coverage(y_true, iv) for iv in staged]
        disp = cls(mean_lengths=lengths, coverages=coverages, confidence_level=confidence_level)
        return disp.plot(ax=ax, **kwargs)
