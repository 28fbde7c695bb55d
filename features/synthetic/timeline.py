"""The world's clock and the drivers every account shares.

The calendar runs a burn-in year before the history starts so that latent states (competitor
episodes, open complaints, relationship breadth) are already mixed when the first event is
written. Shared drivers (seasonality, industry cycles, competitor campaigns, regional supply
crunches, the account-manager roster and its turnover) come from the seed alone, so they are the
same for every chunk of accounts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

from kam.features.synthetic import catalog

BURN_IN_MONTHS = 12
ACCOUNTS_PER_MANAGER = 40
MANAGER_MONTHLY_TURNOVER = 0.013

_EPOCH = date(1970, 1, 1)


def to_days(day: date) -> int:
    """Days since 1970-01-01."""
    return (day - _EPOCH).days


def _add_years(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, day=28)


@dataclass(frozen=True)
class Calendar:
    """Simulated months: ``burn_in`` hidden months followed by the history months.

    Day numbers are days since 1970-01-01. ``lo`` and ``hi`` bound the days of each month that
    lie inside the history (the first and last month may be partial).
    """

    start: date
    end: date
    burn_in: int
    first_day: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    month_length: np.ndarray
    calendar_month: np.ndarray

    @classmethod
    def build(cls, years: int, end: date, burn_in: int = BURN_IN_MONTHS) -> Calendar:
        """History of ``years`` years ending on ``end`` (inclusive), plus the burn-in."""
        start = _add_years(end + timedelta(days=1), -years)
        first_month = start.year * 12 + start.month - 1 - burn_in
        last_month = end.year * 12 + end.month - 1
        month_ids = np.arange(first_month, last_month + 1)
        firsts = (month_ids // 12 - 1970) * 12 + month_ids % 12
        first_day = firsts.astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)
        next_first = (firsts + 1).astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)
        lo = np.maximum(first_day, to_days(start))
        lo[:burn_in] = first_day[:burn_in]
        hi = np.minimum(next_first - 1, to_days(end))
        return cls(start, end, burn_in, first_day, lo, hi, next_first - first_day, month_ids % 12)

    @property
    def total(self) -> int:
        """Simulated months, burn-in included."""
        return self.first_day.size

    @property
    def months(self) -> int:
        """History months."""
        return self.total - self.burn_in


@dataclass(frozen=True)
class SharedDrivers:
    """Drivers common to all accounts, indexed by simulated month (last axis).

    ``season`` (months), ``industry_level`` and ``competition`` (industries x months) multiply
    spend and the start rate of competitor episodes; ``supply_crunch`` (regions x months, 0..1)
    raises late and short deliveries; ``manager`` (positions x months) holds the index into
    ``people`` of the account manager in each position, and ``manager_left`` marks the months
    a new one took over. ``solution_people``, ``fulfilment_people`` and ``executives`` index
    the SR, FR and executive-sponsor pools in ``people``.
    """

    season: np.ndarray
    industry_level: np.ndarray
    competition: np.ndarray
    supply_crunch: np.ndarray
    manager: np.ndarray
    manager_left: np.ndarray
    people: tuple[str, ...]
    solution_people: np.ndarray
    fulfilment_people: np.ndarray
    executives: np.ndarray

    @property
    def manager_slots(self) -> int:
        """Account-manager positions (each held by one manager at a time)."""
        return self.manager.shape[0]

    @classmethod
    def draw(cls, calendar: Calendar, accounts: int, rng: np.random.Generator) -> SharedDrivers:
        """Draw the shared drivers for a world of ``accounts`` accounts."""
        months = calendar.total
        t = np.arange(months)
        season = catalog.SEASONALITY[calendar.calendar_month]

        n_ind = len(catalog.INDUSTRIES)
        phase = rng.uniform(0, 2 * np.pi, n_ind)
        cycle = catalog.INDUSTRY_CYCLE_AMPLITUDE[:, None] * np.sin(
            2 * np.pi * t[None, :] / catalog.INDUSTRY_CYCLE_MONTHS[:, None] + phase[:, None]
        )
        wander = np.cumsum(rng.normal(0, 0.012, (n_ind, months)), axis=1)
        industry_level = np.exp(cycle + wander - wander.mean(axis=1, keepdims=True))

        # Competitor campaigns: an industry-wide push multiplies how often episodes start.
        campaign = _episodes(rng, (n_ind, months), start=0.04, stop=1 / 5)
        competition = catalog.INDUSTRY_COMPETITION[:, None] * (1.0 + 1.5 * campaign)

        n_reg = len(catalog.REGIONS)
        crunch = _episodes(rng, (n_reg, months), start=0.035, stop=1 / 3)
        supply_crunch = crunch * rng.uniform(0.4, 1.0, (n_reg, months))

        slots = max(1, round(accounts / ACCOUNTS_PER_MANAGER))
        left = rng.random((slots, months)) < MANAGER_MONTHLY_TURNOVER
        left[:, 0] = False
        # A leaver's successor gets the next free number, in order of month then position.
        hires = np.cumsum(left.T.ravel()).reshape(months, slots).T
        replaced = np.maximum.accumulate(np.where(left, hires, 0), axis=1)
        manager = np.where(replaced > 0, slots - 1 + replaced, np.arange(slots)[:, None])
        n_managers = slots + int(left.sum())
        n_support = max(1, slots // 2)
        n_exec = max(2, min(40, round(np.sqrt(slots))))
        people = (
            tuple(f"AM-{i + 1:03d}" for i in range(n_managers))
            + tuple(f"SR-{i + 1:03d}" for i in range(n_support))
            + tuple(f"FR-{i + 1:03d}" for i in range(n_support))
            + tuple(f"EX-{i + 1:02d}" for i in range(n_exec))
        )
        solution = n_managers + np.arange(n_support)
        fulfilment = n_managers + n_support + np.arange(n_support)
        executives = n_managers + 2 * n_support + np.arange(n_exec)
        return cls(
            season, industry_level, competition, supply_crunch, manager, left, people,
            solution, fulfilment, executives,
        )


def _episodes(rng: np.random.Generator, shape: tuple[int, int], start: float, stop: float
              ) -> np.ndarray:
    """On/off episodes along the last axis: start with prob ``start``, end with prob ``stop``."""
    on = np.zeros(shape, dtype=bool)
    state = np.zeros(shape[0], dtype=bool)
    draws = rng.random((2, *shape))
    for k in range(shape[1]):
        state = np.where(state, draws[1, :, k] >= stop, draws[0, :, k] < start)
        on[:, k] = state
    return on.astype(float)
