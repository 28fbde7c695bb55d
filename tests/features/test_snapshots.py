"""Point-in-time snapshots and labels on small hand-written stores with exact expected values."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import ibis
import pandas as pd
import pytest

from kam.features.catalog import CATALOG, CONTACT_LOOKBACK_DAYS
from kam.features.contract import TABLES
from kam.features.errors import DataContractError, EmptyWindowError
from kam.features.families import btyd
from kam.features.periods import Period
from kam.features.snapshots import (
    as_of_range,
    build_snapshots,
    data_end,
    snapshot_table,
    write_snapshots,
)
from kam.features.store import connect, one_thread, write_table

AS_OF = pd.Timestamp("2024-06-30")
LABELS = ["label_value", "label_prior_value", "label_defection", "label_observed"]
FEATURES = [f.name for f in CATALOG]


def day(offset: int, time: str = "00:00") -> str:
    """A timestamp ``offset`` days after AS_OF (negative: before)."""
    return f"{(AS_OF + pd.Timedelta(days=offset)).date()} {time}"


def table_frame(name: str, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows as the store holds them: every contract column, typed, optional ones null."""
    columns = {}
    for column in TABLES[name].columns:
        values = [row.get(column.name) for row in rows]
        if column.kind == "date":
            dates = pd.Series(values, dtype="object")
            columns[column.name] = pd.to_datetime(dates, format="ISO8601")
        elif column.kind == "number":
            columns[column.name] = pd.Series(values, dtype="float64")
        else:
            columns[column.name] = pd.Series(values, dtype="string")
    frame = pd.DataFrame(columns)
    for column in TABLES[name].columns:
        if column.kind == "date":
            frame[column.name] = frame[column.name].astype("datetime64[us]")
    return frame


def make_store(path: Path, tables: dict[str, list[dict[str, Any]]]) -> Any:
    """A DuckDB store holding ``tables``; accounts derived from orders when not given."""
    con = connect(f"duckdb:///{path / 'kam.duckdb'}")
    tables = dict(tables)
    if "accounts" not in tables:
        ids = sorted({row["account_id"] for row in tables["orders"]})
        tables["accounts"] = [{"account_id": i} for i in ids]
    for name, rows in tables.items():
        write_table(con, name, table_frame(name, rows))
    return con


def orders(*rows: tuple) -> list[dict[str, Any]]:
    """Order lines from (account_id, when, revenue[, category[, discount[, margin]]])."""
    out = []
    for n, row in enumerate(rows):
        account, when, revenue, *rest = row
        rest = [*rest, None, None, None]
        out.append(
            {
                "order_id": f"o{n}",
                "account_id": account,
                "order_date": when,
                "revenue": revenue,
                "quantity": 1.0,
                "product_category": rest[0],
                "discount_amount": rest[1],
                "gross_margin": rest[2],
            }
        )
    return out


# A store with every table. Events of interest sit around AS_OF; "END" makes the data run long
# enough past AS_OF that a 365-day horizon is observed.
WORLD_ORDERS = orders(
    ("A1", day(-532), 100.0, "pipes", 0.0, 20.0),
    ("A1", day(-356), 200.0, "pipes", 20.0, 50.0),
    ("A1", day(-81), 300.0, "valves", 30.0, 60.0),
    ("A1", day(0, "15:00"), 50.0, "pipes", 0.0, 10.0),
    ("A1", day(32), 400.0, "pipes"),
    ("A2", day(-487), 80.0, "pumps"),
    ("A3", day(-181), 120.0, "pipes"),
    ("A3", day(-29), -20.0, "pipes"),
    ("END", day(400), 1.0, "pipes"),
)
WORLD = {
    "orders": WORLD_ORDERS,
    "accounts": [
        {"account_id": "A1", "industry": "steel", "region": "north", "created_at": day(-1000)},
        {"account_id": "A2", "industry": "food", "region": "south", "created_at": day(-900)},
        {"account_id": "A3", "region": "south"},
        {"account_id": "END"},
    ],
    "interactions": [
        {
            "interaction_id": "i1",
            "account_id": "A1",
            "occurred_at": day(-40),
            "channel": "visit",
            "rep_id": "r1",
            "contact_id": "c1",
            "contact_role": "economic",
            "our_seniority": "executive",
            "contact_seniority": "manager",
            "sentiment": 0.5,
        },
        {
            "interaction_id": "i2",
            "account_id": "A1",
            "occurred_at": day(-10),
            "channel": "call",
            "rep_id": "r1",
            "contact_id": "c2",
            "contact_role": "technical",
            "our_seniority": "rep",
            "contact_seniority": "executive",
            "sentiment": -0.1,
        },
        {
            "interaction_id": "i3",
            "account_id": "A1",
            "occurred_at": day(-200),
            "channel": "visit",
            "rep_id": "r0",
            "contact_id": "c3",
            "contact_role": "user",
            "our_seniority": "rep",
            "contact_seniority": "staff",
            "sentiment": 0.9,
        },
        {
            "interaction_id": "i4",
            "account_id": "A3",
            "occurred_at": day(-5),
            "channel": "email",
            "rep_id": "r2",
            "contact_id": "c9",
            "contact_role": "procurement",
            "our_seniority": "rep",
            "contact_seniority": "staff",
        },
    ],
    "complaints": [
        {
            "complaint_id": "k1",
            "account_id": "A1",
            "opened_at": day(-30),
            "category": "quality",
            "severity": "high",
        },
        {
            "complaint_id": "k2",
            "account_id": "A1",
            "opened_at": day(-5),
            "resolved_at": day(-2),
            "category": "delivery",
            "severity": "low",
            "satisfaction": 4.0,
        },
        {
            "complaint_id": "k3",
            "account_id": "A1",
            "opened_at": day(-100),
            "category": "price",
            "severity": "critical",
        },
        {
            "complaint_id": "k4",
            "account_id": "A3",
            "opened_at": day(-300),
            "resolved_at": day(-290),
            "category": "billing",
            "severity": "low",
            "satisfaction": 2.0,
        },
    ],
    "deliveries": [
        {
            "delivery_id": "d1",
            "account_id": "A1",
            "promised_date": day(-50),
            "delivered_date": day(-50),
            "quantity_ordered": 10.0,
            "quantity_delivered": 10.0,
        },
        {
            "delivery_id": "d2",
            "account_id": "A1",
            "promised_date": day(-20),
            "delivered_date": day(-15),
            "quantity_ordered": 10.0,
            "quantity_delivered": 6.0,
        },
        {
            "delivery_id": "d3",
            "account_id": "A1",
            "promised_date": day(-3),
            "delivered_date": day(2),
            "quantity_ordered": 4.0,
            "quantity_delivered": 4.0,
        },
    ],
}


# Building a snapshot costs about a second of expression compiling, so the stores and
# snapshots that tests only read are built once per module.
@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return make_store(tmp_path_factory.mktemp("world"), WORLD)


@pytest.fixture(scope="module")
def world_snapshot(world: Any) -> pd.DataFrame:
    return build_snapshots(world, [AS_OF]).set_index("account_id")


@pytest.mark.parametrize(
    ("account", "feature", "expected"),
    [
        ("A1", "revenue_90d", 350.0),
        ("A1", "revenue_365d", 550.0),
        ("A1", "revenue_90d_last_year", 0.0),
        ("A1", "recency_days", 0),
        ("A1", "tenure_days", 532),
        ("A1", "mean_gap_days", 532 / 3),
        ("A1", "order_days_per_month", 4 / (532 / (365.25 / 12))),
        ("A1", "revenue_180d", 350.0),
        ("A1", "revenue_trend_90d", 1.0),
        ("A1", "revenue_change_365d", 450.0 / 650.0),
        ("A1", "categories_prev_365d", 1),
        ("A1", "order_days_365d", 3),
        ("A1", "active_months_share_12m", 3 / 12),
        ("A1", "categories_365d", 2),
        ("A1", "categories_lost_365d", 0),
        ("A1", "categories_new_365d", 1),
        ("A1", "discount_rate_365d", 50.0 / 600.0),
        ("A1", "margin_rate_365d", 120.0 / 550.0),
        ("A1", "discount_rate_trend_180d", 30.0 / 380.0 - 20.0 / 220.0),
        ("A1", "margin_rate_trend_180d", 70.0 / 350.0 - 50.0 / 200.0),
        ("A3", "revenue_90d", -20.0),
        ("A3", "recency_days", 29),
        ("A3", "overdue_ratio", 29 / 152),
        ("A3", "return_share_365d", 20.0 / 120.0),
        ("A1", "executive_contact_recency_days", 10),
        ("A1", "economic_buyer_recency_days", 40),
        ("A3", "executive_contact_recency_days", CONTACT_LOOKBACK_DAYS),
        ("A1", "contacts_180d", 2),
        ("A1", "contacts_dropped_180d", 1),
        ("A1", "reps_new_180d", 1),
        ("A1", "reps_dropped_180d", 1),
        ("A1", "visits_180d", 1),
        ("A1", "visit_gap_days_365d", 160.0),
        ("A1", "contact_roles_180d", 2),
        ("A1", "sentiment_mean_180d", 0.2),
        ("A1", "interactions_90d", 2),
        ("A1", "complaints_open", 2),
        ("A1", "complaints_open_overdue", 2),
        ("A1", "open_complaint_max_age_days", 100),
        ("A1", "complaints_90d", 2),
        ("A1", "satisfaction_mean_365d", 4.0),
        ("A1", "resolution_days_mean_365d", 3.0),
        ("A3", "complaints_open", 0),
        ("A3", "complaints_365d", 1),
        ("A1", "on_time_rate_180d", 1 / 3),
        ("A1", "late_deliveries_180d", 2),
        ("A1", "fill_rate_180d", 16.0 / 24.0),
        ("A3", "late_deliveries_180d", 0),
        ("A1", "industry", "steel"),
        ("A1", "account_age_days", 1000),
        ("A1", "spend_tier", "A"),
        ("A1", "spend_percentile", 1.0),
        ("A1", "season_month_sin", 0.5),
        ("A1", "season_month_cos", -(3**0.5) / 2),
    ],
    ids=lambda v: str(v) if isinstance(v, str) else None,
)
def test_feature_values(
    world_snapshot: pd.DataFrame, account: str, feature: str, expected: object
) -> None:
    value = world_snapshot.loc[account, feature]
    if isinstance(expected, float):
        assert value == pytest.approx(expected)
    else:
        assert value == expected


def test_columns_are_ids_features_labels(world_snapshot: pd.DataFrame) -> None:
    frame = world_snapshot.reset_index()
    assert list(frame.columns) == ["account_id", "as_of", *FEATURES, *LABELS]
    assert frame["label_defection"].dtype == "Int8"
    assert frame["label_observed"].dtype == bool


def test_one_row_per_account_and_as_of(world: Any) -> None:
    dates = [AS_OF - pd.Timedelta(days=30), AS_OF]
    frame = build_snapshots(world, dates)
    assert not frame.duplicated(["account_id", "as_of"]).any()
    assert sorted(frame["as_of"].unique()) == dates
    assert frame.groupby("as_of").size().tolist() == [2, 2]


def after_as_of(tables: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """The world with events one day after AS_OF, and an old complaint resolved then."""
    moved = {name: [dict(row) for row in rows] for name, rows in tables.items()}
    moved["orders"] += orders(("A3", day(1), 999.0, "valves", 100.0, 5.0))
    moved["orders"][-1]["order_id"] = "late-order"
    moved["interactions"].append(
        {
            "interaction_id": "i-late",
            "account_id": "A3",
            "occurred_at": day(1),
            "channel": "visit",
            "rep_id": "r9",
            "contact_id": "c8",
            "contact_role": "economic",
            "our_seniority": "executive",
            "contact_seniority": "executive",
            "sentiment": -1.0,
        }
    )
    moved["complaints"].append(
        {
            "complaint_id": "k-late",
            "account_id": "A3",
            "opened_at": day(1),
            "category": "quality",
            "severity": "critical",
        }
    )
    for row in moved["complaints"]:
        if row["complaint_id"] == "k3":
            row["resolved_at"], row["satisfaction"] = day(1), 1.0
    moved["deliveries"].append(
        {
            "delivery_id": "d-late",
            "account_id": "A3",
            "promised_date": day(1),
            "delivered_date": day(9),
            "quantity_ordered": 5.0,
            "quantity_delivered": 1.0,
        }
    )
    return moved


def test_events_after_as_of_change_labels_only(
    world_snapshot: pd.DataFrame, tmp_path: Path
) -> None:
    before = world_snapshot.reset_index()
    after = build_snapshots(make_store(tmp_path, after_as_of(WORLD)), [AS_OF])
    pd.testing.assert_frame_equal(
        before[["account_id", "as_of", *FEATURES]], after[["account_id", "as_of", *FEATURES]]
    )
    a3_before = before.set_index("account_id").loc["A3"]
    a3_after = after.set_index("account_id").loc["A3"]
    assert a3_after["label_value"] == a3_before["label_value"] + 999.0


@pytest.mark.parametrize(
    ("when", "in_features"),
    [(day(0, "23:59"), True), (day(1, "00:00"), False)],
    ids=["on-as-of-day", "next-day"],
)
def test_moving_an_order_across_as_of(
    world_snapshot: pd.DataFrame, tmp_path: Path, when: str, in_features: bool
) -> None:
    tables = dict(WORLD, orders=[*WORLD_ORDERS, *orders(("A3", when, 1000.0, "pipes"))])
    tables["orders"][-1]["order_id"] = "moved"
    base = world_snapshot
    moved = build_snapshots(make_store(tmp_path, tables), [AS_OF]).set_index("account_id")
    feature_gain = moved.loc["A3", "revenue_90d"] - base.loc["A3", "revenue_90d"]
    label_gain = moved.loc["A3", "label_value"] - base.loc["A3", "label_value"]
    assert (feature_gain, label_gain) == ((1000.0, 0.0) if in_features else (0.0, 1000.0))


LABEL_AS_OF = pd.Timestamp("2023-01-31")
LABEL_ORDERS = orders(
    # L1 falls from 1000 to 400: a partial defection at decline 0.5, not at 1.0
    ("L1", "2022-03-01", 1000.0),
    ("L1", "2023-06-01", 400.0),
    # L2 stops buying entirely
    ("L2", "2022-11-01", 1000.0),
    # L3 holds steady
    ("L3", "2022-12-01", 100.0),
    ("L3", "2023-12-01", 90.0),
    # L4 returns goods in the horizon: negative value
    ("L4", "2022-05-01", 50.0),
    ("L4", "2023-02-01", -10.0),
    # beyond every horizon: only sets the end of the data
    ("L3", "2024-03-01", 5.0),
)


@pytest.fixture(scope="module")
def label_store(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return make_store(tmp_path_factory.mktemp("labels"), {"orders": LABEL_ORDERS})


@pytest.fixture(scope="module")
def label_snapshots(label_store: Any) -> dict[float, pd.DataFrame]:
    return {
        decline: build_snapshots(label_store, [LABEL_AS_OF], decline=decline).set_index(
            "account_id"
        )
        for decline in (0.5, 1.0)
    }


@pytest.mark.parametrize(
    ("decline", "account", "value", "prior", "defection"),
    [
        (0.5, "L1", 400.0, 1000.0, 1),
        (1.0, "L1", 400.0, 1000.0, 0),
        (0.5, "L2", 0.0, 1000.0, 1),
        (1.0, "L2", 0.0, 1000.0, 1),
        (0.5, "L3", 90.0, 100.0, 0),
        (1.0, "L3", 90.0, 100.0, 0),
        (1.0, "L4", -10.0, 50.0, 1),
    ],
    ids=lambda v: str(v),
)
def test_labels(
    label_snapshots: dict[float, pd.DataFrame],
    decline: float,
    account: str,
    value: float,
    prior: float,
    defection: int,
) -> None:
    row = label_snapshots[decline].loc[account]
    assert (row["label_value"], row["label_prior_value"]) == (value, prior)
    assert row["label_defection"] == defection
    assert row["label_observed"]


@pytest.mark.parametrize(("decline", "defection"), [(0.5, 0), (1.0, 1)], ids=["half", "all"])
def test_an_idle_account_that_buys_nothing_defects_only_at_decline_one(
    tmp_path: Path, decline: float, defection: int
) -> None:
    """Population 'ever' (as on CDNOW): nothing bought before or after is 'stopped buying'."""
    idle = orders(("I1", "2021-06-01", 80.0), ("I2", "2023-05-01", 10.0), ("I2", "2024-03-01", 1.0))
    con = make_store(tmp_path, {"orders": idle})
    frame = build_snapshots(con, [LABEL_AS_OF], activity_window=None, decline=decline)
    row = frame.set_index("account_id").loc["I1"]
    assert (row["label_value"], row["label_prior_value"]) == (0.0, 0.0)
    assert row["label_defection"] == defection


def test_labels_null_when_horizon_not_observed(label_store: Any) -> None:
    con = label_store
    late = pd.Timestamp("2023-06-30")  # + 365 days runs past the end, 2024-03-01
    frame = build_snapshots(con, [LABEL_AS_OF, late])
    unobserved = frame[frame["as_of"] == late]
    assert not unobserved["label_observed"].any()
    assert unobserved[["label_value", "label_prior_value", "label_defection"]].isna().all().all()
    assert frame["label_value"].dtype == "float64"
    assert frame[frame["as_of"] == LABEL_AS_OF]["label_observed"].all()


@pytest.mark.parametrize(
    ("horizon", "value", "prior"),
    [
        # 26 weeks = 182 days: (2023-01-31, 2023-08-01]; before it (2022-08-01, 2023-01-31]
        ("26w", 30.0, 0.0),
        # 6 months: (2023-01-31, 2023-07-31]; before it (2022-07-31, 2023-01-31]
        ("6mo", 10.0, 7.0),
        (Period(6, "month"), 10.0, 7.0),
    ],
    ids=["26w", "6mo", "Period-6mo"],
)
def test_calendar_horizons(tmp_path: Path, horizon: Any, value: float, prior: float) -> None:
    con = make_store(
        tmp_path,
        {
            "orders": orders(
                ("H", "2022-08-01", 7.0),
                ("H", "2023-01-31 18:00", 1.0),
                ("H", "2023-07-31", 10.0),
                ("H", "2023-08-01", 20.0),
                ("H", "2023-08-02", 40.0),
                ("END", "2024-06-01", 1.0),
            )
        },
    )
    row = build_snapshots(con, [LABEL_AS_OF], horizon=horizon).set_index("account_id").loc["H"]
    assert (row["label_value"], row["label_prior_value"]) == (value, prior + 1.0)


@pytest.mark.parametrize(
    ("activity_window", "accounts"),
    [
        (Period(365, "day"), ["A1", "A3"]),
        ("365d", ["A1", "A3"]),
        (Period(1, "year"), ["A1", "A3"]),
        (Period(30, "day"), ["A1", "A3"]),
        (Period(20, "day"), ["A1"]),
        (None, ["A1", "A2", "A3"]),
        ("ever", ["A1", "A2", "A3"]),
    ],
    ids=["365d", "365d-text", "1y", "30d", "20d", "None", "ever"],
)
def test_population(world: Any, activity_window: Any, accounts: list[str]) -> None:
    frame = build_snapshots(world, [AS_OF], activity_window=activity_window)
    assert frame["account_id"].tolist() == accounts


def test_transactions_only_store(tmp_path: Path) -> None:
    con = make_store(tmp_path, {"orders": WORLD_ORDERS})
    frame = build_snapshots(con, [AS_OF])
    families = {f.family for f in CATALOG if f.name in frame.columns}
    assert families == {"spend", "rhythm", "breadth", "price", "account", "season"}
    assert frame.set_index("account_id").loc["A1", "revenue_90d"] == 350.0
    assert frame["industry"].isna().all()


def test_orders_only_store_without_accounts_table(tmp_path: Path) -> None:
    con = connect(f"duckdb:///{tmp_path / 'kam.duckdb'}")
    write_table(con, "orders", table_frame("orders", WORLD_ORDERS))
    frame = build_snapshots(con, [AS_OF])
    assert "industry" not in frame.columns
    assert "spend_tier" in frame.columns


def test_as_of_after_data_end_names_the_date(world: Any) -> None:
    with pytest.raises(EmptyWindowError, match="2025-12-01"):
        build_snapshots(world, [AS_OF, "2025-12-01"])


def test_empty_population_names_the_date(world: Any) -> None:
    with pytest.raises(EmptyWindowError, match="2020-01-01"):
        build_snapshots(world, ["2020-01-01", AS_OF])


def test_one_thread_sets_duckdb_to_one_thread(tmp_path: Path) -> None:
    """Sums in one order, the same every run: training and the benchmarks rely on it."""
    con = connect(f"duckdb:///{tmp_path / 'kam.duckdb'}")
    con.raw_sql("SET threads = 2")
    one_thread(con)
    assert con.raw_sql("SELECT current_setting('threads')").fetchone()[0] == 1
    one_thread(SimpleNamespace(name="pyspark"))  # another engine is left alone, no error


def test_store_without_orders(tmp_path: Path) -> None:
    con = connect(f"duckdb:///{tmp_path / 'kam.duckdb'}")
    write_table(con, "accounts", table_frame("accounts", [{"account_id": "A"}]))
    with pytest.raises(DataContractError, match="orders"):
        snapshot_table(con, [AS_OF])


@pytest.mark.parametrize("decline", [0.0, 1.5], ids=["zero", "above-one"])
def test_decline_out_of_range(world: Any, decline: float) -> None:
    with pytest.raises(ValueError, match="decline"):
        snapshot_table(world, [AS_OF], decline=decline)


def test_snapshot_table_is_lazy_and_matches(world: Any) -> None:
    expr = snapshot_table(world, [AS_OF])
    assert isinstance(expr, ibis.Table)
    # the BG/NBD features are fitted after the query, by build_snapshots
    queried = [f for f in FEATURES if f not in btyd.FEATURES]
    assert list(expr.columns) == ["account_id", "as_of", *queried, *LABELS]
    assert len(world.execute(expr)) == 2


def test_data_end(world: Any) -> None:
    assert data_end(world) == AS_OF + pd.Timedelta(days=400)


def test_data_end_prefers_latest_ingest_run(tmp_path: Path) -> None:
    store = make_store(tmp_path, {"orders": LABEL_ORDERS})
    runs = pd.DataFrame(
        {
            "finished_at": pd.to_datetime(["2025-01-01", "2025-02-01"]),
            "data_end": pd.to_datetime(["2025-09-30", "2025-08-31"]),
        }
    )
    write_table(store, "ingest_runs", runs)
    assert data_end(store) == pd.Timestamp("2025-08-31")


@pytest.mark.parametrize(
    ("start", "end", "every", "expected"),
    [
        (
            "2024-01-31",
            "2024-04-30",
            "1mo",
            ["2024-01-31", "2024-02-29", "2024-03-31", "2024-04-30"],
        ),
        ("2024-01-01", "2024-01-20", Period(7, "day"), ["2024-01-01", "2024-01-08", "2024-01-15"]),
        ("2024-01-01", "2024-01-01", "1y", ["2024-01-01"]),
    ],
    ids=["month-ends", "weekly", "single"],
)
def test_as_of_range(start: str, end: str, every: Any, expected: list[str]) -> None:
    assert as_of_range(start, end, every) == [pd.Timestamp(d) for d in expected]


def test_as_of_range_backwards() -> None:
    with pytest.raises(ValueError, match="before it starts"):
        as_of_range("2024-02-01", "2024-01-01", "1mo")


@pytest.mark.parametrize("name", ["snapshots.parquet", "snapshots.csv"], ids=["parquet", "csv"])
def test_write_snapshots(world_snapshot: pd.DataFrame, tmp_path: Path, name: str) -> None:
    frame = world_snapshot.reset_index()
    out = tmp_path / "out" / name
    write_snapshots(frame, out)
    back = pd.read_csv(out) if name.endswith(".csv") else pd.read_parquet(out)
    assert list(back.columns) == list(frame.columns)
    assert back["revenue_90d"].tolist() == frame["revenue_90d"].tolist()


@pytest.mark.slow
def test_spark_gives_the_same_snapshots(
    world: Any, world_snapshot: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same expression on Spark (Ibis's pyspark backend) as on DuckDB, value for value."""
    pyspark_sql = pytest.importorskip("pyspark.sql")
    monkeypatch.setenv("PYSPARK_PYTHON", sys.executable)
    spark = (
        pyspark_sql.SparkSession.builder.master("local[2]")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.warehouse.dir", str(tmp_path / "warehouse"))
        .getOrCreate()
    )
    try:
        for name in WORLD:
            path = tmp_path / f"{name}.parquet"
            world.table(name).to_parquet(path)
            spark.read.parquet(str(path)).createOrReplaceTempView(name)
        on_spark = build_snapshots(ibis.pyspark.connect(spark), [AS_OF])
    finally:
        spark.stop()
    expected = world_snapshot.reset_index()
    pd.testing.assert_frame_equal(on_spark, expected, check_dtype=False)
