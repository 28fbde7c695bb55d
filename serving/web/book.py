"""The book: what the list needs from a score table, prepared once per loaded table.

A :class:`Book` holds a score table's search text, sort keys, filter choices and header
figures. Building one takes a few hundred milliseconds for 100,000 accounts, so it is built on
first use and kept with the serving state it came from (:func:`book_of`): a reload, which makes
a new state, leaves the old book behind with the old scores.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from kam.serving.state import ScoreTable, ServingState
from kam.serving.store import ScoresNotLoadedError
from kam.serving.web.labels import TIERS
from kam.serving.web.query import DEFAULT_SORT, ListQuery

TOP_ACCOUNTS = 20  # the header's concentration figure: share of value at risk in the top 20
PARETO_SHARE = 0.8  # "high value": the largest accounts that together hold 80% of the stake
BOOK = "web.book"  # its key among what the serving state keeps derived from its scores


@dataclass(frozen=True)
class Summary:
    """Header figures over every scored account."""

    accounts: int
    value_at_risk: float
    value_at_stake: float
    tier_counts: Mapping[str, int]
    top_accounts: int
    top_share: float | None


@dataclass(frozen=True)
class Book:
    """A loaded score table with its search text, sort keys and choices, ready for the list."""

    table: ScoreTable
    search: np.ndarray = field(repr=False)
    keys: Mapping[str, np.ndarray] = field(repr=False)
    probability: np.ndarray = field(repr=False)
    stake: np.ndarray = field(repr=False)
    value_at_risk: np.ndarray = field(repr=False)
    tier: np.ndarray = field(repr=False)
    region: np.ndarray = field(repr=False)
    regions: tuple[str, ...]
    managers: tuple[str, ...]
    risk_split: float
    value_split: float
    stake_range: tuple[float, float]
    risk_top: float
    summary: Summary

    @classmethod
    def of(cls, table: ScoreTable) -> Book:
        """Prepare a score table for the list.

        Parameters
        ----------
        table
            The loaded scores, in at-risk order.

        Returns
        -------
        Book
            Search text, sort keys, filter choices, scatter axes and header figures of
            ``table``.
        """
        frame = table.frame
        n = len(frame)

        def texts(column: str) -> list[str | None]:
            if column not in frame.columns:
                return [None] * n
            return [
                None if v is None or (isinstance(v, float) and math.isnan(v)) or v == "" else str(v)
                for v in frame[column].tolist()
            ]

        def numbers(column: str) -> np.ndarray:
            if column not in frame.columns:
                return np.full(n, np.nan)
            return pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)

        ids = [str(v) for v in frame["account_id"].tolist()]
        names = texts("name")
        regions = texts("region")
        managers = texts("account_manager")
        causes = texts("top_driver_cause")
        phrases = texts("top_driver")
        probability = numbers("defection_probability")
        stake = numbers("value_at_stake")
        risk = numbers("value_at_risk")
        if "first_action_due" in frame.columns:
            due = pd.to_datetime(frame["first_action_due"], errors="coerce")
            due_days = (due - pd.Timestamp("1970-01-01")).dt.days.to_numpy(
                dtype=float, na_value=np.nan
            )
        else:
            due_days = np.full(n, np.nan)
        keys = {
            "account": _text_key([nm or i for nm, i in zip(names, ids, strict=True)]),
            "tier": _text_key(texts("tier")),
            "region": _text_key(regions),
            "manager": _text_key(managers),
            "probability": probability,
            "value": numbers("value"),
            "value_at_risk": risk,
            "driver": _text_key(
                [f"{c or ''}|{p}" if p else None for c, p in zip(causes, phrases, strict=True)]
            ),
            "action": due_days,
        }
        search = np.array(
            [f"{(nm or '').casefold()} {i.casefold()}" for nm, i in zip(names, ids, strict=True)],
            dtype=str,
        )
        known_risk = np.nan_to_num(risk, nan=0.0)
        total_risk = float(known_risk.sum())
        top = min(TOP_ACCOUNTS, n)
        # the table is in at-risk order: the first rows hold the most value at risk
        top_share = float(known_risk[:top].sum() / total_risk) if total_risk > 0 else None
        tier = np.array(texts("tier"), dtype=object)
        counts = {t: int((tier == t).sum()) for t in TIERS}
        positive = stake[np.isfinite(stake) & (stake > 0)]
        stake_range = (
            (float(positive.min()), float(positive.max())) if positive.size else (1.0, 10.0)
        )
        finite_p = probability[np.isfinite(probability)]
        mean_risk = float(finite_p.mean()) if finite_p.size else 0.5
        highest = float(finite_p.max()) if finite_p.size else 1.0
        # the scatter's risk axis ends at the next 10% above the highest risk
        risk_top = min(1.0, math.ceil(max(highest, 2 * mean_risk, 0.05) * 10) / 10)
        return cls(
            table=table,
            search=search,
            keys=keys,
            probability=probability,
            stake=stake,
            value_at_risk=risk,
            tier=tier,
            region=np.array(regions, dtype=object),
            regions=_choices(regions),
            managers=_choices(managers),
            # high risk: above the book's expected defection rate (calibrated probabilities)
            risk_split=mean_risk,
            value_split=_pareto_cut(stake, PARETO_SHARE),
            stake_range=stake_range,
            risk_top=risk_top,
            summary=Summary(
                accounts=n,
                value_at_risk=total_risk,
                value_at_stake=float(np.nan_to_num(stake, nan=0.0).sum()),
                tier_counts=counts,
                top_accounts=top,
                top_share=top_share,
            ),
        )

    def select(self, query: ListQuery) -> np.ndarray:
        """Positions of the accounts the query selects, in the query's sort order.

        The filters are the score table's own (those of ``GET /v1/at-risk``), then the search.

        Parameters
        ----------
        query
            Filters, search and sort; its page is not applied here.

        Returns
        -------
        numpy.ndarray
            Positions in the score table of every matching account.
        """
        positions = self.table.select(
            tiers=list(query.tiers) or None,
            region=query.region,
            account_manager=query.account_manager,
            min_value_at_risk=query.min_value_at_risk,
        )
        if query.q:
            hits = np.char.find(self.search[positions], query.q.casefold()) >= 0
            positions = positions[hits]
        return self.order(positions, query.sort, query.direction)

    def order(self, positions: np.ndarray, sort: str, direction: str) -> np.ndarray:
        """``positions`` sorted by a column; ties (and the default) keep the at-risk order."""
        if sort == DEFAULT_SORT and direction == "desc":
            return positions  # the table is held in this order: the API's order exactly
        key = self.keys[sort][positions]
        missing = np.isnan(key)
        key = np.where(missing, 0.0, key)
        if direction == "desc":
            key = -key
        # lexsort is stable: positions are in at-risk order, which breaks ties; missing last
        return positions[np.lexsort((key, missing))]


def _text_key(values: Sequence[str | None]) -> np.ndarray:
    """Sort codes of text values (ignoring case); NaN for a missing value."""
    folded = [v.casefold() if v else None for v in values]
    codes = {v: i for i, v in enumerate(sorted({v for v in folded if v is not None}))}
    return np.array([np.nan if v is None else codes[v] for v in folded], dtype=float)


def _choices(values: Sequence[str | None]) -> tuple[str, ...]:
    """Distinct values for a filter's options, one per spelling-ignoring-case, sorted."""
    seen: dict[str, str] = {}
    for value in values:
        if value:
            seen.setdefault(value.casefold(), value)
    return tuple(sorted(seen.values(), key=str.casefold))


def _pareto_cut(stake: np.ndarray, share: float) -> float:
    """The smallest stake among the largest accounts that together hold ``share`` of the total."""
    values = np.sort(np.nan_to_num(stake, nan=0.0).clip(0.0))[::-1]
    total = values.sum()
    if total <= 0:
        return 0.0
    before = (np.cumsum(values) - values) / total
    return float(values[before < share].min())


def book_of(state: ServingState) -> Book:
    """The prepared book of the state's scores, built on first use after each load or reload.

    Parameters
    ----------
    state
        The serving state; its scores must be loaded.

    Returns
    -------
    Book
        The book kept on ``state``, or a new one built (and kept) when there is none yet.

    Raises
    ------
    ScoresNotLoadedError
        When the state holds no scores (callers check first).
    """
    book = state.derived.get(BOOK)
    if book is None:
        scores = state.scores
        if scores is None:
            raise ScoresNotLoadedError("no scores are loaded: run `kam score`")
        # two first requests at once may both build it: the last one kept wins, both are right
        book = Book.of(scores)
        state.derived[BOOK] = book
    return book
