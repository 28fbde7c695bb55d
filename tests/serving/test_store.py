"""The scores table in the store: typed by the record, written by column name."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd

from kam.serving.record import DAY, INTEGER, MOMENT, NUMBER, RECORD, TEXT
from kam.serving.store import SCORE_COLUMNS, SCORES_SCHEMA, read_scores, write_scores

ADDED = "playbook_version"  # the field the older table below was written without


def scores_rows(as_of: str, ids: list[str]) -> pd.DataFrame:
    """Scores rows of every record field, a value of each field's kind."""
    values = {
        TEXT: "text", NUMBER: 0.25, INTEGER: 1, DAY: pd.Timestamp(as_of),
        MOMENT: pd.Timestamp("2026-01-02 03:04:05"),
    }
    rows = [
        {f.name: "[]" if f.kind.is_list else values[f.kind] for f in RECORD} | {"account_id": i}
        for i in ids
    ]
    return pd.DataFrame(rows, columns=list(SCORE_COLUMNS))


def test_the_table_has_the_records_columns_and_types(tmp_path: Path) -> None:
    path = tmp_path / "store.duckdb"
    write_scores(f"duckdb:///{path}", scores_rows("2025-12-31", ["a", "b"]))
    con = duckdb.connect(str(path), read_only=True)
    try:
        described = [(name, kind) for name, kind, *_ in con.execute("DESCRIBE scores").fetchall()]
    finally:
        con.close()
    assert described == list(SCORES_SCHEMA.items()) == list(RECORD.store_schema.items())


def test_a_table_written_before_a_field_joined_the_record_gains_its_column(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store.duckdb"
    # an older release's table: without one field, its columns in another order
    older = [(c, t) for c, t in reversed(SCORES_SCHEMA.items()) if c != ADDED]
    con = duckdb.connect(str(path))
    columns = ", ".join(f'"{c}" {t}' for c, t in older)
    con.execute(f"CREATE TABLE scores ({columns})")
    con.execute("INSERT INTO scores (account_id, as_of) VALUES ('old', DATE '2025-09-30')")
    con.close()

    url = f"duckdb:///{path}"
    assert write_scores(url, scores_rows("2025-12-31", ["a", "b"])) == 2
    con = duckdb.connect(str(path), read_only=True)
    try:
        columns = {name: kind for name, kind, *_ in con.execute("DESCRIBE scores").fetchall()}
        stored = con.execute(
            f'SELECT account_id, "{ADDED}", value FROM scores ORDER BY as_of, account_id'
        ).fetchall()
    finally:
        con.close()
    assert columns == SCORES_SCHEMA
    assert stored == [("old", None, None), ("a", "text", 0.25), ("b", "text", 0.25)]
    latest = read_scores(url)
    assert list(latest.columns) == list(SCORE_COLUMNS)
    assert latest["account_id"].tolist() == ["a", "b"]
