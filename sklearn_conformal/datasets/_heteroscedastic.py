"""The 1-D skewed heteroscedastic regression family of the CoCP paper, with its exact oracle.

``X ~ U[-2, 2]``, location ``theta(x) = 0.5 sin(1.5 x)``, scale ``s(x) = 0.15 + 0.25 x**2`` and
``Y = theta(X) + s(X) * Z`` with standardised noise ``Z`` (Su, Zhou & Luo 2026, section 6 / Table 1):

* ``"normal"``: ``Z ~ N(0, 1)``;
* ``"exponential"``: ``Z ~ Exp(1)``; the highest-density interval (HDI) is pinned at the lower end of
  the support;
* ``"lognormal"``: ``Z = E - exp(-sigma**2)``, ``E ~ LogNormal(0, sigma**2)`` (``sigma = 0.6``), so the
  conditional mode is ``theta(x)``.

Because ``Y | X = x`` is a location-scale family, the oracle ``(1 - alpha)``-HDI is
``theta(x) + s(x) * [a, b]`` with ``[a, b]`` the HDI of ``Z``, and the exact conditional coverage of
any interval is ``F_x(upper) - F_x(lower)``.
"""

import numbers

import numpy as np
from scipy import optimize, stats
from sklearn.utils import check_random_state

from .._core import check_confidence_level

_NOISES = ("normal", "lognormal", "exponential")
_X_RANGE = 2.0


def _check_noise(noise):
    if noise not in _NOISES:
        raise ValueError(f"noise must be one of {_NOISES}, got {noise!r}.")
    return noise


class HeteroscedasticOracle:
    """Exact conditional law of :func:`make_heteroscedastic_regression` and its optimal intervals.

    Parameters
    ----------
    noise : {"normal", "lognormal", "exponential"}, default="exponential"
        Noise family.
    sigma : float, default=0.6
        Log-scale standard deviation of the log-normal noise (ignored otherwise).

    Examples
    --------
    >>> from sklearn_conformal.datasets import HeteroscedasticOracle
    >>> oracle = HeteroscedasticOracle("exponential")
    >>> round(oracle.mean_hdi_length(0.9), 4)
    1.1129
    """

    def __init__(self, noise="exponential", sigma=0.6):
        self.noise = _check_noise(noise)
        if not isinstance(sigma, numbers.Real) or not sigma > 0:
            raise ValueError(f"sigma must be a positive float, got {sigma!r}.")
        self.sigma = float(sigma)

    # --- location-scale structure -------------------------------------------------------------
    @staticmethod
    def location(X):
        """Conditional location ``theta(x) = 0.5 sin(1.5 x)`` (the mode for every family)."""
        x = np.asarray(X, dtype=float).reshape(len(X), -1)[:, 0]
        return 0.5 * np.sin(1.5 * x)

    @staticmethod
    def scale(X):
        """Conditional scale ``s(x) = 0.15 + 0.25 x**2``."""
        x = np.asarray(X, dtype=float).reshape(len(X), -1)[:, 0]
        return 0.15 + 0.25 * x**2

    @property
    def noise_distribution(self):
        """The frozen scipy distribution of the standardised noise ``Z``."""
        if self.noise == "normal":
            return stats.norm()
        if self.noise == "exponential":
            return stats.expon()
        # E - exp(-sigma^2) with E ~ LogNormal(0, sigma^2): the mode of Z is 0
        return stats.lognorm(s=self.sigma, loc=-np.exp(-self.sigma**2))

    def sample_noise(self, n_samples, random_state=None):
        """Draw ``n_samples`` standardised noise values ``Z``."""
        rng = check_random_state(random_state)
        if self.noise == "normal":
            return rng.standard_normal(n_samples)
        if self.noise == "exponential":
            return rng.standard_exponential(n_samples)
        return np.exp(self.sigma * rng.standard_normal(n_samples)) - np.exp(-self.sigma**2)

    # --- exact conditional quantities ---------------------------------------------------------
    def cdf(self, X, y):
        """Conditional CDF ``F_x(y) = P(Y <= y | X = x)`` evaluated row by row."""
        z = (np.asarray(y, dtype=float) - self.location(X)) / self.scale(X)
        return self.noise_distribution.cdf(z)

    def ppf(self, X, q):
        """Conditional quantile function ``F_x^{-1}(q)`` row by row."""
        return self.location(X) + self.scale(X) * self.noise_distribution.ppf(q)

    def conditional_coverage(self, X, intervals):
        """Exact ``P(lower <= Y <= upper | X = x)`` for each row of ``intervals`` (n, 2).

        Infinite bounds are allowed; an empty interval (``upper < lower``) has coverage 0.
        """
        intervals = np.asarray(intervals, dtype=float)
        if intervals.ndim != 2 or intervals.shape[1] != 2 or intervals.shape[0] != len(X):
            raise ValueError(
                f"intervals must have shape (n_samples, 2) = ({len(X)}, 2), got {intervals.shape}."
            )
        # the noise laws are continuous, so including the end points changes nothing
        cov = self.cdf(X, intervals[:, 1]) - self.cdf(X, intervals[:, 0])
        return np.clip(cov, 0.0, 1.0)

    def standardized_hdi(self, confidence_level=0.9):
        """The ``confidence_level`` highest-density interval ``[a, b]`` of the noise ``Z``."""
        level = check_confidence_level(confidence_level)
        dist = self.noise_distribution
        if self.noise == "normal":
            b = dist.ppf(0.5 + level / 2)
            return -b, b
        if self.noise == "exponential":
            # decreasing density: the HDI starts at the support's lower end
            return 0.0, float(dist.ppf(level))
        # unimodal with interior HDI: equal densities at both ends, lower tail mass p in (0, 1-level)
        def density_gap(p):
            return dist.pdf(dist.ppf(p)) - dist.pdf(dist.ppf(p + level))

        p = optimize.brentq(density_gap, 1e-12, 1.0 - level - 1e-12, xtol=1e-15)
        return float(dist.ppf(p)), float(dist.ppf(p + level))

    def hdi(self, X, confidence_level=0.9):
        """Oracle (shortest) interval with exact conditional coverage ``confidence_level``, (n, 2)."""
        a, b = self.standardized_hdi(confidence_level)
        loc, sc = self.location(X), self.scale(X)
        return np.column_stack([loc + a * sc, loc + b * sc])

    def equal_tailed_interval(self, X, confidence_level=0.9):
        """The population CQR interval: conditional quantiles at ``alpha/2`` and ``1 - alpha/2``."""
        level = check_confidence_level(confidence_level)
        alpha = 1.0 - level
        return np.column_stack([self.ppf(X, alpha / 2), self.ppf(X, 1 - alpha / 2)])

    def mean_hdi_length(self, confidence_level=0.9):
        """Population mean oracle length ``E[s(X)] (b - a)`` for ``X ~ U[-2, 2]``."""
        a, b = self.standardized_hdi(confidence_level)
        mean_scale = 0.15 + 0.25 * _X_RANGE**2 / 3.0  # E[X^2] = 4/3 for U[-2, 2]
        return mean_scale * (b - a)

    # --- the population fixed point of CoCP ---------------------------------------------------
    def symmetric_radius(self, centre, confidence_level=0.9):
        """Smallest ``h`` with ``P(|Z - centre| <= h) = confidence_level`` (standardised units).

        The population radius step of CoCP, ``psi(c)``, elementwise (bisection to ``1e-13``).

        Parameters
        ----------
        centre : float or array-like
            Interval centre(s) in units of the standardised noise ``Z``.
        confidence_level : float, default=0.9

        Returns
        -------
        radius : float or ndarray
        """
        level = check_confidence_level(confidence_level)
        dist = self.noise_distribution
        c = np.asarray(centre, dtype=float)
        # at this radius the interval holds all but 1e-12 of the mass on each side
        lo = np.zeros_like(c)
        hi = np.maximum(np.abs(dist.ppf(1e-12) - c), np.abs(dist.ppf(1.0 - 1e-12) - c))
        while np.any(hi - lo > 1e-13):
            mid = (lo + hi) / 2
            enough = dist.cdf(c + mid) - dist.cdf(c - mid) >= level
            hi, lo = np.where(enough, mid, hi), np.where(enough, lo, mid)
        radius = (lo + hi) / 2
        return float(radius) if radius.ndim == 0 else radius

    def exact_coverage_length(self, X, centre, confidence_level=0.9):
        """Length a centred interval needs for conditional coverage exactly ``confidence_level``.

        ``2 s(x) psi((centre - theta(x)) / s(x))`` row by row: the length a perfectly calibrated
        radius would give this centre. It scores a centre alone, without the noise of a fitted
        radius and of the calibration quantile, and it is the quantity the beta-soft oracle
        (:meth:`mean_soft_oracle_length`) evaluates at CoCP's population centre.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        centre : array-like of shape (n_samples,)
        confidence_level : float, default=0.9

        Returns
        -------
        length : ndarray of shape (n_samples,)
        """
        loc, sc = self.location(X), self.scale(X)
        z = (np.asarray(centre, dtype=float).reshape(-1) - loc) / sc
        return 2 * sc * self.symmetric_radius(z, confidence_level)

    def standardized_soft_oracle(self, temperature, confidence_level=0.9):
        """Centre and radius ``(c, h)`` of the beta-soft oracle of ``Z`` (Su, Zhou & Luo, Def. 1).

        The fixed point of CoCP's alternation in the population: ``h = psi(c)`` (the radius step)
        and ``d/dc E[sigmoid((h - |Z - c|) / temperature)] = 0`` (the centre step). Writing
        ``t = |Z - c|``, the derivative is
        ``int_0^inf (f(c + t) - f(c - t)) sigmoid'((h - t) / b) / b dt``, a weighted density
        difference across the two ends of the interval. The root lies between the HDI centre
        (``temperature -> 0``) and the median (``temperature -> inf``, where the weight is flat).

        Parameters
        ----------
        temperature : float
            ``beta / s(x)``: the soft-coverage temperature in units of the standardised noise.
        confidence_level : float, default=0.9

        Returns
        -------
        centre, radius : float
            In standardised units; the interval ``[c - h, c + h]`` holds exactly
            ``confidence_level`` of the mass of ``Z``.
        """
        level = check_confidence_level(confidence_level)
        b = float(temperature)
        if not b > 0 or not np.isfinite(b):
            raise ValueError(f"temperature must be a positive finite float, got {temperature!r}.")
        dist = self.noise_distribution
        support_low = dist.support()[0]

        # beyond this distance from any centre of interest both densities are below ~1e-14 mass
        t_far = max(abs(dist.ppf(1e-14)), abs(dist.ppf(1.0 - 1e-14))) + 10.0
        nodes, weights = np.polynomial.legendre.leggauss(64)

        def centre_gradient(c):
            h = self.symmetric_radius(c, level)
            # sigmoid' decays like exp(-|u|): beyond 50 temperatures it is below 2e-22. Panels
            # break at the kink of the weight (t = h), at the density's jump at the support's
            # end (t = c - support_low) and at a few widths around h, so Gauss-Legendre is exact
            # to rounding on each smooth piece.
            lo, hi = max(0.0, h - 50 * b), min(h + 50 * b, t_far + abs(c))
            breaks = [h + k * b for k in (-20, -5, -1, 0, 1, 5, 20)] + [c - support_low]
            edges = np.unique([lo, hi] + [p for p in breaks if lo < p < hi])
            mid, half = (edges[1:] + edges[:-1]) / 2, (edges[1:] - edges[:-1]) / 2
            t = (mid[:, None] + half[:, None] * nodes).ravel()
            w = (half[:, None] * weights).ravel()
            u = -np.abs(h - t) / b
            sigmoid_slope = np.exp(u) / (b * (1.0 + np.exp(u)) ** 2)  # sigmoid'((h - t) / b) / b
            return float(np.sum(w * (dist.pdf(c + t) - dist.pdf(c - t)) * sigmoid_slope))

        a, hdi_b = self.standardized_hdi(level)
        c_hdi, c_median = (a + hdi_b) / 2, float(dist.median())
        g_hdi = centre_gradient(c_hdi)
        if c_hdi == c_median or g_hdi == 0.0:  # symmetric noise: the HDI is the fixed point
            return c_hdi, self.symmetric_radius(c_hdi, level)
        # at a finite temperature the root may sit just past the median: widen on that side
        far, width = c_median, c_median - c_hdi
        for _ in range(20):
            if np.sign(centre_gradient(far)) != np.sign(g_hdi):
                break
            far += width
        c = optimize.brentq(centre_gradient, *sorted((c_hdi, far)), xtol=1e-12)
        return c, self.symmetric_radius(c, level)

    def mean_soft_oracle_length(self, beta, confidence_level=0.9, n_nodes=40):
        """Population mean length of the beta-soft oracle, ``E[2 s(X) h(beta / s(X))]``.

        The limit of CoCP's length with temperature ``beta`` (in units of ``y``) when the
        networks are exact: the alternation's fixed point at every ``x``, with conditional coverage
        exactly ``confidence_level``. It tends to :meth:`mean_hdi_length` as ``beta -> 0``: at the
        rate ``log((1 - alpha) / alpha) * beta`` for the exponential family, whose HDI is pinned at
        the support's end (Prop. 3 of the paper), and faster for an interior HDI (log-normal),
        where the length is stationary in the centre.

        Parameters
        ----------
        beta : float
            Soft-coverage temperature, in units of ``y``.
        confidence_level : float, default=0.9
        n_nodes : int, default=40
            Gauss-Legendre nodes on ``|x| in [0, 2]`` (``s`` is even in ``x``).

        Returns
        -------
        length : float
        """
        beta = float(beta)
        if not beta > 0 or not np.isfinite(beta):
            raise ValueError(f"beta must be a positive finite float, got {beta!r}.")
        nodes, weights = np.polynomial.legendre.leggauss(int(n_nodes))
        x = (nodes + 1.0) * _X_RANGE / 2  # |x| uniform on [0, 2]
        scale = self.scale(x[:, None])
        radius = [self.standardized_soft_oracle(beta / s, confidence_level)[1] for s in scale]
        # mean over |x| of 2 s h: the Gauss-Legendre weights sum to 2 on [-1, 1]
        return float(np.sum(weights * scale * np.asarray(radius)))


def make_heteroscedastic_regression(
    n_samples=20000, *, noise="exponential", sigma=0.6, random_state=None, return_oracle=False
):
    """Generate the 1-D skewed heteroscedastic regression family of the CoCP paper (Table 1).

    ``X ~ U[-2, 2]``, ``Y = 0.5 sin(1.5 X) + (0.15 + 0.25 X**2) Z`` with standardised noise ``Z``
    (see :class:`HeteroscedasticOracle`). The oracle 0.9-HDI has population mean length 1.5900
    (normal), 0.9578 (log-normal) and 1.1129 (exponential).

    Parameters
    ----------
    n_samples : int, default=20000
        Number of samples.
    noise : {"normal", "lognormal", "exponential"}, default="exponential"
        Noise family.
    sigma : float, default=0.6
        Log-scale standard deviation of the log-normal noise.
    random_state : int, RandomState instance or None, default=None
        Seed of the draw.
    return_oracle : bool, default=False
        Also return the :class:`HeteroscedasticOracle` of the family.

    Returns
    -------
    X : ndarray of shape (n_samples, 1)
    y : ndarray of shape (n_samples,)
    oracle : HeteroscedasticOracle
        Only when ``return_oracle=True``.

    Examples
    --------
    >>> from sklearn_conformal.datasets import make_heteroscedastic_regression
    >>> X, y, oracle = make_heteroscedastic_regression(1000, noise="lognormal", random_state=0,
    ...                                                return_oracle=True)
    >>> X.shape, y.shape, oracle.hdi(X).shape
    ((1000, 1), (1000,), (1000, 2))
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, numbers.Integral) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}.")
    oracle = HeteroscedasticOracle(noise, sigma)
    rng = check_random_state(random_state)
    X = rng.uniform(-_X_RANGE, _X_RANGE, size=(n_samples, 1))
    y = oracle.location(X) + oracle.scale(X) * oracle.sample_noise(n_samples, rng)
    if return_oracle:
        return X, y, oracle
    return X, y
