"""Order of the examples inside each gallery section (sphinx-gallery ``within_subsection_order``).

Listed examples come first, in the order given; any other example follows, by file name.
"""

ORDER = [
    # estimators: the split wrappers first, then the methods with their own calibration
    "plot_split_classifier.py",
    "plot_split_regressor.py",
    "plot_speedcp.py",
    "plot_kernel_quantile.py",
    "plot_cocp.py",
    "plot_cact.py",
    # how-to guides
    "plot_score_and_mode.py",
    "plot_custom_score_and_groups.py",
    "plot_covariate_shift.py",
    "plot_pipeline_categorical.py",
    "plot_grid_search.py",
    "plot_little_data.py",
    "plot_cross_conformal.py",
    "plot_dask.py",
    # paper reproductions: in the order of the method pages
    "plot_speedcp_admixture.py",
    "plot_cocp_oracle.py",
    "plot_cact_long_tail.py",
]


class ExampleOrder:
    """Sort key: position in ``ORDER``, then the file name."""

    def __init__(self, src_dir):
        self.src_dir = src_dir

    def __call__(self, filename):
        position = ORDER.index(filename) if filename in ORDER else len(ORDER)
        return (position, filename)

    def __repr__(self):
        return f"<{type(self).__name__}>"
