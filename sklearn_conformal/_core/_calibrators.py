"""Calibrators: from calibration scores to one threshold per label.

* marginal: one threshold for every label (split conformal);
* class-conditional: one per label from that label's scores (LabelCP / Mondrian; Vovk 2012);
* cluster-conditional: labels with similar score distributions share a threshold (ClusterCP;
  Ding et al. 2023), with rare labels in a null cluster calibrated marginally.

Every threshold is the exact finite-sample quantile of :func:`conformal_quantile`; a group whose
size is too small for the level gets ``+inf`` (the trivial set), never a smaller threshold.
"""

import numpy as np
from sklearn.cluster import KMeans
from sklearn.utils import check_random_state

from ._quantile import conformal_quantile, min_calibration_size

MODES = ("marginal", "class", "cluster")

# score quantiles that embed a label for clustering (Ding et al.)
_EMBEDDING_LEVELS = (0.5, 0.6, 0.7, 0.8, 0.9)


def marginal_thresholds(scores, n_classes, confidence_level):
    """One shared threshold, repeated for each of ``n_classes`` labels."""
    return np.full(n_classes, conformal_quantile(scores, confidence_level))


def group_thresholds(scores, groups, n_groups, confidence_level):
    """The conformal quantile of the scores of each group ``0 .. n_groups - 1``."""
    thresholds = np.full(n_groups, np.inf)
    order = np.argsort(groups, kind="stable")
    bounds = np.searchsorted(groups[order], np.arange(n_groups + 1))
    for g in range(n_groups):
        thresholds[g] = conformal_quantile(scores[order[bounds[g] : bounds[g + 1]]], confidence_level)
    return thresholds


def class_thresholds(scores, y_idx, n_classes, confidence_level):
    """LabelCP: the conformal quantile of each class's own scores."""
    return group_thresholds(scores, y_idx, n_classes, confidence_level)


class ClusterAssignment:
    """Ding et al.'s clustering of labels by the quantiles of their scores.

    Parameters
    ----------
    n_clusters : int or "auto"
        Number of clusters; "auto" uses Ding et al.'s rule from the class counts.
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

        Returns
        -------
        self
        """
        rng = check_random_state(self.random_state)
        counts = np.bincount(y_idx, minlength=n_classes)
        n_thresh = min_calibration_size(confidence_level)
        n_min = max(int(counts.min()), n_thresh)
        n_kept = int(np.sum(counts >= n_min))
        n_clustering = int(n_min * n_kept / (75 + n_kept))
        n_clusters = n_clustering // 2 if self.n_clusters == "auto" else int(self.n_clusters)
        if self.clustering_fraction == "auto":
            fraction = n_clustering / n_min if n_min > 0 else 0.0
        else:
            fraction = float(self.clustering_fraction)
        in_clustering = rng.random_sample(len(scores)) < fraction
        self.calibration_mask_ = ~in_clustering

        clustering_counts = np.bincount(y_idx[in_clustering], minlength=n_classes)
        rare = clustering_counts < n_thresh
        cluster_of_class = np.full(n_classes, -1, dtype=np.int64)
        frequent = np.flatnonzero(~rare)
        if n_clusters > 1 and frequent.size > n_clusters:
            embedding = np.empty((frequent.size, len(_EMBEDDING_LEVELS)))
            for row, label in enumerate(frequent):
                label_scores = scores[in_clustering & (y_idx == label)]
                embedding[row] = np.quantile(label_scores, _EMBEDDING_LEVELS)
            kmeans = KMeans(n_clusters=n_clusters, n_init=10, random_state=rng.randint(2**31 - 1))
            kmeans.fit(embedding, sample_weight=np.sqrt(clustering_counts[frequent]))
            cluster_of_class[frequent] = kmeans.labels_
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
