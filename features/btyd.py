"""Buy-till-you-die models: BG/NBD for repeat purchasing and Gamma-Gamma for spend per purchase.

The BG/NBD model (Fader, Hardie & Lee 2005, "Counting your customers the easy way") describes
each account by its number of repeat purchases ``x`` (frequency), the time of its last purchase
``t_x`` since its first (recency) and its age ``T`` since its first purchase, and gives the
probability that the account is still alive and its expected purchases over a coming period.
The Gamma-Gamma model (Fader, Hardie & Lee 2005, "RFM and CLV") gives the expected value of a
purchase given the mean value ``m`` of the account's ``x`` repeat purchases.

Both are fitted by maximum likelihood on log-parameters with analytic gradients. Time is in
whatever unit the inputs use (``rfm_summary`` builds them in days or weeks); the scale parameter
``alpha`` of BG/NBD is in that unit too.

This module depends on numpy, pandas and scipy only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import optimize, special

__all__ = [
    "BTYDError",
    "BTYDFitError",
    "BTYDNotFittedError",
    "BetaGeo",
    "GammaGamma",
    "rfm_summary",
]

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


class BTYDError(ValueError):
    """Invalid input to a buy-till-you-die model (negative values, recency > T, empty data...)."""


class BTYDFitError(BTYDError):
    """The likelihood could not be maximised: no convergence or no finite optimum."""


class BTYDNotFittedError(BTYDError, AttributeError):
    """A prediction was asked of a model that has not been fitted."""


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


@dataclass(frozen=True)
class _BGData:
    """BG/NBD fitting data, split by whether the customer has repeat purchases."""

    xs: np.ndarray  # distinct frequencies
    wx: np.ndarray  # total weight of each distinct frequency
    total: float
    T0: np.ndarray  # customers without repeat purchases: age and weight
    w0: np.ndarray
    x1: np.ndarray  # repeat customers: frequency, recency, age and weight
    tx1: np.ndarray
    T1: np.ndarray
    w1: np.ndarray

    @classmethod
    def from_inputs(
        cls, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike, weights: ArrayLike | None
    ) -> _BGData:
        x = _column("frequency", frequency)
        tx = _column("recency", recency)
        age = _column("T", T)
        n = _same_length(frequency=x, recency=tx, T=age)
        w = _weights(weights, n)
        _check_values(x, tx, age)
        if np.all(age[w > 0] == 0):
            raise BTYDError("every customer has T = 0: there is no observation time to fit on")
        return cls.build(x, tx, age, w)

    @classmethod
    def build(cls, x: np.ndarray, tx: np.ndarray, T: np.ndarray, w: np.ndarray) -> _BGData:
        xs, inverse = np.unique(x, return_inverse=True)
        wx = np.bincount(inverse, weights=w, minlength=xs.size)
        repeat = x > 0
        return cls(
            xs,
            wx,
            float(w.sum()),
            T[~repeat],
            w[~repeat],
            x[repeat],
            tx[repeat],
            T[repeat],
            w[repeat],
        )


@dataclass(frozen=True)
class _GGData:
    """Gamma-Gamma fitting data (repeat customers only) with the parameter-free sums."""

    xs: np.ndarray  # distinct frequencies
    wx: np.ndarray  # total weight of each distinct frequency
    total: float
    x: np.ndarray
    w: np.ndarray
    mx: np.ndarray  # m * x: total value of the repeat purchases
    wxm: np.ndarray  # w * x
    sum_x_log_mx: float  # sum of w * x * log(m * x)
    sum_log_m: float  # sum of w * log(m)

    @classmethod
    def from_inputs(
        cls, frequency: ArrayLike, monetary_value: ArrayLike, weights: ArrayLike | None
    ) -> _GGData:
        x = _column("frequency", frequency)
        m = _column("monetary_value", monetary_value)
        n = _same_length(frequency=x, monetary_value=m)
        w = _weights(weights, n)
        _check_values(x, None, None)
        if not np.all(np.isfinite(m)):
            raise BTYDError("monetary_value has missing or infinite values")
        keep = (x > 0) & (w > 0)
        if not np.any(keep):
            raise BTYDError("no customer has a repeat purchase: Gamma-Gamma needs frequency > 0")
        if np.any(m[keep] <= 0):
            raise BTYDError(
                f"monetary_value must be > 0 for customers with repeat purchases "
                f"({int((m[keep] <= 0).sum())} are not)"
            )
        return cls.build(x[keep], m[keep], w[keep])

    @classmethod
    def build(cls, x: np.ndarray, m: np.ndarray, w: np.ndarray) -> _GGData:
        xs, inverse = np.unique(x, return_inverse=True)
        wx = np.bincount(inverse, weights=w, minlength=xs.size)
        mx = m * x
        return cls(
            xs,
            wx,
            float(w.sum()),
            x,
            w,
            mx,
            w * x,
            _dot(w, x * np.log(mx)),
            _dot(w, np.log(m)),
        )


# ---------------------------------------------------------------------------------------------
# BG/NBD


class BetaGeo(_Estimator):
    """The BG/NBD model of repeat purchasing (Fader, Hardie & Lee 2005).

    While alive, an account buys as a Poisson process of rate ``lambda ~ Gamma(r, alpha)``; after
    each repeat purchase it drops out for good with probability ``p ~ Beta(a, b)``.

    Parameters
    ----------
    penalizer : float
        L2 penalty ``penalizer * (r**2 + alpha**2 + a**2 + b**2)`` added to the mean negative
        log-likelihood; 0 gives the plain maximum-likelihood estimate.

    Attributes
    ----------
    r_, alpha_, a_, b_ : float
        Fitted parameters (``alpha_`` in the time unit of the data).
    log_likelihood_ : float
        Weighted log-likelihood of the data at the fitted parameters (without the penalty).
    n_customers_ : float
        Number of customers fitted (the sum of the weights).
    """

    _fitted_names = ("r_", "alpha_", "a_", "b_")

    @staticmethod
    def _log_likelihood(log_params: np.ndarray, data: _BGData) -> tuple[float, np.ndarray]:
        """Weighted log-likelihood and its gradient in log-parameters (shape (4,))."""
        r, alpha, a, b = np.exp(log_params)
        gammaln, psi = special.gammaln, special.digamma
        xs, wx, total = data.xs, data.wx, data.total
        # Terms in x alone, Gamma(r+x)/Gamma(r) * alpha^r * B(a, b+x)/B(a, b), summed per
        # distinct x.
        ll = _dot(wx, gammaln(r + xs) + gammaln(b + xs) - gammaln(a + b + xs)) + total * (
            r * np.log(alpha) - gammaln(r) - gammaln(b) + gammaln(a + b)
        )
        d_r = _dot(wx, psi(r + xs)) + total * (np.log(alpha) - psi(r))
        d_alpha = total * r / alpha
        d_a = total * psi(a + b) - _dot(wx, psi(a + b + xs))
        d_b = _dot(wx, psi(b + xs) - psi(a + b + xs)) + total * (psi(a + b) - psi(b))

        # Customers without repeat purchases are surely alive: (alpha + T)^-r.
        log_at0 = np.log(alpha + data.T0)
        ll -= r * _dot(data.w0, log_at0)
        d_r -= _dot(data.w0, log_at0)
        d_alpha -= r * _dot(data.w0, 1.0 / (alpha + data.T0))

        # Repeat customers: alive, (alpha + T)^-(r+x), or gone after the last purchase,
        # a / (b + x - 1) * (alpha + t_x)^-(r+x); mixed on the log scale.
        x, w = data.x1, data.w1
        rx = r + x
        bx1 = b + x - 1.0
        log_at = np.log(alpha + data.T1)
        log_atx = np.log(alpha + data.tx1)
        u_alive = -rx * log_at
        u_dead = np.log(a) - np.log(bx1) - rx * log_atx
        mix = np.logaddexp(u_alive, u_dead)
        w_dead = np.exp(u_dead - mix)
        w_alive = 1.0 - w_dead
        ll += _dot(w, mix)
        d_r -= _dot(w, w_alive * log_at + w_dead * log_atx)
        d_alpha -= _dot(w, rx * (w_alive / (alpha + data.T1) + w_dead / (alpha + data.tx1)))
        d_a += _dot(w, w_dead) / a
        d_b -= _dot(w, w_dead / bx1)
        return float(ll), np.array([r * d_r, alpha * d_alpha, a * d_a, b * d_b])

    def fit(
        self,
        frequency: ArrayLike,
        recency: ArrayLike,
        T: ArrayLike,
        weights: ArrayLike | None = None,
    ) -> BetaGeo:
        """Fit by maximum likelihood.

        Parameters
        ----------
        frequency : array-like of int
            Number of repeat purchases ``x`` (purchases after the first).
        recency : array-like of float
            Time of the last purchase since the first, ``t_x`` (0 when ``x`` is 0).
        T : array-like of float
            Time from the first purchase to the end of observation.
        weights : array-like of float, optional
            Number of customers each row stands for, so that identical rows may be passed once.

        Returns
        -------
        BetaGeo
            The fitted model (``self``).

        Raises
        ------
        BTYDError
            If the inputs are empty, of unequal length, negative, non-finite, or ``recency > T``.
        BTYDFitError
            If the likelihood has no finite maximum on the data or the optimiser does not converge.
        """
        data = _BGData.from_inputs(frequency, recency, T, weights)
        penalizer = self._penalizer()
        if data.w1.sum() == 0 and penalizer == 0:
            raise BTYDFitError(
                "BetaGeo: no customer has a repeat purchase, so the purchase and drop-out rates "
                "cannot be estimated"
            )
        total = data.total

        def objective(log_params: np.ndarray) -> tuple[float, np.ndarray]:
            ll, grad = self._log_likelihood(log_params, data)
            params = np.exp(log_params)
            value = -ll / total + penalizer * np.sum(params**2)
            gradient = -grad / total + 2.0 * penalizer * params**2
            return value, gradient

        # Start with a mean purchase rate r / alpha equal to the pooled observed rate.
        exposure = _dot(data.w0, data.T0) + _dot(data.w1, data.T1)
        rate = max(_dot(data.w1, data.x1) / max(exposure, 1e-12), 1e-6)
        start = np.log([1.0, 1.0 / rate, 1.0, 1.0])
        start = np.clip(start, -_LOG_BOUND + 1, _LOG_BOUND - 1)
        log_params = _maximise(objective, start, ("r", "alpha", "a", "b"), "BetaGeo")
        self.r_, self.alpha_, self.a_, self.b_ = (float(v) for v in np.exp(log_params))
        self.log_likelihood_, _ = self._log_likelihood(log_params, data)
        self.n_customers_ = float(total)
        return self

    def score(
        self,
        frequency: ArrayLike,
        recency: ArrayLike,
        T: ArrayLike,
        weights: ArrayLike | None = None,
    ) -> float:
        """Mean log-likelihood per customer at the fitted parameters (higher is better).

        Parameters
        ----------
        frequency, recency, T, weights : array-like
            As for :meth:`fit`.

        Returns
        -------
        float
            Weighted mean log-likelihood, without the penalty.
        """
        self._check_fitted()
        data = _BGData.from_inputs(frequency, recency, T, weights)
        log_params = np.log([self.r_, self.alpha_, self.a_, self.b_])
        return self._log_likelihood(log_params, data)[0] / data.total

    def _history(
        self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike, *extra: ArrayLike
    ) -> list[np.ndarray]:
        self._check_fitted()
        arrays = [np.asarray(v, dtype=float) for v in (frequency, recency, T, *extra)]
        try:
            arrays = list(np.broadcast_arrays(*arrays))
        except ValueError as exc:
            raise BTYDError(f"inputs do not have compatible shapes: {exc}") from exc
        x, tx, age = arrays[:3]
        _check_values(x, tx, age)
        for array in arrays[3:]:
            if not np.all(np.isfinite(array)) or np.any(array < 0):
                raise BTYDError("t must be finite and non-negative")
        return arrays

    def _log_odds_dead(self, x: np.ndarray, tx: np.ndarray, T: np.ndarray) -> np.ndarray:
        """log P(dropped out) - log P(alive) given the history; -inf where x = 0."""
        r, alpha, a, b = self.r_, self.alpha_, self.a_, self.b_
        repeat = x > 0
        bx1 = np.where(repeat, b + x - 1.0, 1.0)
        odds = np.log(a) - np.log(bx1) + (r + x) * (np.log(alpha + T) - np.log(alpha + tx))
        return np.where(repeat, odds, -np.inf)

    def prob_alive(self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> np.ndarray:
        """Probability that each customer is still alive at the end of observation.

        Parameters
        ----------
        frequency, recency, T : array-like
            Purchase history as for :meth:`fit` (broadcast against each other).

        Returns
        -------
        numpy.ndarray
            ``P(alive | x, t_x, T)``, 1 for customers without repeat purchases.
        """
        x, tx, age = self._history(frequency, recency, T)
        return special.expit(-self._log_odds_dead(x, tx, age))

    def expected_purchases(
        self, t: ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> np.ndarray:
        """Expected number of purchases in ``(T, T + t]`` given each customer's history.

        Parameters
        ----------
        t : array-like
            Length of the coming period, in the time unit of the data.
        frequency, recency, T : array-like
            Purchase history as for :meth:`fit` (broadcast against each other and ``t``).

        Returns
        -------
        numpy.ndarray
            ``E[Y(t) | x, t_x, T]`` (Fader, Hardie & Lee 2005, eq. 10).
        """
        x, tx, age, t = self._history(frequency, recency, T, t)
        r, alpha, a, b = self.r_, self.alpha_, self.a_, self.b_
        z = t / (alpha + age + t)
        # Eq. 10 has ((alpha+T)/(alpha+T+t))**(r+x) * 2F1(r+x, b+x; a+b+x-1; z); Euler's
        # transformation turns it into (1-z)**(a-1) * 2F1(a+b-1-r, a-1; a+b+x-1; z), whose
        # parameters do not grow with x, so large frequencies neither overflow nor lose precision.
        tail = (1.0 - z) ** (a - 1.0) * special.hyp2f1(a + b - 1.0 - r, a - 1.0, a + b + x - 1.0, z)
        alive = special.expit(-self._log_odds_dead(x, tx, age))
        return alive * (a + b + x - 1.0) / (a - 1.0) * (1.0 - tail)

    def prob_no_purchase(
        self, t: ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> np.ndarray:
        """Probability of no purchase in ``(T, T + t]`` given each customer's history.

        A customer drops out only right after a purchase, so one that is alive at ``T`` and
        makes no purchase stays alive: with ``lambda | alive ~ Gamma(r + x, alpha + T)``,
        ``P(0) = (1 - P(alive)) + P(alive) * ((alpha + T) / (alpha + T + t)) ** (r + x)``.

        Parameters
        ----------
        t : array-like
            Length of the coming period, in the time unit of the data.
        frequency, recency, T : array-like
            Purchase history as for :meth:`fit` (broadcast against each other and ``t``).

        Returns
        -------
        numpy.ndarray
            ``P(Y(t) = 0 | x, t_x, T)``.
        """
        x, tx, age, t = self._history(frequency, recency, T, t)
        alive = special.expit(-self._log_odds_dead(x, tx, age))
        quiet = np.exp((self.r_ + x) * (np.log(self.alpha_ + age) - np.log(self.alpha_ + age + t)))
        return 1.0 - alive * (1.0 - quiet)


# ---------------------------------------------------------------------------------------------
# Gamma-Gamma


class GammaGamma(_Estimator):
    """The Gamma-Gamma model of the value of a purchase (Fader, Hardie & Lee 2005).

    Each purchase of an account is ``Gamma(p, nu)`` with ``nu ~ Gamma(q, v)`` across accounts;
    the model assumes spend per purchase is independent of purchase frequency.

    Parameters
    ----------
    penalizer : float
        L2 penalty ``penalizer * (p**2 + q**2 + v**2)`` added to the mean negative
        log-likelihood; 0 gives the plain maximum-likelihood estimate.

    Attributes
    ----------
    p_, q_, v_ : float
        Fitted parameters (``v_`` in the currency of the data).
    log_likelihood_ : float
        Weighted log-likelihood of the repeat customers' mean values (without the penalty).
    n_customers_ : float
        Number of repeat customers fitted (the sum of their weights).
    """

    _fitted_names = ("p_", "q_", "v_")

    @staticmethod
    def _log_likelihood(log_params: np.ndarray, data: _GGData) -> tuple[float, np.ndarray]:
        """Weighted log-density of the mean values and its gradient in log-parameters (3,)."""
        p, q, v = np.exp(log_params)
        gammaln, psi = special.gammaln, special.digamma
        xs, wx, total = data.xs, data.wx, data.total
        pxs = p * xs
        log_vmx = np.log(v + data.mx)
        w_log_vmx = _dot(data.w, log_vmx)
        w_x_log_vmx = _dot(data.wxm, log_vmx)
        ll = (
            _dot(wx, gammaln(pxs + q) - gammaln(pxs))
            + total * (q * np.log(v) - gammaln(q))
            + p * data.sum_x_log_mx
            - data.sum_log_m
            - p * w_x_log_vmx
            - q * w_log_vmx
        )
        psi_pxq = psi(pxs + q)
        d_p = _dot(wx, xs * (psi_pxq - psi(pxs))) + data.sum_x_log_mx - w_x_log_vmx
        d_q = _dot(wx, psi_pxq) + total * (np.log(v) - psi(q)) - w_log_vmx
        d_v = total * q / v - _dot(data.w, (p * data.x + q) / (v + data.mx))
        return float(ll), np.array([p * d_p, q * d_q, v * d_v])

    def fit(
        self, frequency: ArrayLike, monetary_value: ArrayLike, weights: ArrayLike | None = None
    ) -> GammaGamma:
        """Fit by maximum likelihood on the customers with at least one repeat purchase.

        Parameters
        ----------
        frequency : array-like of int
            Number of repeat purchases ``x``; rows with ``x = 0`` are ignored.
        monetary_value : array-like of float
            Mean value ``m`` of the customer's repeat purchases (must be > 0 where ``x > 0``).
        weights : array-like of float, optional
            Number of customers each row stands for.

        Returns
        -------
        GammaGamma
            The fitted model (``self``).

        Raises
        ------
        BTYDError
            If the inputs are empty, of unequal length, negative or non-finite, or no customer
            has a repeat purchase, or a repeat customer's mean value is not positive.
        BTYDFitError
            If the likelihood has no finite maximum on the data or the optimiser does not converge.
        """
        data = _GGData.from_inputs(frequency, monetary_value, weights)
        penalizer = self._penalizer()
        total = data.total

        def objective(log_params: np.ndarray) -> tuple[float, np.ndarray]:
            ll, grad = self._log_likelihood(log_params, data)
            params = np.exp(log_params)
            value = -ll / total + penalizer * np.sum(params**2)
            gradient = -grad / total + 2.0 * penalizer * params**2
            return value, gradient

        # p = q = 2 with v set so the population mean p * v / (q - 1) equals the observed mean:
        # the value scale (currency) then does not matter to the optimiser.
        mean = _dot(data.w, data.mx / data.x) / total
        start = np.log([2.0, 2.0, mean / 2.0])
        log_params = _maximise(objective, start, ("p", "q", "v"), "GammaGamma")
        self.p_, self.q_, self.v_ = (float(v) for v in np.exp(log_params))
        self.log_likelihood_, _ = self._log_likelihood(log_params, data)
        self.n_customers_ = float(total)
        return self

    def score(
        self, frequency: ArrayLike, monetary_value: ArrayLike, weights: ArrayLike | None = None
    ) -> float:
        """Mean log-density of the repeat customers' mean values at the fitted parameters.

        Parameters
        ----------
        frequency, monetary_value, weights : array-like
            As for :meth:`fit`; rows with ``frequency = 0`` are ignored.

        Returns
        -------
        float
            Weighted mean log-density per repeat customer, without the penalty.
        """
        self._check_fitted()
        data = _GGData.from_inputs(frequency, monetary_value, weights)
        log_params = np.log([self.p_, self.q_, self.v_])
        return self._log_likelihood(log_params, data)[0] / data.total

    def expected_spend(self, frequency: ArrayLike, monetary_value: ArrayLike) -> np.ndarray:
        """Expected value of a purchase given each customer's repeat-purchase history.

        Parameters
        ----------
        frequency : array-like of int
            Number of repeat purchases ``x``.
        monetary_value : array-like of float
            Mean value of those purchases (ignored where ``x = 0``).

        Returns
        -------
        numpy.ndarray
            ``E[M | x, m] = (p * (v + x * m)) / (p * x + q - 1)``, a weighted mean of the
            population mean ``p * v / (q - 1)`` (returned where ``x = 0``) and ``m``.

        Raises
        ------
        BTYDError
            If ``q <= 1``, where the population mean value is infinite.
        """
        self._check_fitted()
        x, m = np.broadcast_arrays(
            np.asarray(frequency, dtype=float), np.asarray(monetary_value, dtype=float)
        )
        _check_values(x, None, None)
        m = np.where(x > 0, m, 0.0)
        if not np.all(np.isfinite(m)):
            raise BTYDError("monetary_value has missing or infinite values")
        if self.q_ <= 1.0:
            raise BTYDError(f"q = {self.q_:.3g} <= 1: the expected value of a purchase is infinite")
        return self.p_ * (self.v_ + x * m) / (self.p_ * x + self.q_ - 1.0)


# ---------------------------------------------------------------------------------------------
# order table to model inputs


def rfm_summary(
    orders: pd.DataFrame,
    as_of: Any,
    *,
    unit_days: float = 1.0,
    account: str = "account_id",
    date: str = "order_date",
    value: str = "revenue",
) -> pd.DataFrame:
    """Per-account frequency, recency, age and mean repeat value from an order table.

    Only orders dated on or before ``as_of`` are used, so the summary is what was known at
    ``as_of``. Orders are grouped by calendar day: several orders on one day count as one
    purchase whose value is their sum.

    Parameters
    ----------
    orders : pandas.DataFrame
        One row per order with columns ``account``, ``date`` and ``value``.
    as_of : date-like
        The point in time; orders with ``date > as_of`` are ignored.
    unit_days : float
        Days per time unit of ``recency`` and ``T`` (1 for days, 7 for weeks).
    account, date, value : str
        Column names in ``orders``.

    Returns
    -------
    pandas.DataFrame
        Indexed by account (accounts with an order on or before ``as_of``), with columns
        ``frequency`` (purchase days minus 1), ``recency`` (first to last purchase day),
        ``T`` (first purchase day to the day of ``as_of``) and ``monetary_value`` (mean value
        of the purchase days after the first, 0 when there are none).

    Raises
    ------
    BTYDError
        If a column is missing, ``unit_days`` is not positive, dates are missing or values are
        missing or infinite.
    """
    missing = [c for c in (account, date, value) if c not in orders.columns]
    if missing:
        raise BTYDError(f"orders has no column(s) {missing}; it has {list(orders.columns)}")
    if not (np.isfinite(unit_days) and unit_days > 0):
        raise BTYDError(f"unit_days must be a positive number, got {unit_days!r}")
    cutoff = pd.Timestamp(as_of)
    if pd.isna(cutoff):
        raise BTYDError("as_of is missing")
    dates = pd.to_datetime(orders[date])
    if dates.isna().any():
        raise BTYDError(f"{date} has {int(dates.isna().sum())} missing date(s)")
    amounts = pd.to_numeric(orders[value])
    try:
        known = (dates <= cutoff).to_numpy()
    except TypeError as exc:
        raise BTYDError(f"as_of cannot be compared with {date}: {exc}") from exc
    if not np.all(np.isfinite(amounts.to_numpy(dtype=float)[known])):
        raise BTYDError(f"{value} has missing or infinite values")

    # Calendar days are counted on the wall clock of the dates' own time zone, so that a day
    # across a daylight-saving change is still one day.
    end = cutoff
    if dates.dt.tz is not None:
        end = cutoff.tz_convert(dates.dt.tz).tz_localize(None)
        dates = dates.dt.tz_localize(None)
    end = end.normalize()
    days = pd.DataFrame(
        {
            "account": orders[account].to_numpy()[known],
            "day": dates.dt.normalize()[known].reset_index(drop=True),
            "amount": amounts.to_numpy(dtype=float)[known],
        }
    )
    daily = days.groupby(["account", "day"], sort=True, as_index=False)["amount"].sum()
    grouped = daily.groupby("account", sort=True)
    first = grouped["day"].min()
    last = grouped["day"].max()
    n_days = grouped["day"].size()
    total = grouped["amount"].sum()
    first_amount = grouped["amount"].first()  # days are sorted within account
    frequency = (n_days - 1).astype("int64")
    repeat_value = (total - first_amount).where(frequency > 0, 0.0)
    day = np.timedelta64(1, "D")
    summary = pd.DataFrame(
        {
            "frequency": frequency,
            "recency": ((last - first) / day).astype(float) / unit_days,
            "T": ((end - first) / day).astype(float) / unit_days,
            "monetary_value": (repeat_value / frequency.where(frequency > 0, 1)).astype(float),
        }
    )
    summary.index.name = account
    return summary
