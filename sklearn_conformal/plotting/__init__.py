"""Displays of conformal predictors: intervals, coverage, set sizes and training traces.

The Display classes follow scikit-learn's visualisation API (``from_estimator``,
``from_predictions``, ``plot``). Importing this package does not import matplotlib; the
displays import it when they draw (install it with ``pip install sklearn-conformal[plot]``).
"""

from .._lazy import attach

# one line per public name: name -> private module
__getattr__, __dir__, __all__ = attach(
    __name__,
    globals(),
    {
        "PredictionIntervalDisplay": "._intervals",
        "CutoffDisplay": "._intervals",
        "CoverageDisplay": "._sets",
        "SetSizeDisplay": "._sets",
        "CaCTTraceDisplay": "._traces",
        "StagedLengthDisplay": "._traces",
    },
)
