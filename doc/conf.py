"""Sphinx configuration of the sklearn-conformal documentation.

Build (warnings are errors, as in CI)::

    python -m sphinx -W --keep-going -q -b html doc doc/_build/html

The API page (``doc/api.rst``) and the toctree (``doc/index.rst``) are written out by hand: a
public module that fails to import fails the build. The gallery (``examples/`` at the root of the
repository) is executed at every build by sphinx-gallery and written to ``doc/auto_examples/``;
set ``SKCONF_GALLERY_FULL=1`` to run the paper reproductions at full size.
"""

import os
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parent
ROOT = DOC.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(DOC))  # _gallery_order
# the examples run in this process: draw without a display, and let them import the checkout
os.environ.setdefault("MPLBACKEND", "Agg")
# one OpenMP thread: CI has two shared cores, and oversubscribed gradient boosting runs 10-20
# times slower there
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
)

import sklearn_conformal  # noqa: E402

# -- project -----------------------------------------------------------------------------------

project = "sklearn-conformal"
author = "the sklearn-conformal developers"
copyright = "2026, the sklearn-conformal developers"
release = sklearn_conformal.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]
exclude_patterns = ["_build", "generated", "Thumbs.db", ".DS_Store"]
root_doc = "index"

html_theme = "pydata_sphinx_theme"
html_title = "sklearn-conformal"
html_theme_options = {
    "navbar_align": "left",
    "header_links_before_dropdown": 4,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc", "sg_download_links", "sg_launcher_links"],
}
html_static_path = []
html_show_sourcelink = False
# pages without sub-pages need no left sidebar (it would stay empty); the gallery keeps its own
html_sidebars = {page: [] for page in ("index", "quickstart", "speedcp", "cocp", "cact", "dask", "api")}

# autosummary only draws summary tables here; every object is documented on the API page itself
autosummary_generate = False
autodoc_typehints = "none"
autodoc_member_order = "bysource"

numpydoc_show_class_members = False
numpydoc_validation_checks = set()
numpydoc_xref_param_type = False

# -- gallery -----------------------------------------------------------------------------------

sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    "subsection_order": [
        "../examples/estimators",
        "../examples/howto",
        "../examples/papers",
    ],
    "within_subsection_order": "_gallery_order.ExampleOrder",
    "filename_pattern": r"/plot_",  # every example runs at every build
    "image_scrapers": ("matplotlib",),
    "matplotlib_animations": False,
    "remove_config_comments": True,
    "show_memory": False,
    "min_reported_time": 1,
    "download_all_examples": False,
    "reset_modules": ("matplotlib", "seaborn"),
    "capture_repr": ("_repr_html_", "__repr__"),
}

# -- API page ----------------------------------------------------------------------------------


def _skip_metadata_request_methods(app, what, name, obj, skip, options):
    # scikit-learn's metadata-routing plumbing (set_{fit,score,...}_request, generated per class,
    # and get_metadata_routing), documented by scikit-learn, not here
    if name == "get_metadata_routing" or (name.startswith("set_") and name.endswith("_request")):
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_metadata_request_methods)
    return {"parallel_read_safe": True}
