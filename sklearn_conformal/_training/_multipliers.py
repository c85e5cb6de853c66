"""Class-wise multiplier updates: the augmented-Lagrangian outer step and the heuristic rule.

State lives in numpy float64 arrays (cheap to pickle and to log); the penalty derivatives are
evaluated with the numpy twins of the functions of :mod:`._penalties` (the same formulas and, in
float64, the same values) so value and derivative come from one formula.

ALM (CaCT eq. 14-15, CALS Alg. 2), once per epoch on the validation set, with ``z_k`` the
normalised constraint of class ``k``::

    lambda_k <- clip(P'(z_k, lambda_k, rho_k), lambda_min, lambda_max)      # uses the old rho_k
    every `rho_update_every` epochs: rho_k <- beta * rho_k  if z_k > rho_tol * max(0, z_prev_k)
    rho_k <- min(rho_k, rho_max)

With PHR, ``P' = max(0, lambda + rho z)``: an infeasible constraint (``z > 0``) raises its multiplier
by ``rho z`` every epoch, a satisfied one lowers it; hence the cap ``lambda_max`` and a feasible
target are what keep the multipliers bounded (design notes, sections 9 and 12).

HR (the CALS heuristic rule), with ``P_k = lambda_k * mean_{i in class k} max(0, |C(x_i)| - eta_k)``::

    lambda_k <- mu * lambda_k  if P_k > tau * P_k_prev;   lambda_k / mu  if P_k_prev > tau * P_k
"""

import warnings

import numpy as np

from ..exceptions import InfeasibleConstraintWarning
from ._penalties import get_penalty

MULTIPLIER_RULES = ("alm", "hr")


class ClasswiseMultipliers:
    """Class-wise multipliers ``lambda`` and penalty parameters ``rho`` with their update rules.

    Parameters
    ----------
    n_classes : int
    rule : {"alm", "hr"}, default="alm"
    penalty : {"phr", "p2", "p3"}, default="phr"
    lambda_init : float, default=1e-6
    rho_init : float, default=1.0
    rho_growth : float, default=1.2
        ``beta`` of the rho rule.
    rho_update_every : int, default=10
    rho_tol : float, default=1.0
        ``rho`` grows when ``z > rho_tol * max(0, z_prev)``; 1 is CaCT's rule, 0.9 CALS's.
    rho_max : float or None, default=None
    lambda_min, lambda_max : float, default=1e-6, 1e6
    hr_mu, hr_tau : float, default=1.1
        Step factor and hysteresis of the heuristic rule.

    Attributes
    ----------
    lambdas, rhos : ndarray of shape (n_classes,)
    history : list of ndarray
        ``lambdas`` after every update (the first entry is the initial value).
    rho_history : list of ndarray
    """

    def __init__(
        self,
        n_classes,
        rule="alm",
        penalty="phr",
        lambda_init=1e-6,
        rho_init=1.0,
        rho_growth=1.2,
        rho_update_every=10,
        rho_tol=1.0,
        rho_max=None,
        lambda_min=1e-6,
        lambda_max=1e6,
        hr_mu=1.1,
        hr_tau=1.1,
    ):
        if rule not in MULTIPLIER_RULES:
            raise ValueError(f"rule must be one of {MULTIPLIER_RULES}, got {rule!r}.")
        self.n_classes = int(n_classes)
        self.rule = rule
        self.penalty = penalty
        self._penalty_fn = get_penalty(penalty)
        self.rho_growth = float(rho_growth)
        self.rho_update_every = int(rho_update_every)
        self.rho_tol = float(rho_tol)
        self.rho_max = None if rho_max is None else float(rho_max)
        self.lambda_min = float(lambda_min)
        self.lambda_max = float(lambda_max)
        self.hr_mu = float(hr_mu)
        self.hr_tau = float(hr_tau)
        self.lambdas = np.clip(np.full(self.n_classes, float(lambda_init)), lambda_min, lambda_max)
        self.rhos = np.full(self.n_classes, float(rho_init))
        self.prev_z = None
        self.prev_score = None
        self.n_steps = 0
        self.history = [self.lambdas.copy()]
        self.rho_history = [self.rhos.copy()]

    def derivative(self, z, lambdas=None, rhos=None):
        """``dP/dz`` at ``z`` (broadcast against the class axis, which is the last one)."""
        lam = self.lambdas if lambdas is None else lambdas
        rho = self.rhos if rhos is None else rhos
        # the numpy twin of the torch penalty: the same float64 values, without torch's dispatch
        _, grad = get_penalty(self.penalty, numpy=True)(
            np.asarray(z, dtype=np.float64),
            np.asarray(lam, dtype=np.float64),
            np.asarray(rho, dtype=np.float64),
        )
        return grad

    def alm_step(self, z, present=None, epoch=None, samplewise=False):
        """One outer ALM step.

        Parameters
        ----------
        z : ndarray of shape (K,) or (n, K)
            Class-mean constraint values (CaCT), or per-sample constraints when ``samplewise``
            (CALS: the new multiplier is the mean over samples of the clipped derivative).
        present : bool ndarray of shape (K,), optional
            Classes with validation samples; the others keep their state.
        epoch : int, optional
            1-based epoch counter for the ``rho`` period (defaults to the number of steps taken).
        samplewise : bool, default=False

        Returns
        -------
        lambdas : ndarray of shape (K,)
        """
        z = np.asarray(z, dtype=np.float64)
        present = np.ones(self.n_classes, bool) if present is None else np.asarray(present, bool)
        self.n_steps += 1
        epoch = self.n_steps if epoch is None else int(epoch)
        if samplewise:
            grad = np.clip(self.derivative(z), self.lambda_min, self.lambda_max)
            new_lam = grad.mean(axis=0) if grad.shape[0] else self.lambdas.copy()
            z_class = z.mean(axis=0) if z.shape[0] else np.zeros(self.n_classes)
        else:
            new_lam = self.derivative(z)
            z_class = z
        new_lam = np.clip(new_lam, self.lambda_min, self.lambda_max)
        # rho first compares with the previous epoch's constraint, then lambda moves (with old rho)
        rhos = self.rhos.copy()
        if self.prev_z is not None and epoch % self.rho_update_every == 0:
            grow = present & (z_class > self.rho_tol * np.maximum(0.0, self.prev_z))
            rhos = np.where(grow, self.rho_growth * rhos, rhos)
            if self.rho_max is not None:
                rhos = np.minimum(rhos, self.rho_max)
        self.lambdas = np.where(present, new_lam, self.lambdas)
        self.rhos = rhos
        if self.prev_z is None:
            self.prev_z = np.where(present, z_class, 0.0)
        else:
            self.prev_z = np.where(present, z_class, self.prev_z)
        self._record()
        return self.lambdas

    def hr_step(self, excess, present=None):
        """One heuristic-rule step from the class-mean hinge ``excess_k = mean max(0, |C| - eta)``.

        Parameters
        ----------
        excess : ndarray of shape (K,)
        present : bool ndarray of shape (K,), optional

        Returns
        -------
        lambdas : ndarray of shape (K,)
        """
        excess = np.asarray(excess, dtype=np.float64)
        present = np.ones(self.n_classes, bool) if present is None else np.asarray(present, bool)
        self.n_steps += 1
        score = self.lambdas * excess
        if self.prev_score is not None:
            up = present & (score > self.hr_tau * self.prev_score)
            down = present & (self.prev_score > self.hr_tau * score)
            lam = np.where(up, self.lambdas * self.hr_mu, self.lambdas)
            lam = np.where(down, lam / self.hr_mu, lam)
            self.lambdas = np.clip(lam, self.lambda_min, self.lambda_max)
        self.prev_score = np.where(present, score, 0.0 if self.prev_score is None else self.prev_score)
        self._record()
        return self.lambdas

    def _record(self):
        self.history.append(self.lambdas.copy())
        self.rho_history.append(self.rhos.copy())

    def at_cap(self, rtol=1e-6):
        """Boolean mask of multipliers sitting at ``lambda_max``."""
        return self.lambdas >= self.lambda_max * (1 - rtol)

    def check_feasibility(self, z_history, patience=10):
        """Warn when the last ``patience`` steps had every class infeasible or a multiplier at its cap.

        Parameters
        ----------
        z_history : list of ndarray of shape (K,)
            Class-mean constraint values per step (NaN for absent classes).
        patience : int, default=10

        Returns
        -------
        infeasible : bool
        """
        if len(z_history) < patience:
            return False
        recent = np.asarray(z_history[-patience:], dtype=float)
        with np.errstate(invalid="ignore"):
            all_over = bool(np.all(np.nan_to_num(recent, nan=1.0) > 0))
        capped = bool(np.any(self.at_cap()))
        if all_over or capped:
            what = "every class stayed over its target" if all_over else "a multiplier sits at lambda_max"
            warnings.warn(
                f"class-wise set-size constraints look infeasible ({what} for the last {patience} "
                "epochs; max lambda = {:.3g}). The multipliers then only grow and the size penalty "
                "swamps the classification loss. Use objective__target_size='auto' (a relative "
                "target), a smaller multipliers__rho_init, or a larger training miscoverage.".format(self.lambdas.max()),
                InfeasibleConstraintWarning,
                stacklevel=3,
            )
            return True
        return False
