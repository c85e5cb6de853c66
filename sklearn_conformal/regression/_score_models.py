"""The models a regression conformity score reads, shared by the conformal regressors.

A :class:`~sklearn_conformal.conformity_scores.BaseRegressionScore` names the predictions it
reads (``predictions``: ``"center"``, ``"scale"``, ``"bounds"``); :class:`ScoreModelsMixin`
turns the estimator's ``estimator`` / ``scale_estimator`` / ``conformity_score`` parameters into
the models to fit (a point model, a spread model on out-of-fold residuals, a pair of quantile
models), their routing roles and their predictions as the dict the score reads.
"""

import numpy as np
from sklearn.base import clone
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import cross_val_predict

from ..conformity_scores._regression import REGRESSION_SCORES

# relative floor of the predicted spread for the normalized score: a spread model that predicts
# ~0 somewhere would otherwise give a zero-width interval there
_SCALE_FLOOR = 1e-3
# folds of the out-of-fold residuals the spread model is fitted to (unshuffled KFold over the
# already shuffled training split, so no extra randomness)
_SCALE_FOLDS = 5


class ScoreModelsMixin:
    """Models, routing roles and predictions of the score named by ``conformity_score``.

    The class using it has the parameters ``estimator`` (a model, a ``(lower, upper)`` pair for
    CQR, or None), ``scale_estimator``, ``conformity_score`` and ``confidence_level``.
    """

    def _needs(self):
        """The predictions the score reads, from the parameter (never raising: tags use it)."""
        score = self.conformity_score
        if isinstance(score, str):
            score = REGRESSION_SCORES.get(score, REGRESSION_SCORES["absolute"])
        needs = getattr(score, "predictions", ("center",))
        return set(needs) if isinstance(needs, (tuple, list, set, frozenset)) else {"center"}

    def _wrapped_models(self):
        """The models that see ``X``, read from the parameters without validating them.

        Used for input tags, which must never raise (invalid parameters are reported by
        ``fit``).
        """
        if isinstance(self.estimator, tuple):
            models = list(self.estimator)
        elif self.estimator is not None:
            models = [self.estimator]
        elif "bounds" in self._needs():
            models = [HistGradientBoostingRegressor(loss="quantile")]
        else:
            models = [LinearRegression()]
        if "scale" in self._needs() and self.scale_estimator is not None:
            models.append(self.scale_estimator)
        return models

    def _routing_roles(self):
        """Routing role -> wrapped model, read from the parameters."""
        if isinstance(self.estimator, tuple):
            # the same errors as fit's, also when GridSearchCV asks for the routing first
            self._models()
            roles = {"lower_estimator": self.estimator[0], "upper_estimator": self.estimator[1]}
        elif self.estimator is not None:
            roles = {"estimator": self.estimator}
        elif "bounds" in self._needs():
            roles = {"estimator": HistGradientBoostingRegressor(loss="quantile")}
        else:
            roles = {"estimator": LinearRegression()}
        if "scale" in self._needs() and self.scale_estimator is not None:
            roles["scale_estimator"] = self.scale_estimator
        return roles

    def _models(self, default_seed=None):
        if "bounds" not in self._needs():
            if isinstance(self.estimator, tuple):
                raise ValueError(
                    "a (lower, upper) estimator pair is only valid with conformity_score='cqr' "
                    "(a score whose predictions include 'bounds')."
                )
            return [LinearRegression() if self.estimator is None else self.estimator]
        if isinstance(self.estimator, tuple):
            if len(self.estimator) != 2:
                raise ValueError(
                    "estimator for CQR must be one regressor or a (lower, upper) pair."
                )
            return list(self.estimator)
        base = (
            HistGradientBoostingRegressor(loss="quantile", random_state=default_seed)
            if self.estimator is None
            else self.estimator
        )
        alpha = 1.0 - self.confidence_level
        return [with_quantile(base, alpha / 2), with_quantile(base, 1 - alpha / 2)]

    def _fit_scale(self, X_train, y_train, point_params, scale_params):
        if len(y_train) < _SCALE_FOLDS:
            raise ValueError(
                f"conformity_score='normalized' fits the spread model on {_SCALE_FOLDS}-fold "
                f"out-of-fold residuals of the training split, which needs at least "
                f"{_SCALE_FOLDS} training samples; got {len(y_train)}. Use more data, a smaller "
                "calibration_size, or conformity_score='absolute'."
            )
        # out-of-fold residuals: in-sample residuals of a flexible model are too small
        out_of_fold = cross_val_predict(
            clone(self._models()[0]), X_train, y_train, cv=_SCALE_FOLDS, params=point_params
        )
        residuals = np.abs(y_train - out_of_fold)
        self._scale_floor = _SCALE_FLOOR * max(float(residuals.mean()), np.finfo(float).tiny)
        base = self._models()[0] if self.scale_estimator is None else self.scale_estimator
        return clone(base).fit(X_train, residuals, **scale_params)

    def _predictions(self, X):
        """``X`` and the predictions the score reads (see ``BaseRegressionScore``)."""
        needs = self._needs()
        parts = {"X": X}
        if "bounds" in needs:
            lower_model, upper_model = self.estimator_
            parts["lower"] = np.asarray(lower_model.predict(X), dtype=float)
            parts["upper"] = np.asarray(upper_model.predict(X), dtype=float)
            return parts
        parts["center"] = np.asarray(self.estimator_.predict(X), dtype=float)
        if "scale" in needs:
            scale = np.asarray(self.scale_estimator_.predict(X), dtype=float)
            parts["scale"] = np.maximum(scale, max(self._scale_floor, np.finfo(float).tiny))
        return parts


    def _fit_models(self, X_train, y_train, train_params, roles, default_seed):
        """The score's models fitted on the training rows (``train_params``: each routing
        role's metadata for them); ``default_seed`` seeds the default CQR quantile models."""
        models = self._models(default_seed=default_seed)
        if "lower_estimator" in roles:
            model_params = [train_params["lower_estimator"], train_params["upper_estimator"]]
        else:
            model_params = [train_params["estimator"]] * len(models)
        return [
            clone(model).fit(X_train, y_train, **model_params_)
            for model, model_params_ in zip(models, model_params)
        ]


def with_quantile(estimator, quantile):
    """Clone of ``estimator`` predicting the given quantile."""
    params = estimator.get_params(deep=False)
    if "loss" in params and params["loss"] != "quantile":
        # e.g. HistGradientBoostingRegressor() has a 'quantile' parameter that only the quantile
        # loss reads: setting it would silently give two equal mean models (constant width)
        raise ValueError(
            f"conformity_score='cqr' needs quantile models, but {type(estimator).__name__} has "
            f"loss={params['loss']!r}. Pass {type(estimator).__name__}(loss='quantile'), or a "
            "(lower, upper) tuple of regressors."
        )
    if "quantile" in params:
        return clone(estimator).set_params(quantile=quantile)
    if params.get("loss") == "quantile" and "alpha" in params:
        return clone(estimator).set_params(alpha=quantile)
    raise ValueError(
        f"conformity_score='cqr' needs a quantile regressor (a 'quantile' parameter, or "
        f"loss='quantile' with 'alpha'); got {type(estimator).__name__}. Pass a "
        "(lower, upper) tuple of regressors instead."
    )
