"""Benchmarks of sklearn-conformal: speed and accuracy against peers and the papers' tables.

Run one by name from the root of the repository::

    python -m benchmarks --list
    python -m benchmarks NAME [--quick] [options of the benchmark]

See ``benchmarks/README.md`` for the commands, typical runtimes and the data they read.
"""
