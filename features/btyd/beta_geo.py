"""The BG/NBD model of repeat purchasing.

The BG/NBD model (Fader, Hardie & Lee 2005, "Counting your customers the easy way") describes
each account by its number of repeat purchases ``x`` (frequency), the time of its last purchase
``t_x`` since its first (recency) and its age ``T`` since its first purchase, and gives the
probability that the account is still alive and its expected purchases over a coming period.

Time is in whatever unit the inputs use (``rfm_summary`` builds them in days or weeks); the scale
parameter ``alpha`` is in that unit too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

from kam.features.btyd._estimation import (
    _LOG_BOUND,
    _check_values,
    _column,
    _dot,
    _Estimator,
    _maximise,
    _same_length,
    _weights,
)
from kam.features.btyd.errors import BTYDError, BTYDFitError


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
