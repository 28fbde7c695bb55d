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


@dataclass(frozen=True)
class TrainingPlan:
    """A run's two plans: the backtest that is the evidence, the refit that is deployed.

    ``deploy`` pools every labelled snapshot up to ``data_end - horizon`` (its ``test_as_of`` is
    the end of the data, whose labels are not observed yet). ``backtest`` holds the latest fully
    labelled as_of out as an out-of-time test; it is None when the history holds one label
    window only, and then the evidence comes from account-grouped folds.
    """

    backtest: SplitPlan | None
    deploy: SplitPlan
    every: Period

    @property
    def all_as_of(self) -> list[pd.Timestamp]:
        dates = set(self.deploy.all_as_of) - {self.deploy.test_as_of}
        if self.backtest is not None:
            dates.update(self.backtest.all_as_of)
        return sorted(dates)

    def describe(self) -> str:
        deploy = self.deploy.train_as_of
        refit = (
            f"deployed model refitted on {len(deploy)} as_of "
            f"{deploy[0].date()}..{deploy[-1].date()} (every {self.every})"
        )
        if self.backtest is None:
            return (
                f"no out-of-time test fits (one label window of {self.deploy.horizon}): "
                f"{refit}; evidence from account-grouped folds"
            )
        return f"backtest: {self.backtest.describe()}; {refit}"


# Below this much history, monthly snapshots leave too few rows and dates to learn from.
WEEKLY_BELOW = Period(2, "year")


def snapshot_spacing(data_start: pd.Timestamp, data_end: pd.Timestamp) -> Period:
    """Weekly snapshots for histories under two years, monthly otherwise."""
    if data_start + WEEKLY_BELOW.offset() > data_end:
        return Period(1, "week")
    return Period(1, "month")


def plan_training(
    data_start: pd.Timestamp,
    data_end: pd.Timestamp,
    horizon: Period,
    *,
    test_as_of: pd.Timestamp | None = None,
    every: Period | None = None,
    min_history: Period | None = None,
) -> TrainingPlan:
    """Plan the backtest (when one fits) and the refit on the freshest labels.

    Parameters
    ----------
    data_start, data_end
        First and last day of the event history.
    horizon
        Label horizon.
    test_as_of
        The backtest's test date; default the latest fully labelled one.
    every
        Spacing of the snapshots; default from the history's length (:func:`snapshot_spacing`).
    min_history
        History needed before the first as_of (see :func:`plan_split`).

    Raises
    ------
    SplitError
        When not even one label window fits, naming the shortest history that would.
    """
    every = every or snapshot_spacing(data_start, data_end)
    end = pd.Timestamp(data_end).normalize()
    try:
        deploy = plan_split(
            data_start, end, horizon, test_as_of=end, every=every, min_history=min_history,
            labelled_test=False,
        )
    except SplitError as err:
        shortest = (
            pd.Timestamp(data_start) + (min_history or horizon).offset() + horizon.offset()
        ).date()
        raise SplitError(
            f"the history is too short to train: the data run {pd.Timestamp(data_start).date()}"
            f"..{end.date()}, and one label window needs {min_history or horizon} of history "
            f"before its as_of and the horizon ({horizon}) after it, so the data must reach "
            f"{shortest}; wait for more data or choose a shorter horizon"
        ) from err
    try:
        backtest = plan_split(
            data_start, end, horizon, test_as_of=test_as_of, every=every, min_history=min_history
        )
    except SplitError:
        if test_as_of is not None:
            raise
        backtest = None
    return TrainingPlan(backtest, deploy, every)


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
    labelled_test: bool = True,
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
    labelled_test
        Whether the test as_of's labels must be observed (False for the deployed refit, whose
        "test" is the end of the data).

    Raises
    ------
    SplitError
        When the history cannot hold a training window and a test window, naming the dates.
    """
    test = pd.Timestamp(test_as_of or (data_end - horizon.offset())).normalize()
    if labelled_test and test + horizon.offset() > data_end:
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
