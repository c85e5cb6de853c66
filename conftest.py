"""pytest configuration at the repository root."""

import importlib.util

# the docstring examples of sklearn_conformal.parallel need Dask (the ``dask`` extra; the test
# extra lists it): without it they are not collected, as tests/test_dask.py is skipped
collect_ignore = []
if importlib.util.find_spec("dask") is None or importlib.util.find_spec("distributed") is None:
    collect_ignore.append("sklearn_conformal/parallel.py")
