"""The built-in calibrators: marginal, class-conditional, cluster-conditional and Mondrian.

Every threshold is the score's exact finite-sample threshold of the scores it conditions on; a
group too small for the level gets ``+inf`` (the trivial set or interval), never a smaller
threshold.
"""

import numbers
import warnings

import numpy as np
from sklearn.utils import _safe_indexing

from .._core._calibrators import ClusterAssignment, group_thresholds
from .._core._quantile import min_calibration_size
from .._core._validation import warn_small_calibration
from ..exceptions import SmallCalibrationWarning, UnseenGroupWarning
from ._base import BaseCalibrator


def _one_part(data, calibrator):
    if np.ndim(data.scores) != 1:
        raise ValueError(
            f"{type(calibrator).__name__} calibrates one-part scores; this score has "
            f"{np.shape(data.scores)[1]} parts. Use MarginalCalibrator or MondrianCalibrator."
        )


def _classification_only(data, calibrator, remedy):
    if not data.is_classification:
        raise ValueError(f"{type(calibrator).__name__} conditions on class labels; {remedy}")


class MarginalCalibrator(BaseCalibrator):
    """One threshold for every test point: split conformal, marginal coverage."""

    def fit(self, data):
        self.data_ = data
        self.thresholds_ = self.thresholds(None, data.confidence_level)
        return self

    def thresholds(self, X, confidence_level, groups=None):
        data = self.data_
        threshold = np.asarray(data.threshold(data.scores, confidence_level), dtype=float)
        if np.isinf(threshold).any():
            warn_small_calibration(len(data.scores), confidence_level)
        if data.is_classification:
            return np.full(data.n_labels, float(threshold))
        return threshold if threshold.ndim else float(threshold)


class ClassConditionalCalibrator(BaseCalibrator):
    """One threshold per label from that label's scores (LabelCP; Vovk 2012).

    Coverage holds within every class, at the price of larger sets for rare classes.
    """

    def fit(self, data):
        _classification_only(data, self, "for regression use MondrianCalibrator(groups=...).")
        _one_part(data, self)
        self.data_ = data
        self.thresholds_ = self.thresholds(None, data.confidence_level)
        return self

    def thresholds(self, X, confidence_level, groups=None):
        data = self.data_
        thresholds = class_thresholds_of(data, confidence_level)
        if np.isinf(thresholds).any():
            counts = np.bincount(data.labels, minlength=data.n_labels)
            short = np.flatnonzero(np.isinf(thresholds))
            warn_small_calibration(
                int(counts[short].min()),
                confidence_level,
                where=f"the smallest of {short.size} under-filled class(es) (indices "
                f"{short[:10].tolist()})",
            )
        return thresholds


def class_thresholds_of(data, confidence_level):
    """The conformal quantile of each class's own scores (``+inf`` for too few)."""
    return group_thresholds(data.scores, data.labels, data.n_labels, confidence_level)


class ClusterCalibrator(BaseCalibrator):
    """Labels with similar score distributions share a threshold (ClusterCP; Ding et al. 2023).

    Rare labels form a null cluster calibrated marginally. Part of the calibration rows
    (``clustering_fraction``) clusters the labels and is not used for thresholds.

    Parameters
    ----------
    n_clusters : int >= 1 or "auto", default="auto"
    clustering_fraction : float in (0, 1) or "auto", default="auto"
    """

    def __init__(self, n_clusters="auto", clustering_fraction="auto"):
        self.n_clusters = n_clusters
        self.clustering_fraction = clustering_fraction

    def fit(self, data):
        _classification_only(data, self, "for regression use MondrianCalibrator(groups=...).")
        _one_part(data, self)
        self.data_ = data
        self.clusters_ = ClusterAssignment(
            self.n_clusters, self.clustering_fraction, random_state=data.random_state
        ).fit(data.scores, data.labels, data.n_labels, data.confidence_level)
        self.thresholds_ = self.thresholds(None, data.confidence_level)
        return self

    def thresholds(self, X, confidence_level, groups=None):
        data, clusters = self.data_, self.clusters_
        thresholds = clusters.thresholds(data.scores, data.labels, confidence_level)
        if np.isinf(thresholds).any():
            warn_small_calibration(
                int(clusters.calibration_mask_.sum()),
                confidence_level,
                where="a cluster of the cluster-conditional calibration",
            )
        return thresholds


class MondrianCalibrator(BaseCalibrator):
    """One threshold per group of rows: coverage holds within every group (Vovk et al. 2005).

    Parameters
    ----------
    groups : str, int, callable or None, default=None
        How a row's group is found: a column name (DataFrame ``X``) or position; a callable
        ``groups(X)`` returning one label per row; or None to take the ``groups=`` metadata
        passed to ``fit`` and to the prediction method (``predict_set(X, groups=...)``).

    Attributes
    ----------
    groups_ : ndarray
        The distinct groups seen in calibration, in sorted order.
    thresholds_ : ndarray of shape (n_groups,) (plus a trailing axis of parts)
        Threshold of each group at the fit's confidence level; ``+inf`` for a group with too
        few calibration rows.
    counts_ : ndarray of shape (n_groups,)
        Calibration rows per group.

    Test rows of a group absent from calibration get ``+inf`` (every label, an unbounded
    interval) with an :class:`~sklearn_conformal.exceptions.UnseenGroupWarning` naming it.
    """

    def __init__(self, groups=None):
        self.groups = groups

    @property
    def uses_groups_metadata(self):
        """Whether groups come from the ``groups=`` metadata of fit and prediction."""
        return self.groups is None

    def _row_groups(self, X, groups, n_rows, when):
        spec = self.groups
        if spec is None:
            if groups is None:
                raise ValueError(
                    f"MondrianCalibrator(groups=None) takes each row's group from the groups= "
                    f"metadata, but none was passed to {when}. Pass groups=... there, or set "
                    "MondrianCalibrator(groups=<column name, column index or callable of X>)."
                )
            values = np.asarray(groups)
        elif callable(spec):
            values = np.asarray(spec(X))
        elif isinstance(spec, (str, numbers.Integral)) and not isinstance(spec, bool):
            if isinstance(spec, str) and not hasattr(X, "columns"):
                raise ValueError(
                    f"MondrianCalibrator(groups={spec!r}) names a column, but X has no column "
                    "names; pass a DataFrame or give the column's position."
                )
            values = np.asarray(_safe_indexing(X, spec, axis=1))
        else:
            raise ValueError(
                "MondrianCalibrator groups must be a column name or index, a callable of X, or "
                f"None (groups= metadata); got {spec!r}."
            )
        values = values.reshape(-1) if values.ndim > 1 and values.size == n_rows else values
        if values.shape != (n_rows,):
            raise ValueError(
                f"MondrianCalibrator: the groups of {when} must hold one label per row "
                f"({n_rows}); got shape {values.shape}."
            )
        if values.dtype.kind == "f" and np.isnan(values).any():
            raise ValueError(
                "MondrianCalibrator: the groups contain NaN; give every row a group (e.g. a "
                "separate label for missing values)."
            )
        return values

    def fit(self, data):
        n = len(data.scores)
        row_groups = self._row_groups(data.X, data.groups, n, "fit")
        self.groups_, group_index, self.counts_ = np.unique(
            row_groups, return_inverse=True, return_counts=True
        )
        self.data_ = data
        self._group_index = group_index
        self.thresholds_ = self._group_thresholds(data.confidence_level)
        return self

    def _group_thresholds(self, confidence_level):
        data = self.data_
        order = np.argsort(self._group_index, kind="stable")
        bounds = np.concatenate([[0], np.cumsum(self.counts_)])
        per_group = [
            np.asarray(
                data.threshold(data.scores[order[bounds[g] : bounds[g + 1]]], confidence_level),
                dtype=float,
            )
            for g in range(len(self.groups_))
        ]
        thresholds = np.stack(per_group)
        short = np.flatnonzero(np.isinf(thresholds).reshape(len(self.groups_), -1).any(axis=1))
        if short.size:
            warnings.warn(
                f"{short.size} group(s) have too few calibration rows for confidence_level="
                f"{confidence_level:g} (at least {min_calibration_size(confidence_level)} "
                f"needed; e.g. group {self.groups_[short[0]]!r} has {self.counts_[short[0]]}); "
                "their threshold is +inf (every label / unbounded intervals), which keeps the "
                "guarantee. Use more calibration data or coarser groups.",
                SmallCalibrationWarning,
                stacklevel=4,
            )
        return thresholds

    def thresholds(self, X, confidence_level, groups=None):
        if X is None and groups is None:
            raise ValueError("MondrianCalibrator thresholds depend on the rows; pass X.")
        n_rows = len(groups) if X is None else _num_rows(X)
        row_groups = self._row_groups(X, groups, n_rows, "the prediction")
        per_group = (
            self.thresholds_
            if confidence_level == self.data_.confidence_level
            else self._group_thresholds(confidence_level)
        )
        try:
            position = np.searchsorted(self.groups_, row_groups)
        except TypeError as exc:
            raise ValueError(
                f"The test groups ({row_groups.dtype}) cannot be compared with the calibration "
                f"groups ({self.groups_.dtype}); pass groups of the same type."
            ) from exc
        position = np.minimum(position, len(self.groups_) - 1)
        seen = self.groups_[position] == row_groups
        out = per_group[position]
        if not seen.all():
            unseen = np.unique(row_groups[~seen])
            warnings.warn(
                f"{unseen.size} group(s) of the test rows never appeared in calibration "
                f"(e.g. {unseen[:5].tolist()}); their rows get threshold +inf (every label / "
                "unbounded intervals). Calibrate with data from every group.",
                UnseenGroupWarning,
                stacklevel=4,
            )
            out = out.copy()
            out[~seen] = np.inf
        if self.data_.is_classification:
            return out[:, np.newaxis]
        return out


def _num_rows(X):
    return X.shape[0] if hasattr(X, "shape") else len(X)


CALIBRATORS = {
    "marginal": MarginalCalibrator,
    "class": ClassConditionalCalibrator,
    "cluster": ClusterCalibrator,
}
