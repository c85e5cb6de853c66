"""scikit-learn compatible conformal prediction.

Estimators backed by torch (:class:`CaCTClassifier`, :class:`CoCPRegressor`) and by the numba
path solvers are imported lazily, so ``import sklearn_conformal`` stays fast and never imports
torch.
"""

import importlib

__version__ = "0.1.0.dev0"

# public name -> module that defines it; resolved on first attribute access (PEP 562)
_LAZY = {
    "SplitConformalClassifier": "sklearn_conformal.classification",
    "CaCTClassifier": "sklearn_conformal.classification",
    "SplitConformalRegressor": "sklearn_conformal.regression",
    "SpeedCPRegressor": "sklearn_conformal.regression",
    "KernelQuantileRegressor": "sklearn_conformal.regression",
    "CoCPRegressor": "sklearn_conformal.regression",
    "metrics": "sklearn_conformal.metrics",
    "datasets": "sklearn_conformal.datasets",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        value = module if module.__name__.endswith("." + name) else getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sklearn_conformal' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
