"""The CoCP synthetic family and its oracle: population HDI lengths, exact conditional coverage."""

import numpy as np
import pytest
from scipy import integrate, optimize, stats

from sklearn_conformal.datasets._heteroscedastic import (
    HeteroscedasticOracle,
    make_heteroscedastic_regression,
)

FAMILIES = ("normal", "lognormal", "exponential")
# population mean length of the 0.9-HDI: the (3 decimals) and design/cocp.md section 7 (4)
PAPER_LENGTH = {"normal": 1.590, "lognormal": 0.958, "exponential": 1.113}
NOTES_LENGTH = {"normal": 1.5900, "lognormal": 0.9578, "exponential": 1.1129}


def _shortest_width(dist, level):
    """Independent HDI width: minimise ppf(p + level) - ppf(p) over the lower tail mass p."""
    res = optimize.minimize_scalar(
        lambda p: dist.ppf(p + level) - dist.ppf(p),
        bounds=(0.0, 1.0 - level),
        method="bounded",
        options={"xatol": 1e-12},
    )
    # a boundary-pinned HDI (exponential) has its optimum at p = 0
    return min(res.fun, dist.ppf(level) - dist.ppf(0.0))


@pytest.mark.parametrize("noise", FAMILIES)
def test_population_mean_hdi_length(noise):
    oracle = HeteroscedasticOracle(noise)
    width = _shortest_width(oracle.noise_distribution, 0.9)
    # E over X ~ U[-2, 2] of s(x) * width, by quadrature rather than the closed form E[s] = 29/60
    mean_len, _ = integrate.quad(lambda x: (0.15 + 0.25 * x**2) * width / 4.0, -2.0, 2.0)
    assert abs(mean_len - PAPER_LENGTH[noise]) < 5e-4
    assert abs(mean_len - NOTES_LENGTH[noise]) < 5e-5
    assert oracle.mean_hdi_length(0.9) == pytest.approx(mean_len, abs=1e-7)


@pytest.mark.parametrize("noise", FAMILIES)
def test_sampled_oracle_length_matches_population(noise):
    X, _, oracle = make_heteroscedastic_regression(
        400_000, noise=noise, random_state=7, return_oracle=True
    )
    lengths = np.diff(oracle.hdi(X, 0.9), axis=1).ravel()
    se = lengths.std() / np.sqrt(len(lengths))
    assert abs(lengths.mean() - NOTES_LENGTH[noise]) < 4 * se + 5e-5


@pytest.mark.parametrize("noise", FAMILIES)
@pytest.mark.parametrize("level", [0.8, 0.9, 0.95])
def test_oracle_has_exact_conditional_coverage(noise, level):
    X, _, oracle = make_heteroscedastic_regression(
        500, noise=noise, random_state=1, return_oracle=True
    )
    cov = oracle.conditional_coverage(X, oracle.hdi(X, level))
    np.testing.assert_allclose(cov, level, atol=1e-9)
    et = oracle.conditional_coverage(X, oracle.equal_tailed_interval(X, level))
    np.testing.assert_allclose(et, level, atol=1e-9)
    # the HDI is never longer than the equal-tailed interval of the same coverage
    assert np.all(np.diff(oracle.hdi(X, level)) <= np.diff(oracle.equal_tailed_interval(X, level)) + 1e-12)


@pytest.mark.parametrize("noise", FAMILIES)
def test_conditional_law_matches_the_generator(noise):
    # probability integral transform of the sample through the oracle's CDF is uniform
    X, y, oracle = make_heteroscedastic_regression(
        20_000, noise=noise, random_state=3, return_oracle=True
    )
    u = oracle.cdf(X, y)
    assert stats.kstest(u, "uniform").pvalue > 1e-3
    # and the empirical hit rate of the oracle interval is binomially consistent with 0.9
    iv = oracle.hdi(X, 0.9)
    hit = np.mean((y >= iv[:, 0]) & (y <= iv[:, 1]))
    assert abs(hit - 0.9) < 4 * np.sqrt(0.09 / len(y))


def test_lognormal_hdi_has_equal_end_densities_and_mode_at_location():
    oracle = HeteroscedasticOracle("lognormal")
    dist = oracle.noise_distribution
    a, b = oracle.standardized_hdi(0.9)
    assert dist.cdf(b) - dist.cdf(a) == pytest.approx(0.9, abs=1e-12)
    assert dist.pdf(a) == pytest.approx(dist.pdf(b), rel=1e-8)
    assert (a, b) == pytest.approx((-0.47669, 1.50499), abs=1e-5)
    grid = np.linspace(-0.5, 0.5, 20001)
    assert abs(grid[np.argmax(dist.pdf(grid))]) < 1e-4  # conditional mode = theta(x)


def test_determinism_and_bad_input():
    a = make_heteroscedastic_regression(50, noise="normal", random_state=0)
    b = make_heteroscedastic_regression(50, noise="normal", random_state=0)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    with pytest.raises(ValueError, match="noise"):
        make_heteroscedastic_regression(10, noise="cauchy")
    with pytest.raises(ValueError, match="n_samples"):
        make_heteroscedastic_regression(0)
    oracle = HeteroscedasticOracle()
    with pytest.raises(ValueError, match="intervals"):
        oracle.conditional_coverage(np.zeros((3, 1)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="confidence_level"):
        oracle.hdi(np.zeros((3, 1)), 1.5)


# --- the beta-soft oracle (population fixed point of CoCP) -----------------------------------
def _soft_coverage(dist, c, h, b):
    """Independent ``E sigmoid((h - |Z - c|) / b)`` by adaptive quadrature over z."""
    lo, hi = dist.ppf(1e-15), dist.ppf(1 - 1e-15)
    kinks = [p for p in (c - h, c, c + h) if lo < p < hi]

    def integrand(z):
        return dist.pdf(z) * 0.5 * (1 + np.tanh((h - abs(z - c)) / (2 * b)))

    return integrate.quad(integrand, lo, hi, points=kinks, limit=500, epsabs=1e-14)[0]


@pytest.mark.parametrize("noise", FAMILIES)
@pytest.mark.parametrize("temperature", [0.02, 0.3])
def test_soft_oracle_is_a_fixed_point_of_the_population_alternation(noise, temperature):
    oracle = HeteroscedasticOracle(noise)
    dist = oracle.noise_distribution
    c, h = oracle.standardized_soft_oracle(temperature, 0.9)
    # radius step: exact coverage of [c - h, c + h]
    assert dist.cdf(c + h) - dist.cdf(c - h) == pytest.approx(0.9, abs=1e-10)
    assert oracle.symmetric_radius(c, 0.9) == pytest.approx(h, abs=1e-10)
    # centre step: with h frozen, c maximises the soft coverage (central differences of the
    # objective itself, not of the derivative formula the solver integrates)
    step = 1e-3 * temperature
    left, mid, right = (_soft_coverage(dist, c + d, h, temperature) for d in (-step, 0, step))
    assert (right - left) / (2 * step) == pytest.approx(0.0, abs=1e-6)
    assert mid >= max(left, right)


@pytest.mark.slow
def test_soft_oracle_limits_and_the_papers_boundary_rate():
    expo, logn, norm = (HeteroscedasticOracle(f) for f in ("exponential", "lognormal", "normal"))
    # symmetric noise: the HDI itself at every temperature
    assert norm.standardized_soft_oracle(0.5) == pytest.approx((0.0, stats.norm.ppf(0.95)))
    # flat weight (large temperature): the centre step balances the mass on each side -> median
    for oracle in (expo, logn):
        c, _ = oracle.standardized_soft_oracle(200.0)
        assert c == pytest.approx(oracle.noise_distribution.median(), abs=1e-4)
    # small temperature: the HDI; for the exponential (HDI pinned at the support's end) the
    # length gap is log((1 - alpha) / alpha) * beta to first order (Prop. 3 of the CoCP paper)
    gap = (expo.mean_soft_oracle_length(1e-4) - expo.mean_hdi_length()) / 1e-4
    assert gap == pytest.approx(np.log(0.9 / 0.1), rel=1e-3)
    c, h = logn.standardized_soft_oracle(1e-3)
    assert (c - h, c + h) == pytest.approx(logn.standardized_hdi(), abs=1e-5)


@pytest.mark.slow
def test_mean_soft_oracle_length_matches_the_design_notes():
    # design/cocp.md section 7 and experiment E3 (computed there independently, 4 decimals)
    expo, logn = HeteroscedasticOracle("exponential"), HeteroscedasticOracle("lognormal")
    for beta, value in ((0.005, 1.1238), (0.01, 1.1345), (0.05, 1.2114)):
        assert expo.mean_soft_oracle_length(beta) == pytest.approx(value, abs=1e-4)
    for beta, value in ((0.05, 0.9774),):
        assert logn.mean_soft_oracle_length(beta) == pytest.approx(value, abs=1e-4)
    with pytest.raises(ValueError, match="beta"):
        expo.mean_soft_oracle_length(0.0)
    with pytest.raises(ValueError, match="temperature"):
        expo.standardized_soft_oracle(-1.0)


@pytest.mark.parametrize("noise", FAMILIES)
def test_exact_coverage_length_gives_exact_conditional_coverage(noise):
    oracle = HeteroscedasticOracle(noise)
    X = np.random.RandomState(0).uniform(-2, 2, size=(200, 1))
    hdi = oracle.hdi(X, 0.8)
    np.testing.assert_allclose(oracle.exact_coverage_length(X, hdi.mean(axis=1), 0.8),
                               hdi[:, 1] - hdi[:, 0], rtol=1e-10)
    centre = oracle.location(X) + oracle.scale(X) * np.random.RandomState(1).normal(size=200)
    length = oracle.exact_coverage_length(X, centre, 0.8)
    cover = oracle.conditional_coverage(X, np.column_stack([centre - length / 2,
                                                            centre + length / 2]))
    np.testing.assert_allclose(cover, 0.8, atol=1e-10)
    shorter = oracle.conditional_coverage(X, np.column_stack([centre - 0.499 * length,
                                                              centre + 0.499 * length]))
    assert np.all(shorter < 0.8)
