"""Numeric pieces of the built-in calibrators (:mod:`sklearn_conformal.calibrators`).

* per-group conformal quantiles (class-conditional calibration: groups are labels);
* Ding et al. (2023)'s clustering of labels by their score quantiles (ClusterCP), with rare
  labels in a null cluster calibrated marginally.

Every threshold is the exact finite-sample quantile of :func:`conformal_quantile`; a group whose
size is too small for the level gets ``+inf`` (the trivial set), never a smaller threshold.
"""

import numbers
import warnings

import numpy as np
from sklearn.cluster import KMeans
from sklearn.utils import check_random_state

from ..exceptions import ClusteringFallbackWarning
from ._quantile import conformal_quantile, min_calibration_size

MODES = ("marginal", "class", "cluster")

# score quantiles that embed a label for clustering (Ding et al.)
_EMBEDDING_LEVELS = (0.5, 0.6, 0.7, 0.8, 0.9)


def _warn_fallback(reason):
    warnings.warn(
        f'mode="cluster" could not cluster the classes: {reason}. Every class is calibrated '
        'marginally (as mode="marginal"), so rare classes may be covered far below '
        'confidence_level. Remedies: more calibration data, explicit n_clusters= / '
        'clustering_fraction=, or mode="class" for per-class coverage.',
        ClusteringFallbackWarning,
        stacklevel=4,
    )


def group_thresholds(scores, groups, n_groups, confidence_level):
    """The conformal quantile of the scores of each group ``0 .. n_groups - 1``."""
    thresholds = np.full(n_groups, np.inf)
    order = np.argsort(groups, kind="stable")
    bounds = np.searchsorted(groups[order], np.arange(n_groups + 1))
    for g in range(n_groups):
        thresholds[g] = conformal_quantile(scores[order[bounds[g] : bounds[g + 1]]], confidence_level)
    return thresholds


class ClusterAssignment:
    """Ding et al.'s clustering of labels by the quantiles of their scores.

    Parameters
    ----------
    n_clusters : int or "auto"
        Number of clusters; "auto" uses Ding et al.'s rule from the class counts. At most one
        cluster per class with enough clustering points: a larger value makes each such class
        its own cluster (with a warning when the value was explicit).
    clustering_fraction : float or "auto"
        Fraction of calibration points spent on clustering (the rest calibrates).
    random_state : int, Generator, RandomState or None
        Drives the clustering/calibration split and k-means.
    """

    def __init__(self, n_clusters="auto", clustering_fraction="auto", random_state=None):
        self.n_clusters = n_clusters
        self.clustering_fraction = clustering_fraction
        self.random_state = random_state

    def fit(self, scores, y_idx, n_classes, confidence_level):
        """Cluster labels; set ``cluster_of_class_`` (−1 is the null cluster) and the split.

        When no clustering is possible (Ding et al.'s rule gives at most one cluster, or no class
        has enough clustering points) every label is calibrated marginally and a
        :class:`~sklearn_conformal.exceptions.ClusteringFallbackWarning` says why.

        Returns
        -------
        self
        """
        self._check_parameters()
        rng = check_random_state(self.random_state)
        counts = np.bincount(y_idx, minlength=n_classes)
        n_thresh = min_calibration_size(confidence_level)
        n_clusters, fraction = self._resolve(counts, n_thresh)
        cluster_of_class = np.full(n_classes, -1, dtype=np.int64)
        if self.n_clusters == "auto" and n_clusters <= 1:
            # one cluster of every frequent class is no clustering at all: spend no points on
            # it, calibrate all labels marginally
            _warn_fallback(
                f"Ding et al.'s rule gives {n_clusters} cluster(s) because the rarest class has "
                f"only {int(counts.min())} calibration points"
            )
            self.calibration_mask_ = np.ones(len(scores), dtype=bool)
            return self._set_clusters(cluster_of_class)
        in_clustering = rng.random_sample(len(scores)) < fraction
        self.calibration_mask_ = ~in_clustering

        clustering_counts = np.bincount(y_idx[in_clustering], minlength=n_classes)
        frequent = np.flatnonzero(clustering_counts >= n_thresh)
        if frequent.size == 0:
            _warn_fallback(
                f"no class has the {n_thresh} clustering points needed at confidence_level="
                f"{confidence_level:g} (the most has {int(clustering_counts.max())} of "
                f"{int(in_clustering.sum())} clustering points)"
            )
            return self._set_clusters(cluster_of_class)
        if n_clusters > frequent.size and self.n_clusters != "auto":
            warnings.warn(
                f"n_clusters={n_clusters} but only {frequent.size} class(es) have enough "
                f"clustering points ({n_thresh}); using {frequent.size} cluster(s), one per class.",
                ClusteringFallbackWarning,
                stacklevel=4,
            )
        n_clusters = min(n_clusters, frequent.size)
        if n_clusters == frequent.size:
            # as many clusters as classes: each frequent class is its own cluster
            cluster_of_class[frequent] = np.arange(frequent.size)
        elif n_clusters == 1:
            cluster_of_class[frequent] = 0
        else:
            embedding = np.empty((frequent.size, len(_EMBEDDING_LEVELS)))
            for row, label in enumerate(frequent):
                label_scores = scores[in_clustering & (y_idx == label)]
                embedding[row] = np.quantile(label_scores, _EMBEDDING_LEVELS)
            kmeans = KMeans(n_clusters=n_clusters, n_init=10, random_state=rng.randint(2**31 - 1))
            kmeans.fit(embedding, sample_weight=np.sqrt(clustering_counts[frequent]))
            cluster_of_class[frequent] = kmeans.labels_
        return self._set_clusters(cluster_of_class)

    def _check_parameters(self):
        n_clusters, fraction = self.n_clusters, self.clustering_fraction
        if not (
            (isinstance(n_clusters, str) and n_clusters == "auto")
            or (isinstance(n_clusters, numbers.Integral) and not isinstance(n_clusters, bool)
                and n_clusters >= 1)
        ):
            raise ValueError(f'n_clusters must be an integer >= 1 or "auto", got {n_clusters!r}.')
        if not (
            (isinstance(fraction, str) and fraction == "auto")
            or (isinstance(fraction, numbers.Real) and not isinstance(fraction, bool)
                and 0.0 < fraction < 1.0)
        ):
            raise ValueError(
                f'clustering_fraction must be a float in (0, 1) or "auto", got {fraction!r}.'
            )

    def _resolve(self, counts, n_thresh):
        """Number of clusters and clustering fraction: the explicit values or Ding et al.'s."""
        n_min = max(int(counts.min()), n_thresh)
        n_kept = int(np.sum(counts >= n_min))
        n_clustering = int(n_min * n_kept / (75 + n_kept))
        n_clusters = n_clustering // 2 if self.n_clusters == "auto" else int(self.n_clusters)
        if self.clustering_fraction == "auto":
            fraction = n_clustering / n_min if n_min > 0 else 0.0
        else:
            fraction = float(self.clustering_fraction)
        return n_clusters, fraction

    def _set_clusters(self, cluster_of_class):
        self.cluster_of_class_ = cluster_of_class
        self.n_clusters_ = int(cluster_of_class.max()) + 1
        return self

    def thresholds(self, scores, y_idx, confidence_level):
        """Per-label thresholds from the proper-calibration part of ``scores``."""
        mask = self.calibration_mask_
        scores, y_idx = scores[mask], y_idx[mask]
        cluster_of_class = self.cluster_of_class_
        clustered = cluster_of_class[y_idx] >= 0
        per_cluster = group_thresholds(
            scores[clustered], cluster_of_class[y_idx][clustered], self.n_clusters_, confidence_level
        )
        # the null cluster (rare classes, or every class when clustering is not possible) is
        # calibrated marginally on all proper-calibration scores (Ding et al.; CaCT eq. 27)
        null_threshold = conformal_quantile(scores, confidence_level)
        thresholds = np.full(cluster_of_class.shape[0], null_threshold)
        thresholds[cluster_of_class >= 0] = per_cluster[cluster_of_class[cluster_of_class >= 0]]
        return thresholds
