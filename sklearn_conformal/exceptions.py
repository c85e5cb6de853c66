"""Public warnings and errors of sklearn-conformal.

Every warning the package raises about data or parameters is one of these classes, so users can
filter them (``warnings.simplefilter("error", DegenerateDataWarning)``) or catch the errors.
"""

__all__ = [
    "ClusteringFallbackWarning",
    "ConformalWarning",
    "DegenerateDataWarning",
    "EmptyClassWarning",
    "Float32InferenceWarning",
    "InfeasibleConstraintWarning",
    "InsufficientMemoryError",
    "PathError",
    "PathStepCapWarning",
    "SmallBatchWarning",
    "SmallCalibrationWarning",
    "UnseenGroupWarning",
]


class ConformalWarning(UserWarning):
    """Base class of every warning sklearn-conformal raises."""


class SmallCalibrationWarning(ConformalWarning):
    """The calibration set is too small for the requested confidence level.

    The conformal threshold is then infinite: prediction sets hold every label and intervals are
    unbounded, which is the only choice that keeps the coverage guarantee.
    """


class UnseenGroupWarning(ConformalWarning):
    """Test rows belong to a group that never appeared in calibration (Mondrian calibration).

    Their threshold is ``+inf`` (every label, unbounded intervals): nothing certifies a smaller
    one. The message names the groups; calibrate with data from every group.
    """


class ClusteringFallbackWarning(ConformalWarning):
    """``mode="cluster"`` could not form clusters and calibrated (part of) the labels marginally.

    Ding et al.'s rule derives the number of clusters from the rarest class; with too few
    calibration points per class it yields at most one cluster, and cluster-conditional calibration
    is then marginal calibration. Remedies: more calibration data, ``n_clusters=`` /
    ``clustering_fraction=`` set explicitly, or ``mode="class"``.
    """


class DegenerateDataWarning(ConformalWarning):
    """Valid but degenerate data (constant targets or scores, near-constant kernels, ties).

    The answer is still correct (coverage is kept), but it may be less informative than expected;
    the message names the data property and the remedy.
    """


class EmptyClassWarning(ConformalWarning):
    """A class has no sample in the ALM-validation or in the calibration split (CaCT).

    Its multiplier then stays at its initial value (validation), or the calibration falls back
    to the shared threshold (marginal/cluster modes) or to the full label set (class mode), as
    the message says. Remedies: more data, ``validation_data=`` / ``calibration_data=`` holding
    every class, or larger ``validation_size`` / ``calibration_size``.
    """


class InfeasibleConstraintWarning(ConformalWarning):
    """The class-wise constraints of conformal training look infeasible (CaCT).

    The multipliers keep growing or sit at their cap; the message names the classes and the
    parameters to change (a relative ``target_size``, ``lambda_max``, ``rho_max``).
    """


class SmallBatchWarning(ConformalWarning):
    """A training batch was too small for the training quantile (CaCT, ConfTr).

    Such batches use cross-entropy only; increase ``batch_size``.
    """


class Float32InferenceWarning(ConformalWarning):
    """A user network cannot run in float64, so a torch-backed estimator predicts in float32.

    Predictions then depend on the other rows of the call by about one float32 ulp (~1e-7): the
    matrix kernels round differently for different batch shapes. Make the module's ``forward``
    follow the input dtype (no hard-coded ``.float()`` or float32 constants) to get float64
    predictions.
    """


class PathStepCapWarning(ConformalWarning):
    """A kernel quantile regression path stopped at its step cap before the requested end.

    The message names the cap parameter to raise and what was returned instead.
    """


class PathError(RuntimeError):
    """An exact path solver could not finish on these data.

    Raised only when no correct answer can be returned; the message names the data property or
    parameter at fault and the remedy (e.g. ``max_steps=``, a larger ``lambda_``, another
    ``gamma``).
    """


class InsufficientMemoryError(MemoryError):
    """An estimator would need more memory than the machine has available, so it did not start.

    Raised before the large allocation (e.g. an ``n x n`` kernel matrix), instead of a bare
    ``MemoryError`` from deep inside or the operating system killing the process. The message
    gives the size needed, the memory available and the parameter that reduces the need.
    """
