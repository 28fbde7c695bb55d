"""The fixed vocabulary of the synthetic world: industries, regions, products, causes, actions.

Everything here is data, not behaviour: the simulator reads these tables, and the ground truth
it writes (``truth/action_effects``) is built from :data:`ACTION_TYPES`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kam.features.contract import CHANNELS, CONTACT_ROLES, CONTACT_SENIORITY

# Industries with their share of accounts, the amplitude and period (months) of their business
# cycle, and how often competitors run campaigns against accounts in them.
INDUSTRIES = (
    "manufacturing", "distribution", "telecom", "banking", "pharma", "energy", "retail",
    "logistics",
)
INDUSTRY_WEIGHTS = np.array([0.26, 0.18, 0.09, 0.08, 0.10, 0.09, 0.10, 0.10])
INDUSTRY_NAME_WORDS = (
    "Precision Manufacturing", "Trading", "Telecom", "Commercial Bank", "Pharmaceutical",
    "Energy", "Retail", "Logistics",
)
INDUSTRY_CYCLE_AMPLITUDE = np.array([0.12, 0.10, 0.05, 0.04, 0.05, 0.10, 0.08, 0.09])
INDUSTRY_CYCLE_MONTHS = np.array([40.0, 34.0, 60.0, 72.0, 54.0, 48.0, 30.0, 36.0])
INDUSTRY_COMPETITION = np.array([1.1, 1.3, 0.9, 0.7, 0.8, 0.9, 1.2, 1.1])

REGIONS = ("East", "North", "South", "West", "Central", "Overseas")
REGION_WEIGHTS = np.array([0.30, 0.22, 0.22, 0.09, 0.11, 0.06])

# Product categories, their typical unit price and gross margin rate.
PRODUCT_CATEGORIES = (
    "components", "assemblies", "consumables", "spare_parts", "tooling", "packaging",
    "software_licences", "maintenance_services", "logistics_services", "training",
)
UNIT_PRICES = np.array([45.0, 620.0, 12.0, 85.0, 240.0, 6.0, 1500.0, 900.0, 350.0, 1200.0])
MARGIN_RATES = np.array([0.22, 0.28, 0.35, 0.40, 0.30, 0.18, 0.65, 0.48, 0.20, 0.55])
# How likely each industry is to buy each category (rows: industries, columns: categories).
CATEGORY_AFFINITY = np.array([
    [5, 4, 3, 4, 3, 2, 1, 2, 1, 1],
    [3, 2, 5, 3, 1, 4, 1, 1, 4, 1],
    [2, 3, 1, 3, 1, 1, 5, 4, 1, 2],
    [1, 1, 2, 1, 1, 1, 5, 4, 1, 3],
    [2, 1, 5, 2, 1, 4, 2, 3, 3, 2],
    [4, 4, 2, 5, 3, 1, 1, 4, 2, 1],
    [1, 1, 4, 1, 1, 5, 2, 1, 4, 1],
    [2, 1, 3, 3, 1, 3, 2, 2, 5, 1],
], dtype=float)

# Calendar-month multipliers: Chinese New Year empties January and February, Q4 closes budgets.
SEASONALITY = np.array([0.82, 0.64, 1.00, 1.02, 1.03, 1.05, 0.97, 0.95, 1.03, 1.00, 1.14, 1.35])
SEASONALITY = SEASONALITY / SEASONALITY.mean()

# The buyer roles we can be in contact with (codes index the contract's ``contact_role``); the
# weights say which role a single-threaded account's only contact usually is.
BUYER_ROLES = tuple(r for r in CONTACT_ROLES if r != "other")
ROLE_WEIGHTS = np.array([
    {"economic": 1.5, "technical": 2.0, "user": 2.0, "financial": 0.8, "coach": 1.0,
     "influencer": 0.8, "procurement": 3.5}[r] for r in BUYER_ROLES
])
# Probability that a contact in each role is an executive, a manager or staff (codes index the
# contract's ``contact_seniority``).
_SENIORITY = {
    "economic": {"executive": 0.85, "manager": 0.15},
    "technical": {"executive": 0.05, "manager": 0.55, "staff": 0.40},
    "user": {"executive": 0.02, "manager": 0.38, "staff": 0.60},
    "financial": {"executive": 0.20, "manager": 0.70, "staff": 0.10},
    "coach": {"executive": 0.05, "manager": 0.65, "staff": 0.30},
    "influencer": {"executive": 0.25, "manager": 0.60, "staff": 0.15},
    "procurement": {"executive": 0.05, "manager": 0.55, "staff": 0.40},
}
ROLE_SENIORITY = np.array([[_SENIORITY[r].get(s, 0.0) for s in CONTACT_SENIORITY]
                           for r in BUYER_ROLES])

# Channel mix of routine contact (codes index the contract's ``channel``).
CHANNEL_WEIGHTS = np.array([
    {"visit": 0.25, "call": 0.30, "email": 0.30, "meeting": 0.10, "event": 0.05}.get(c, 0.0)
    for c in CHANNELS
])

COMPLAINT_CATEGORY_SEVERITY = {
    # category: probabilities of low, medium, high, critical
    "quality": (0.25, 0.40, 0.25, 0.10),
    "delivery": (0.30, 0.45, 0.20, 0.05),
    "billing": (0.55, 0.35, 0.10, 0.00),
    "service": (0.45, 0.40, 0.13, 0.02),
    "price": (0.40, 0.45, 0.15, 0.00),
    "other": (0.70, 0.25, 0.05, 0.00),
}
SEVERITY_WEIGHT = np.array([0.5, 1.0, 1.8, 3.0])

# The causes and owners are serving's words too (serving/decisions/vocabulary.py); features may
# not import serving, so the copy here is held equal to those by the serving tests.
CAUSES = ("competitor_price", "unmet_needs", "unresolved_complaints")
STATES = ("active", "partial", "defected")
KINDS = ("partial", "full")

OWNERS = ("AR", "SR", "FR", "executive sponsor")


@dataclass(frozen=True)
class ActionType:
    """A retention action, the technique it applies and its true effect in the world.

    ``effect`` is the shift, in log-odds, of the monthly defection hazard of ``cause`` during the
    ``months`` months that follow the action; negative lowers the risk.
    """

    action: str
    title: str
    technique: str
    cause: str
    owner: str
    effect: float
    months: int = 6


ACTION_TYPES = (
    ActionType("exec_sponsor_visit", "Executive sponsor visit", "raise_relationship_level",
               "competitor_price", "executive sponsor", -0.8),
    ActionType("multi_threading", "Open contacts with more buyer roles",
               "build_relationship_network", "competitor_price", "AR", -0.5),
    ActionType("technical_exchange", "Technical exchange on the purchasing standard",
               "influence_purchasing_standard", "competitor_price", "SR", -0.6),
    ActionType("quality_rca", "Quality root-cause analysis with engineering",
               "guarantee_product_quality", "unmet_needs", "SR", -0.9),
    ActionType("priority_supply", "Priority allocation of supply and delivery dates",
               "guarantee_priority_supply", "unmet_needs", "FR", -0.6),
    ActionType("complaint_closure", "Escalate and close open complaints",
               "raise_service_level", "unresolved_complaints", "FR", -1.0),
    ActionType("business_review", "Business review with the economic buyer",
               "keep_communication_open", "unmet_needs", "AR", -0.3),
    ActionType("visit_follow_up", "Follow up the last visit within a week",
               "keep_communication_open", "unresolved_complaints", "AR", -0.4),
    ActionType("nurture_c", "Low-cost nurture programme for small accounts",
               "differentiated_service", "competitor_price", "AR", 0.0),
)
ACTION_INDEX = {a.action: i for i, a in enumerate(ACTION_TYPES)}

NAME_SYLLABLES = (
    "Hua", "Zhong", "Xin", "Tian", "Jin", "Hong", "Da", "Guo", "Heng", "Long", "Sheng", "Rui",
    "Kai", "Feng", "Yuan", "Tai", "Mei", "Bao", "Chang", "Hai", "Ming", "Xing", "Yu", "An",
)
NAME_SUFFIXES = ("Co., Ltd.", "Group", "Holdings", "Corporation")
