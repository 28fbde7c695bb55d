"""The Gamma-Gamma model of spend per purchase.

The Gamma-Gamma model (Fader, Hardie & Lee 2005, "RFM and CLV") gives the expected value of a
purchase given the mean value ``m`` of the account's ``x`` repeat purchases.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

from kam.features.btyd._estimation import (
    _check_values,
    _column,
    _dot,
    _Estimator,
    _maximise,
    _same_length,
    _weights,
)
from kam.features.btyd.errors import BTYDError


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
