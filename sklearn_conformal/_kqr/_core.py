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
