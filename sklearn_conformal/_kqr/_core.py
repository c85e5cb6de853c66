"""Index of the numba kernels of the exact kernel-quantile-regression path solvers.

Everything is ``nopython`` with ``cache=True`` and works on preallocated arrays; the Python
wrappers in :mod:`._path` validate inputs and turn status codes into errors. One job a module:

* :mod:`._kernels` -- kernel values and matrices, the row hash of duplicate rows;
* :mod:`._elbow` -- the path state (:class:`~._elbow.Problem`, :class:`~._elbow.PathState`)
  and the elbow inverse: bordering, Schur downdates, re-inversion, event application, exact
  re-solves (shared by both paths);
* :mod:`._events` -- the event scan of both paths;
* :mod:`._lam_path` -- the lambda path;
* :mod:`._s_path` -- the S-path (both stages, many test points per call).

The first call from a cold numba cache compiles all of them, so they keep compilation light:

* one specialisation per kernel: C-contiguous arrays of one dtype per argument (the Python
  wrappers normalise them), integer variables handed to other kernels start as ``np.int64``
  (a literal ``0`` or ``-1`` would type a second, literal-typed copy of the callee);
* kernels called only from kernels have no CPython or cfunc wrapper;
* a kernel's callees are linked into it and optimised again with it, so call chains are short
  and each callee has one call site where it can (the S-path runs both stages in one loop and
  applies every event, pivots included, through one ``apply_event`` call);
* fields of the ``Problem``/``PathState`` bundles are read into locals before loops, and
  helpers called in loops (``kij``, ``phi``) take arrays: each read of a bundle's array field
  takes a reference (an atomic increment and decrement), which in a loop costs run time;
* no numpy features that compile heavy implementations (slicing assignment, fancy indexing,
  array arithmetic, ``np.full``/``np.eye``) and no formatted errors: loops, and status codes
  that Python turns into errors.
"""

from ._elbow import (  # noqa: F401
    M, SET_E, SET_L, SET_R, STATUS_CYCLING, STATUS_OK, STATUS_SINGULAR, STATUS_STEP_CAP,
    PathState, Problem, advance, apply_event, elbow_add, exact_state, fit_dir,
    fit_from_coef, kij, matvec, new_state, phi, problem, refactor,
)
from ._events import absmax, scan_events  # noqa: F401
from ._kernels import (  # noqa: F401
    kernel_block, kernel_from_sq_dists, kernel_sym_block, kernel_value, row_hash, sq_dists,
)
from ._lam_path import (  # noqa: F401
    REC_ELBOW, REC_LAM, REC_LOSS, REC_SIC, REC_VLOSS, Validation, lambda_path_core,
)
from ._s_path import (  # noqa: F401
    OUT_CUT, OUT_MEAN_ELBOW, OUT_S0, OUT_STATUS, OUT_STEPS, critical_dir, prepare_state,
    s_path_batch,
)
from ._lam_path import _grow_rows, _pinball, _record  # noqa: F401
from ._s_path import _exact_stage  # noqa: F401
