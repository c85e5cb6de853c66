"""Kernel quantile regression path solvers (numba): exact lambda-path and S-path."""
