"""Metrics of conformal predictors: coverage, efficiency, conditional-coverage diagnostics, scorers."""

from .._lazy import attach

# one line per public name: name -> private module
__getattr__, __dir__, __all__ = attach(
    __name__,
    globals(),
    {
        "coverage": "._sets",
        "mean_set_size": "._sets",
        "size_stratified_coverage": "._sets",
        "class_coverage_gap": "._sets",
        "class_coverages": "._sets",
        "group_coverages": "._groups",
        "group_coverage_gap": "._groups",
        "expected_calibration_error": "._calibration",
        "mean_interval_length": "._intervals",
        "interval_score": "._intervals",
        "neg_mean_set_size_scorer": "._scorers",
        "neg_mean_interval_length_scorer": "._scorers",
        "neg_interval_score_scorer": "._scorers",
        "coverage_scorer": "._scorers",
        "conditional_mae": "._conditional",
        "mean_squared_conditional_error": "._conditional",
        "worst_slab_coverage": "._conditional",
        "excess_risk_target_coverage": "._conditional",
    },
)
