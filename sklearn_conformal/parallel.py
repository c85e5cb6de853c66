"""Batch prediction over Dask collections.

:func:`predict_blocks` runs any prediction method of a fitted estimator (``predict_interval``,
``predict_set``, ``predict_cutoff``, ``predict``, ``predict_proba``, ...) block by block over a
Dask array or a Dask DataFrame, lazily, so that a ``dask.distributed`` cluster computes the
blocks in its workers. ``dask_ml.wrappers.ParallelPostFit`` forwards only ``predict``,
``predict_proba`` and ``transform``; the conformal methods need this.

The package's own parallel loops (SpeedCP's cross-validation paths and S-path chunks) go
through joblib: ``with joblib.parallel_backend("dask"): reg.fit(X, y)`` distributes them.
"""

import numpy as np

__all__ = ["predict_blocks"]


def predict_blocks(estimator, X, method="predict_interval", **kwargs):
    """Lazily apply ``estimator.<method>(block, **kwargs)`` to each block of a Dask collection.

    Each block of rows (array chunk or DataFrame partition) is predicted independently by
    the fitted estimator, which travels to the workers once (it is one node of the graph, not
    a copy per task). Every estimator of the package predicts a row independently of the
    other rows of its call (the randomised cutoffs of SpeedCP and the randomised sets use one
    keyed uniform per row content), so the result equals ``method`` on the whole data,
    bit for bit, whatever the chunking.

    To know the shape and dtype of the result without computing it all, the method is first
    run on the first row (which computes the first block of ``X``).

    Parameters
    ----------
    estimator : fitted estimator
        Any object with the method, e.g. a fitted conformal classifier or regressor, a
        pipeline ending in one, or a plain scikit-learn model.
    X : dask.array.Array of shape (n_samples, n_features) or dask.dataframe.DataFrame
        A Dask array split along rows (chunks along columns are merged first), or a Dask
        DataFrame (each partition is passed as a pandas DataFrame, so column names reach a
        pipeline's column transformer).
    method : str, default="predict_interval"
        The method to call.
    **kwargs
        Passed to the method, e.g. ``confidence_level=0.8`` or ``confidence_level=[0.8, 0.9]``.

    Returns
    -------
    dask.array.Array or dask.dataframe.DataFrame or dask.dataframe.Series
        For a Dask array: a Dask array with the rows of ``X`` (same row chunks) and the
        trailing shape of the method's output, e.g. ``(n, 2)`` intervals, ``(n, n_classes)``
        boolean sets, ``(n, 2, n_levels)`` for several levels. For a Dask DataFrame: a Dask
        DataFrame with the index of ``X`` (columns ``lower``, ``upper`` for intervals, the
        classes for ``predict_set`` and ``predict_proba``, ``(confidence_level, ...)`` for
        several levels) or a Dask Series for a 1-d output (``predict``, ``predict_cutoff``).
        Call ``.compute()`` (or ``client.compute``) to get NumPy / pandas results.

    Examples
    --------
    >>> import numpy as np
    >>> import dask.array as da
    >>> from sklearn.linear_model import LinearRegression
    >>> from sklearn_conformal import SplitConformalRegressor
    >>> from sklearn_conformal.parallel import predict_blocks
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(300, 2)); y = X[:, 0] + rng.normal(size=300)
    >>> reg = SplitConformalRegressor(LinearRegression(), random_state=0).fit(X, y)
    >>> lazy = predict_blocks(reg, da.from_array(X, chunks=100), "predict_interval")
    >>> lazy.shape, lazy.chunks[0]
    ((300, 2), (100, 100, 100))
    >>> np.array_equal(lazy.compute(), reg.predict_interval(X))
    True
    """
    import dask
    import dask.array as da

    if not hasattr(estimator, method):
        raise AttributeError(f"{type(estimator).__name__} has no method {method!r}.")
    est = dask.delayed(estimator, pure=True)
    if isinstance(X, da.Array):
        return _array_blocks(est, estimator, X, method, kwargs)
    try:
        import dask.dataframe as dd
    except ImportError:  # pragma: no cover - dask without its dataframe extra (pyarrow)
        dd = None
    if dd is not None and isinstance(X, dd.DataFrame):
        return _frame_blocks(est, estimator, X, method, kwargs)
    raise TypeError(
        "predict_blocks takes a dask.array.Array or a dask.dataframe.DataFrame, got "
        f"{type(X).__name__}; call estimator.{method}(X) on in-memory data."
    )


def _array_block(block, estimator, method, kwargs):
    return np.asarray(getattr(estimator, method)(block, **kwargs))


def _array_blocks(est, estimator, X, method, kwargs):
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-d Dask array, got {X.ndim} dimension(s).")
    if len(X.chunks[1]) > 1:
        X = X.rechunk({1: -1})
    probe = _array_block(X[:1].compute(), estimator, method, kwargs)
    trailing = probe.shape[1:]
    chunks = (X.chunks[0],) + tuple((s,) for s in trailing)
    options = {}
    if not trailing:
        options["drop_axis"] = 1
    elif len(trailing) > 1:
        options["new_axis"] = list(range(2, 1 + len(trailing)))
    return X.map_blocks(
        _array_block, est, method, kwargs, chunks=chunks, dtype=probe.dtype,
        meta=np.empty((0,) * (1 + len(trailing)), dtype=probe.dtype), **options,
    )


def _frame_block(part, estimator, method, kwargs):
    import pandas as pd

    out = getattr(estimator, method)(part, **kwargs)
    if isinstance(out, (pd.DataFrame, pd.Series)):  # set_output(predict="pandas")
        return out.set_axis(part.index, axis=0)
    out = np.asarray(out)
    if out.ndim == 1:
        return pd.Series(out, index=part.index, name=method)
    classes = getattr(estimator, "classes_", None)
    if method == "predict_interval" or (out.ndim == 3 and out.shape[1] == 2 and classes is None):
        columns, name = ["lower", "upper"], "bound"
    elif classes is not None and out.shape[1] == len(classes):
        columns, name = list(classes), "class"
    else:
        columns, name = list(range(out.shape[1])), None
    if out.ndim == 2:
        return pd.DataFrame(out, index=part.index, columns=pd.Index(columns, name=name))
    from ._output import check_levels

    levels, _ = check_levels(kwargs.get("confidence_level"), estimator.confidence_level)
    flat = np.transpose(out, (0, 2, 1)).reshape(out.shape[0], -1)
    multi = pd.MultiIndex.from_product([levels, columns], names=["confidence_level", name])
    return pd.DataFrame(flat, index=part.index, columns=multi)


def _frame_blocks(est, estimator, X, method, kwargs):
    probe = _frame_block(X.head(1, npartitions=1), estimator, method, kwargs)
    return X.map_partitions(_frame_block, est, method, kwargs, meta=probe.iloc[:0])
