"""Training plans: a backtest where one fits, and always a refit on the freshest labels."""

from __future__ import annotations

import pandas as pd
import pytest

from kam.features.periods import Period
from kam.training.splits import SplitError, plan_training, snapshot_spacing

HALF_YEAR = Period.parse("26w")
YEAR = Period.parse("365d")


def test_a_long_history_gets_a_backtest_and_a_refit_up_to_the_last_labels() -> None:
    start, end = pd.Timestamp("2020-01-01"), pd.Timestamp("2024-12-31")
    plan = plan_training(start, end, YEAR)
    assert plan.every == Period(1, "month")
    assert plan.backtest is not None
    assert plan.backtest.test_as_of == end - YEAR.offset()
    assert plan.deploy.train_as_of[-1] == end - YEAR.offset()
    # the refit sees a year of labels the backtest's training could not
    assert plan.deploy.train_as_of[-1] > plan.backtest.train_as_of[-1]
    assert all(a + YEAR.offset() <= end for a in plan.deploy.train_as_of)


def test_one_year_and_a_half_year_horizon_train_on_one_label_window() -> None:
    start, end = pd.Timestamp("1997-01-01"), pd.Timestamp("1997-12-30")
    plan = plan_training(start, end, HALF_YEAR, min_history=Period(1, "month"))
    assert plan.backtest is None
    assert plan.every == Period(1, "week")
    assert plan.deploy.train_as_of[-1] == end - HALF_YEAR.offset()
    assert len(plan.deploy.train_as_of) >= 20
    assert "no out-of-time test fits" in plan.describe()


def test_history_shorter_than_one_label_window_names_the_shortest_that_would_do() -> None:
    start, end = pd.Timestamp("1997-01-01"), pd.Timestamp("1997-06-30")
    with pytest.raises(SplitError, match=r"must reach 1997-08-0\d"):
        plan_training(start, end, HALF_YEAR, min_history=Period(1, "month"))


@pytest.mark.parametrize(
    ("years", "every"),
    [
        pytest.param(1, Period(1, "week"), id="one-year-weekly"),
        pytest.param(1.9, Period(1, "week"), id="under-two-years-weekly"),
        pytest.param(3, Period(1, "month"), id="three-years-monthly"),
    ],
)
def test_snapshot_spacing_follows_the_length_of_history(years: float, every: Period) -> None:
    start = pd.Timestamp("2020-01-01")
    assert snapshot_spacing(start, start + pd.Timedelta(days=int(365 * years))) == every
