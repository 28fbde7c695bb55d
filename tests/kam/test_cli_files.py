"""What ``kam ingest`` and ``kam score`` leave on disk when the input or the disk is bad: a clear
message and exit code 2, the store as it was, no half-written file, no formula in a CSV."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest
from typer.testing import CliRunner

from kam import cli
from tests.world import World

ORDERS = "order_id,account_id,order_date,revenue\n"
EVIL_NAME = '=HYPERLINK("http://evil.example/","Acme")'


def _invoke(*args: str) -> Any:
    return CliRunner().invoke(cli.app, list(args))


def _said(result: Any) -> str:
    return " ".join(result.output.split())


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("CONFIG", "DATA_DIR", "STORE_URL", "MODEL_URI", "NOW", "INGEST_MAX_SHRINK"):
        monkeypatch.delenv(f"KAM_{name}", raising=False)
    monkeypatch.setenv("KAM_WORKDIR", str(tmp_path / "work"))
    data = tmp_path / "data"
    data.mkdir()
    return data


def test_ingest_refuses_to_empty_the_store_until_forced(env: Path) -> None:
    (env / "orders.csv").write_text(ORDERS + "O1,A1,2024-01-05,10\nO2,A2,2024-01-06,5\n")
    assert _invoke("ingest", "--data", str(env)).exit_code == 0

    (env / "orders.csv").write_text(ORDERS)
    refused = _invoke("ingest", "--data", str(env))
    assert refused.exit_code == 2
    assert "refused to replace the store's tables: orders: 2 rows in the store" in _said(refused)
    assert "Traceback" not in refused.output
    forced = _invoke("ingest", "--data", str(env), "--allow-shrink")
    assert forced.exit_code == 0, forced.output


def test_ingest_reads_today_and_the_shrink_limit_from_the_settings(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (env / "orders.csv").write_text(ORDERS + "O1,A1,2024-01-05,10\nO2,A2,2024-01-06,5\n")
    monkeypatch.setenv("KAM_NOW", "2024-01-05")
    first = _invoke("ingest", "--data", str(env))
    assert first.exit_code == 0
    assert "orders: 2 read, 1 kept, 1 rejected" in _said(first)
    assert "order_date: after today (2024-01-05)" in (env / "rejects" / "orders.csv").read_text()

    monkeypatch.setenv("KAM_NOW", "2024-12-31")
    (env / "orders.csv").write_text(ORDERS + "O1,A1,2024-01-05,10\nO2,A2,2024-01-06,5\n")
    assert _invoke("ingest", "--data", str(env)).exit_code == 0  # 2 orders stored
    (env / "orders.csv").write_text(ORDERS + "O1,A1,2024-01-05,10\n")
    monkeypatch.setenv("KAM_INGEST_MAX_SHRINK", "0.4")
    assert _invoke("ingest", "--data", str(env)).exit_code == 2
    monkeypatch.setenv("KAM_INGEST_MAX_SHRINK", "0.5")
    assert _invoke("ingest", "--data", str(env)).exit_code == 0


def test_ingest_names_an_ambiguous_date_column(env: Path) -> None:
    (env / "orders.csv").write_text(ORDERS + "O1,A1,01/02/2024,10\n")
    result = _invoke("ingest", "--data", str(env))
    assert result.exit_code == 2
    assert "order_date: dates such as '01/02/2024'" in _said(result)


@pytest.fixture
def scoring(env: Path, small_world: World, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A copy of the small world's store, one account renamed to a spreadsheet formula."""
    store = env / "kam.duckdb"
    shutil.copy(small_world.store_file, store)
    con = duckdb.connect(str(store))
    try:
        account = con.execute("SELECT min(account_id) FROM accounts").fetchone()[0]  # type: ignore[index]
        con.execute("UPDATE accounts SET name = ? WHERE account_id = ?", [EVIL_NAME, account])
        con.execute("DROP TABLE IF EXISTS scores")
    finally:
        con.close()
    monkeypatch.setenv("KAM_TRACKING_URI", small_world.tracking)
    uri = f"models:/{small_world.model_name}/1"
    return {"data": env, "store": store, "uri": uri, "account": account}


def _has_scores(store: Path) -> bool:
    con = duckdb.connect(str(store), read_only=True)
    try:
        return bool(con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'scores'"
        ).fetchone()[0])  # type: ignore[index]
    finally:
        con.close()


def _score(scoring: dict[str, Any], *args: str) -> Any:
    return _invoke("score", "--data", str(scoring["data"]), "--model-uri", scoring["uri"], *args)


def test_score_writes_the_file_with_formulas_quoted_then_the_store(
    scoring: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "out" / "scores.csv"
    result = _score(scoring, "--out", str(out))
    assert result.exit_code == 0, result.output
    written = pd.read_csv(out, dtype=str, keep_default_na=False)
    name = written.set_index("account_id").loc[scoring["account"], "name"]
    assert name == "'" + EVIL_NAME
    assert not any(v.startswith("=") for v in written.to_numpy().ravel())
    assert _has_scores(scoring["store"])
    assert sorted(os.listdir(out.parent)) == ["scores.csv"]


def test_score_names_the_features_on_which_accounts_lie_beyond_the_training_rows(
    scoring: dict[str, Any],
) -> None:
    # the small world's model scored at the end of its data, a horizon after its newest labels
    result = _score(scoring)
    assert result.exit_code == 0, result.output
    assert "note: of the" in _said(result)
    assert "lie beyond every training row on: tenure_days" in _said(result)


def test_score_to_an_unwritable_path_fails_before_the_store_is_touched(
    scoring: dict[str, Any], tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    result = _score(scoring, "--out", str(blocker / "scores.parquet"))
    assert result.exit_code == 2
    assert "cannot write" in _said(result) and "the store's scores are unchanged" in _said(result)
    assert "Traceback" not in result.output
    assert not _has_scores(scoring["store"])


def test_score_on_a_full_disk_leaves_no_part_of_the_file(
    scoring: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "scores.csv"
    out.write_text("yesterday's scores\n")
    real = pd.DataFrame.to_csv

    def disk_fills_up(frame: pd.DataFrame, path: Any = None, **kwargs: Any) -> Any:
        real(frame.head(3), path, **kwargs)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", disk_fills_up)
    result = _score(scoring, "--out", str(out))
    assert result.exit_code == 2
    assert "No space left on device" in _said(result)
    assert out.read_text() == "yesterday's scores\n"
    assert not any(p.name.startswith(".scores.csv.") for p in tmp_path.iterdir())
    assert not _has_scores(scoring["store"])


def test_score_refuses_an_as_of_or_a_data_end_after_today(
    scoring: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    future = _score(scoring, "--as-of", "2099-01-01")
    assert future.exit_code == 2
    assert "as_of 2099-01-01 is after today" in _said(future)

    unreadable = _score(scoring, "--as-of", "soon")
    assert unreadable.exit_code == 2
    assert "--as-of:" in _said(unreadable)

    monkeypatch.setenv("KAM_NOW", "2025-06-01")
    stale_clock = _score(scoring)
    assert stale_clock.exit_code == 2
    assert "data ends" in _said(stale_clock) and "after today (2025-06-01)" in _said(stale_clock)
    assert not _has_scores(scoring["store"])


def test_features_to_an_unwritable_path_is_one_line(env: Path, tmp_path: Path) -> None:
    (env / "orders.csv").write_text(
        ORDERS + "O1,A1,2024-01-05,10\nO2,A2,2024-01-06,5\nO3,A1,2024-02-05,7\n"
    )
    assert _invoke("ingest", "--data", str(env)).exit_code == 0
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    args = ("features", "--data", str(env), "--as-of", "2024-02-01")
    result = _invoke(*args, "--out", str(blocker / "snapshots.parquet"))
    assert result.exit_code == 2
    # rich wraps long lines anywhere, even inside a path
    squashed = "".join(result.output.split())
    assert f"cannotwrite{blocker / 'snapshots.parquet'}:" in squashed
    written = _invoke(*args, "--out", str(tmp_path / "snapshots.parquet"))
    assert written.exit_code == 0, written.output
    assert len(pd.read_parquet(tmp_path / "snapshots.parquet")) == 2
