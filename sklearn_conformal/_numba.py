"""One way to compile numba kernels: cached where possible, never parallel regions.

* Caching falls back to in-memory compilation when numba finds no writable cache location
  (read-only installs with an unwritable home): ``import sklearn_conformal`` must still work.
* No kernel uses ``parallel=True``: numba's threading layers are not all fork-safe (GNU OpenMP
  kills a forked child that calls a parallel region after its parent did), so the package's
  parallelism is GIL-free (``nogil=True``) serial kernels run over chunks by ordinary threads.
"""

import logging

import numba

_logger = logging.getLogger("sklearn_conformal")

# set when numba found no cache location; kernels then compile once per process
CACHE_DISABLED = []


def jit(**options):
    """``numba.njit(cache=True, nogil=True, **options)``, without caching if it cannot cache."""
    if options.pop("parallel", False):
        raise ValueError("sklearn_conformal kernels must not use parallel=True (fork safety).")
    options.setdefault("cache", True)
    options.setdefault("nogil", True)

    def decorate(func):
        if options["cache"] and not CACHE_DISABLED:
            try:
                return numba.njit(**options)(func)
            except RuntimeError as exc:  # "cannot cache function ...: no locator available"
                if "cannot cache" not in str(exc):
                    raise
                CACHE_DISABLED.append(str(exc))
                _logger.info("numba cache unavailable, compiling in memory: %s", exc)
        return numba.njit(**dict(options, cache=False))(func)

    return decorate
