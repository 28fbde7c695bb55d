"""Out-of-time splits: training, rolling-origin validation windows and the test as_of.

Every label window used to fit or to choose anything closes on or before the test as_of, so
the test is what a model deployed on that day would have faced. Never a random row split.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from kam.features.periods import Period


@dataclass(frozen=True)
class Fold:
    """One rolling-origin window: fit on ``train_as_of``, validate on ``validation_as_of``."""

    validation_as_of: pd.Timestamp
    train_as_of: tuple[pd.Timestamp, ...]


@dataclass(frozen=True)
class SplitPlan:
    """The as_of dates of one training run."""

    test_as_of: pd.Timestamp
    train_as_of: tuple[pd.Timestamp, ...]
    folds: tuple[Fold, ...]
    horizon: Period

    @property
    def all_as_of(self) -> list[pd.Timestamp]:
        dates = {self.test_as_of, *self.train_as_of}
        for fold in self.folds:
            dates.add(fold.validation_as_of)
            dates.update(fold.train_as_of)
        return sorted(dates)

    def describe(self) -> str:
        def span(dates: tuple[pd.Timestamp, ...]) -> str:
            return f"{len(dates)} as_of {dates[0].date()}..{dates[-1].date()}"

        folds = ", ".join(
            f"validate {f.validation_as_of.date()} on {span(f.train_as_of)}" for f in self.folds
        )
        return (
            f"test as_of {self.test_as_of.date()} (horizon {self.horizon}); "
            f"train {span(self.train_as_of)}; folds: {folds}"
        )


class SplitError(ValueError):
    """The history is too short for an out-of-time split."""


def _dates_back(anchor: pd.Timestamp, earliest: pd.Timestamp, every: Period) -> list[pd.Timestamp]:
    dates, k = [], 0
    while True:
        date = (anchor - every.offset() * k) if k else anchor
        if date < earliest:
            break
        dates.append(pd.Timestamp(date).normalize())
        k += 1
    return sorted(dates)


def plan_split(
    data_start: pd.Timestamp,
    data_end: pd.Timestamp,
    horizon: Period,
    *,
    test_as_of: pd.Timestamp | None = None,
    every: Period = Period(1, "month"),
    n_folds: int = 3,
    fold_step: Period = Period(3, "month"),
    min_history: Period | None = None,
    min_train: int = 3,
) -> SplitPlan:
    """Plan the as_of dates of an out-of-time backtest.

    Parameters
    ----------
    data_start, data_end
        First and last day of the event history.
    horizon
        Label horizon.
    test_as_of
        Evaluation date; default the latest fully labelled one (``data_end - horizon``).
    every
        Spacing of the pooled training snapshots.
    n_folds, fold_step
        Number of rolling-origin validation windows and the spacing of their origins.
    min_history
        History needed before the first as_of (default: one horizon, so that the prior-period
        revenue behind the defection label is fully observed).
    min_train
        Fewest training as_of dates a fold needs to be kept.

    Raises
    ------
    SplitError
        When the history cannot hold a training window and a test window, naming the dates.
    """
    test = pd.Timestamp(test_as_of or (data_end - horizon.offset())).normalize()
    if test + horizon.offset() > data_end:
        raise SplitError(
            f"test as_of {test.date()} + horizon {horizon} runs past the end of the data "
            f"({data_end.date()}): its labels are not observed"
        )
    earliest = (data_start + (min_history or horizon).offset()).normalize()
    last_train = test - horizon.offset()
    train = _dates_back(last_train, earliest, every)
    if len(train) < 1:
        raise SplitError(
            f"no training as_of fits between {earliest.date()} (start {data_start.date()} + "
            f"{min_history or horizon} of history) and {last_train.date()} (test as_of "
            f"{test.date()} - horizon {horizon}): the history is too short"
        )
    folds = []
    for k in range(n_folds):
        origin = (last_train - fold_step.offset() * k) if k else last_train
        fold_train = _dates_back(origin - horizon.offset(), earliest, every)
        if len(fold_train) >= min_train:
            folds.append(Fold(pd.Timestamp(origin).normalize(), tuple(fold_train)))
    return SplitPlan(test, tuple(train), tuple(folds), horizon)
