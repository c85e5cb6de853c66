"""Input checks of the torch-backed estimators (training range, device)."""

import re

import numpy as np

__all__ = ["check_device", "check_float32_range", "device_type"]

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


_DEVICE_TYPES = ("cpu", "cuda", "mps")
_DEVICE_STRING = re.compile(r"^(cpu|cuda(:[0-9]+)?|mps)$")


def device_type(device):
    """Type (``"cpu"``, ``"cuda"``, ...) of a device string or ``torch.device``, without checks."""
    if isinstance(device, str):
        return device.split(":")[0]
    return getattr(device, "type", str(device))


def check_device(device, estimator):
    """The ``torch.device`` of a ``device`` parameter, or a ValueError naming it.

    Accepts ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` and ``torch.device`` objects of these
    types, and checks that the device is usable by this torch build on this machine.

    Parameters
    ----------
    device : str or torch.device
    estimator : str
        Estimator name in the messages.

    Returns
    -------
    device : torch.device
    """
    import torch

    if isinstance(device, torch.device) and device.type in _DEVICE_TYPES:
        dev = device
    elif isinstance(device, str) and _DEVICE_STRING.match(device):
        dev = torch.device(device)
    else:
        raise ValueError(
            f"{estimator}: device must be 'cpu', 'cuda', 'cuda:N' (N a GPU index), 'mps' or a "
            f"torch.device of these types; got {device!r}."
        )
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"{estimator}: device={device!r} but torch.cuda.is_available() is False (a "
                "CPU-only torch build or no visible GPU); use device='cpu'."
            )
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ValueError(
                f"{estimator}: device={device!r} but torch sees {count} CUDA device(s) "
                f"(indices 0..{count - 1}); use one of those or device='cpu'."
            )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(
            f"{estimator}: device={device!r} but torch.backends.mps.is_available() is False; "
            "use device='cpu'."
        )
    return dev
