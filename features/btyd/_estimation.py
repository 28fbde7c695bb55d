"""What the two models share: input checks, the likelihood maximiser and the estimator base.

Both models are fitted by maximum likelihood on log-parameters with analytic gradients.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import optimize

from kam.features.btyd.errors import BTYDError, BTYDFitError, BTYDNotFittedError

# Log-parameters are kept in this box; an optimum on its edge means the data do not pin the
# parameter down (e.g. no sign of drop-out at all), which is reported rather than returned.
_LOG_BOUND = 20.0
# Largest gradient entry (of the mean negative log-likelihood in log-parameters) accepted as a
# stationary point when the optimiser stops for another reason (line-search trouble at the optimum).
_GRAD_TOL = 1e-7


def _dot(weights: np.ndarray, values: np.ndarray) -> float:
    # Not `weights @ values`: a BLAS dot product on long vectors may start threads, which on a
    # loaded machine cost far more than the sum itself (seconds instead of milliseconds a fit).
    return float(np.sum(weights * values))


# ---------------------------------------------------------------------------------------------
# input checks


def _column(name: str, values: ArrayLike) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as exc:
        raise BTYDError(f"{name} must be numeric: {exc}") from exc
    if array.ndim != 1:
        raise BTYDError(f"{name} must be one-dimensional, got shape {array.shape}")
    return array


def _check_values(frequency: np.ndarray, recency: np.ndarray | None, T: np.ndarray | None) -> None:
    """Checks shared by fitting and prediction; arrays are already broadcast to one shape."""
    checks = [("frequency", frequency), ("recency", recency), ("T", T)]
    for name, array in checks:
        if array is None:
            continue
        if not np.all(np.isfinite(array)):
            raise BTYDError(f"{name} has missing or infinite values")
        if np.any(array < 0):
            raise BTYDError(f"{name} has negative values (min {array.min():g})")
    if np.any(frequency != np.round(frequency)):
        raise BTYDError("frequency must be a whole number of repeat purchases")
    if recency is None or T is None:
        return
    late = recency > T
    if np.any(late):
        raise BTYDError(
            f"recency > T for {int(late.sum())} customer(s): the last purchase cannot come after "
            "the end of the observation period"
        )
    stray = (frequency == 0) & (recency != 0)
    if np.any(stray):
        raise BTYDError(
            f"recency must be 0 where frequency is 0 ({int(stray.sum())} customer(s) are not)"
        )


def _weights(weights: ArrayLike | None, n: int) -> np.ndarray:
    if weights is None:
        return np.ones(n)
    w = _column("weights", weights)
    if w.shape[0] != n:
        raise BTYDError(f"weights has {w.shape[0]} rows but the data have {n}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise BTYDError("weights must be finite and non-negative")
    if w.sum() <= 0:
        raise BTYDError("weights add up to 0: there is nothing to fit")
    return w


def _same_length(**columns: np.ndarray) -> int:
    lengths = {name: array.shape[0] for name, array in columns.items()}
    if len(set(lengths.values())) != 1:
        raise BTYDError(f"inputs differ in length: {lengths}")
    n = next(iter(lengths.values()))
    if n == 0:
        raise BTYDError("no customers: the input is empty")
    return n


def _maximise(
    objective: Callable[[np.ndarray], tuple[float, np.ndarray]],
    start: np.ndarray,
    names: tuple[str, ...],
    model: str,
) -> np.ndarray:
    """Minimise ``objective`` (value, gradient) over log-parameters; return the log-parameters."""
    # Plain BFGS first: it runs on numpy alone, where L-BFGS-B's small BLAS calls cost more
    # than the likelihood itself on a busy machine. L-BFGS-B in a box is the fallback for
    # starts from which BFGS wanders off to extreme values or stalls.
    with np.errstate(all="ignore"):
        result = optimize.minimize(
            objective, start, jac=True, method="BFGS", options={"maxiter": 1000, "gtol": 1e-9}
        )
        inside = np.all(np.isfinite(result.x)) and np.all(np.abs(result.x) < _LOG_BOUND)
        # BFGS reports "precision loss" when the gradient is already at rounding level.
        stationary = result.success or np.max(np.abs(result.jac)) <= _GRAD_TOL
        if not (stationary and inside and np.isfinite(result.fun)):
            result = optimize.minimize(
                objective,
                start,
                jac=True,
                method="L-BFGS-B",
                bounds=[(-_LOG_BOUND, _LOG_BOUND)] * len(start),
                options={"maxiter": 2000, "ftol": 1e-15, "gtol": 1e-10},
            )
        value, grad = objective(result.x)
    if not np.isfinite(value) or not np.all(np.isfinite(grad)):
        raise BTYDFitError(f"{model}: the log-likelihood is not finite at the optimiser's stop")
    edge = np.abs(result.x) >= _LOG_BOUND - 1e-6
    if np.any(edge):
        which = ", ".join(
            f"{n}={np.exp(v):.3g}" for n, v, e in zip(names, result.x, edge, strict=True) if e
        )
        # A penalty pulls parameters towards 0, so it only helps those running off upwards.
        hint = " - a positive penalizer keeps them finite" if np.any(result.x[edge] > 0) else ""
        raise BTYDFitError(
            f"{model}: no finite maximum-likelihood estimate ({which} ran off to the edge of the "
            f"search box): the data do not identify the model{hint}"
        )
    if not result.success and np.max(np.abs(grad)) > _GRAD_TOL:
        raise BTYDFitError(
            f"{model}: the optimiser did not converge ({result.message}; largest gradient "
            f"{np.max(np.abs(grad)):.2g} after {result.nit} iterations)"
        )
    return result.x


class _Estimator:
    """Parameter handling shared by the two models (the scikit-learn estimator contract)."""

    _fitted_names: tuple[str, ...] = ()

    def __init__(self, penalizer: float = 0.0) -> None:
        self.penalizer = penalizer

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters, as scikit-learn's ``get_params``.

        Parameters
        ----------
        deep : bool
            Unused; kept for the scikit-learn signature.

        Returns
        -------
        dict
            ``{"penalizer": ...}``.
        """
        return {"penalizer": self.penalizer}

    def set_params(self, **params: Any) -> _Estimator:
        """Set constructor parameters, as scikit-learn's ``set_params``.

        Parameters
        ----------
        **params
            ``penalizer``.

        Returns
        -------
        self
        """
        for key, value in params.items():
            if key not in self.get_params():
                raise BTYDError(f"{type(self).__name__} has no parameter {key!r}")
            setattr(self, key, value)
        return self

    def _penalizer(self) -> float:
        penalizer = float(self.penalizer)
        if not np.isfinite(penalizer) or penalizer < 0:
            raise BTYDError(f"penalizer must be a non-negative number, got {self.penalizer!r}")
        return penalizer

    def _check_fitted(self) -> None:
        if not all(hasattr(self, name) for name in self._fitted_names):
            raise BTYDNotFittedError(
                f"this {type(self).__name__} is not fitted yet: call fit() before predicting"
            )

    def __repr__(self) -> str:
        if all(hasattr(self, name) for name in self._fitted_names):
            fitted = ", ".join(
                f"{n.rstrip('_')}={getattr(self, n):.4g}" for n in self._fitted_names
            )
            return f"{type(self).__name__}(penalizer={self.penalizer!r}) [{fitted}]"
        return f"{type(self).__name__}(penalizer={self.penalizer!r})"
