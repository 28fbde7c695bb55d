"""The synthetic world: contract-shaped tables, determinism, ground truth that matches events."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from kam.features.contract import EVENT_DATE, TABLES
from kam.features.synthetic import ACTION_TYPES, CAUSES, SimulationSummary, simulate
from kam.features.synthetic import world as world_module
from kam.features.synthetic.catalog import OWNERS

ACCOUNTS = 300
YEARS = 3
SEED = 3
CHILD_TABLES = [name for name, table in TABLES.items() if table.child_of_accounts]


def _read(folder: Path) -> dict[str, pd.DataFrame]:
    tables = {name: pd.read_parquet(folder / f"{name}.parquet") for name in TABLES}
    for path in (folder / "truth").glob("*.parquet"):
        tables[f"truth/{path.stem}"] = pd.read_parquet(path)
    return tables


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    """A small world written in several chunks, so ids must stay unique across chunks."""
    out = tmp_path_factory.mktemp("world")
    calls: list[tuple[int, int]] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(world_module, "CHUNK_ACCOUNTS", 120)
        summary = simulate(ACCOUNTS, YEARS, SEED, out,
                           progress=lambda done, total: calls.append((done, total)))
    return summary, _read(out), calls


def _label(orders: pd.DataFrame, as_of: pd.Timestamp) -> tuple[pd.Series, pd.DataFrame]:
    """Defection label at ``as_of``: next-365-day revenue < 0.5 x previous-365-day revenue,
    among accounts with an order in the previous 365 days."""
    year = pd.Timedelta(days=365)
    before = orders[(orders.order_date > as_of - year) & (orders.order_date <= as_of)]
    after = orders[(orders.order_date > as_of) & (orders.order_date <= as_of + year)]
    prior = before.groupby("account_id").revenue.sum()
    value = after.groupby("account_id").revenue.sum().reindex(prior.index, fill_value=0.0)
    return (value < 0.5 * prior).astype(int), before


def test_summary_counts_what_was_written(world):
    summary, tables, calls = world
    assert isinstance(summary, SimulationSummary)
    assert summary.start == date(2023, 1, 1) and summary.end == date(2025, 12, 31)
    assert summary.seconds > 0
    for name, frame in tables.items():
        assert summary.rows[name] == len(frame), name
    assert summary.rows["accounts"] == ACCOUNTS
    assert calls == [(120, ACCOUNTS), (240, ACCOUNTS), (300, ACCOUNTS)]


@pytest.mark.parametrize("name", list(TABLES), ids=list(TABLES))
def test_tables_follow_the_contract(world, name):
    _, tables, _ = world
    frame = tables[name]
    table = TABLES[name]
    assert len(frame) > 0
    assert list(frame.columns) == list(table.names)
    for column in table.required:
        assert frame[column].notna().all(), f"{name}.{column} has nulls"
    assert frame[table.id_column].is_unique
    for col in table.columns:
        values = frame[col.name].dropna()
        if col.categories:
            assert set(values) <= set(col.categories), f"{name}.{col.name}"
        if col.min_value is not None:
            assert (values >= col.min_value).all(), f"{name}.{col.name}"
        if col.max_value is not None:
            assert (values <= col.max_value).all(), f"{name}.{col.name}"
        if col.kind == "date":
            assert pd.api.types.is_datetime64_any_dtype(frame[col.name]), f"{name}.{col.name}"


@pytest.mark.parametrize("name", CHILD_TABLES, ids=CHILD_TABLES)
def test_child_rows_reference_known_accounts_inside_the_history(world, name):
    summary, tables, _ = world
    frame = tables[name]
    assert frame.account_id.isin(tables["accounts"].account_id).all()
    stamped = frame[EVENT_DATE[name]]
    assert stamped.min() >= pd.Timestamp(summary.start)
    assert stamped.max() <= pd.Timestamp(summary.end)
    created = frame.account_id.map(tables["accounts"].set_index("account_id").created_at)
    assert (stamped >= created).all(), "events before the account was created"


def test_ids_look_like_ids(world):
    _, tables, _ = world
    assert tables["accounts"].account_id.str.fullmatch(r"A\d{6}").all()
    assert tables["orders"].order_id.str.fullmatch(r"O\d+").all()
    assert tables["accounts"].account_manager.str.fullmatch(r"AM-\d{3,}").all()
    parents = tables["accounts"].parent_account_id.dropna()
    assert parents.isin(tables["accounts"].account_id).all()


def test_world_shape_is_plausible(world):
    _, tables, _ = world
    orders = tables["orders"]
    assert 0 < (orders.revenue < 0).mean() < 0.05, "a few returns and credits"
    assert orders.product_category.nunique() >= 6
    assert (orders.discount_amount >= 0).all()
    accounts = tables["accounts"]
    assert accounts.industry.nunique() >= 6 and accounts.region.nunique() >= 5
    joined = (accounts.created_at >= pd.Timestamp("2023-01-01")).mean()
    assert 0.03 < joined < 0.3, "most accounts exist before the history, some join during it"
    interactions = tables["interactions"]
    assert (interactions.our_seniority == "executive").any()
    complaints = tables["complaints"]
    unresolved = complaints.resolved_at.isna()
    assert complaints.satisfaction[unresolved].isna().all()
    assert complaints.satisfaction[~unresolved].notna().all()
    assert (complaints.resolved_at[~unresolved] >= complaints.opened_at[~unresolved]).all()
    deliveries = tables["deliveries"]
    arrived = deliveries.delivered_date.notna()
    assert deliveries.quantity_delivered[~arrived].isna().all()
    assert (deliveries.quantity_delivered[arrived] <= deliveries.quantity_ordered[arrived]).all()
    assert (deliveries.delivered_date > deliveries.promised_date).any()


def test_monthly_seasonality_has_a_new_year_dip_and_a_q4_peak(world):
    _, tables, _ = world
    orders = tables["orders"]
    by_month = orders.groupby(orders.order_date.dt.month).revenue.sum()
    assert by_month[2] < by_month.drop([1, 2]).min()
    assert by_month[12] > by_month.drop([11, 12]).max()


def test_tier_concentration(world):
    _, tables, _ = world
    revenue = tables["orders"].groupby("account_id").revenue.sum().sort_values(ascending=False)
    top = revenue.iloc[: len(revenue) // 10].sum() / revenue.sum()
    assert 0.55 <= top <= 0.85


def test_same_seed_gives_identical_bytes(tmp_path):
    first, second, other = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    simulate(60, 2, 11, first)
    simulate(60, 2, 11, second)
    simulate(60, 2, 12, other)
    files = sorted(p.relative_to(first) for p in first.rglob("*.parquet"))
    assert len(files) == len(TABLES) + 4
    for rel in files:
        assert (first / rel).read_bytes() == (second / rel).read_bytes(), rel
    assert (first / "orders.parquet").read_bytes() != (other / "orders.parquet").read_bytes()


def test_csv_holds_the_same_world(tmp_path):
    simulate(40, 1, 5, tmp_path / "pq")
    summary = simulate(40, 1, 5, tmp_path / "csv", file_format="csv")
    for name in TABLES:
        from_csv = pd.read_csv(tmp_path / "csv" / f"{name}.csv")
        from_parquet = pd.read_parquet(tmp_path / "pq" / f"{name}.parquet")
        assert list(from_csv.columns) == list(TABLES[name].names)
        assert len(from_csv) == len(from_parquet) == summary.rows[name]
    orders = pd.read_csv(tmp_path / "csv" / "orders.csv")
    assert orders.order_date.str.fullmatch(r"\d{4}-\d{2}-\d{2}").all()
    assert (tmp_path / "csv" / "truth" / "defections.parquet").is_file()


def test_history_ends_on_the_given_day(tmp_path):
    summary = simulate(30, 1, 2, tmp_path, end=date(2024, 6, 15))
    assert summary.start == date(2023, 6, 16)
    orders = pd.read_parquet(tmp_path / "orders.parquet")
    assert orders.order_date.min() >= pd.Timestamp("2023-06-16")
    assert orders.order_date.max() <= pd.Timestamp("2024-06-15")


@pytest.mark.parametrize(
    "kwargs",
    [{"accounts": 0}, {"years": 0}, {"seed": -1}, {"file_format": "xlsx"}],
    ids=["no-accounts", "no-years", "negative-seed", "unknown-format"],
)
def test_bad_arguments_are_refused(tmp_path, kwargs):
    arguments = {"accounts": 5, "years": 1, "seed": 1, "out": tmp_path} | kwargs
    with pytest.raises(ValueError):
        simulate(**arguments)


def test_full_defectors_stop_ordering_from_their_defection_month(world):
    _, tables, _ = world
    defections = tables["truth/defections"]
    full = defections[defections.kind == "full"].set_index("account_id").defection_month
    assert len(full) > 0
    orders = tables["orders"]
    stop = orders.account_id.map(full)
    assert not (orders.order_date >= stop).any()
    # The wind-down before the stop shows: those accounts did order before it.
    assert orders.account_id.isin(full.index).any()


def test_partial_defectors_spend_far_less_after_erosion(world):
    _, tables, _ = world
    defections = tables["truth/defections"]
    partial = defections[(defections.kind == "partial")
                         & (defections.onset_month >= pd.Timestamp("2024-01-01"))
                         & (defections.onset_month <= pd.Timestamp("2025-03-01"))]
    assert len(partial) >= 5
    assert partial.share_of_wallet_after.between(0.10, 0.45).all()
    orders = tables["orders"].merge(partial[["account_id", "onset_month"]], on="account_id")
    months = (orders.order_date.dt.to_period("M") - orders.onset_month.dt.to_period("M")
              ).map(lambda offset: offset.n)
    before = orders[months.between(-12, -1)].groupby("account_id").revenue.sum() / 12
    after = orders[months.between(6, 9)].groupby("account_id").revenue.sum() / 4
    ratio = after.reindex(before.index, fill_value=0.0) / before
    assert ratio.median() < 0.6


def test_truth_states_follow_the_defections(world):
    _, tables, _ = world
    months = tables["truth/account_months"]
    defections = tables["truth/defections"].set_index("account_id")
    assert set(months.state) <= {"active", "partial", "defected"}
    assert set(defections.cause) <= set(CAUSES)
    onset = months.account_id.map(defections.onset_month)
    stop = months.account_id.map(defections.defection_month.where(defections.kind == "full"))
    expected = np.where(months.month >= stop, "defected",
                        np.where(months.month >= onset, "partial", "active"))
    assert (months.state.to_numpy() == expected).all()
    # The hazard of the month a defection starts is the one that fired; after it, none.
    assert (months.hazard[months.month > onset] == 0).all()
    at_risk = months[(months.state == "active") | (months.month == onset)]
    assert at_risk.hazard.between(0, 1).all() and (at_risk.hazard > 0).all()
    assert months.single_threaded.any() and months.manager_changed.any()


def test_defection_rate_is_plausible_and_signals_are_informative_but_noisy(world):
    summary, tables, _ = world
    as_of = pd.Timestamp(summary.end) - pd.Timedelta(days=365)
    label, before = _label(tables["orders"], as_of)
    assert 0.05 <= label.mean() <= 0.30
    last_quarter = before[before.order_date > as_of - pd.Timedelta(days=91)]
    trend = (last_quarter.groupby("account_id").revenue.sum().reindex(label.index, fill_value=0)
             / (before.groupby("account_id").revenue.sum() / 4))
    recency = (as_of - before.groupby("account_id").order_date.max()).dt.days
    assert 0.6 <= roc_auc_score(label, -trend) <= 0.95
    assert 0.55 <= roc_auc_score(label, recency.reindex(label.index)) <= 0.95


def test_action_truth_matches_the_actions_table(world):
    _, tables, _ = world
    actions = tables["actions"]
    effects = tables["truth/action_effects"]
    assignments = tables["truth/action_assignments"]
    assert list(effects.action) == [a.action for a in ACTION_TYPES]
    assert set(actions.action) <= set(effects.action)
    assert set(effects.cause) <= set(CAUSES)
    assert (effects.effect_log_odds <= 0).all() and (effects.effect_log_odds < 0).any()
    assert int(effects.assigned_random.sum() + effects.assigned_targeted.sum()) == len(actions)
    assert effects.assigned_random.sum() > 0 and effects.assigned_targeted.sum() > 0
    merged = actions.merge(assignments, on=["action_id", "account_id", "action"], how="outer")
    assert len(merged) == len(actions) and merged.assignment.notna().all()
    counted = assignments.groupby(["action", "assignment"]).size().unstack(fill_value=0)
    by_type = effects.set_index("action")
    assert (counted["random"] == by_type.assigned_random[counted.index]).all()
    owners = {a.action: a.owner for a in ACTION_TYPES}
    assert (actions.owner == actions.action.map(owners)).all()
    assert set(actions.owner) <= set(OWNERS)


def test_manager_turnover_shows_as_a_new_rep(world):
    _, tables, _ = world
    interactions = tables["interactions"]
    managers = interactions[interactions.rep_id.str.startswith("AM-")]
    reps_per_account = managers.groupby("account_id").rep_id.nunique()
    assert (reps_per_account > 1).any()
    changed = tables["truth/account_months"].query("manager_changed").account_id.unique()
    assert set(reps_per_account[reps_per_account > 1].index) <= set(changed)
