"""Conformity scores: public base classes, the built-in scores, and the string shortcuts.

Every estimator's ``conformity_score`` takes either a string (a shortcut for a built-in score)
or a score object, e.g. a subclass of :class:`BaseClassificationScore` or
:class:`BaseRegressionScore` written by the user. Strings are resolved by
:func:`check_classification_score` / :func:`check_regression_score` in ``fit``.
"""

import numpy as np
from sklearn.base import clone

from ._classification import (
    CLASSIFICATION_SCORES,
    APSScore,
    BaseClassificationScore,
    LACScore,
    MarginScore,
    RAPSScore,
    SAPSScore,
    TopKScore,
)
from ._regression import (
    REGRESSION_SCORES,
    AbsoluteScore,
    BaseRegressionScore,
    CQRScore,
    NormalizedScore,
    SpreadScore,
)

__all__ = [
    "APSScore",
    "AbsoluteScore",
    "BaseClassificationScore",
    "BaseRegressionScore",
    "CQRScore",
    "LACScore",
    "MarginScore",
    "NormalizedScore",
    "RAPSScore",
    "SAPSScore",
    "SpreadScore",
    "TopKScore",
    "check_classification_score",
    "check_regression_score",
]

_CLASSIFICATION_METHODS = ("label_scores", "calibration_scores", "prediction_sets", "prepare")
_REGRESSION_METHODS = ("conformity_scores", "intervals", "threshold")


def _check_object(score, base, methods, names):
    missing = [m for m in methods if not callable(getattr(score, m, None))]
    if missing:
        raise TypeError(
            f"conformity_score must be one of {sorted(names)} or a {base.__name__} subclass "
            f"instance; {type(score).__name__} lacks {', '.join(missing)}."
        )
    return clone(score) if hasattr(score, "get_params") else score


def check_classification_score(score, *, randomized=True, k_reg=1, lambda_reg=0.1):
    """The score object for ``score``: a fresh built-in for a string, a clone for an object.

    Parameters
    ----------
    score : str or BaseClassificationScore
        One of "lac", "aps", "raps", "top_k", "saps", "margin", or a score object.
    randomized, k_reg, lambda_reg
        The estimator's shortcut parameters, applied to the string's score where it has them
        (APS/RAPS/SAPS ``randomized``, RAPS ``k_reg``/``lambda_reg``); a score object keeps its
        own parameters.

    Returns
    -------
    score : BaseClassificationScore
    """
    if isinstance(score, str):
        if score not in CLASSIFICATION_SCORES:
            raise ValueError(
                f"conformity_score must be one of {sorted(CLASSIFICATION_SCORES)} or a "
                f"BaseClassificationScore instance, got {score!r}."
            )
        if score == "raps":
            return RAPSScore(k_reg=k_reg, lambda_reg=lambda_reg, randomized=randomized)
        if score in ("aps", "saps"):
            return CLASSIFICATION_SCORES[score](randomized=randomized)
        return CLASSIFICATION_SCORES[score]()
    return _check_object(score, BaseClassificationScore, _CLASSIFICATION_METHODS, CLASSIFICATION_SCORES)


def check_calibration_scores(scores, n_samples, score, method, parts=False):
    """A (possibly user-written) score's calibration scores as float64, or a clear error.

    One score per calibration sample (or one row of parts when ``parts``), none NaN (``+inf``
    is allowed: it only makes thresholds infinite). ``method`` names the score's method in the
    message.
    """
    scores = np.asarray(scores, dtype=np.float64)
    shape_ok = scores.shape[:1] == (n_samples,) and scores.ndim in ((1, 2) if parts else (1,))
    if not shape_ok:
        expected = f"({n_samples},) or ({n_samples}, n_parts)" if parts else f"({n_samples},)"
        raise ValueError(
            f"{type(score).__name__}.{method} returned shape {scores.shape}; expected "
            f"{expected}, one score per calibration sample."
        )
    if np.isnan(scores).any():
        raise ValueError(
            f"{type(score).__name__} returned NaN calibration scores "
            f"({int(np.isnan(scores).sum())} of {scores.size}); scores must be numbers (+inf is "
            "allowed)."
        )
    return scores


def check_regression_score(score):
    """The score object for ``score``: a fresh built-in for a string, a clone for an object.

    Parameters
    ----------
    score : {"absolute", "normalized", "cqr"} or BaseRegressionScore

    Returns
    -------
    score : BaseRegressionScore
    """
    if isinstance(score, str):
        if score not in REGRESSION_SCORES:
            raise ValueError(
                f"conformity_score must be one of {sorted(REGRESSION_SCORES)} or a "
                f"BaseRegressionScore instance, got {score!r}."
            )
        return REGRESSION_SCORES[score]()
    checked = _check_object(score, BaseRegressionScore, _REGRESSION_METHODS, REGRESSION_SCORES)
    needs = set(getattr(checked, "predictions", ()))
    unknown = needs - {"center", "scale", "bounds"}
    if not needs or unknown:
        raise ValueError(
            f"{type(score).__name__}.predictions must name some of 'center', 'scale', 'bounds'; "
            f"got {getattr(checked, 'predictions', None)!r}."
        )
    return checked
