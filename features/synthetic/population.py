"""The accounts of one chunk and their fixed traits: size, industry, relationship level, habits.

Size is lognormal with a spread chosen so that about 10% of accounts hold about 70% of revenue
and the next 20% about 20% (the A/B/C pyramid of key-account practice).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kam.features.synthetic import catalog
from kam.features.synthetic.output import day_timestamps, fixed_ids, lookup_strings
from kam.features.synthetic.timeline import Calendar, SharedDrivers, to_days

SIZE_SPREAD = 1.75  # sigma of log size: top decile ~70% of revenue
MEDIAN_MONTHLY_SPEND = 6000.0
NEW_ACCOUNT_SHARE = 0.14
# Never created: the account existed before the burn-in started.
LONG_AGO = -(10**6)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def gumbel_order(rng: np.random.Generator, weights: np.ndarray) -> np.ndarray:
    """One random permutation per row, earlier positions favouring heavier ``weights``."""
    keys = np.log(weights) - np.log(-np.log(rng.random(weights.shape)))
    return np.argsort(-keys, axis=1, kind="stable")


@dataclass(frozen=True)
class Population:
    """Fixed traits of ``n`` accounts (arrays of length n unless stated)."""

    number: np.ndarray
    industry: np.ndarray
    region: np.ndarray
    log_size: np.ndarray
    base_spend: np.ndarray
    lines: np.ndarray
    level: np.ndarray
    breadth: np.ndarray
    categories: np.ndarray  # (n, categories) preference order
    roles: np.ndarray  # (n, roles) order in which buyer roles are in contact
    base_contacts: np.ndarray
    exec_rate: np.ndarray
    resolve_days: np.ndarray
    stuck: np.ndarray
    quality_rate: np.ndarray
    supply_rate: np.ndarray
    background_complaints: np.ndarray
    discount: np.ndarray
    sentiment: np.ndarray
    competitor_rate: np.ndarray
    needs_rate: np.ndarray
    growth: np.ndarray
    delivery_size: np.ndarray
    interaction_rate: np.ndarray
    created_day: np.ndarray
    created_month: np.ndarray
    slot: np.ndarray
    solution_rep: np.ndarray
    fulfilment_rep: np.ndarray
    parent: np.ndarray  # index within the chunk, -1 for none

    @property
    def size(self) -> int:
        """Number of accounts."""
        return self.number.size

    @property
    def key(self) -> np.ndarray:
        """Roughly the top decile by size: the accounts a sales team treats as key."""
        return self.log_size > 1.28 * SIZE_SPREAD

    @property
    def major(self) -> np.ndarray:
        """Roughly the top 30% by size (key and major accounts)."""
        return self.log_size > 0.52 * SIZE_SPREAD

    @classmethod
    def draw(cls, rng: np.random.Generator, first: int, n: int, calendar: Calendar,
             drivers: SharedDrivers) -> Population:
        """Draw ``n`` accounts numbered from ``first + 1``."""
        number = first + 1 + np.arange(n)
        industry = rng.choice(len(catalog.INDUSTRIES), n, p=catalog.INDUSTRY_WEIGHTS)
        region = rng.choice(len(catalog.REGIONS), n, p=catalog.REGION_WEIGHTS)
        log_size = rng.normal(0.0, SIZE_SPREAD, n)
        z = log_size / SIZE_SPREAD

        # Relationship level: small accounts are often bought on price, big ones more strategic.
        u = rng.random(n)
        p_price = _sigmoid(-0.6 - 0.6 * z)
        p_strategic = _sigmoid(-2.2 + 1.0 * z)
        level = np.where(u < p_price, 1, np.where(u > 1 - p_strategic, 3, 2))

        lines = np.clip(6.9 * np.exp(0.35 * log_size), 1.3, 150.0)
        breadth = np.clip(np.round(2.2 + 0.65 * log_size + rng.normal(0, 0.8, n)), 1,
                          len(catalog.PRODUCT_CATEGORIES)).astype(np.int64)
        categories = gumbel_order(rng, catalog.CATEGORY_AFFINITY[industry])
        roles = gumbel_order(rng, np.tile(catalog.ROLE_WEIGHTS, (n, 1)))

        contacts = np.select(
            [level == 1, level == 2],
            [1 + (rng.random(n) < 0.3), 2 + rng.poisson(1.0, n)],
            3 + rng.poisson(1.5, n),
        ) + (z > 1.3)
        base_contacts = np.clip(contacts, 1, len(catalog.BUYER_ROLES))

        exec_rate = np.choose(level - 1, [0.04, 0.15, 0.45]) * (1 + 0.5 * (z > 1.28))
        slow = rng.random(n) < 0.2
        resolve_days = 7.0 * np.exp(rng.normal(0, 0.45, n)) * np.where(slow, 3.5, 1.0)
        stuck = 0.01 + 0.08 * slow
        sqrt_lines = np.sqrt(lines)
        quality_rate = 0.022 * sqrt_lines * np.exp(rng.normal(0, 0.5, n))
        supply_rate = 0.03 * np.exp(rng.normal(0, 0.4, n))
        background = 0.012 * sqrt_lines
        discount = np.where(level == 1, 0.06, 0.03) + 0.03 * rng.beta(2, 5, n)
        sentiment = np.choose(level - 1, [0.05, 0.25, 0.45]) + rng.normal(0, 0.1, n)
        competitor_rate = 0.024 * np.where(level == 1, 1.6, 1.0) * np.where(z > 1.28, 1.3, 1.0)
        needs_rate = 0.017 * np.exp(rng.normal(0, 0.3, n))
        growth = rng.normal(0.002, 0.006, n)
        delivery_size = np.exp(rng.normal(3.0, 0.8, n) + 0.3 * log_size)
        interaction_rate = 0.5 + 0.25 * np.clip(z + 1, 0, 4)

        start_day, end_day = to_days(calendar.start), to_days(calendar.end)
        new = rng.random(n) < NEW_ACCOUNT_SHARE
        old_day = start_day - rng.integers(180, 5500, n)
        new_day = rng.integers(start_day, max(start_day + 1, end_day - 60), n)
        created_day = np.where(new, new_day, old_day)
        month = np.searchsorted(calendar.first_day, created_day, side="right") - 1
        created_month = np.where(new, month - calendar.burn_in, LONG_AGO)

        slot = rng.integers(0, drivers.manager_slots, n)
        solution_rep = rng.choice(drivers.solution_people, n)
        fulfilment_rep = rng.choice(drivers.fulfilment_people, n)

        # A few accounts belong to a group headed by one of the chunk's big accounts.
        heads = np.flatnonzero(z > 1.28)
        parent = np.full(n, -1)
        if heads.size:
            joined = np.flatnonzero(rng.random(n) < 0.03)
            parent[joined] = rng.choice(heads, joined.size)
            parent[parent == np.arange(n)] = -1

        return cls(
            number=number, industry=industry, region=region, log_size=log_size,
            base_spend=MEDIAN_MONTHLY_SPEND * np.exp(log_size), lines=lines, level=level,
            breadth=breadth, categories=categories, roles=roles, base_contacts=base_contacts,
            exec_rate=exec_rate, resolve_days=resolve_days, stuck=stuck,
            quality_rate=quality_rate, supply_rate=supply_rate, background_complaints=background,
            discount=discount, sentiment=sentiment, competitor_rate=competitor_rate,
            needs_rate=needs_rate, growth=growth, delivery_size=delivery_size,
            interaction_rate=interaction_rate, created_day=created_day,
            created_month=created_month, slot=slot, solution_rep=solution_rep,
            fulfilment_rep=fulfilment_rep, parent=parent,
        )

    def account_ids(self, width: int) -> pa.Array:
        """``A`` followed by the zero-padded account number."""
        return fixed_ids("A", self.number, width)

    def table(self, rng: np.random.Generator, width: int, manager: np.ndarray,
              drivers: SharedDrivers) -> pa.Table:
        """The ``accounts`` table; ``manager`` holds each account's manager (people index)."""
        n = self.size
        syllables = len(catalog.NAME_SYLLABLES)
        head = rng.integers(0, syllables, n)
        tail = (head + rng.integers(1, syllables, n)) % syllables  # never the same twice
        first = lookup_strings(head, catalog.NAME_SYLLABLES)
        second = pc.utf8_lower(lookup_strings(tail, catalog.NAME_SYLLABLES))
        trade = lookup_strings(self.industry, catalog.INDUSTRY_NAME_WORDS)
        suffix = lookup_strings(rng.integers(0, len(catalog.NAME_SUFFIXES), n),
                                catalog.NAME_SUFFIXES)
        name = pc.binary_join_element_wise(
            pc.binary_join_element_wise(first, second, ""), trade, suffix, " "
        )
        has_parent = self.parent >= 0
        parent_number = np.where(has_parent, self.number[np.maximum(self.parent, 0)], 0)
        parent_ids = pc.if_else(pa.array(has_parent), fixed_ids("A", parent_number, width),
                                pa.nulls(n, pa.string()))
        return pa.table({
            "account_id": self.account_ids(width),
            "name": name,
            "industry": lookup_strings(self.industry, catalog.INDUSTRIES),
            "region": lookup_strings(self.region, catalog.REGIONS),
            "account_manager": lookup_strings(manager, drivers.people),
            "created_at": day_timestamps(self.created_day),
            "parent_account_id": parent_ids,
        })
