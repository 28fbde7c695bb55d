"""Ingestion refuses what a broken export looks like: future dates, absurd amounts, ambiguous
dates, repeated columns, and a run that would empty or gut the store; NA-like text stays text."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from kam.features import ingest as ingest_module
from kam.features.errors import DataContractError, ShrinkRefused
from kam.features.settings import StoreSettings, latest_today
from tests.features.test_ingest import ORDERS_HEADER, rejects, run, stored, write

TODAY = date(2024, 6, 30)


def orders(folder: Path, *rows: str) -> None:
    write(folder, "orders.csv", ORDERS_HEADER + "\n" + "".join(r + "\n" for r in rows))


def test_rows_dated_after_today_are_rejected_and_do_not_move_the_end_of_the_data(
    tmp_path: Path,
) -> None:
    orders(tmp_path, "O1,A1,2024-06-30,10", "O2,A1,2024-07-01,10", "O3,A2,2099-01-01,5")
    write(
        tmp_path,
        "deliveries.csv",
        "delivery_id,account_id,promised_date,delivered_date\n"
        "D1,A1,2024-08-01,\nD2,A1,2024-06-01,2024-07-02\n",
    )
    report = run(tmp_path, today=TODAY)

    assert report.data_end == pd.Timestamp("2024-06-30")
    assert report["orders"].reasons == {"order_date: after today (2024-06-30)": 2}
    assert rejects(tmp_path, "orders")[["order_id", "reason"]].values.tolist() == [
        ["O2", "order_date: after today (2024-06-30) '2024-07-01'"],
        ["O3", "order_date: after today (2024-06-30) '2099-01-01'"],
    ]
    # a delivery promised for next month is a schedule, not a future event; a delivered one is
    assert stored(tmp_path, "deliveries")["delivery_id"].tolist() == ["D1"]
    assert report["deliveries"].reasons == {"delivered_date: after today (2024-06-30)": 1}
    assert stored(tmp_path, "accounts")["account_id"].tolist() == ["A1"]


def test_today_defaults_to_the_latest_date_on_earth_and_is_a_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KAM_NOW", raising=False)
    assert StoreSettings().today == latest_today()
    monkeypatch.setenv("KAM_NOW", "2024-06-30")
    assert StoreSettings().today == TODAY
    orders(tmp_path, "O1,A1,2024-01-05,10", f"O2,A1,{latest_today()},10", "O3,A1,2999-01-01,1")
    report = run(tmp_path)  # without today: the real one
    assert report["orders"].kept == 2


def test_dates_before_1900_are_rejected(tmp_path: Path) -> None:
    orders(tmp_path, "O1,A1,2024-01-05,10", "O2,A1,0001-01-01,10", "O3,A1,1899-12-30,1")
    report = run(tmp_path, today=TODAY)
    assert report["orders"].reasons == {"order_date: before 1900": 2}


def test_amounts_and_quantities_beyond_sane_magnitudes_are_rejected(tmp_path: Path) -> None:
    write(
        tmp_path,
        "orders.csv",
        f"{ORDERS_HEADER},quantity,discount_amount\n"
        "O1,A1,2024-01-05,999999999999,1,0\n"
        "O2,A1,2024-01-05,1e308,1,0\n"
        "O3,A1,2024-01-05,-2e12,1,0\n"
        "O4,A1,2024-01-05,10,1e10,0\n"
        "O5,A1,2024-01-05,10,1,1e300\n",
    )
    report = run(tmp_path, today=TODAY)
    assert stored(tmp_path, "orders")["order_id"].tolist() == ["O1"]
    assert rejects(tmp_path, "orders")["reason"].tolist() == [
        "revenue: beyond +-1e+12 '1e308'",
        "revenue: beyond +-1e+12 '-2e12'",
        "quantity: beyond +-1e+09 '1e10'",
        "discount_amount: beyond +-1e+12 '1e300'",
    ]
    assert report["orders"].kept + report["orders"].rejected == report["orders"].read


def test_na_like_text_is_kept_as_text_in_ids_names_and_regions(tmp_path: Path) -> None:
    write(
        tmp_path,
        "accounts.csv",
        "account_id,name,region\nNA,None Ltd,NA\nNULL,Null Inc,N/A\nA3,,\n",
    )
    write(
        tmp_path,
        "orders.csv",
        f"{ORDERS_HEADER},discount_amount,quantity\n"
        "O1,NA,2024-01-05,10,NA,nan\n"
        "O2,NULL,2024-01-05,10,NULL,\n"
        "O3,A3,NA,10,,\n"
        "O4,A3,2024-01-05,NULL,,\n",
    )
    report = run(tmp_path, today=TODAY)

    accounts = stored(tmp_path, "accounts")
    assert accounts["account_id"].tolist() == ["A3", "NA", "NULL"]
    assert accounts["region"].tolist()[1:] == ["NA", "N/A"]
    assert accounts["name"].tolist()[1:] == ["None Ltd", "Null Inc"]
    assert pd.isna(accounts["region"].iloc[0])  # an empty cell is missing
    kept = stored(tmp_path, "orders")
    assert kept["account_id"].tolist() == ["NA", "NULL"]
    # in number and date columns an NA spelling can only mean missing
    assert kept["discount_amount"].isna().all() and kept["quantity"].isna().all()
    assert report["orders"].reasons == {
        "missing required value order_date": 1,
        "missing required value revenue": 1,
    }


def test_a_mapping_can_name_the_spellings_of_a_missing_value(tmp_path: Path) -> None:
    write(tmp_path, "accounts.csv", "account_id,region\nA1,NA\nA2,-\nA3,EMEA\n")
    orders(tmp_path, "O1,A1,2024-01-05,10")
    mapping = write(tmp_path, "map.yaml", "accounts:\n  missing_values: [NA, '-']\n")
    run(tmp_path, today=TODAY, mapping=mapping)
    assert stored(tmp_path, "accounts")["region"].isna().tolist() == [True, True, False]


def test_dates_that_read_day_or_month_first_are_refused_unless_the_mapping_names_one(
    tmp_path: Path,
) -> None:
    orders(tmp_path, "O1,A1,01/02/2024,10", "O2,A1,03/04/2024,10")
    with pytest.raises(DataContractError) as refused:
        run(tmp_path, today=TODAY)
    message = str(refused.value)
    assert "orders.csv (table orders): order_date: dates such as '01/02/2024'" in message
    assert "'%m/%d/%Y'" in message and "'%d/%m/%Y'" in message
    assert "date_format" in message
    assert not (tmp_path / "kam.duckdb").exists()

    mapping = write(tmp_path, "map.yaml", "orders:\n  date_format: '%d/%m/%Y'\n")
    run(tmp_path, today=TODAY, mapping=mapping)
    assert stored(tmp_path, "orders")["order_date"].tolist() == [
        pd.Timestamp("2024-02-01"),
        pd.Timestamp("2024-04-03"),
    ]


@pytest.mark.parametrize("rows_before", [0, 1500], ids=["in-the-sample", "after-the-sample"])
def test_a_day_above_twelve_anywhere_in_the_column_settles_the_order(
    tmp_path: Path, rows_before: int
) -> None:
    ambiguous = [f"O{i},A1,01/02/2024,1" for i in range(rows_before)]
    orders(tmp_path, *ambiguous, "X1,A1,25/12/2023,1", "X2,A1,03/04/2024,1")
    run(tmp_path, today=TODAY)
    dates = stored(tmp_path, "orders").set_index("order_id")["order_date"]
    assert dates["X1"] == pd.Timestamp("2023-12-25")
    assert dates["X2"] == pd.Timestamp("2024-04-03")


def test_unused_and_repeated_columns_are_reported(tmp_path: Path) -> None:
    write(
        tmp_path,
        "orders.csv",
        "order_id,account_id,note,order_date,revenue,note,colour\n"
        "O1,A1,first,2024-01-05,10,second,red\n",
    )
    said: list[str] = []
    report = run(tmp_path, today=TODAY, progress=said.append)
    assert report["orders"].ignored_columns == ("note", "colour")
    assert report["orders"].repeated_columns == {"note": 2}
    row = next(r for r in report.as_rows() if r["table"] == "orders")
    assert row["ignored columns"] == "note (x2), colour"
    assert "orders: columns not in the data contract, not read: note, colour" in said
    assert "orders: the header names 'note' 2 times; only the first is kept" in said


def test_a_repeated_column_the_contract_reads_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "orders.csv", f"{ORDERS_HEADER},revenue\nO1,A1,2024-01-05,10,12\n")
    with pytest.raises(DataContractError, match="names column 'revenue' 2 times"):
        run(tmp_path, today=TODAY)


def _seeded(folder: Path, n: int = 4) -> None:
    orders(folder, *(f"O{i},A{i % 2},2024-01-0{i + 1},{i + 1}" for i in range(n)))
    write(folder, "interactions.csv", "interaction_id,account_id,occurred_at\nI1,A1,2024-02-01\n")
    run(folder, today=TODAY)


def test_a_header_only_export_does_not_empty_the_store_unless_forced(tmp_path: Path) -> None:
    _seeded(tmp_path)
    write(tmp_path, "orders.csv", ORDERS_HEADER + "\n")
    with pytest.raises(ShrinkRefused) as refused:
        run(tmp_path, today=TODAY)
    message = str(refused.value)
    assert "orders: 4 rows in the store, 0 kept of 0 read from orders.csv" in message
    assert "accounts: 2 rows in the store, 0 kept" in message
    assert "--allow-shrink" in message
    assert len(stored(tmp_path, "orders")) == 4
    assert len(stored(tmp_path, "ingest_runs")) == 3  # the refused run is not recorded

    report = run(tmp_path, today=TODAY, force=True)
    assert report["orders"].kept == 0
    assert len(stored(tmp_path, "orders")) == 0


def test_a_table_missing_from_the_input_is_not_dropped_unless_forced(tmp_path: Path) -> None:
    _seeded(tmp_path)
    (tmp_path / "interactions.csv").unlink()
    with pytest.raises(ShrinkRefused, match="interactions: 1 rows in the store, no interactions"):
        run(tmp_path, today=TODAY)
    assert len(stored(tmp_path, "interactions")) == 1


@pytest.mark.parametrize(
    ("kept", "max_shrink", "refused"),
    [(2, 0.5, False), (1, 0.5, True), (1, 0.8, False), (3, 0.0, True), (4, 0.0, False)],
)
def test_a_shrink_beyond_the_setting_is_refused(
    tmp_path: Path, kept: int, max_shrink: float, refused: bool
) -> None:
    _seeded(tmp_path)
    orders(tmp_path, *(f"O{i},A{i % 2},2024-01-0{i + 1},{i + 1}" for i in range(kept)))
    if refused:
        with pytest.raises(ShrinkRefused, match=f"at most {max_shrink:.0%}"):
            run(tmp_path, today=TODAY, max_shrink=max_shrink)
        assert len(stored(tmp_path, "orders")) == 4
    else:
        run(tmp_path, today=TODAY, max_shrink=max_shrink)
        assert len(stored(tmp_path, "orders")) == kept


def test_a_refusal_names_why_the_rows_were_rejected(tmp_path: Path) -> None:
    _seeded(tmp_path)
    orders(tmp_path, *(f"O{i},A1,2099-01-0{i + 1},1" for i in range(4)))
    with pytest.raises(ShrinkRefused) as refused:
        run(tmp_path, today=TODAY)
    assert "rejected: order_date: after today (2024-06-30) (4)" in str(refused.value)


def test_a_failed_store_write_leaves_the_previous_tables_and_rejects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _seeded(tmp_path)
    orders(tmp_path, "O1,A1,2024-01-05,10", "O2,A1,2024-01-06,x", "O3,A1,2024-01-07,3")
    run(tmp_path, today=TODAY, force=True)
    first_rejects = (tmp_path / "rejects" / "orders.csv").read_bytes()

    orders(tmp_path, "N1,A1,2024-01-05,10", "N2,A1,2024-01-06,y", "N3,A1,2024-01-07,3")
    real = ingest_module.write_table
    written: list[str] = []

    def failing(con, name, frame):  # the disk fills up at the third table
        written.append(name)
        if len(written) == 3:
            raise OSError(28, "No space left on device")
        real(con, name, frame)

    monkeypatch.setattr(ingest_module, "write_table", failing)
    with pytest.raises(OSError, match="No space left"):
        run(tmp_path, today=TODAY)
    monkeypatch.undo()

    assert written[:2] == ["orders", "accounts"]
    assert stored(tmp_path, "orders")["order_id"].tolist() == ["O1", "O3"]
    assert (tmp_path / "rejects" / "orders.csv").read_bytes() == first_rejects
    assert sorted(os.listdir(tmp_path / "rejects")) == ["orders.csv"]  # no temporary left
