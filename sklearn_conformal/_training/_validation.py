"""Input checks of the torch-backed estimators (training range, device)."""

import numpy as np

__all__ = ["check_float32_range"]

_FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_float32_range(array, name, estimator, remedy):
    """Raise a ValueError if ``array`` holds finite values that overflow float32.

    The networks train in float32; a finite float64 value above ~3.4e38 would become ``inf`` and
    turn the losses and predictions into NaN.

    Parameters
    ----------
    array : ndarray
        Validated float64 data.
    name : str
        Parameter name in the message (``"X"``, ``"y"``).
    estimator : str
        Estimator name in the message.
    remedy : str
        What to do instead, appended to the message.
    """
    if array.size == 0:
        return
    largest = float(np.max(np.abs(array)))
    if largest > _FLOAT32_MAX:
        raise ValueError(
            f"{estimator} trains its networks in float32, whose largest value is "
            f"{_FLOAT32_MAX:.3g}, but {name} has values of magnitude up to {largest:.3g}; "
            f"{remedy}"
        )
