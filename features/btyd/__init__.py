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

``beta_geo`` and ``gamma_gamma`` hold the two models, ``summary`` builds their inputs from an
order table, ``errors`` has the exceptions and ``_estimation`` what the models share (input
checks, the likelihood maximiser, the estimator base).

This package depends on numpy, pandas and scipy only.
"""

from kam.features.btyd.beta_geo import BetaGeo
from kam.features.btyd.errors import BTYDError, BTYDFitError, BTYDNotFittedError
from kam.features.btyd.gamma_gamma import GammaGamma
from kam.features.btyd.summary import rfm_summary

__all__ = [
    "BTYDError",
    "BTYDFitError",
    "BTYDNotFittedError",
    "BetaGeo",
    "GammaGamma",
    "rfm_summary",
]
