"""Observable rows for one month: order lines, deliveries, complaints and interactions.

Each function turns per-account counts and latent levels into rows, vectorised over all rows of
the month; the simulator decides the counts. Rows carry the account's index within its chunk
(``account``) and days since 1970-01-01; ids and timestamps are added when the chunk is written.
"""

from __future__ import annotations

import numpy as np

from kam.features.contract import CHANNELS, COMPLAINT_CATEGORIES, CONTACT_SENIORITY, OUR_SENIORITY
from kam.features.synthetic import catalog
from kam.features.synthetic.population import Population

Rows = dict[str, np.ndarray]

RETURN_SHARE = 0.012  # order lines that are returns or credits
LINE_SPREAD = 0.7  # sigma of a line's log value around the account's mean line value

_CHANNEL_CUM = np.cumsum(catalog.CHANNEL_WEIGHTS / catalog.CHANNEL_WEIGHTS.sum())
_VISIT, _MEETING = CHANNELS.index("visit"), CHANNELS.index("meeting")
_EXECUTIVE = CONTACT_SENIORITY.index("executive")
_OUR_EXECUTIVE, _OUR_MANAGER, _OUR_REP = (
    OUR_SENIORITY.index(s) for s in ("executive", "manager", "rep")
)
_SENIORITY_CUM = np.cumsum(catalog.ROLE_SENIORITY, axis=1)
_SEVERITY_CUM = np.cumsum(
    np.array([catalog.COMPLAINT_CATEGORY_SEVERITY[c] for c in COMPLAINT_CATEGORIES]), axis=1
)
_SEVERITY_RESOLUTION = np.array([0.7, 1.0, 1.6, 2.2])


def spread(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row owners and each row's rank within its owner, for ``counts[i]`` rows of owner i."""
    owner = np.repeat(np.arange(counts.size), counts)
    starts = np.cumsum(counts) - counts
    rank = np.arange(owner.size) - np.repeat(starts, counts)
    return owner, rank


def pick(cumulative: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Category index for uniforms ``u`` under rows of cumulative probabilities."""
    if cumulative.ndim == 1:
        return np.searchsorted(cumulative, u, side="right").clip(0, cumulative.size - 1)
    return (u[:, None] >= cumulative[:, :-1]).sum(axis=1)


def days_in(rng: np.random.Generator, lo: np.ndarray, hi: int) -> np.ndarray:
    """A uniform day in ``[lo, hi]`` for each row."""
    return lo + np.floor(rng.random(lo.size) * (hi - lo + 1)).astype(np.int64)


def order_lines(rng: np.random.Generator, pop: Population, counts: np.ndarray,
                line_value: np.ndarray, breadth: np.ndarray, discount: np.ndarray,
                lo: np.ndarray, hi: int) -> Rows:
    """Order lines: net revenue, quantity, product category, discount and margin amounts."""
    account, _ = spread(counts)
    size = account.size
    value = line_value[account] * np.exp(rng.normal(-LINE_SPREAD**2 / 2, LINE_SPREAD, size))
    # Lines concentrate on the account's first categories; breadth says how far down it buys.
    position = np.floor(breadth[account] * rng.random(size) ** 1.6).astype(np.int64)
    category = pop.categories[account, position]
    rate = np.clip(discount[account] + rng.normal(0, 0.015, size), 0.0, 0.35)
    quantity = np.maximum(
        1.0, np.round(value / (1 - rate) / catalog.UNIT_PRICES[category]
                      * np.exp(rng.normal(0, 0.3, size)))
    )
    margin_rate = catalog.MARGIN_RATES[category] - 0.9 * rate + rng.normal(0, 0.03, size)
    returned = rng.random(size) < RETURN_SHARE
    share = rng.uniform(0.05, 0.6, size)
    revenue = np.where(returned, -value * share, value)
    quantity = np.where(returned, -np.maximum(1.0, np.round(quantity * share)), quantity)
    discount_amount = np.where(returned, 0.0, value * rate / (1 - rate))
    return {
        "account": account,
        "day": days_in(rng, lo[account], hi),
        "revenue": np.round(revenue, 2),
        "quantity": quantity,
        "category": category,
        "discount_amount": np.round(discount_amount, 2),
        "gross_margin": np.round(revenue * margin_rate, 2),
    }


def deliveries(rng: np.random.Generator, pop: Population, counts: np.ndarray,
               issues: np.ndarray, lo: np.ndarray, hi: int) -> Rows:
    """Deliveries; the first ``issues[i]`` of account i's are late, short, or both."""
    account, rank = spread(counts)
    size = account.size
    issue = rank < issues[account]
    late = issue & (rng.random(size) < 0.7)
    short = issue & (~late | (rng.random(size) < 0.35))
    promised = days_in(rng, lo[account], hi)
    delay = np.where(late, np.minimum(1 + rng.geometric(0.15, size), 60),
                     -rng.integers(0, 3, size))
    ordered = np.maximum(1.0, np.round(pop.delivery_size[account]
                                       * np.exp(rng.normal(0, 0.5, size))))
    delivered = np.where(short, np.floor(ordered * rng.uniform(0.4, 0.95, size)), ordered)
    return {
        "account": account,
        "day": promised,
        "delivered": promised + delay,
        "quantity_ordered": ordered,
        "quantity_delivered": delivered,
        "issue": issue,
    }


def complaints(rng: np.random.Generator, pop: Population, counts: np.ndarray,
               lo: np.ndarray, hi: int) -> Rows:
    """Complaints from per-account counts by category (columns in the contract's order).

    Resolution time follows the account's resolution habit and the severity; a few complaints
    get stuck for months. Satisfaction after resolution falls with the time it took.
    """
    n_cat = counts.shape[1]
    account, _ = spread(counts.ravel())
    category = account % n_cat
    account = account // n_cat
    size = account.size
    severity = pick(_SEVERITY_CUM[category], rng.random(size))
    opened = days_in(rng, lo[account], hi)
    days = np.ceil(pop.resolve_days[account] * _SEVERITY_RESOLUTION[severity]
                   * np.exp(rng.normal(0, 0.8, size)))
    stuck = rng.random(size) < pop.stuck[account]
    days = np.where(stuck, days + rng.integers(120, 400, size), days)
    satisfaction = np.clip(np.round(
        4.6 - 0.9 * np.log1p(days / 10) - 0.3 * severity + rng.normal(0, 0.7, size)
    ), 1, 5)
    return {
        "account": account,
        "day": opened,
        "resolved": opened + days.astype(np.int64),
        "category": category,
        "severity": severity,
        "satisfaction": satisfaction,
        "weight": catalog.SEVERITY_WEIGHT[severity],
    }


def interactions(rng: np.random.Generator, pop: Population, counts: np.ndarray,
                 executive: np.ndarray, contacts: np.ndarray, manager: np.ndarray,
                 sentiment: np.ndarray, lo: np.ndarray, hi: int,
                 executives: np.ndarray) -> Rows:
    """Contacts with the account: reps with the buyer roles in reach, executives with the top.

    ``counts`` are routine interactions per account; ``executive`` marks accounts that get one
    executive-to-executive meeting this month. ``manager`` is each account's current account
    manager (people index), whose change shows up as a new ``rep_id``.
    """
    account, _ = spread(counts)
    size = account.size
    u = rng.random((4, size))
    role = pop.roles[account, np.floor(u[0] * contacts[account]).astype(np.int64)]
    seniority = pick(_SENIORITY_CUM[role], u[1])
    # Our side: mostly the account manager (AR), sometimes solution (SR) or fulfilment (FR).
    who = np.where(u[2] < 0.78, manager[account],
                   np.where(u[2] < 0.89, pop.solution_rep[account], pop.fulfilment_rep[account]))
    our = np.where(rng.random(size) < 0.15, _OUR_MANAGER, _OUR_REP)
    channel = pick(_CHANNEL_CUM, u[3])
    direction = (rng.random(size) < 0.28).astype(np.int64)  # outbound, inbound

    top = np.flatnonzero(executive)
    economic = catalog.BUYER_ROLES.index("economic")
    account = np.concatenate([account, top])
    role = np.concatenate([role, np.full(top.size, economic)])
    seniority = np.concatenate([seniority, np.full(top.size, _EXECUTIVE)])
    who = np.concatenate([who, rng.choice(executives, top.size)])
    our = np.concatenate([our, np.full(top.size, _OUR_EXECUTIVE)])
    visit_or_meeting = np.where(rng.random(top.size) < 0.5, _VISIT, _MEETING)
    channel = np.concatenate([channel, visit_or_meeting])
    direction = np.concatenate([direction, np.zeros(top.size, dtype=np.int64)])
    mood = np.clip(sentiment[account] + rng.normal(0, 0.35, account.size), -1, 1)
    return {
        "account": account,
        "day": days_in(rng, lo[account], hi),
        "channel": channel,
        "direction": direction,
        "rep": who,
        "contact": pop.number[account] * 10 + role,
        "role": role,
        "seniority": seniority,
        "our_seniority": our,
        "sentiment": np.round(mood, 2),
    }
