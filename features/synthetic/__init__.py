"""The causal synthetic world: a B2B key-account history in the data contract's format.

Accounts of Pareto-like size live through monthly latent states (competitor pressure, quality
and delivery incidents, unresolved complaints, relationship breadth, executive contact,
account-manager turnover) that drive partial and full defection; retention actions with known
effects are assigned partly at random. The ground truth is written beside the tables.
"""

from kam.features.synthetic.catalog import ACTION_TYPES, CAUSES, ActionType
from kam.features.synthetic.world import SimulationSummary, simulate

__all__ = ["ACTION_TYPES", "CAUSES", "ActionType", "SimulationSummary", "simulate"]
