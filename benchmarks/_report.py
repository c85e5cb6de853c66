"""Reporting shared by the benchmarks: plain-text tables, mean (sd) summaries, ratio columns."""

import os
from pathlib import Path

import numpy as np

# the real data sets (CASP.csv, bike_train.csv, kc_house_data.csv): $SKCONF_DATA, else
# ../shared/data next to the repository
DATA_ENV = "SKCONF_DATA"


def data_dir():
    """Directory of the benchmark data files: ``$SKCONF_DATA`` or ``<repo>/../shared/data``."""
    default = Path(__file__).resolve().parents[2] / "shared" / "data"
    return Path(os.environ.get(DATA_ENV) or default)


def ratio(numerator, denominator):
    """``numerator / denominator`` as a float (``nan`` when the denominator is 0 or missing)."""
    if numerator is None or denominator is None or denominator == 0:
        return float("nan")
    return float(numerator) / float(denominator)


def fmt_ratio(value, digits=1):
    """A ratio cell: ``"12.3x"`` (``"-"`` for nan)."""
    return "-" if not np.isfinite(value) else f"{value:.{digits}f}x"


def add_ratio_column(rows, numerator, denominator, name, digits=1):
    """Add ``rows[i][name] = fmt_ratio(rows[i][numerator] / rows[i][denominator])`` (dict rows)."""
    for row in rows:
        row[name] = fmt_ratio(ratio(row.get(numerator), row.get(denominator)), digits)
    return rows


def table(rows, header, *, left=1, title=None, file=None):
    """Print ``rows`` (lists of cells, or dicts keyed by ``header``) under ``header``.

    Every column is as wide as its widest cell; the first ``left`` columns are left-aligned,
    the others right-aligned. Returns the printed lines.
    """
    cells = [[str(r.get(h, "")) for h in header] if isinstance(r, dict) else [str(c) for c in r]
             for r in rows]
    widths = [max([len(str(h))] + [len(r[i]) for r in cells]) for i, h in enumerate(header)]

    def fmt(values):
        return "  ".join(v.ljust(w) if i < left else v.rjust(w)
                         for i, (v, w) in enumerate(zip(values, widths)))

    line = fmt([str(h) for h in header])
    lines = ([title] if title else []) + [line, "-" * len(line)] + [fmt(r) for r in cells]
    for out in lines:
        print(out, file=file)
    return lines


def summarize(rows, keys, group=("method",)):
    """Print mean (sd) of ``keys`` per group of result dicts; returns the summary rows."""
    groups = {}
    for row in rows:
        groups.setdefault(tuple(row[g] for g in group), []).append(row)
    printed, out = [], []
    for name, members in groups.items():
        summary = dict(zip(group, name))
        summary["n"] = len(members)
        line = [str(v) for v in name] + [str(len(members))]
        for k in keys:
            vals = np.array([m[k] for m in members if m.get(k) is not None], dtype=float)
            if len(vals) == 0:
                line.append("-")
                continue
            summary[k] = (float(vals.mean()), float(vals.std(ddof=1)) if len(vals) > 1 else 0.0)
            line.append(f"{vals.mean():8.4f} ({summary[k][1]:.4f})")
        printed.append(line)
        out.append(summary)
    table(printed, list(group) + ["n"] + list(keys), left=len(group))
    return out
