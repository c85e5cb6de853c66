"""Displays of prediction sets: stratified coverage with binomial error bars, set-size histogram."""

import numpy as np

from ..metrics._checks import check_labels, hits
from ._utils import (
    _check_ci_level,
    _get_ax,
    _legend,
    _style,
    check_matplotlib_support,
    wilson_interval,
)

_BY = ("class", "group", "size")
_XLABELS = {"class": "Class", "group": "Group", "size": "Set size"}


def _is_classifier_with_sets(estimator):
    return hasattr(estimator, "classes_") and hasattr(estimator, "predict_set")


def _stratified_coverage(y_true, y_pred_set, by, groups, display_labels):
    """``(labels, coverages, counts)`` of the strata present in the data, in sorted order."""

    y_true = np.asarray(y_true)
    y_pred_set = np.asarray(y_pred_set)
    covered = hits(y_true, y_pred_set)
    is_sets = y_pred_set.dtype == bool
    if by == "auto":
        by = "group" if groups is not None else "class"
    if by not in _BY:
        raise ValueError(f"by must be one of {_BY + ('auto',)}, got {by!r}.")
    if by == "group":
        if groups is None:
            raise ValueError("by='group' needs groups= (one group label per sample).")
        keys = np.asarray(groups)
        if keys.shape[0] != y_true.shape[0]:
            raise ValueError(f"groups must have {y_true.shape[0]} values, got {keys.shape[0]}.")
    elif not is_sets:
        raise ValueError(
            f"by={by!r} needs prediction sets (boolean arrays of shape (n_samples, n_classes)); "
            "for intervals, pass groups= to stratify the coverage by group."
        )
    elif by == "class":
        keys = y_true
    else:
        keys = y_pred_set.sum(axis=1)
    strata, inverse = np.unique(keys, return_inverse=True)
    inverse = inverse.ravel()
    counts = np.bincount(inverse, minlength=strata.shape[0])
    coverages = np.bincount(inverse, weights=covered.astype(float), minlength=strata.shape[0]) / counts
    labels = strata
    if by == "class" and display_labels is not None:
        labels = np.asarray(display_labels)[strata]
    return by, labels, coverages, counts


class CoverageDisplay:
    """Empirical coverage per class, per group or per set size, with binomial error bars.

    It is recommended to use :meth:`from_estimator` or :meth:`from_predictions` to create a
    display. All parameters are stored as attributes.

    Each stratum is a bar of height its empirical coverage; the error bars are Wilson score
    intervals of a binomial proportion at ``ci_level`` (95 % by default). Wilson's interval is
    used rather than the normal approximation because coverages sit near 1, where the normal
    interval has zero width (at coverage 1) or leaves ``[0, 1]``. The target
    ``confidence_level`` is drawn as a horizontal line.

    Parameters
    ----------
    labels : ndarray of shape (n_strata,)
        Name of each stratum (class label, group label or set size).
    coverages : ndarray of shape (n_strata,)
        Empirical coverage of each stratum.
    counts : ndarray of shape (n_strata,)
        Number of samples of each stratum.
    confidence_level : float, default=None
        Target coverage, drawn as a horizontal line when given.
    by : {"class", "group", "size"}, default="class"
        What the strata are (sets the axis label).
    ci_level : float in (0, 1) or None, default=0.95
        Level of the Wilson error bars; ``None`` draws none.

    Attributes
    ----------
    bars_ : matplotlib BarContainer
        One bar per stratum.
    errorbar_ : matplotlib ErrorbarContainer or None
        The Wilson intervals.
    ci_lower_, ci_upper_ : ndarray of shape (n_strata,) or None
        Bounds of the Wilson intervals.
    target_line_ : matplotlib Line2D or None
        Horizontal line at ``confidence_level``.
    ax_ : matplotlib Axes
    figure_ : matplotlib Figure

    See Also
    --------
    sklearn_conformal.metrics.class_coverages : coverage per class.
    sklearn_conformal.metrics.size_stratified_coverage : coverage per set size.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn_conformal import SplitConformalClassifier
    >>> from sklearn_conformal.plotting import CoverageDisplay
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = SplitConformalClassifier(LogisticRegression(max_iter=500), random_state=0).fit(X, y)
    >>> disp = CoverageDisplay.from_estimator(clf, X, y, by="class")
    >>> len(disp.bars_)
    3
    """

    def __init__(self, *, labels, coverages, counts, confidence_level=None, by="class",
                 ci_level=0.95):
        self.labels = labels
        self.coverages = coverages
        self.counts = counts
        self.confidence_level = confidence_level
        self.by = by
        self.ci_level = ci_level

    def plot(self, ax=None, *, errorbar_kw=None, target_kw=None, **kwargs):
        """Draw the display.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure is created when ``None``.
        errorbar_kw : dict, default=None
            Keywords of the error bars (``Axes.errorbar``).
        target_kw : dict, default=None
            Keywords of the target line (``Axes.axhline``).
        **kwargs : dict
            Keywords of the bars (``Axes.bar``).

        Returns
        -------
        display : CoverageDisplay
        """
        coverages = np.asarray(self.coverages, dtype=float)
        counts = np.asarray(self.counts)
        labels = np.asarray(self.labels)
        if not coverages.shape == counts.shape == labels.shape:
            raise ValueError("labels, coverages and counts must have the same length.")
        ci_level = _check_ci_level(self.ci_level)
        ax, fig = _get_ax(ax, f"{type(self).__name__}.plot")
        pos = np.arange(coverages.shape[0])
        self.bars_ = ax.bar(pos, coverages, **_style({"color": "tab:blue", "alpha": 0.8}, kwargs))
        self.errorbar_ = self.ci_lower_ = self.ci_upper_ = None
        if ci_level is not None and coverages.shape[0]:
            self.ci_lower_, self.ci_upper_ = wilson_interval(coverages, counts, ci_level)
            yerr = np.vstack([coverages - self.ci_lower_, self.ci_upper_ - coverages])
            style = _style(
                {"fmt": "none", "ecolor": "black", "capsize": 3,
                 "label": f"{100 * ci_level:g}% Wilson interval"},
                errorbar_kw,
            )
            self.errorbar_ = ax.errorbar(pos, coverages, yerr=yerr, **style)
        self.target_line_ = None
        if self.confidence_level is not None:
            style = {"color": "tab:red", "linestyle": "--",
                     "label": f"Target {float(self.confidence_level):g}"}
            self.target_line_ = ax.axhline(
                float(self.confidence_level), **_style(style, target_kw)
            )
        ax.set_xticks(pos)
        ax.set_xticklabels([str(label) for label in labels])
        ax.set(xlabel=_XLABELS.get(self.by, str(self.by)), ylabel="Coverage", ylim=(0.0, 1.05))
        _legend(ax, loc="lower right")
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
        by="auto",
        groups=None,
        confidence_level=None,
        ci_level=0.95,
        ax=None,
        **kwargs,
    ):
        """Plot the stratified coverage of a fitted conformal classifier or regressor.

        Classifiers are evaluated through ``predict_set`` (labels mapped to columns via
        ``classes_``), regressors through ``predict_interval``.

        Parameters
        ----------
        estimator : fitted conformal classifier or regressor
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Labels (classifiers) or targets (regressors).
        by : {"auto", "class", "group", "size"}, default="auto"
            Strata: the true class, ``groups``, or the size of the prediction set (classifiers
            only for "class" and "size"). ``"auto"`` means "group" when ``groups`` is given,
            else "class".
        groups : array-like of shape (n_samples,), default=None
            Group label of each sample.
        confidence_level : float in (0, 1), default=None
            Level of the sets and of the target line (the estimator's when ``None``).
        ci_level : float in (0, 1) or None, default=0.95
            Level of the Wilson error bars.
        ax : matplotlib Axes, default=None
        **kwargs : dict
            Passed to :meth:`plot`.

        Returns
        -------
        display : CoverageDisplay
        """
        check_matplotlib_support(f"{cls.__name__}.from_estimator")
        level = estimator.confidence_level if confidence_level is None else confidence_level
        display_labels = None
        if _is_classifier_with_sets(estimator):
            y_pred_set = np.asarray(estimator.predict_set(X, confidence_level))
            classes = np.asarray(estimator.classes_)
            # column indices of the labels (unseen labels are named), as the set metrics do
            y_true = check_labels(y, len(y), len(classes), name="y", classes=classes)
            display_labels = estimator.classes_
        else:
            y_pred_set = np.asarray(estimator.predict_interval(X, confidence_level))
            y_true = np.asarray(y, dtype=float)
        by, labels, coverages, counts = _stratified_coverage(
            y_true, y_pred_set, by, groups, display_labels
        )
        disp = cls(labels=labels, coverages=coverages, counts=counts, confidence_level=level,
                   by=by, ci_level=ci_level)
        return disp.plot(ax=ax, **kwargs)

    @classmethod
    def from_predictions(
        cls,
        y_true,
        y_pred_set,
        *,
        by="auto",
        groups=None,
        display_labels=None,
        confidence_level=None,
        ci_level=0.95,
        ax=None,
        **kwargs,
    ):
        """Plot the stratified coverage of given prediction sets or intervals.

        Parameters
        ----------
        y_true : array-like of shape (n_samples,)
            Column indices into the sets (e.g. ``np.searchsorted(classes_, y)``) or targets
            (intervals).
        y_pred_set : array-like of shape (n_samples, n_classes) of bool, or (n_samples, 2)
            Prediction sets or ``[lower, upper]`` intervals.
        by : {"auto", "class", "group", "size"}, default="auto"
            See :meth:`from_estimator`.
        groups : array-like of shape (n_samples,), default=None
        display_labels : array-like of shape (n_classes,), default=None
            Class names shown for ``by="class"`` (column indices when ``None``).
        confidence_level : float in (0, 1), default=None
            Target drawn as a horizontal line.
        ci_level : float in (0, 1) or None, default=0.95
        ax : matplotlib Axes, default=None
        **kwargs : dict
            Passed to :meth:`plot`.

        Returns
        -------
        display : CoverageDisplay
        """
        check_matplotlib_support(f"{cls.__name__}.from_predictions")
        by, labels, coverages, counts = _stratified_coverage(
            y_true, y_pred_set, by, groups, display_labels
        )
        disp = cls(labels=labels, coverages=coverages, counts=counts,
                   confidence_level=confidence_level, by=by, ci_level=ci_level)
        return disp.plot(ax=ax, **kwargs)


class SetSizeDisplay:
    """Histogram of prediction-set sizes: one bar per size ``0, ..., n_classes``.

    It is recommended to use :meth:`from_estimator` or :meth:`from_predictions` to create a
    display. All parameters are stored as attributes.

    Parameters
    ----------
    set_sizes : ndarray of shape (n_samples,)
        Number of labels in each prediction set.
    n_classes : int
        Number of classes (the largest possible size).

    Attributes
    ----------
    bars_ : matplotlib BarContainer
        ``n_classes + 1`` bars, the size-``k`` bar at ``x = k``.
    counts_ : ndarray of shape (n_classes + 1,)
        Bar heights: counts, or fractions with ``normalize=True``.
    mean_size_ : float
        Mean set size (shown in the legend).
    ax_ : matplotlib Axes
    figure_ : matplotlib Figure

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn_conformal import SplitConformalClassifier
    >>> from sklearn_conformal.plotting import SetSizeDisplay
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = SplitConformalClassifier(LogisticRegression(max_iter=500), random_state=0).fit(X, y)
    >>> disp = SetSizeDisplay.from_estimator(clf, X, normalize=True)
    >>> len(disp.bars_), round(float(disp.counts_.sum()), 6)
    (4, 1.0)
    """

    def __init__(self, *, set_sizes, n_classes):
        self.set_sizes = set_sizes
        self.n_classes = n_classes

    def plot(self, ax=None, *, normalize=False, **kwargs):
        """Draw the display.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure is created when ``None``.
        normalize : bool, default=False
            Fractions of the samples instead of counts.
        **kwargs : dict
            Keywords of the bars (``Axes.bar``).

        Returns
        -------
        display : SetSizeDisplay
        """
        sizes = np.asarray(self.set_sizes).ravel()
        if sizes.size and (sizes.min() < 0 or sizes.max() > self.n_classes):
            raise ValueError(f"set sizes must lie in [0, n_classes={self.n_classes}].")
        ax, fig = _get_ax(ax, f"{type(self).__name__}.plot")
        counts = np.bincount(sizes.astype(int), minlength=self.n_classes + 1).astype(float)
        if normalize and sizes.size:
            counts = counts / sizes.size
        self.counts_ = counts
        self.mean_size_ = float(sizes.mean()) if sizes.size else float("nan")
        pos = np.arange(self.n_classes + 1)
        style = {"color": "tab:blue", "alpha": 0.8, "label": f"Mean size {self.mean_size_:.2f}"}
        self.bars_ = ax.bar(pos, counts, **_style(style, kwargs))
        ax.set_xticks(pos)
        ax.set(xlabel="Set size", ylabel="Fraction of samples" if normalize else "Count")
        _legend(ax, loc="best")
        self.ax_ = ax
        self.figure_ = fig
        return self

    @classmethod
    def from_estimator(cls, estimator, X, *, confidence_level=None, normalize=False, ax=None,
                       **kwargs):
        """Plot the set sizes of a fitted conformal classifier.

        Parameters
        ----------
        estimator : fitted conformal classifier
            Must have ``predict_set`` and ``classes_``.
        X : array-like of shape (n_samples, n_features)
        confidence_level : float in (0, 1), default=None
            Level of the sets (the estimator's when ``None``).
        normalize : bool, default=False
        ax : matplotlib Axes, default=None
        **kwargs : dict
            Passed to :meth:`plot`.

        Returns
        -------
        display : SetSizeDisplay
        """
        check_matplotlib_support(f"{cls.__name__}.from_estimator")
        if not _is_classifier_with_sets(estimator):
            raise TypeError(
                "SetSizeDisplay needs a fitted conformal classifier (predict_set and classes_); "
                f"got {type(estimator).__name__}."
            )
        sets = np.asarray(estimator.predict_set(X, confidence_level))
        return cls.from_predictions(sets, normalize=normalize, ax=ax, **kwargs)

    @classmethod
    def from_predictions(cls, y_pred_set, *, normalize=False, ax=None, **kwargs):
        """Plot the sizes of given prediction sets.

        Parameters
        ----------
        y_pred_set : array-like of shape (n_samples, n_classes) of bool
        normalize : bool, default=False
        ax : matplotlib Axes, default=None
        **kwargs : dict
            Passed to :meth:`plot`.

        Returns
        -------
        display : SetSizeDisplay
        """
        check_matplotlib_support(f"{cls.__name__}.from_predictions")
        y_pred_set = np.asarray(y_pred_set, dtype=bool)
        if y_pred_set.ndim != 2:
            raise ValueError(
                f"y_pred_set must have shape (n_samples, n_classes), got {y_pred_set.shape}."
            )
        disp = cls(set_sizes=y_pred_set.sum(axis=1), n_classes=y_pred_set.shape[1])
        return disp.plot(ax=ax, normalize=normalize, **kwargs)
