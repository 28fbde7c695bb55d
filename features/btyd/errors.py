"""Errors of the buy-till-you-die models."""

from __future__ import annotations


class BTYDError(ValueError):
    """Invalid input to a buy-till-you-die model (negative values, recency > T, empty data...)."""


class BTYDFitError(BTYDError):
    """The likelihood could not be maximised: no convergence or no finite optimum."""


class BTYDNotFittedError(BTYDError, AttributeError):
    """A prediction was asked of a model that has not been fitted."""
