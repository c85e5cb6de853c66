"""Progress reports of long computations, shared by the estimators' ``verbose`` parameters.

``progress(total, desc, verbose)`` returns a context manager with ``update(n=1)`` and
``close()``:

* ``verbose <= 0`` (the default everywhere): it does nothing and writes nothing;
* ``verbose >= 1`` with tqdm importable: a tqdm bar (``tqdm.auto``: a widget in a notebook, a
  text bar on a terminal) on stderr;
* ``verbose >= 1`` without tqdm (an optional dependency: the ``notebook`` extra): a plain line
  ``"<desc>: <done>/<total>"`` on stderr about every tenth of the work, and one at the end.

``update`` may be called from several threads at once (the work it counts runs in thread
pools); the counts are kept under a lock. Progress reporting never changes a result.
"""

import sys
import threading
import time

__all__ = ["progress"]


def _tqdm_class():
    """``tqdm.auto.tqdm``, or None when tqdm cannot be imported."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm


class _Silent:
    """Progress of ``verbose=0``: counts, writes nothing."""

    def __init__(self, total, desc):
        self.total = int(total)
        self.desc = desc
        self.n = 0
        self._lock = threading.Lock()

    def update(self, n=1):
        with self._lock:
            self.n += int(n)

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class _Lines(_Silent):
    """Plain periodic lines on stderr (no tqdm)."""

    def __init__(self, total, desc, file=None, min_interval=0.5):
        super().__init__(total, desc)
        self._file = file
        self._step = max(1, self.total // 10)
        self._next = self._step
        self._min_interval = min_interval
        self._last = time.monotonic()
        self._closed = False

    def _write(self, n):
        file = self._file if self._file is not None else sys.stderr
        print(f"{self.desc}: {n}/{self.total}", file=file, flush=True)

    def update(self, n=1):
        with self._lock:
            self.n += int(n)
            now = time.monotonic()
            if self.n >= self._next and self.n < self.total:
                self._next = (self.n // self._step + 1) * self._step
                if now - self._last >= self._min_interval or self._min_interval == 0:
                    self._last = now
                    self._write(self.n)

    def close(self):
        with self._lock:
            if not self._closed:
                self._closed = True
                self._write(self.n)


class _Bar(_Silent):
    """A tqdm bar; ``update`` serialised by a lock."""

    def __init__(self, total, desc, tqdm, file=None):
        super().__init__(total, desc)
        self._bar = tqdm(total=self.total, desc=desc, file=file, leave=True)

    def update(self, n=1):
        with self._lock:
            self.n += int(n)
            self._bar.update(int(n))

    def close(self):
        with self._lock:
            self._bar.close()


def progress(total, desc, verbose=0, *, file=None):
    """A progress report over ``total`` units of work, shown when ``verbose >= 1``.

    Parameters
    ----------
    total : int
        Units of work (tasks, chunks, epochs) the caller will ``update`` by.
    desc : str
        What is being counted (the bar's label).
    verbose : int or bool, default=0
        ``0``/``False``: silent. ``>= 1``: a tqdm bar if tqdm is importable, else plain lines.
    file : file-like, default=None
        Where to write (``sys.stderr`` when None).

    Returns
    -------
    A context manager with ``update(n=1)``, ``close()`` and the count done so far ``n``.
    """
    if not verbose or verbose <= 0:
        return _Silent(total, desc)
    tqdm = _tqdm_class()
    if tqdm is None:
        return _Lines(total, desc, file=file)
    return _Bar(total, desc, tqdm, file=file)
