"""Month-by-month life of one chunk of accounts: latent states, hazards, defections, actions.

Each month, for every account at once:

1. latent states move: competitor-pressure and unmet-needs episodes, the account's own business
   (drift plus unobservable budget cuts), relationship breadth, executive contact, manager
   turnover;
2. the monthly defection hazard of each of the three causes is computed from those states (and
   from incidents and open complaints up to the month before), raised by the aggravators
   (single-threaded, no executive contact, recent manager change) and lowered by retention
   actions still in effect; at most one defection per account, partial or full;
3. observable rows follow from the states: order lines (spend, breadth, discounts), deliveries
   (late and short ones), complaints (and how long they stay open), interactions (who talks to
   whom, sentiment);
4. the sales team reacts to what it can see (noisy signals) with retention actions, and also
   runs some actions on randomly chosen accounts, so that effects are identifiable.

Retention actions act only through the hazard shift in :data:`catalog.ACTION_TYPES`; they do
not change the latent states, so that shift is the whole true effect.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kam.features.contract import COMPLAINT_CATEGORIES
from kam.features.synthetic import catalog, events
from kam.features.synthetic.population import Population
from kam.features.synthetic.timeline import Calendar, SharedDrivers

N_ACTIONS = len(catalog.ACTION_TYPES)
COMPETITOR, NEEDS, COMPLAINTS = range(3)
ACTIVE, PARTIAL, DEFECTED = range(3)

# Hazard model: log-odds of the monthly defection probability by cause.
HAZARD_BASE = np.array([-8.0, -8.3, -8.5])
COMPETITOR_WEIGHT = 5.5
NEEDS_WEIGHT = 5.0
COMPLAINT_WEIGHT = 1.5
AGGRAVATOR_WEIGHTS = {"single_threaded": 0.6, "no_exec_contact": 0.45, "manager_turnover": 0.7}
MANAGER_TURNOVER_MONTHS = 6
EXEC_CONTACT_MONTHS = 3

RANDOM_ACTION_RATE = 0.025
ACTION_COOL_DOWN = 4

_EFFECTS = np.zeros((N_ACTIONS, 3))
for _i, _a in enumerate(catalog.ACTION_TYPES):
    _EFFECTS[_i, catalog.CAUSES.index(_a.cause)] = _a.effect
_EFFECT_MONTHS = np.array([a.months for a in catalog.ACTION_TYPES])
_ACTION = {a.action: i for i, a in enumerate(catalog.ACTION_TYPES)}
_QUALITY, _DELIVERY, _BILLING, _SERVICE, _PRICE, _OTHER = (
    COMPLAINT_CATEGORIES.index(c)
    for c in ("quality", "delivery", "billing", "service", "price", "other")
)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass
class ChunkRows:
    """Everything one chunk produced, as column arrays keyed by table then column."""

    tables: dict[str, dict[str, np.ndarray]]
    final_manager: np.ndarray
    action_counts: np.ndarray  # (action types, 2): random, targeted


class _Collector:
    """Per-month row pieces, concatenated once at the end of the chunk."""

    def __init__(self) -> None:
        self.pieces: dict[str, list[dict[str, np.ndarray]]] = {}

    def add(self, table: str, rows: dict[str, np.ndarray]) -> None:
        self.pieces.setdefault(table, []).append(rows)

    def build(self, table: str) -> dict[str, np.ndarray]:
        pieces = self.pieces.get(table, [])
        if not pieces:
            return {}
        return {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]}


def simulate_chunk(rng: np.random.Generator, pop: Population, calendar: Calendar,
                   drivers: SharedDrivers) -> ChunkRows:
    """Run the chunk's accounts through the burn-in and the history.

    Parameters
    ----------
    rng : np.random.Generator
        The chunk's own generator (seeded from the world seed and the chunk number).
    pop : Population
        The chunk's accounts.
    calendar : Calendar
        Simulated months.
    drivers : SharedDrivers
        Drivers shared by all accounts.

    Returns
    -------
    ChunkRows
        Row columns for orders, deliveries, complaints, interactions, actions and the truth
        tables ``account_months`` and ``defections``.
    """
    chunk = _Chunk(rng, pop, calendar, drivers)
    for t in range(calendar.total):
        chunk.month(t)
    return chunk.rows()


class _Chunk:
    """The latent state of a chunk's accounts, advanced one month at a time."""

    def __init__(self, rng: np.random.Generator, pop: Population, calendar: Calendar,
                 drivers: SharedDrivers) -> None:
        n = pop.size
        self.rng, self.pop, self.calendar, self.drivers = rng, pop, calendar, drivers
        self.out = _Collector()
        self.level1 = pop.level == 1

        self.comp_on = np.zeros(n, dtype=bool)
        self.comp_size = np.zeros(n)
        self.pressure = np.zeros(n)
        self.needs_on = np.zeros(n, dtype=bool)
        self.needs_size = np.zeros(n)
        self.needs = np.zeros(n)
        self.log_business = np.zeros(n)
        self.cut_left = np.zeros(n)
        self.boost_left = np.zeros(n)
        self.contacts = pop.base_contacts.copy()
        self.since_exec = rng.integers(0, 6, n)
        self.since_manager = np.full(n, 99)
        self.slot = pop.slot.copy()
        self.quality_recent = np.zeros((3, n))
        self.issues_recent = np.zeros((3, n))
        self.grievance = np.zeros(n)
        self.low_satisfaction = np.zeros(n)
        self.pending = {k: np.zeros(0, dtype=t) for k, t in
                        (("account", np.int64), ("day", np.int64), ("resolved", np.int64),
                         ("weight", float))}

        self.state = np.full(n, ACTIVE)
        self.onset = np.full(n, -1)
        self.ramp = np.ones(n, dtype=np.int64)
        self.target = np.ones(n)
        self.full = np.zeros(n, dtype=bool)
        self.cause = np.full(n, -1)
        self.aggravated = np.zeros((n, 3), dtype=bool)
        self.last_action = np.full((n, N_ACTIONS), -999)
        self.action_counts = np.zeros((N_ACTIONS, 2), dtype=np.int64)

    def month(self, t: int) -> None:
        """Advance all accounts through simulated month ``t``."""
        pop = self.pop
        month = t - self.calendar.burn_in
        hi = int(self.calendar.hi[t])
        exists = pop.created_day <= hi
        lo = np.maximum(int(self.calendar.lo[t]), pop.created_day)
        u = self.rng.random((12, pop.size))

        self._move_latent_states(t, u, exists)
        hazard, total = self._hazards(t, month >= 0, exists)
        self._start_defections(month, hazard, total, u[11])
        self._spend(t, month, lo, hi, exists)
        self._incidents(t, exists, lo, hi)
        if month >= 0:
            self._emit(t, lo, hi, exists, hazard, total)
        self.grievance = self.grievance_open + self.low_satisfaction

    def _move_latent_states(self, t: int, u: np.ndarray, exists: np.ndarray) -> None:
        pop, rng, drivers, n = self.pop, self.rng, self.drivers, self.pop.size
        # Competitor pressure and unmet needs come in episodes and build up, then fade.
        starts = ~self.comp_on & (u[0] < pop.competitor_rate
                                  * drivers.competition[pop.industry, t])
        self.comp_size = np.where(starts, 0.25 + 0.75 * rng.beta(2, 2, n), self.comp_size)
        self.comp_on = np.where(self.comp_on, u[1] >= 1 / 8, starts)
        self.pressure = 0.7 * self.pressure + 0.3 * self.comp_on * self.comp_size
        starts = ~self.needs_on & (u[2] < pop.needs_rate)
        self.needs_size = np.where(starts, 0.3 + 0.7 * rng.beta(2, 2, n), self.needs_size)
        self.needs_on = np.where(self.needs_on, u[3] >= 1 / 10, starts)
        self.needs = 0.75 * self.needs + 0.25 * self.needs_on * self.needs_size

        # The account's own business: drift, noise, and budget cuts or expansions over months.
        self.cut_left += np.where(u[4] < 0.006, rng.uniform(0.5, 1.4, n), 0.0)
        self.boost_left += np.where(u[5] < 0.003, rng.uniform(0.2, 0.6, n), 0.0)
        cut_step = np.minimum(self.cut_left, 0.4)
        boost_step = np.minimum(self.boost_left, 0.3)
        self.cut_left -= cut_step
        self.boost_left -= boost_step
        self.log_business += pop.growth + rng.normal(0, 0.02, n) - cut_step + boost_step

        # People: managers leave (the whole book changes hands) or accounts get reassigned.
        moved = u[6] < 0.004
        self.slot = np.where(moved, rng.integers(0, drivers.manager_slots, n), self.slot)
        self.changed = (moved | drivers.manager_left[self.slot, t]) & exists
        self.since_manager = np.where(self.changed, 0, self.since_manager + 1)
        # The relationship often hangs on the departing rep: a contact goes with them.
        contacts = self.contacts
        lose = (contacts > 1) & ((u[7] < 0.012 + 0.05 * (contacts > pop.base_contacts))
                                 | (self.changed & (u[8] < 0.5)))
        gain = (contacts < len(catalog.BUYER_ROLES)) & (
            u[9] < 0.004 + 0.07 * (contacts < pop.base_contacts))
        self.contacts = contacts + gain - lose
        self.executive = exists & (self.state != DEFECTED) & (u[10] < pop.exec_rate)
        self.since_exec = np.where(self.executive, 0, self.since_exec + 1)

        self.single = self.contacts <= 1
        self.no_exec = self.since_exec >= EXEC_CONTACT_MONTHS
        self.turnover = self.since_manager < MANAGER_TURNOVER_MONTHS

    def _hazards(self, t: int, history: bool, exists: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Monthly defection probability by cause (n, 3) and in total (n)."""
        pop = self.pop
        # Full defectors stop ordering once their wind-down is over.
        month = t - self.calendar.burn_in
        finished = self.full & (self.state == PARTIAL) & (month >= self.onset + self.ramp)
        self.state = np.where(finished, DEFECTED, self.state)

        # By cause, from the states and from incidents and grievances up to last month.
        logit = np.empty((pop.size, 3))
        logit[:, COMPETITOR] = (HAZARD_BASE[COMPETITOR] + COMPETITOR_WEIGHT * self.pressure
                                + 0.5 * self.level1 - 0.4 * (pop.level == 3))
        logit[:, NEEDS] = (HAZARD_BASE[NEEDS] + NEEDS_WEIGHT * self.needs
                           + 0.40 * np.minimum(self.quality_recent.sum(axis=0), 5)
                           + 0.15 * np.minimum(self.issues_recent.sum(axis=0), 8))
        logit[:, COMPLAINTS] = (HAZARD_BASE[COMPLAINTS]
                                + COMPLAINT_WEIGHT * np.minimum(self.grievance, 4))
        logit += (AGGRAVATOR_WEIGHTS["single_threaded"] * self.single
                  + AGGRAVATOR_WEIGHTS["no_exec_contact"] * self.no_exec
                  + AGGRAVATOR_WEIGHTS["manager_turnover"] * self.turnover)[:, None]
        since_action = t - self.last_action
        in_effect = (since_action >= 1) & (since_action <= _EFFECT_MONTHS)
        logit += in_effect.astype(float) @ _EFFECTS
        at_risk = history & exists & (self.state == ACTIVE)
        hazard = _sigmoid(logit) * at_risk[:, None]
        return hazard, 1 - np.prod(1 - hazard, axis=1)

    def _start_defections(self, month: int, hazard: np.ndarray, total: np.ndarray,
                          u: np.ndarray) -> None:
        rng = self.rng
        idx = np.flatnonzero(u < total)
        if not idx.size:
            return
        share = np.cumsum(hazard[idx], axis=1) / total[idx, None]
        why = (rng.random(idx.size)[:, None] >= share[:, :-1]).sum(axis=1)
        p_full = (0.28 + 0.15 * self.single[idx] + 0.12 * self.turnover[idx]
                  + 0.10 * (why == COMPLAINTS))
        is_full = rng.random(idx.size) < p_full
        self.state[idx] = PARTIAL
        self.onset[idx] = month
        self.cause[idx] = why
        self.full[idx] = is_full
        self.ramp[idx] = np.where(is_full, rng.integers(1, 4, idx.size),
                                  rng.integers(2, 7, idx.size))
        self.target[idx] = np.where(is_full, 0.0, rng.uniform(0.10, 0.45, idx.size))
        self.aggravated[idx] = np.stack(
            [self.single[idx], self.no_exec[idx], self.turnover[idx]], axis=1
        )

    def _spend(self, t: int, month: int, lo: np.ndarray, hi: int, exists: np.ndarray) -> None:
        pop, drivers, state = self.pop, self.drivers, self.state
        # Share of wallet: pressure erodes it a little before any defection, then the ramp.
        since_onset = month - self.onset
        eroding = 1 - (1 - self.target) * np.minimum(1, (since_onset + 1) / self.ramp)
        winding = np.maximum(0, 1 - (since_onset + 1) / (self.ramp + 1))
        self.wallet = np.select(
            [state == ACTIVE, state == DEFECTED, self.full],
            [1 - 0.2 * self.pressure - 0.1 * self.needs, 0.0, winding],
            eroding,
        )
        ramp_up = np.clip(0.35 + 0.13 * (month - pop.created_month), 0.0, 1.0)
        self.coverage = (hi - lo + 1).clip(0) / self.calendar.month_length[t]
        self.business = np.exp(self.log_business)
        self.expected = (pop.base_spend * drivers.season[t]
                         * drivers.industry_level[pop.industry, t] * self.business
                         * self.wallet * ramp_up * self.coverage * exists)
        # Fewer lines when spend shrinks, but each line also gets smaller.
        self.lam = pop.lines * (self.expected / pop.base_spend) ** 0.6
        self.lines = self.rng.poisson(self.lam)

    def _incidents(self, t: int, exists: np.ndarray, lo: np.ndarray, hi: int) -> None:
        pop, rng, n = self.pop, self.rng, self.pop.size
        buying = exists & (self.state != DEFECTED)
        lines = self.lines
        self.deliveries = np.where(lines > 0, np.maximum(1, rng.binomial(lines, 0.35)), 0)
        p_issue = np.clip(pop.supply_rate + 0.30 * self.drivers.supply_crunch[pop.region, t]
                          + 0.35 * self.needs, 0.0, 0.9)
        self.issues = rng.binomial(self.deliveries, p_issue)
        self.quality = rng.poisson(pop.quality_rate * (1 + 10 * self.needs) * buying)

        background = pop.background_complaints * buying
        counts = np.zeros((n, len(COMPLAINT_CATEGORIES)), dtype=np.int64)
        counts[:, _QUALITY] = rng.binomial(self.quality, 0.7)
        counts[:, _DELIVERY] = rng.binomial(self.issues, 0.3)
        counts[:, _BILLING] = rng.poisson(0.40 * background)
        counts[:, _SERVICE] = rng.poisson(0.45 * background + 0.05 * self.needs * buying)
        counts[:, _PRICE] = rng.poisson(0.50 * self.pressure * (1 + 0.8 * self.level1) * buying)
        counts[:, _OTHER] = rng.poisson(0.15 * background)
        self.complaint_counts = counts
        self.new_complaints = new = events.complaints(rng, pop, counts, lo, hi)
        pending = self.pending
        for key in pending:
            pending[key] = np.concatenate([pending[key], new[key]])

        # Grievance: complaints still open at month end weigh more the longer they stay open,
        # and badly resolved ones linger for a while.
        still_open = pending["resolved"] > hi
        open_acc = pending["account"][still_open]
        open_age = hi - pending["day"][still_open]
        self.open_complaints = np.bincount(open_acc, minlength=n)
        self.old_open = np.bincount(open_acc[open_age > 30], minlength=n)
        self.grievance_open = np.bincount(
            open_acc, weights=pending["weight"][still_open] * np.minimum(open_age / 30, 6) / 3,
            minlength=n,
        )
        for key in pending:
            pending[key] = pending[key][still_open]
        closed_badly = (new["resolved"] <= hi) & (new["satisfaction"] <= 2)
        self.low_satisfaction = 0.8 * self.low_satisfaction + np.bincount(
            new["account"][closed_badly], weights=new["weight"][closed_badly], minlength=n
        )
        self.quality_recent = np.roll(self.quality_recent, 1, axis=0)
        self.quality_recent[0] = self.quality
        self.issues_recent = np.roll(self.issues_recent, 1, axis=0)
        self.issues_recent[0] = self.issues

    def _emit(self, t: int, lo: np.ndarray, hi: int, exists: np.ndarray, hazard: np.ndarray,
              total: np.ndarray) -> None:
        pop, rng, out, state = self.pop, self.rng, self.out, self.state
        emit = exists & (lo <= hi)
        breadth = np.maximum(1, np.round(
            pop.breadth * np.minimum(1, self.wallet**0.6) * (1 - 0.3 * self.pressure)
        )).astype(np.int64)
        discount = (pop.discount + 0.15 * self.pressure
                    + 0.03 * ((state == PARTIAL) & (self.cause == COMPETITOR)))
        line_value = self.expected / np.where(self.lam > 0, self.lam, 1.0)
        out.add("orders", events.order_lines(
            rng, pop, self.lines * emit, line_value, breadth, discount, lo, hi))
        out.add("deliveries", events.deliveries(
            rng, pop, self.deliveries * emit, self.issues, lo, hi))
        out.add("complaints", {k: v for k, v in self.new_complaints.items() if k != "weight"})

        complaint_pressure = self.grievance_open + self.low_satisfaction
        mood = (pop.sentiment - 0.22 * np.minimum(complaint_pressure, 4)
                - 0.35 * self.pressure - 0.25 * self.needs - 0.25 * (state == PARTIAL)
                - 0.10 * (self.since_manager < 3))
        talk = pop.interaction_rate * (0.6 + 0.25 * self.contacts) * np.select(
            [state == ACTIVE, state == PARTIAL], [1.0, 0.85], 0.25)
        talks = events.interactions(
            rng, pop, rng.poisson(talk * self.coverage) * emit, self.executive & emit,
            self.contacts, self.drivers.manager[self.slot, t], mood, lo, hi,
            self.drivers.executives,
        )
        out.add("interactions", talks)

        out.add("account_months", {
            "account": np.flatnonzero(emit),
            "month": np.full(int(emit.sum()), self.calendar.first_day[t]),
            "competitor_pressure": self.pressure[emit],
            "unmet_needs": self.needs[emit],
            "quality_issues": self.quality[emit],
            "delivery_issues": self.issues[emit],
            "open_complaints": self.open_complaints[emit],
            "complaint_pressure": complaint_pressure[emit],
            "contacts": self.contacts[emit],
            "exec_contact": ~self.no_exec[emit],
            "manager_changed": self.changed[emit],
            "own_business": self.business[emit],
            "share_of_wallet": self.wallet[emit],
            "expected_revenue": self.expected[emit],
            "hazard": total[emit],
            **{f"hazard_{c}": hazard[emit, i] for i, c in enumerate(catalog.CAUSES)},
            "state": state[emit],
        })
        self._act(t, emit & (state != DEFECTED), talks, lo, hi)

    def _act(self, t: int, eligible: np.ndarray, talks: dict[str, np.ndarray], lo: np.ndarray,
             hi: int) -> None:
        """Retention actions: targeted on what the sales team can see, plus random ones."""
        pop, rng, n = self.pop, self.rng, self.pop.size
        heard = np.bincount(talks["account"], minlength=n)
        felt = np.bincount(talks["account"], weights=talks["sentiment"], minlength=n)
        # Reps hear discount demands with noise; price complaints are on record.
        price_signal = ((self.complaint_counts[:, _PRICE] > 0)
                        | (self.pressure + rng.normal(0, 0.2, n) > 0.55))
        low_mood = (heard > 0) & (felt < -0.15 * np.maximum(heard, 1))
        chance = np.zeros((n, N_ACTIONS))
        chance[:, _ACTION["exec_sponsor_visit"]] = (0.12 * (price_signal & pop.key)
                                                    + 0.06 * (pop.key & self.no_exec))
        chance[:, _ACTION["multi_threading"]] = 0.05 * (self.single & pop.major)
        chance[:, _ACTION["technical_exchange"]] = 0.15 * price_signal
        chance[:, _ACTION["quality_rca"]] = 0.35 * (self.complaint_counts[:, _QUALITY] > 0)
        chance[:, _ACTION["priority_supply"]] = 0.25 * (self.issues >= 2)
        chance[:, _ACTION["complaint_closure"]] = 0.30 * (self.old_open > 0)
        chance[:, _ACTION["business_review"]] = 0.015 * pop.major + 0.04 * price_signal
        chance[:, _ACTION["visit_follow_up"]] = 0.08 * low_mood
        chance[:, _ACTION["nurture_c"]] = 0.01 * ~pop.major
        cooled = (t - self.last_action) >= ACTION_COOL_DOWN
        targeted = eligible[:, None] & cooled & (rng.random((n, N_ACTIONS)) < chance)
        # Random ones ignore signals and cool-downs, so they are independent of risk.
        chosen = np.zeros((n, N_ACTIONS), dtype=bool)
        lucky = np.flatnonzero(eligible & (rng.random(n) < RANDOM_ACTION_RATE))
        chosen[lucky, rng.integers(0, N_ACTIONS, lucky.size)] = True
        targeted &= ~chosen
        taken = chosen | targeted
        who, kind = np.nonzero(taken)
        self.action_counts[:, 0] += chosen.sum(axis=0)
        self.action_counts[:, 1] += targeted.sum(axis=0)
        self.last_action[taken] = t
        self.out.add("actions", {
            "account": who,
            "day": events.days_in(rng, lo[who], hi),
            "action": kind,
            "random": chosen[who, kind],
        })

    def rows(self) -> ChunkRows:
        """The chunk's rows, with one ``defections`` row per account that defected."""
        defected = np.flatnonzero(self.onset >= 0)
        full = self.full[defected]
        self.out.add("defections", {
            "account": defected,
            "onset": self.onset[defected],
            "defection": self.onset[defected] + np.where(full, self.ramp[defected], 0),
            "full": full,
            "cause": self.cause[defected],
            "single_threaded": self.aggravated[defected, 0],
            "no_exec_contact": self.aggravated[defected, 1],
            "manager_turnover": self.aggravated[defected, 2],
            "share_after": self.target[defected],
        })
        tables = {name: self.out.build(name) for name in (
            "orders", "deliveries", "complaints", "interactions", "actions", "account_months",
            "defections",
        )}
        return ChunkRows(tables, self.drivers.manager[self.slot, -1], self.action_counts)
