"""Batch and online scoring on a simulated world with a trained model, and the scores table."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from pydantic import TypeAdapter

from kam.features.snapshots import build_snapshots, data_end
from kam.features.store import connect
from kam.models.errors import FeatureRowError
from kam.serving.decisions.drivers import Drivers
from kam.serving.decisions.evidence import evidence_for
from kam.serving.decisions.playbook import load_playbook
from kam.serving.decisions.recommend import Recommendations, days_since_taken
from kam.serving.decisions.stages import assign_tiers, tier_cutoffs
from kam.serving.decisions.vocabulary import OWNERS, STAGES
from kam.serving.record import MOMENT_FORMAT, RECORD, ActionRecommendation, Driver, formula_safe
from kam.serving.scoring.batch import export_scores, score_accounts, score_frame
from kam.serving.scoring.online import score_features, score_matrix
from kam.serving.scoring.record_json import actions_json, drivers_json
from kam.serving.store import SCORE_COLUMNS, none_if_missing, read_scores, write_scores
from tests.world import World

SCORED_AT = pd.Timestamp("2026-01-02 06:30:00")
PLAYBOOK = load_playbook()


@pytest.fixture(scope="module")
def batch(small_world: World) -> dict:
    con = small_world.connect()
    model = small_world.model()
    end = data_end(con)
    frame = score_accounts(con, model, scored_at=SCORED_AT)
    snapshot = build_snapshots(con, [end])
    return {"con": con, "model": model, "frame": frame, "snapshot": snapshot, "end": end}


def test_scores_have_exactly_the_table_columns(batch: dict) -> None:
    frame = batch["frame"]
    assert tuple(frame.columns) == SCORE_COLUMNS
    assert len(frame) == len(batch["snapshot"]) and frame["account_id"].is_unique
    assert (frame["as_of"] == batch["end"]).all()
    assert (frame["scored_at"] == SCORED_AT).all()
    assert (frame["model_version"] == "1").all()
    assert (frame["playbook_version"] == PLAYBOOK.version).all()
    assert frame["name"].notna().all() and frame["account_manager"].notna().all()
    assert frame["relationship_stage"].isin(STAGES).all()
    assert frame["defection_probability"].between(0, 1).all()
    assert (frame["value_low"] <= frame["value"]).all()
    assert (frame["value"] <= frame["value_high"]).all()


def test_value_at_risk_rank_and_tiers(batch: dict) -> None:
    frame = batch["frame"]
    revenue = batch["snapshot"].set_index("account_id")["revenue_365d"].clip(lower=0)
    np.testing.assert_allclose(
        frame["value_at_stake"], revenue.loc[frame["account_id"]].to_numpy(), rtol=1e-12
    )
    np.testing.assert_allclose(
        frame["value_at_risk"], frame["defection_probability"] * frame["value_at_stake"]
    )
    assert frame["rank"].tolist() == list(range(1, len(frame) + 1))
    assert frame["value_at_risk"].is_monotonic_decreasing
    assert frame["tier"].tolist() == assign_tiers(frame["value"].to_numpy()).tolist()
    by_value = frame.sort_values("value", ascending=False)
    share = by_value["value"].cumsum() / by_value["value"].sum()
    a = by_value["tier"] == "A"
    assert share[a].iloc[-1] >= 0.7 > (share[a].iloc[-1] - by_value["value"][a].iloc[-1]
                                        / by_value["value"].sum())
    assert a.mean() < 0.3  # the Pareto rule: few accounts carry most of the value


def test_drivers_and_actions_are_consistent_json(batch: dict) -> None:
    frame = batch["frame"]
    with_actions = 0
    for row in frame.itertuples():
        drivers = json.loads(row.drivers)
        actions = json.loads(row.actions)
        assert len(drivers) <= 3 and len(actions) <= 3
        contributions = [d["contribution"] for d in drivers]
        assert contributions == sorted(contributions, reverse=True)
        assert all(c > 0 for c in contributions)
        if drivers:
            assert (row.top_driver, row.top_driver_cause) == (
                drivers[0]["phrase"], drivers[0]["cause"],
            )
        else:
            assert pd.isna(row.top_driver) and pd.isna(row.top_driver_cause)
        if not actions:
            assert pd.isna(row.first_action) and pd.isna(row.first_action_due)
            continue
        with_actions += 1
        first = PLAYBOOK.by_id[actions[0]["action_id"]]
        assert row.tier in first.tiers
        assert (row.first_action, row.first_action_owner) == (first.title, first.owner)
        assert row.first_action_due == batch["end"] + pd.Timedelta(days=first.due_in_days)
        assert actions[0]["due_date"] == str(row.first_action_due.date())
        assert all(a["owner"] in OWNERS and a["reason"] for a in actions)
        assert len({a["action_id"] for a in actions}) == len(actions)
    assert with_actions / len(frame) > 0.8


def test_a_driver_limit_keeps_drivers_for_the_highest_value_at_risk(batch: dict) -> None:
    limited = score_frame(
        batch["snapshot"], batch["model"], as_of=batch["end"], scored_at=SCORED_AT,
        driver_limit=50,
    )
    full = batch["frame"]
    assert limited[["account_id", "rank", "tier"]].equals(full[["account_id", "rank", "tier"]])
    with_drivers = limited["drivers"] != "[]"
    assert with_drivers.sum() <= 50 and not with_drivers.iloc[50:].any()
    top = limited.head(50)
    assert (top["drivers"] == full.head(50)["drivers"]).mean() > 0.95
    rest = limited.iloc[50:]
    driver_free = {a.id for a in PLAYBOOK.actions if not a.trigger.needs_driver}
    for actions in rest["actions"]:
        assert {a["action_id"] for a in json.loads(actions)} <= driver_free


def test_scores_table_round_trip_keeps_history(batch: dict, tmp_path) -> None:
    url = f"duckdb:///{tmp_path / 'scores.duckdb'}"
    frame = batch["frame"]
    earlier = frame.assign(as_of=frame["as_of"] - pd.Timedelta(days=31))
    assert write_scores(url, earlier) == len(frame)
    write_scores(url, frame)
    write_scores(url, frame)  # re-scoring an as_of replaces its rows
    con = connect(url, read_only=True)
    stored = con.table("scores")
    assert list(stored.columns) == list(SCORE_COLUMNS)
    assert stored.count().to_pandas() == 2 * len(frame)
    types = dict(zip(stored.schema().names, map(str, stored.schema().types), strict=True))
    assert types["as_of"] == "date" and types["first_action_due"] == "date"
    back = read_scores(con)
    pd.testing.assert_frame_equal(_plain(back), _plain(frame))
    assert len(read_scores(con, as_of=earlier["as_of"].iloc[0])) == len(frame)
    con.disconnect()


def _plain(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.reset_index(drop=True).copy()
    for column in ("as_of", "first_action_due", "scored_at"):
        out[column] = pd.to_datetime(out[column]).astype("datetime64[us]")
    for column in out.columns:
        if out[column].dtype == object or str(out[column].dtype).startswith("str"):
            out[column] = out[column].astype(object).where(out[column].notna(), None)
    out["rank"] = out["rank"].astype("int64")
    return out


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_export_scores(batch: dict, tmp_path, suffix: str) -> None:
    path = export_scores(batch["frame"], tmp_path / f"scores{suffix}")
    back = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
    assert list(back.columns) == list(SCORE_COLUMNS)
    assert len(back) == len(batch["frame"])
    assert json.loads(back["drivers"].iloc[0]) == json.loads(batch["frame"]["drivers"].iloc[0])
    assert json.loads(back["actions"].iloc[0]) == json.loads(batch["frame"]["actions"].iloc[0])
    if suffix == ".csv":
        assert back["as_of"].iloc[0] == str(batch["end"].date())
        # a time to the microsecond, as the API gives it (no longer cut to its day)
        assert back["scored_at"].iloc[0] == SCORED_AT.strftime(MOMENT_FORMAT)
        due = batch["frame"]["first_action_due"].dropna().iloc[0]
        assert back["first_action_due"].dropna().iloc[0] == due.strftime("%Y-%m-%d")


@pytest.mark.parametrize(
    ("column", "item"), [("drivers", Driver), ("actions", ActionRecommendation)]
)
def test_stored_lists_are_json_of_the_records_items(batch: dict, column: str, item: type) -> None:
    items = TypeAdapter(list[item])
    for text in batch["frame"][column]:
        parsed = json.loads(text)
        assert all(list(entry) == list(item.model_fields) for entry in parsed)
        items.validate_json(text, strict=True)
    assert (batch["frame"][column] != "[]").any()


def test_lists_are_written_by_a_json_writer() -> None:
    """Quotes, backslashes, newlines and non-ASCII text come back as they went in."""
    text = 'say "no" \\ then\nleave: 客户流失'
    playbook = load_playbook()
    first = playbook.actions[0].model_copy(update={"title": text})
    book = playbook.model_copy(update={"actions": [first, *playbook.actions[1:]]})
    actions = Recommendations(
        book, np.array([[0, 1], [-1, -1]]), np.array([[text, "r"], [None, None]], dtype=object),
        np.array([["2026-01-31", "2026-02-01"], ["NaT", "NaT"]], dtype="datetime64[D]"),
        np.zeros((2, 2)), np.array([[1234.5678, np.nan], [np.nan, np.nan]]),
        np.array([[0.25, np.nan], [np.nan, np.nan]]),
        evidence_for(book, [{"action": book.actions[0].id, "status": "helps", "effect": -0.03,
                             "ci_low": -0.05, "ci_high": -0.01, "relative": 0.3,
                             "cause_share": 0.4, "n_treated": 120}]),
    )
    assert [json.loads(t) for t in actions_json(actions)] == [actions.records(0), []]
    assert json.loads(actions_json(actions)[0])[0]["title"] == text
    first_item, second_item = json.loads(actions_json(actions)[0])
    assert (first_item["expected_saving"], first_item["evidence"]) == (1234.57, "helps")
    assert (first_item["effect_low"], first_item["evidence_accounts"]) == (-0.05, 120)
    assert (second_item["expected_saving"], second_item["evidence"]) == (None, "untested")
    drivers = Drivers(
        ("service",), ("complaints_open",), np.array([[0, -1]]), np.array([[0, -1]]),
        np.array([[1, -1]]), np.array([[0.123456, np.nan]]),
        np.array([[text, None]], dtype=object), np.zeros((1, 5)),
    )
    (written,) = drivers_json(drivers)
    assert json.loads(written) == drivers.records(0)
    assert json.loads(written)[0]["contribution"] == 0.1235


def test_summary_columns_repeat_the_first_driver_and_action(batch: dict) -> None:
    for row in batch["frame"].to_dict("records"):
        lists = {"drivers": json.loads(row["drivers"]), "actions": json.loads(row["actions"])}
        stored = {name: none_if_missing(row[name]) for name, _, _ in RECORD.summaries}
        if stored["first_action_due"] is not None:
            stored["first_action_due"] = stored["first_action_due"].strftime("%Y-%m-%d")
        assert stored == RECORD.summarise(lists), row["account_id"]


def _records(snapshot: pd.DataFrame, names: tuple[str, ...], rows: list[int]) -> list[dict]:
    records = []
    for i in rows:
        record = {}
        for name in names:
            value = snapshot[name].iloc[i]
            record[name] = None if pd.isna(value) else (
                value if isinstance(value, str) else float(value)
            )
        records.append(record)
    return records


def test_online_scoring_matches_the_batch(batch: dict) -> None:
    model, frame, snapshot = batch["model"], batch["frame"], batch["snapshot"]
    history = days_since_taken(batch["con"], frame["account_id"].to_numpy(dtype=object),
                               batch["end"], PLAYBOOK)
    # online scoring knows no history: compare on accounts without actions in their cool-downs
    quiet = frame[np.isnan(history).all(axis=1)].head(5)
    assert len(quiet) == 5
    rows = [int(np.flatnonzero(snapshot["account_id"] == a)[0]) for a in quiet["account_id"]]
    cutoffs = tier_cutoffs(frame["value"].to_numpy(), frame["tier"].to_numpy())
    online = score_features(
        model,
        _records(snapshot, model.scorer.spec.names, rows),
        as_of=batch["end"],
        tier_cutoffs=cutoffs,
    )
    for result, (_, row) in zip(online, quiet.iterrows(), strict=True):
        assert result["model_version"] == "1"
        assert result["defection_probability"] == pytest.approx(row["defection_probability"])
        assert result["value_at_risk"] == pytest.approx(row["value_at_risk"])
        assert result["tier"] == row["tier"]
        assert result["relationship_stage"] == row["relationship_stage"]
        assert result["drivers"] == json.loads(row["drivers"])
        assert result["actions"] == json.loads(row["actions"])
        assert result["first_action"] == (row["first_action"] if result["actions"] else None)


@pytest.mark.parametrize("one_by_one", [True, False], ids=["one-row", "vectorised"])
def test_online_rows_hold_the_fields_the_record_scores(batch: dict, one_by_one: bool) -> None:
    model, snapshot = batch["model"], batch["snapshot"]
    x = model.scorer.spec.record_matrix(_records(snapshot, model.scorer.spec.names, [0, 1, 2]))
    for row in score_matrix(model, x, as_of=batch["end"], one_by_one=one_by_one):
        assert set(row) == set(RECORD.scored_on_posted_rows)


def test_online_scoring_names_bad_fields(batch: dict) -> None:
    with pytest.raises(FeatureRowError) as caught:
        score_features(batch["model"], [{"recency_days": "soon", "colour": 3, "region": "Mars"}])
    assert set(caught.value.errors) == {"recency_days", "colour", "region"}


def test_an_action_taken_recently_is_not_recommended_again(
    batch: dict, small_world: World, tmp_path
) -> None:
    frame = batch["frame"]
    row = frame[frame["first_action"].notna()].iloc[0]
    first = json.loads(row["actions"])[0]["action_id"]
    copy = tmp_path / "store.duckdb"
    shutil.copy(small_world.store_file, copy)
    con = connect(f"duckdb:///{copy}")
    taken = pd.DataFrame(
        {
            "action_id": ["T1", "T2"],
            "account_id": [row["account_id"], row["account_id"]],
            "taken_at": [batch["end"] - pd.Timedelta(days=3), batch["end"] + pd.Timedelta(days=1)],
            "action": [first, first],
            "owner": ["AR", "AR"],
            "note": ["test", "after as_of"],
        }
    )
    con.insert("actions", taken)
    rescored = score_accounts(con, batch["model"], as_of=batch["end"], scored_at=SCORED_AT)
    again = rescored.set_index("account_id").loc[row["account_id"]]
    assert first not in {a["action_id"] for a in json.loads(again["actions"])}
    others = rescored[rescored["account_id"] != row["account_id"]].set_index("account_id")
    before = frame.set_index("account_id").loc[others.index]

    def ids(column: pd.Series) -> list[list[str]]:
        return [[a["action_id"] for a in json.loads(v)] for v in column]

    # (reasons are compared loosely: DuckDB's parallel sums may move a figure's last digit)
    assert ids(others["actions"]) == ids(before["actions"])
    con.disconnect()


# ------------------------------------------------------------------------------------------------
# Ground truth (slow: a 3,000-account world)
# ------------------------------------------------------------------------------------------------
TRUTH_DATES = ("2024-03-31", "2024-06-30", "2024-09-30", "2024-12-31")


def truth_vs_random(world: World, dates: tuple[str, ...] = TRUTH_DATES) -> tuple[float, float, int]:
    """Among true defectors in the top decile of value at risk: how often the top action
    addresses the true cause, and how often a random pick of the tier's actions would."""
    con, model = world.connect(), world.model()
    defections = world.truth("defections")
    hits, chance = [], []
    for day in map(pd.Timestamp, dates):
        snapshot = build_snapshots(con, [day])
        frame = score_frame(snapshot, model, as_of=day, scored_at=SCORED_AT)
        end = day + pd.DateOffset(days=365)
        onset = defections["onset_month"].between(day, end, inclusive="right")
        stop = defections["defection_month"].between(day, end, inclusive="right")
        cause = frame["account_id"].map(defections[onset | stop].set_index("account_id")["cause"])
        top = frame[(frame["rank"] <= int(np.ceil(0.1 * len(frame)))) & cause.notna()]
        for row, true_cause in zip(top.itertuples(), cause[top.index], strict=True):
            actions = json.loads(row.actions)
            hits.append(bool(actions) and actions[0]["cause"] == true_cause)
            eligible = [a for a in PLAYBOOK.actions if row.tier in a.tiers]
            chance.append(np.mean([a.cause == true_cause for a in eligible]))
    return float(np.mean(hits)), float(np.mean(chance)), len(hits)


@pytest.mark.slow
def test_top_action_addresses_the_true_cause(large_world: World) -> None:
    top, random, n = truth_vs_random(large_world)
    print(f"true defectors in the top decile of value at risk: {n}; top action addresses the "
          f"true cause in {top:.1%}, a random playbook pick in {random:.1%}")
    assert n >= 60
    assert top >= 1.5 * random or top - random >= 0.15


def test_export_scores_quotes_text_a_spreadsheet_would_run_and_leaves_numbers(tmp_path) -> None:
    frame = pd.DataFrame(
        {
            "account_id": ["A1", "=1+1", "@SUM(A1)"],
            "name": ['=HYPERLINK("http://x","y")', None, "-cmd"],
            "value": [1.0, -2.0, 3.0],
            "rank": [1, 2, 3],
        }
    )
    out = export_scores(frame, tmp_path / "scores.csv")
    written = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert written["account_id"].tolist() == ["A1", "'=1+1", "'@SUM(A1)"]
    assert written["name"].tolist() == ['\'=HYPERLINK("http://x","y")', "", "'-cmd"]
    assert written["value"].tolist() == ["1.0", "-2.0", "3.0"]
    # the rule the page's export applies too
    texts = ("=x", "+1", "\tx", "x=1", "")
    assert [formula_safe(t) for t in texts] == ["'=x", "'+1", "'\tx", "x=1", ""]
