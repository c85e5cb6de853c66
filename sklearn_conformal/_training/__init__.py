"""Torch training engine (differentiable quantiles, penalty functions, multiplier updates, losses).

Every module here imports torch; only torch-backed estimators import this package.
"""
