"""Sphinx configuration of the sklearn-conformal documentation.

Build (warnings are errors, as in CI)::

    python -m sphinx -W --keep-going -q -b html doc doc/_build/html

The API page and the toctree of method pages are filled in at build time: an estimator, metric
or generator appears once it imports, and a method page (``doc/<name>.rst``) once it exists, so
the build passes while parts of the package are still being written. A public name whose module
is missing is reported on stderr; one whose module exists but fails to import is a warning (an
error under ``-W``).
"""

import importlib
import inspect
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parent
sys.path.insert(0, str(DOC.parent))

import sklearn_conformal  # noqa: E402

# -- project -----------------------------------------------------------------------------------

project = "sklearn-conformal"
author = "the sklearn-conformal developers"
copyright = "2026, the sklearn-conformal developers"
release = sklearn_conformal.__version__
version = ".".join(release.split(".")[:2])

extensions = ["sphinx.ext.autodoc", "sphinx.ext.autosummary", "numpydoc"]
exclude_patterns = ["_build", "generated", "Thumbs.db", ".DS_Store"]
root_doc = "index"

html_theme = "alabaster"
html_theme_options = {"description": "scikit-learn compatible conformal prediction"}
html_static_path = []

# autosummary only draws summary tables here; every object is documented on the API page itself
autosummary_generate = False
autodoc_typehints = "none"
autodoc_member_order = "bysource"

numpydoc_show_class_members = False
numpydoc_validation_checks = set()
numpydoc_xref_param_type = False

# -- what the API page documents ---------------------------------------------------------------

# section title -> (public names of ``sklearn_conformal``, "class"), in the order shown
ESTIMATOR_SECTIONS = {
    "Classifiers": ["SplitConformalClassifier", "CaCTClassifier"],
    "Regressors": [
        "SplitConformalRegressor",
        "CoCPRegressor",
        "SpeedCPRegressor",
        "KernelQuantileRegressor",
    ],
}
# module -> names shown first (any other name of the module's ``__all__`` follows)
FUNCTION_MODULES = {
    "sklearn_conformal.metrics": [
        "coverage",
        "mean_set_size",
        "size_stratified_coverage",
        "class_coverage_gap",
        "class_coverages",
        "mean_interval_length",
        "interval_score",
        "coverage_scorer",
        "neg_mean_set_size_scorer",
        "neg_mean_interval_length_scorer",
        "neg_interval_score_scorer",
    ],
    "sklearn_conformal.datasets": [
        "make_long_tailed_classification",
        "make_long_tailed_digits",
        "make_heteroscedastic_regression",
        "make_latent_mixture",
    ],
}
# method pages in doc/, in this order; any other page in doc/ follows alphabetically
METHOD_PAGES = ["speedcp", "cocp", "cact"]
FIXED_PAGES = {"index", "quickstart", "api"}

_missing = []  # (name, reason): modules not written yet, reported on stderr
_broken = []  # (name, reason): modules that exist but fail to import, reported as warnings


def _resolve(module_name, name):
    """Import ``module_name.name``; record why not and return False when it fails."""
    qualified = f"{module_name}.{name}"
    try:
        getattr(importlib.import_module(module_name), name)
        return True
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("sklearn_conformal"):
            _missing.append((qualified, f"module {exc.name} does not exist yet"))
        else:
            _broken.append((qualified, f"{type(exc).__name__}: {exc}"))
    except Exception as exc:  # noqa: BLE001 - any import failure is reported
        _broken.append((qualified, f"{type(exc).__name__}: {exc}"))
    return False


def _autosummary(names):
    return ".. autosummary::\n\n" + "".join(f"   {n}\n" for n in names) + "\n"


def _api_estimators():
    out = [".. currentmodule:: sklearn_conformal\n"]
    for title, names in ESTIMATOR_SECTIONS.items():
        present = [n for n in names if _resolve("sklearn_conformal", n)]
        if not present:
            continue
        out.append(f"{title}\n{'-' * len(title)}\n")
        out.append(_autosummary(present))
        out.extend(_autoclass(n) for n in present)
    return "\n".join(out)


# members inherited from these (get_params, set_params, ...) are scikit-learn's, not ours; those
# of the package's own mixins (predict_set, score, ...) are documented
_SKLEARN_BASES = "BaseEstimator, ClassifierMixin, RegressorMixin, TransformerMixin, object"


def _autoclass(name):
    return f".. autoclass:: {name}\n   :members:\n   :inherited-members: {_SKLEARN_BASES}\n"


def _api_functions(module_name):
    module = importlib.import_module(module_name)
    preferred = FUNCTION_MODULES[module_name]
    names = preferred + sorted(set(getattr(module, "__all__", [])) - set(preferred))
    present = [n for n in names if _resolve(module_name, n)]
    out = [f".. currentmodule:: {module_name}\n", _autosummary(present)]
    for n in present:
        is_class = inspect.isclass(getattr(module, n))
        out.append(_autoclass(n) if is_class else f".. autofunction:: {n}\n")
    return "\n".join(out)


def _method_pages():
    extra = sorted(
        p.stem for p in DOC.glob("*.rst") if p.stem not in FIXED_PAGES | set(METHOD_PAGES)
    )
    return [p for p in METHOD_PAGES if (DOC / f"{p}.rst").exists()] + extra


MARKERS = {
    "api": {
        ".. @estimators@": _api_estimators,
        ".. @metrics@": lambda: _api_functions("sklearn_conformal.metrics"),
        ".. @datasets@": lambda: _api_functions("sklearn_conformal.datasets"),
    },
    "index": {
        "   .. @method-pages@": lambda: "\n".join(f"   {p}" for p in _method_pages()),
    },
}


def _fill_markers(app, docname, source):
    for marker, render in MARKERS.get(docname, {}).items():
        if marker in source[0]:
            source[0] = source[0].replace(marker, render())


def _always_reread(app, env, added, changed, removed):
    # their content depends on the package and on which pages exist, not only on their text
    return [d for d in MARKERS if d in env.found_docs]


def _report_imports(app, exception):
    from sphinx.util import logging

    logger = logging.getLogger(__name__)
    for name, reason in dict(_missing).items():
        print(f"[doc] not documented (not written yet): {name}: {reason}", file=sys.stderr)
    for name, reason in dict(_broken).items():
        logger.warning(f"{name} fails to import, so it is missing from the API page: {reason}")


def _skip_metadata_request_methods(app, what, name, obj, skip, options):
    # scikit-learn's metadata-routing plumbing (set_{fit,score,...}_request, generated per class,
    # and get_metadata_routing), documented by scikit-learn, not here
    if name == "get_metadata_routing" or (name.startswith("set_") and name.endswith("_request")):
        return True
    return None


def setup(app):
    app.connect("source-read", _fill_markers)
    app.connect("env-get-outdated", _always_reread)
    app.connect("env-check-consistency", lambda app, env: _report_imports(app, None))
    app.connect("autodoc-skip-member", _skip_metadata_request_methods)
    return {"parallel_read_safe": True}
