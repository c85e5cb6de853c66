"""Seeded generators for demos, tests and benchmarks (each documents the set-up it reproduces)."""

from .._lazy import attach

# one line per public generator: name -> private module
__getattr__, __dir__, __all__ = attach(
    __name__,
    globals(),
    {
        "make_long_tailed_classification": "._long_tailed",
        "make_long_tailed_digits": "._long_tailed",
        "make_heteroscedastic_regression": "._heteroscedastic",
        "HeteroscedasticOracle": "._heteroscedastic",
        "make_latent_mixture": "._latent_mixture",
    },
)
