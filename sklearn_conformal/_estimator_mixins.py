"""Methods every conformal classifier / regressor shares, given its calibrated state."""

import numpy as np
from sklearn.utils import check_consistent_length, column_or_1d

from ._core import check_confidence_level
from ._core._row_keys import row_keys
from ._estimator_utils import model_allows_nan, tags_or_none
from ._output import ConformalOutputMixin, per_level


def _label_types(labels):
    """Names of the Python types found among ``labels`` (at most ten)."""
    return sorted({type(label).__name__ for label in np.asarray(labels, dtype=object).ravel()})[:10]


def check_label_types(y):
    """Raise a clear error for labels that cannot be sorted into ``classes_``.

    Object labels must all be strings (as scikit-learn requires); numbers mixed with strings, or
    arbitrary objects, cannot be ordered, and NumPy's own error ("'<' not supported ...") names
    neither ``y`` nor the remedy.

    Parameters
    ----------
    y : ndarray
        Target labels.
    """
    y = np.asarray(y)
    if y.dtype != object or all(isinstance(label, str) for label in y.ravel()):
        return
    raise ValueError(
        f"Unknown label type: y has dtype object with labels of types {_label_types(y)}; object "
        "class labels must all be strings (numbers mixed with strings, or other objects, cannot "
        "be ordered into classes_). Convert y to one type, e.g. y = np.asarray(y).astype(str) "
        "(or .astype(int) for numbers), or encode it with sklearn.preprocessing.LabelEncoder."
    )


def check_same_label_kind(model_classes, y):
    """Raise if a pre-trained model's ``classes_`` and ``y`` are not both numbers or both strings.

    NumPy would otherwise turn the numbers into strings (``2`` into ``"2"``) when it joins
    them, and attach the model's probabilities to labels it never predicts.
    """
    model_numeric = np.asarray(model_classes).dtype.kind in "biuf"
    y_numeric = np.asarray(y).dtype.kind in "biuf"
    if model_numeric != y_numeric:
        raise ValueError(
            f"The model's classes_ ({np.asarray(model_classes)[:5].tolist()}, dtype "
            f"{np.asarray(model_classes).dtype}) and the labels of y (dtype {np.asarray(y).dtype}) "
            "are not both numbers or both strings; pass y with the label type of classes_."
        )


def sorted_labels(labels):
    """The distinct ``labels`` in sorted order (``classes_``), or a clear error if unsortable.

    A frozen model's ``classes_`` and the labels of ``y`` may have types that cannot be compared
    (numbers and strings): the error then names both and the remedy.
    """
    labels = np.asarray(labels)
    try:
        return np.unique(labels)
    except TypeError as exc:
        raise ValueError(
            f"The labels of y and the model's classes_ have types {_label_types(labels)} that "
            "cannot be sorted together; pass y with the same label type as the model's classes_."
        ) from exc


class ConformalClassifierMixin(ConformalOutputMixin):
    """``predict``, ``predict_set`` and ``score`` from ``predict_proba`` and ``conformalizer_``.

    The class using it defines ``predict_proba(X)`` (which checks fitting and validates ``X``),
    ``classes_`` and ``conformalizer_`` (a fitted ``ClassificationConformalizer``).
    """

    def predict(self, X):
        """Most probable label (the point prediction).

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

    def predict_set(self, X, confidence_level=None, groups=None):
        """Conformal prediction sets.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        confidence_level : float in (0, 1) or sequence of such floats, default=None
            Overrides the fitted level without refitting. A sequence (list, tuple, 1-d array)
            gives the sets at each of its levels, stacked on a last axis.
        groups : array-like of shape (n_samples,), default=None
            The rows' groups, for a ``MondrianCalibrator(groups=None)`` calibrated on
            ``groups=`` metadata.

        Returns
        -------
        sets : ndarray of bool, shape (n_samples, n_classes) or (n_samples, n_classes, n_levels)
            ``sets[i, k]`` is True when ``classes_[k]`` is in the set of sample ``i``
            (``sets[:, :, j]`` is the set at ``confidence_level[j]``, equal to the call with
            that level alone). A row's set depends on its content only, not on its position or
            on the other rows of ``X``. After ``set_output(predict="pandas")``, a boolean
            DataFrame with one column per class (MultiIndex ``(confidence_level, class)``
            columns for several levels) and the index of ``X``.
        """
        proba = self.predict_proba(X)
        # randomized APS/RAPS key each row's uniform by the row as the user passed it
        keys = row_keys(X) if self.conformalizer_.uses_test_uniforms else None
        return per_level(
            self,
            X,
            confidence_level,
            lambda level: self.conformalizer_.predict_set(
                proba, level, keys=keys, X=X, groups=groups
            ),
            "set",
        )

    def score(self, X, y, sample_weight=None):
        """Efficiency under coverage: ``-mean set size - n_classes * shortfall / alpha``.

        The shortfall is how far empirical coverage falls below ``confidence_level``; higher
        is better, so ``GridSearchCV`` prefers small sets that still cover.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        score : float
        """
        from .metrics import coverage, mean_set_size

        sets = np.asarray(self.predict_set(X))
        y_idx = self._encode(y)
        check_consistent_length(sets, y_idx)
        level = check_confidence_level(self.confidence_level)
        cov = coverage(y_idx, sets, sample_weight=sample_weight)
        size = mean_set_size(sets, sample_weight=sample_weight)
        shortfall = max(0.0, level - cov)
        return -size - len(self.classes_) * shortfall / (1.0 - level)

    def _encode(self, y):
        """Column index of each label in ``classes_``; unseen labels raise ``ValueError``.

        ``y`` is validated as scikit-learn does: a column vector is ravelled with a
        ``DataConversionWarning``, other 2-d shapes raise.
        """
        y = column_or_1d(y, warn=True)
        try:
            positions = np.minimum(np.searchsorted(self.classes_, y), len(self.classes_) - 1)
            unseen = self.classes_[positions] != y
        except TypeError as exc:  # e.g. strings against numeric classes_
            raise ValueError(
                f"y holds labels of types {_label_types(y)} that cannot be compared with "
                f"classes_ (types {_label_types(self.classes_)}); pass labels of the type "
                "seen during fit."
            ) from exc
        if np.any(unseen):
            raise ValueError(
                f"y contains labels not seen during fit: {np.unique(y[unseen])[:10].tolist()}; "
                f"known classes are {self.classes_[:10].tolist()}."
            )
        return positions


class ConformalRegressorMixin(ConformalOutputMixin):
    """``predict_set`` and ``score`` from ``predict_interval``.

    The class using it computes ``predict_interval`` at each requested level with
    :func:`sklearn_conformal._output.per_level`, which gives several levels in one call and the
    container chosen with ``set_output``.
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # score() is minus the interval (Winkler) score, not R^2: scikit-learn's "score above
        # 0.5" expectation (check_regressors_train) does not apply to it
        tags.regressor_tags.poor_score = True
        return tags

    def predict_set(self, X, confidence_level=None, **predict_params):
        """Same as ``predict_interval``: the prediction set of a regressor is an interval.

        ``predict_params`` (e.g. ``groups=`` for Mondrian calibration on metadata) go to
        ``predict_interval``.

        Returns
        -------
        intervals : ndarray of shape (n_samples, 2) or (n_samples, 2, n_levels), or DataFrame
        """
        return self.predict_interval(X, confidence_level, **predict_params)

    def score(self, X, y, sample_weight=None):
        """Minus the mean interval (Winkler) score at ``confidence_level``: higher is better.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            A column vector ``(n_samples, 1)`` is flattened with a ``DataConversionWarning``,
            as scikit-learn's estimators do.
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the per-sample interval scores (finite, non-negative, positive sum).

        Returns
        -------
        score : float
        """
        from sklearn.utils.validation import check_consistent_length, column_or_1d

        from .metrics import interval_score

        y = column_or_1d(y, warn=True)
        intervals = np.asarray(self.predict_interval(X))
        check_consistent_length(intervals, y)
        return -interval_score(y, intervals, self.confidence_level, sample_weight=sample_weight)


class WrappedClassifierMixin:
    """What a conformal classifier wrapping one ``estimator`` takes from it.

    The model (``None`` means ``LogisticRegression()``), its input tags (``sparse``,
    ``allow_nan``, never raising) and the routing of ``fit`` metadata to its ``fit``.
    """

    def _inner_model(self):
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression() if self.estimator is None else self.estimator

    def _model_router(self):
        """``fit`` metadata to ``estimator.fit`` (the caller adds any splitter)."""
        from sklearn.utils.metadata_routing import MetadataRouter, MethodMapping

        return MetadataRouter(owner=self).add_self_request(self).add(
            estimator=self._inner_model(),
            method_mapping=MethodMapping().add(caller="fit", callee="fit"),
        )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        inner = self._inner_model()
        inner_tags = tags_or_none(inner)
        if inner_tags is not None:
            tags.input_tags.sparse = inner_tags.input_tags.sparse
        tags.input_tags.allow_nan = model_allows_nan(inner)
        return tags
