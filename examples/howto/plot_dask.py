"""
Distributed fitting and batch prediction with Dask
==================================================

Two things can run on a `Dask <https://docs.dask.org>`_ cluster, with the same results as in
one process, bit for bit:

* the package's own parallel loops (the ``gamma`` cross-validation paths of
  :class:`~sklearn_conformal.SpeedCPRegressor`'s ``fit`` and its S-path chunks over test
  points in ``predict_interval``) are ``joblib`` tasks: under
  ``joblib.parallel_backend("dask")`` they go to the cluster's workers unchanged;
* prediction of any fitted estimator over a Dask array or DataFrame, block by block, with
  :func:`sklearn_conformal.parallel.predict_blocks` (``predict_interval``, ``predict_set``,
  ...; dask-ml's ``ParallelPostFit`` forwards only ``predict``, ``predict_proba`` and
  ``transform``).

This example starts a local cluster of two worker processes (``pip install
sklearn-conformal[dask]``). In a script, the code that starts worker processes must sit under
``if __name__ == "__main__":`` (each worker re-imports the script); in a notebook it needs none.
"""

# %%
# Data
# ----
import time

import dask.array as da
import dask.dataframe as dd
import joblib
import numpy as np
import pandas as pd
from distributed import Client, LocalCluster
from sklearn.linear_model import LogisticRegression

from sklearn_conformal import SpeedCPRegressor, SplitConformalClassifier
from sklearn_conformal.datasets import make_heteroscedastic_regression
from sklearn_conformal.parallel import predict_blocks

X, y = make_heteroscedastic_regression(n_samples=600, random_state=0)[:2]
X_new = make_heteroscedastic_regression(n_samples=6000, random_state=1)[0]
rng = np.random.default_rng(0)
Xc = rng.normal(size=(1000, 4))
yc = (Xc[:, 0] > 0).astype(int) + (Xc[:, 1] + 0.5 * rng.normal(size=1000) > 0)


def speedcp():
    return SpeedCPRegressor(gamma_grid=np.logspace(-1, 1.5, 8), n_jobs=2, random_state=0)


# %%
# SpeedCP: cross-validation and S-paths on the cluster
# ----------------------------------------------------
# In one process the paths run in threads; under the Dask backend each is a task pickled with
# its fold's data and run single-threaded in a worker (the workers' BLAS, numba and torch
# threads are capped to the task's). ``n_jobs`` is read as joblib reads it: with more than
# 2,048 test points and ``n_jobs`` other than ``None`` or 1, ``predict_interval`` sends chunks
# of test points as tasks too.
if __name__ == "__main__":
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           host="127.0.0.1", dashboard_address=None)
    client = Client(cluster)

    start = time.perf_counter()
    local = speedcp().fit(X, y)
    local_intervals = local.predict_interval(X_new)
    print(f"in process: {time.perf_counter() - start:.2f} s")

    start = time.perf_counter()
    with joblib.parallel_backend("dask"):
        remote = speedcp().fit(X, y)
        remote_intervals = remote.predict_interval(X_new)
    print(f"on the cluster: {time.perf_counter() - start:.2f} s (tiny tasks: overhead)")
    print("same gamma_, cv_loss_, lam_:", remote.gamma_ == local.gamma_,
          np.array_equal(remote.cv_loss_, local.cv_loss_), remote.lam_ == local.lam_)
    print("same intervals:", np.array_equal(remote_intervals, local_intervals))

# %%
# Batch prediction over a Dask array and a Dask DataFrame
# -------------------------------------------------------
# :func:`~sklearn_conformal.parallel.predict_blocks` is lazy: it returns a Dask collection
# with the row blocks of the input (the estimator is one node of the graph, sent once to each
# worker). A conformal estimator predicts each row independently of the others in its call
# (SpeedCP's and the randomised sets' uniforms are keyed by row content), so any chunking
# gives the in-process result.
if __name__ == "__main__":
    lazy = predict_blocks(local, da.from_array(X_new, chunks=1500), "predict_interval")
    print(lazy)
    print("same intervals:", np.array_equal(lazy.compute(), local_intervals))

    Xc_frame = pd.DataFrame(Xc).add_prefix("x")
    clf = SplitConformalClassifier(LogisticRegression(), confidence_level=0.9,
                                   random_state=0).fit(Xc_frame, yc)
    sets = predict_blocks(clf, dd.from_pandas(Xc_frame, npartitions=4), "predict_set",
                          confidence_level=[0.8, 0.95])
    result = sets.compute()  # a pandas DataFrame with the index of the input
    print(result.head())
    # the in-process sets, as DataFrame (the columns predict_blocks gives a 3-d output)
    in_process = clf.set_output(predict="pandas").predict_set(Xc_frame, [0.8, 0.95])
    print("same sets:", result.equals(in_process))

    client.close()
    cluster.close()

# %%
# The same on a real cluster: ``Client("tcp://scheduler:8786")`` instead of the local one.
# The result of ``predict_blocks`` composes with the rest of a Dask pipeline, e.g.
# ``dd.concat([frame, intervals], axis=1).to_parquet(...)`` without collecting anything on the
# client.
