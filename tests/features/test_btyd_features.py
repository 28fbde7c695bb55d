"""BG/NBD and Gamma-Gamma features: fitted at each as_of on the history before it only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kam.features.families.btyd import FEATURES, MIN_REPEAT_ACCOUNTS
from kam.features.snapshots import build_snapshots
from tests.features.test_snapshots import make_store

AS_OF = pd.Timestamp("2024-06-30")
HORIZON = "26w"


def book(seed: int = 3, accounts: int = 80) -> list[dict]:
    """Orders of accounts buying at their own rate, some of which stop for good."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2023-01-01")
    rows = []
    for a in range(accounts):
        first = int(rng.integers(0, 200))
        rate = rng.gamma(2.0, 1 / 40)  # orders per day
        life = int(rng.integers(30, 700))
        size = rng.gamma(3.0, 300.0)  # accounts differ in their usual order value
        day = first
        while day < min(first + life, 700):
            rows.append(
                {
                    "order_id": f"o{len(rows)}",
                    "account_id": f"A{a:03d}",
                    "order_date": str((start + pd.Timedelta(days=day)).date()),
                    "revenue": float(rng.gamma(4.0, size / 4.0)),
                }
            )
            day += max(1, int(rng.exponential(1 / rate)))
    return rows


def snapshot(tmp: Path, orders: list[dict]) -> pd.DataFrame:
    tmp.mkdir(parents=True, exist_ok=True)
    con = make_store(tmp, {"orders": orders})
    frame = build_snapshots(con, [AS_OF], horizon=HORIZON, activity_window=None, decline=1.0)
    con.disconnect()
    return frame.set_index("account_id")[list(FEATURES)]


@pytest.fixture(scope="module")
def base_orders() -> list[dict]:
    return book()


def test_features_are_fitted_and_in_range(tmp_path: Path, base_orders: list[dict]) -> None:
    frame = snapshot(tmp_path, base_orders)
    assert frame.notna().all().all()
    assert frame["btyd_p_alive"].between(0, 1).all()
    assert frame["btyd_p_no_order"].between(0, 1).all()
    assert (frame["btyd_expected_order_days"] >= 0).all()
    assert (frame["btyd_expected_order_value"] > 0).all()
    # more expected ordering days goes with a lower chance of none
    rho = frame["btyd_expected_order_days"].corr(frame["btyd_p_no_order"], method="spearman")
    assert rho < -0.8


@pytest.mark.parametrize(
    ("when", "changes"),
    [
        pytest.param("2024-07-01", False, id="the-day-after-as_of"),
        pytest.param("2025-03-01", False, id="months-after-as_of"),
        pytest.param("2024-06-30", True, id="on-as_of"),
        pytest.param("2024-01-15", True, id="before-as_of"),
    ],
)
def test_an_order_changes_the_features_only_when_dated_by_as_of(
    tmp_path: Path, base_orders: list[dict], when: str, changes: bool
) -> None:
    before = snapshot(tmp_path / "before", base_orders)
    extra = {"order_id": "extra", "account_id": "A001", "order_date": when, "revenue": 900.0}
    after = snapshot(tmp_path / "after", [*base_orders, extra])
    if changes:
        assert not np.allclose(before.loc["A001"], after.loc["A001"], rtol=1e-9)
    else:
        # DuckDB sums revenue in parallel: the last digits may move between runs, nothing more
        pd.testing.assert_frame_equal(before, after, rtol=1e-6)


def test_too_few_repeat_buyers_leave_the_features_missing(tmp_path: Path) -> None:
    one_each = [
        {"order_id": f"o{i}", "account_id": f"A{i}", "order_date": "2024-06-30", "revenue": 10.0}
        for i in range(MIN_REPEAT_ACCOUNTS + 5)
    ]
    frame = snapshot(tmp_path, one_each)
    assert frame.isna().all().all()

