"""Validated ingestion: files in, clean tables in the store, bad rows in rejects with reasons."""

from __future__ import annotations

import gzip
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kam.features.contract import TABLES
from kam.features.errors import DataContractError
from kam.features.ingest import ingest
from kam.features.mapping import BUILTIN_MAPPINGS, MappingError, load_mapping
from kam.features.store import connect

STR = pd.StringDtype(na_value=np.nan)
ORDERS_HEADER = "order_id,account_id,order_date,revenue"


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def store_url(folder: Path) -> str:
    return f"duckdb:///{folder / 'kam.duckdb'}"


def run(folder: Path, **kwargs):
    return ingest(folder, store_url(folder), **kwargs)


def stored(folder: Path, table: str) -> pd.DataFrame:
    con = connect(store_url(folder), read_only=True)
    try:
        frame = con.table(table).to_pandas()
    finally:
        con.disconnect()
    key = TABLES[table].id_column if table in TABLES else frame.columns[0]
    return frame.sort_values(key, kind="stable").reset_index(drop=True)


def store_tables(folder: Path) -> set[str]:
    con = connect(store_url(folder), read_only=True)
    try:
        return set(con.list_tables())
    finally:
        con.disconnect()


def rejects(folder: Path, table: str) -> pd.DataFrame:
    return pd.read_csv(folder / "rejects" / f"{table}.csv", dtype=str, keep_default_na=False)


def strings(*values: object) -> pd.Series:
    return pd.Series(values, dtype=STR)


def dates(*values: str | None) -> pd.Series:
    return pd.Series(pd.to_datetime(list(values), format="ISO8601"), dtype="datetime64[us]")


def numbers(*values: float) -> pd.Series:
    return pd.Series(values, dtype="float64")


ACCOUNTS_A1_A2 = "account_id,name\nA1,Acme\nA2,Beta\n"

# (files, table, expected rejects as (id, reason), expected reject counts by kind)
REJECT_CASES = [
    pytest.param(
        {"orders.csv": f"{ORDERS_HEADER}\nO1,A1,2024-01-05,10\nO2,A1,yesterday,10\n"},
        "orders",
        [("O2", "order_date: unparseable date 'yesterday'")],
        {"order_date: unparseable date": 1},
        id="unparseable-date",
    ),
    pytest.param(
        {"orders.csv": f"{ORDERS_HEADER}\nO1,A1,2024-01-05,abc\nO2,A1,2024-01-06,1e3\n"},
        "orders",
        [("O1", "revenue: not a number 'abc'")],
        {"revenue: not a number": 1},
        id="revenue-not-a-number",
    ),
    pytest.param(
        {
            "orders.csv": f"{ORDERS_HEADER}\nO1,A1,2024-01-05,1\nO1,A2,2024-01-06,2\n"
            "O2,A1,2024-01-07,3\nO1,A1,2024-01-08,4\n"
        },
        "orders",
        [("O1", "duplicate order_id"), ("O1", "duplicate order_id")],
        {"duplicate order_id": 2},
        id="duplicate-id-keeps-first",
    ),
    pytest.param(
        {"orders.csv": f"{ORDERS_HEADER}\nO1,,2024-01-05,1\nO2,A1,2024-01-06,2\n"},
        "orders",
        [("O1", "missing required value account_id")],
        {"missing required value account_id": 1},
        id="missing-account-id",
    ),
    pytest.param(
        {"orders.csv": f"{ORDERS_HEADER}\nO1,A1,,5\nO2,A1,2024-01-06,\n"},
        "orders",
        [("O1", "missing required value order_date"), ("O2", "missing required value revenue")],
        {"missing required value order_date": 1, "missing required value revenue": 1},
        id="missing-required-values",
    ),
    pytest.param(
        {"orders.csv": f"{ORDERS_HEADER}\nO1,A1,13/45/2024,x\n,A1,2024-01-06,2\n"},
        "orders",
        [
            ("O1", "order_date: unparseable date '13/45/2024'; revenue: not a number 'x'"),
            ("", "missing required value order_id"),
        ],
        {
            "order_date: unparseable date": 1,
            "revenue: not a number": 1,
            "missing required value order_id": 1,
        },
        id="several-reasons-joined",
    ),
    pytest.param(
        {
            "accounts.csv": ACCOUNTS_A1_A2,
            "orders.csv": f"{ORDERS_HEADER}\nO1,A1,2024-01-05,1\nO2,A9,2024-01-06,2\n",
        },
        "orders",
        [("O2", "unknown account_id (not in accounts)")],
        {"unknown account_id (not in accounts)": 1},
        id="unknown-account",
    ),
    pytest.param(
        {
            "orders.csv": f"{ORDERS_HEADER}\nO1,A1,2024-01-05,1\n",
            "complaints.csv": """\
                complaint_id,account_id,opened_at,resolved_at,satisfaction
                C1,A1,2024-02-01,2024-02-03,4
                C2,A1,2024-02-01,2024-01-20,3
                C3,A1,2024-02-01,,
                C4,A1,2024-02-01,2024-02-01,7
                """,
        },
        "complaints",
        [("C2", "resolved_at before opened_at"), ("C4", "satisfaction: outside [1, 5] '7'")],
        {"resolved_at before opened_at": 1, "satisfaction: outside [1, 5]": 1},
        id="complaint-dates-and-satisfaction",
    ),
    pytest.param(
        {
            "orders.csv": f"{ORDERS_HEADER}\nO1,A1,2024-01-05,1\n",
            "interactions.csv": """\
                interaction_id,account_id,occurred_at,sentiment
                I1,A1,2024-03-01,1.5
                I2,A1,2024-03-02,-1
                I3,A1,2024-03-03,-1.01
                I1,A1,2024-03-04,0
                """,
        },
        "interactions",
        [
            ("I1", "sentiment: outside [-1, 1] '1.5'"),
            ("I3", "sentiment: outside [-1, 1] '-1.01'"),
            ("I1", "duplicate interaction_id"),
        ],
        {"sentiment: outside [-1, 1]": 2, "duplicate interaction_id": 1},
        id="sentiment-range-and-duplicate",
    ),
    pytest.param(
        {
            "orders.csv": f"{ORDERS_HEADER}\nO1,A1,2024-01-05,1\n",
            "deliveries.csv": """\
                delivery_id,account_id,promised_date,delivered_date,quantity_ordered,quantity_delivered
                D1,A1,2024-03-01,2024-03-03,10,-1
                D2,A1,2024-03-01,2024-02-27,10,10
                """,
        },
        "deliveries",
        [("D1", "quantity_delivered: below 0 '-1'")],
        {"quantity_delivered: below 0": 1},
        id="negative-delivered-quantity",
    ),
]


@pytest.mark.parametrize(("files", "table", "expected", "kinds"), REJECT_CASES)
def test_bad_rows_are_rejected_with_their_reason(
    tmp_path: Path, files: dict[str, str], table: str, expected: list, kinds: dict
) -> None:
    for name, text in files.items():
        write(tmp_path, name, text)
    report = run(tmp_path)

    rejected = rejects(tmp_path, table)
    id_column = TABLES[table].id_column
    assert list(zip(rejected[id_column], rejected["reason"], strict=True)) == expected
    assert report[table].reasons == kinds
    assert report[table].rejected == len(expected)
    assert report[table].kept + report[table].rejected == report[table].read
    assert len(stored(tmp_path, table)) == report[table].kept


def test_rejects_keep_every_original_column_and_value(tmp_path: Path) -> None:
    write(
        tmp_path,
        "orders.csv",
        """\
        order_id,account_id,order_date,revenue,crm_note
        O1,A1,2024-01-05,10,fine
        O2, A1 ,yesterday,10,typo in date
        """,
    )
    run(tmp_path)
    expected = pd.DataFrame(
        {
            "order_id": ["O2"],
            "account_id": [" A1 "],
            "order_date": ["yesterday"],
            "revenue": ["10"],
            "crm_note": ["typo in date"],
            "reason": ["order_date: unparseable date 'yesterday'"],
        }
    )
    pd.testing.assert_frame_equal(rejects(tmp_path, "orders"), expected)


def test_kept_plus_rejected_equals_read_and_every_good_row_is_kept(tmp_path: Path) -> None:
    write(tmp_path, "accounts.csv", "account_id,created_at\nA1,2020-01-01\nA2,someday\nA1,\n")
    write(
        tmp_path,
        "orders.csv",
        f"""\
        {ORDERS_HEADER}
        O1,A1,2024-01-05,10
        O2,A2,2024-01-06,x
        O3,A2,2024-01-07,5
        O1,A1,2024-01-08,1
        O4,A3,2024-01-09,1
        O5,A1,2024-01-10,-3.5
        """,
    )
    write(
        tmp_path,
        "interactions.csv",
        """\
        interaction_id,account_id,occurred_at,channel
        I1,A1,2024-01-05,call
        I2,A3,2024-01-05,call
        I3,A1,not a date,call
        """,
    )
    report = run(tmp_path)

    for table in ("accounts", "orders", "interactions"):
        counts = report[table]
        assert counts.kept + counts.rejected == counts.read, table
    # A2 is rejected from accounts (bad created_at), so its orders are unknown accounts.
    assert stored(tmp_path, "accounts")["account_id"].tolist() == ["A1"]
    assert stored(tmp_path, "orders")["order_id"].tolist() == ["O1", "O5"]
    assert stored(tmp_path, "interactions")["interaction_id"].tolist() == ["I1"]
    assert (report["orders"].read, report["orders"].kept, report["orders"].rejected) == (6, 2, 4)
    assert report.rejected_total == 2 + 4 + 2
    row = next(r for r in report.as_rows() if r["table"] == "orders")
    assert row == {
        "table": "orders",
        "source": "orders.csv",
        "read": 6,
        "kept": 2,
        "rejected": 4,
        "rejected by reason": "unknown account_id (not in accounts) (3); "
        "duplicate order_id (1); revenue: not a number (1)",
        "mapped to other": "",
        "credit lines": 0,
        "ignored columns": "",
    }


def test_good_rows_are_stored_with_exact_values_and_contract_dtypes(tmp_path: Path) -> None:
    write(
        tmp_path,
        "orders.csv",
        """\
        order_id,account_id,order_date,revenue,quantity,product_category,discount_amount,gross_margin,note
         007 ,A1,2024-01-05,100.50,3,Widgets,5,40.25,x
        O2,A2,2024-02-10 13:30:00,-20,,,,,
        """,
    )
    report = run(tmp_path)

    expected = pd.DataFrame(
        {
            "order_id": strings("007", "O2"),
            "account_id": strings("A1", "A2"),
            "order_date": dates("2024-01-05", "2024-02-10 13:30:00"),
            "revenue": numbers(100.5, -20.0),
            "quantity": numbers(3.0, np.nan),
            "product_category": strings("Widgets", None),
            "discount_amount": numbers(5.0, np.nan),
            "gross_margin": numbers(40.25, np.nan),
        }
    )
    pd.testing.assert_frame_equal(stored(tmp_path, "orders"), expected)
    assert report["orders"].ignored_columns == ("note",)
    assert report["orders"].rejected == 0
    assert not (tmp_path / "rejects" / "orders.csv").exists()


def test_optional_columns_absent_from_input_are_stored_as_typed_nulls(tmp_path: Path) -> None:
    write(tmp_path, "orders.csv", f"{ORDERS_HEADER}\nO1,A1,2024-01-05,1\n")
    write(tmp_path, "complaints.csv", "complaint_id,account_id,opened_at\nC1,A1,2024-02-01\n")
    run(tmp_path)

    con = connect(store_url(tmp_path), read_only=True)
    try:
        schema = con.table("complaints").schema()
    finally:
        con.disconnect()
    assert list(schema.names) == list(TABLES["complaints"].names)
    assert {name: str(dtype) for name, dtype in schema.items()} == {
        "complaint_id": "string",
        "account_id": "string",
        "opened_at": "timestamp(6)",
        "resolved_at": "timestamp(6)",
        "category": "string",
        "severity": "string",
        "satisfaction": "float64",
    }


def test_unknown_categories_map_to_other_and_are_counted(tmp_path: Path) -> None:
    write(tmp_path, "orders.csv", f"{ORDERS_HEADER}\nO1,A1,2024-01-05,1\n")
    write(
        tmp_path,
        "interactions.csv",
        """\
        interaction_id,account_id,occurred_at,channel,direction
        I1,A1,2024-01-02,visit,outbound
        I2,A1,2024-01-03,fax,inbound
        I3,A1,2024-01-04, Visit ,sideways
        I4,A1,2024-01-05,fax,
        I5,A1,2024-01-06,other,other
        """,
    )
    report = run(tmp_path)

    frame = stored(tmp_path, "interactions")
    assert frame["channel"].tolist() == ["visit", "other", "visit", "other", "other"]
    assert frame["direction"].fillna("<null>").tolist() == [
        "outbound",
        "inbound",
        "other",
        "<null>",
        "other",
    ]
    assert report["interactions"].other_mapped == {
        "channel": {"fax": 2},
        "direction": {"sideways": 1},
    }
    assert report["interactions"].rejected == 0
    row = next(r for r in report.as_rows() if r["table"] == "interactions")
    assert row["mapped to other"] == "channel: fax (2); direction: sideways (1)"


@pytest.mark.parametrize(
    ("files", "file_name", "column"),
    [
        pytest.param(
            {"orders.csv": "order_id,account_id,order_date\nO1,A1,2024-01-05\n"},
            "orders.csv",
            "revenue",
            id="orders-without-revenue",
        ),
        pytest.param(
            {
                "orders.csv": f"{ORDERS_HEADER}\nO1,A1,2024-01-05,1\n",
                "complaints.csv": "complaint_id,account_id,opened\nC1,A1,2024-01-05\n",
            },
            "complaints.csv",
            "opened_at",
            id="complaints-without-opened-at",
        ),
        pytest.param(
            {"orders.csv": "Order_ID,Account_ID\nO1,A1\n"},
            "orders.csv",
            "order_date, revenue",
            id="two-columns-missing",
        ),
    ],
)
def test_missing_required_column_stops_naming_file_and_column(
    tmp_path: Path, files: dict[str, str], file_name: str, column: str
) -> None:
    for name, text in files.items():
        write(tmp_path, name, text)
    with pytest.raises(DataContractError) as err:
        run(tmp_path)
    assert file_name in str(err.value)
    assert column in str(err.value)
    assert not (tmp_path / "kam.duckdb").exists()


@pytest.mark.parametrize(
    ("name", "content"),
    [
        pytest.param("orders.parquet", b"this is not parquet", id="garbage-parquet"),
        pytest.param(
            "orders.csv", f"{ORDERS_HEADER}\nO1,A1,2024-01-05,1,extra\n".encode(), id="ragged-csv"
        ),
        pytest.param("orders.csv", b"", id="empty-file"),
        pytest.param(
            "orders.csv",
            f"{ORDERS_HEADER}\nO1,Caf\xe9,2024-01-05,1\n".encode("latin-1"),
            id="not-utf8",
        ),
        pytest.param("orders.csv.gz", b"not gzip at all", id="broken-gzip"),
    ],
)
def test_unreadable_file_stops_naming_the_file(tmp_path: Path, name: str, content: bytes) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DataContractError, match=name.replace(".", r"\.")):
        run(tmp_path)


def test_missing_orders_names_folder_and_files_looked_for(tmp_path: Path) -> None:
    write(tmp_path, "accounts.csv", ACCOUNTS_A1_A2)
    with pytest.raises(DataContractError) as err:
        run(tmp_path)
    message = str(err.value)
    assert str(tmp_path) in message
    assert "orders.csv" in message and "orders.parquet" in message


def test_two_files_for_one_table_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, "orders.csv", f"{ORDERS_HEADER}\nO1,A1,2024-01-05,1\n")
    pd.read_csv(tmp_path / "orders.csv").to_parquet(tmp_path / "orders.parquet")
    with pytest.raises(DataContractError, match="keep one"):
        run(tmp_path)


def test_transactions_only_derives_accounts_from_orders(tmp_path: Path) -> None:
    write(
        tmp_path,
        "orders.csv",
        f"""\
        {ORDERS_HEADER}
        O1,A2,2024-03-05,10
        O2,A1,2024-02-01,10
        O3,A2,2024-01-07,5
        O4,A1,bad,1
        """,
    )
    report = run(tmp_path)

    expected = pd.DataFrame(
        {
            "account_id": strings("A1", "A2"),
            "name": strings(None, None),
            "industry": strings(None, None),
            "region": strings(None, None),
            "account_manager": strings(None, None),
            "created_at": dates("2024-02-01", "2024-01-07"),
            "parent_account_id": strings(None, None),
        }
    )
    pd.testing.assert_frame_equal(stored(tmp_path, "accounts"), expected)
    assert report["accounts"].source == "derived from orders"
    assert (report["accounts"].read, report["accounts"].kept) == (2, 2)
    assert report.data_end == pd.Timestamp("2024-03-05")


def test_a_child_table_without_accounts_is_not_checked_for_unknown_accounts(tmp_path: Path) -> None:
    write(tmp_path, "orders.csv", f"{ORDERS_HEADER}\nO1,A1,2024-01-05,1\n")
    write(tmp_path, "actions.csv", "action_id,account_id,taken_at,action\nX1,A7,2024-02-01,call\n")
    report = run(tmp_path)
    assert report["actions"].kept == 1


CDNOW_LINES = (
    " 00001 19970101  1   11.77\r\n"
    " 00002 19970112  1   12.00\r\n"
    " 00002 19970112  5   77.00\r\n"
    " 00003 19970102  2   20.76\r\n"
)

CDNOW_ORDERS = pd.DataFrame(
    {
        "order_id": strings("1", "2", "3", "4"),
        "account_id": strings("00001", "00002", "00002", "00003"),
        "order_date": dates("1997-01-01", "1997-01-12", "1997-01-12", "1997-01-02"),
        "revenue": numbers(11.77, 12.0, 77.0, 20.76),
        "quantity": numbers(1, 1, 5, 2),
        "product_category": strings(None, None, None, None),
        "discount_amount": numbers(*[np.nan] * 4),
        "gross_margin": numbers(*[np.nan] * 4),
    }
)


def test_cdnow_mapping_reads_the_whitespace_log_and_numbers_the_rows(tmp_path: Path) -> None:
    (tmp_path / "CDNOW_master.txt").write_bytes(CDNOW_LINES.encode())
    mapping = (BUILTIN_MAPPINGS / "cdnow.yaml").read_text()
    write(tmp_path, "mapping.yaml", mapping.replace("header: true", "header: false"))
    report = run(tmp_path, mapping=tmp_path / "mapping.yaml")

    pd.testing.assert_frame_equal(stored(tmp_path, "orders"), CDNOW_ORDERS)
    accounts = stored(tmp_path, "accounts")
    assert accounts["account_id"].tolist() == ["00001", "00002", "00003"]
    assert accounts["created_at"].tolist() == list(dates("1997-01-01", "1997-01-12", "1997-01-02"))
    assert report["orders"].source == str(tmp_path / "CDNOW_master.txt")
    assert report["orders"].rejected == 0


def test_names_replace_a_header_line_when_header_is_true(tmp_path: Path) -> None:
    header = " customer_id  date number_of_cds  dollar_value\r\n"
    (tmp_path / "cdnow.txt").write_bytes((header + CDNOW_LINES).encode())
    mapping = (BUILTIN_MAPPINGS / "cdnow.yaml").read_text()
    mapping = mapping.replace("file: CDNOW_master.txt", "file: cdnow.txt")
    write(tmp_path, "mapping.yaml", mapping)
    report = run(tmp_path, mapping=tmp_path / "mapping.yaml")

    pd.testing.assert_frame_equal(stored(tmp_path, "orders"), CDNOW_ORDERS)
    assert report["orders"].rejected == 0


def test_mapping_renames_an_exports_columns_and_reads_its_dates(tmp_path: Path) -> None:
    write(
        tmp_path,
        "export.csv",
        """\
        Auftrag;Kunde;Datum;Umsatz;Kommentar
        A-1;K1;15.03.2024;100.5;ok
        A-2;K1;16.03.2024;oops;
        """,
    )
    write(
        tmp_path,
        "mapping.yaml",
        """\
        orders:
          file: export.csv
          sep: ";"
          columns: {Auftrag: order_id, Kunde: account_id, Datum: order_date, Umsatz: revenue}
          date_format: {order_date: "%d.%m.%Y"}
        """,
    )
    report = run(tmp_path, mapping=tmp_path / "mapping.yaml")

    frame = stored(tmp_path, "orders")
    assert frame["order_id"].tolist() == ["A-1"]
    assert frame["order_date"].tolist() == [pd.Timestamp("2024-03-15")]
    assert report["orders"].ignored_columns == ("Kommentar",)
    rejected = rejects(tmp_path, "orders")
    assert rejected.columns.tolist() == [
        "Auftrag",
        "Kunde",
        "Datum",
        "Umsatz",
        "Kommentar",
        "reason",
    ]
    assert rejected["reason"].tolist() == ["revenue: not a number 'oops'"]


def test_mapping_that_renames_an_absent_column_names_file_and_column(tmp_path: Path) -> None:
    write(tmp_path, "orders.csv", f"{ORDERS_HEADER}\nO1,A1,2024-01-05,1\n")
    write(tmp_path, "mapping.yaml", "orders:\n  columns: {Umsatz: revenue}\n")
    with pytest.raises(DataContractError, match=r"orders\.csv.*Umsatz"):
        run(tmp_path, mapping=tmp_path / "mapping.yaml")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("ordrs: {}\n", "'ordrs' is not a table", id="unknown-table"),
        pytest.param("orders: {fromat: csv}\n", "table 'orders', key 'fromat'", id="unknown-key"),
        pytest.param("orders: {format: xls}\n", "table 'orders', key 'format'", id="bad-format"),
        pytest.param("orders: {header: maybe}\n", "table 'orders', key 'header'", id="bad-header"),
        pytest.param(
            "orders: {header: false}\n",
            "table 'orders', key 'header'",
            id="no-header-without-names",
        ),
        pytest.param(
            "orders: {columns: {Umsatz: revenu}}\n",
            "table 'orders', key 'columns'",
            id="rename-onto-unknown-column",
        ),
        pytest.param(
            "orders: {columns: {a: revenue, b: revenue}}\n",
            "table 'orders', key 'columns'",
            id="two-sources-one-column",
        ),
        pytest.param(
            "orders: {id_from_row: revenue}\n",
            "table 'orders', key 'id_from_row'",
            id="generate-a-non-id",
        ),
        pytest.param(
            "complaints: {date_format: {satisfaction: '%Y'}}\n",
            "table 'complaints', key 'date_format'",
            id="format-for-a-non-date",
        ),
        pytest.param(
            "orders: {format: parquet, names: [a]}\n",
            "table 'orders', key 'names'",
            id="names-for-parquet",
        ),
        pytest.param(
            "orders: {encoding: klingon}\n", "table 'orders', key 'encoding'", id="unknown-encoding"
        ),
        pytest.param("orders: [1, 2]\n", "table 'orders' must be", id="entry-not-a-mapping"),
        pytest.param("- orders\n", "one entry per table", id="top-level-list"),
        pytest.param("orders: [\n", "not valid YAML", id="not-yaml"),
    ],
)
def test_malformed_mapping_names_table_and_key(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, "mapping.yaml", text)
    with pytest.raises(MappingError) as err:
        load_mapping(path)
    assert expected in str(err.value)
    assert str(path) in str(err.value)


def test_shipped_cdnow_mapping_is_valid() -> None:
    orders = load_mapping(BUILTIN_MAPPINGS / "cdnow.yaml")["orders"]
    assert orders.columns == {
        "customer_id": "account_id",
        "date": "order_date",
        "number_of_cds": "quantity",
        "dollar_value": "revenue",
    }
    assert orders.id_from_row == "order_id"
    assert orders.date_format == {"order_date": "%Y%m%d"}


def test_parquet_input_with_typed_columns(tmp_path: Path) -> None:
    pd.DataFrame(
        {
            "order_id": ["O1", "O2", "O3"],
            "account_id": [1001.0, np.nan, 1002.0],  # integer ids stored as float because of a null
            "order_date": dates("2024-01-05", "2024-01-06", "2024-01-07 08:00"),
            "revenue": [10.5, 3.0, np.inf],
            "quantity": [1, 2, 3],
        }
    ).to_parquet(tmp_path / "orders.parquet")
    pd.DataFrame({"account_id": [1001, 1002], "region": ["north", "south"]}).to_parquet(
        tmp_path / "accounts.parquet"
    )
    report = run(tmp_path)

    orders = stored(tmp_path, "orders")
    assert orders["order_id"].tolist() == ["O1"]
    assert orders["account_id"].tolist() == ["1001"]
    assert orders["order_date"].tolist() == [pd.Timestamp("2024-01-05")]
    assert orders["quantity"].tolist() == [1.0]
    assert stored(tmp_path, "accounts")["account_id"].tolist() == ["1001", "1002"]
    assert rejects(tmp_path, "orders")["reason"].tolist() == [
        "missing required value account_id",
        "revenue: not a number 'inf'",
    ]
    assert report["orders"].source == str(tmp_path / "orders.parquet")


def test_gzipped_csv_input(tmp_path: Path) -> None:
    with gzip.open(tmp_path / "orders.csv.gz", "wt") as handle:
        handle.write(f"{ORDERS_HEADER}\nO1,A1,2024-01-05,1\nO2,A1,2024-01-06,2\n")
    report = run(tmp_path)
    assert report["orders"].kept == 2


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param(["2024-03-15", "2024-12-01"], ["2024-03-15", "2024-12-01"], id="iso-date"),
        pytest.param(
            ["2024-03-15 13:45:00", "2024-12-01T08:00:00"],
            ["2024-03-15 13:45:00", "2024-12-01 08:00:00"],
            id="iso-datetime",
        ),
        pytest.param(
            ["03/15/2024", "12/01/2024"], ["2024-03-15", "2024-12-01"], id="month-first-guessed"
        ),
        pytest.param(
            ["15.03.2024", "01.12.2024"], ["2024-03-15", "2024-12-01"], id="day-first-guessed"
        ),
        pytest.param(
            ["2024-03-15T12:00:00+02:00", "2024-03-15T12:00:00Z"],
            ["2024-03-15 10:00:00", "2024-03-15 12:00:00"],
            id="offsets-to-utc",
        ),
    ],
)
def test_date_formats_are_read_without_a_mapping(
    tmp_path: Path, values: list[str], expected: list[str]
) -> None:
    rows = "".join(f"O{i},A1,{value},1\n" for i, value in enumerate(values))
    write(tmp_path, "orders.csv", f"{ORDERS_HEADER}\n{rows}")
    report = run(tmp_path)
    assert report["orders"].rejected == 0
    assert stored(tmp_path, "orders")["order_date"].tolist() == [pd.Timestamp(v) for v in expected]


def test_runs_are_recorded_and_a_rerun_replaces_tables_and_stale_rejects(tmp_path: Path) -> None:
    write(tmp_path, "orders.csv", f"{ORDERS_HEADER}\nO1,A1,2024-01-05,1\nO2,A1,2024-01-09,x\n")
    write(tmp_path, "interactions.csv", "interaction_id,account_id,occurred_at\nI1,A1,2024-02-01\n")
    first = run(tmp_path)
    assert first.data_end == pd.Timestamp("2024-02-01")
    assert (tmp_path / "rejects" / "orders.csv").exists()

    (tmp_path / "interactions.csv").unlink()
    write(tmp_path, "orders.csv", f"{ORDERS_HEADER}\nO1,A1,2024-01-05,1\n")
    run(tmp_path, force=True)  # a table that vanished from the input is dropped only if forced

    assert "interactions" not in store_tables(tmp_path)
    assert not (tmp_path / "rejects" / "orders.csv").exists()
    runs = stored(tmp_path, "ingest_runs").sort_values(["run_at", "table_name"])
    assert runs.columns.tolist() == [
        "run_at",
        "table_name",
        "source",
        "read",
        "kept",
        "rejected",
        "latest_event",
        "data_end",
    ]
    assert runs[["table_name", "read", "kept", "rejected"]].values.tolist() == [
        ["accounts", 1, 1, 0],
        ["interactions", 1, 1, 0],
        ["orders", 2, 1, 1],
        ["accounts", 1, 1, 0],
        ["orders", 1, 1, 0],
    ]
    assert (
        runs["data_end"].tolist()
        == [pd.Timestamp("2024-02-01")] * 3 + [pd.Timestamp("2024-01-05")] * 2
    )


def test_progress_reports_each_table(tmp_path: Path) -> None:
    write(tmp_path, "orders.csv", f"{ORDERS_HEADER}\nO1,A1,2024-01-05,1\n")
    messages: list[str] = []
    run(tmp_path, progress=messages.append)
    assert "orders: 1 read, 1 kept, 0 rejected" in messages
    assert "accounts: derived 1 accounts from orders" in messages


def test_rejects_dir_can_be_chosen(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    write(data, "orders.csv", f"{ORDERS_HEADER}\nO1,A1,someday,1\n")
    report = ingest(data, store_url(data), rejects_dir=tmp_path / "bad")
    assert report.rejects_dir == tmp_path / "bad"
    assert report["orders"].rejects_file == tmp_path / "bad" / "orders.csv"
    assert (tmp_path / "bad" / "orders.csv").exists()


def test_missing_data_folder(tmp_path: Path) -> None:
    with pytest.raises(DataContractError, match="does not exist"):
        run(tmp_path / "nowhere")


def test_real_cdnow_file_when_present(tmp_path: Path) -> None:
    """The lifetimes copy of CDNOW (with its header line) when a benchmark has cached it."""
    cached = Path(__file__).resolve().parents[2] / "bench" / "out" / "cache" / "CDNOW_master.txt"
    if not cached.is_file():
        pytest.skip("CDNOW_master.txt not cached by the benchmarks")
    shutil.copy(cached, tmp_path / "CDNOW_master.txt")
    report = run(tmp_path, mapping=BUILTIN_MAPPINGS / "cdnow.yaml")
    assert report["orders"].read == 69_659
    assert report["orders"].rejected == 0
    assert report["accounts"].kept == 23_570
    assert report.data_end == pd.Timestamp("1998-06-30")


def test_header_only_orders_ingest_as_empty_tables(tmp_path: Path) -> None:
    write(tmp_path, "orders.csv", f"{ORDERS_HEADER}\n")
    report = run(tmp_path)
    assert (report["orders"].read, report["orders"].kept, report["accounts"].kept) == (0, 0, 0)
    assert report.data_end is None
    assert stored(tmp_path, "orders").columns.tolist() == list(TABLES["orders"].names)


def test_scheduled_deliveries_do_not_move_the_end_of_the_data(tmp_path: Path) -> None:
    write(tmp_path, "orders.csv", f"{ORDERS_HEADER}\nO1,A1,2024-01-05,1\n")
    write(
        tmp_path,
        "deliveries.csv",
        """\
        delivery_id,account_id,promised_date,delivered_date
        D1,A1,2024-01-04,2024-01-06
        D2,A1,2024-03-01,
        """,
    )
    report = run(tmp_path)
    assert report["deliveries"].latest_event == pd.Timestamp("2024-01-06")
    assert report.data_end == pd.Timestamp("2024-01-06")


ERP_LINES = """\
Invoice,Customer,Date,Qty,Price
1001,K1,2024-01-05,3,2.5
C1002,K1,2024-01-06,2,4
1003,K2,2024-01-07,-1,10
CN-1004,K2,2024-01-08,1,0.5
C1005,K2,2024-01-09,-2,3
"""
ERP_MAPPING = """\
orders:
  file: lines.csv
  columns: {Customer: account_id, Date: order_date, Qty: quantity}
  id_from_row: order_id
  revenue_from: {quantity: Qty, unit_price: Price}
"""


@pytest.mark.parametrize(
    ("credit_notes", "revenue", "credit_lines"),
    [
        pytest.param("", [7.5, 8.0, -10.0, 0.5, -6.0], 0, id="no-credit-notes"),
        pytest.param(
            "{id_prefix: C, column: Invoice}", [7.5, -8.0, -10.0, -0.5, -6.0], 3, id="by-prefix"
        ),
        pytest.param(
            "{id_prefix: [CN-, X], column: Invoice}",
            [7.5, 8.0, -10.0, -0.5, -6.0],
            1,
            id="by-prefix-list",
        ),
        pytest.param(
            "{negative_quantity: true}", [7.5, 8.0, -10.0, 0.5, -6.0], 2, id="by-negative-quantity"
        ),
        pytest.param(
            "{id_prefix: C, column: Invoice, negative_quantity: true}",
            [7.5, -8.0, -10.0, -0.5, -6.0],
            4,
            id="by-both",
        ),
    ],
)
def test_revenue_from_quantity_and_unit_price_with_credit_notes_negative(
    tmp_path: Path, credit_notes: str, revenue: list[float], credit_lines: int
) -> None:
    write(tmp_path, "lines.csv", ERP_LINES)
    mapping = ERP_MAPPING + (f"  credit_notes: {credit_notes}\n" if credit_notes else "")
    write(tmp_path, "mapping.yaml", mapping)
    report = run(tmp_path, mapping=tmp_path / "mapping.yaml")

    frame = stored(tmp_path, "orders")
    assert frame["order_id"].tolist() == ["1", "2", "3", "4", "5"]
    pd.testing.assert_series_equal(frame["revenue"], numbers(*revenue), check_names=False)
    pd.testing.assert_series_equal(frame["quantity"], numbers(3, 2, -1, 1, -2), check_names=False)
    assert report["orders"].credit_lines == credit_lines
    assert report["orders"].ignored_columns == (
        ("Invoice",) if "Invoice" not in credit_notes else ()
    )
    assert report["orders"].rejected == 0
    row = next(r for r in report.as_rows() if r["table"] == "orders")
    assert row["credit lines"] == credit_lines


def test_credit_notes_negate_a_mapped_revenue_matched_on_the_order_id(tmp_path: Path) -> None:
    write(
        tmp_path,
        "orders.csv",
        f"{ORDERS_HEADER}\nO1,A1,2024-01-05,10\nC-2,A1,2024-01-06,4\nC-3,A1,2024-01-07,-3\n",
    )
    write(tmp_path, "mapping.yaml", "orders:\n  credit_notes: {id_prefix: C-}\n")
    report = run(tmp_path, mapping=tmp_path / "mapping.yaml")

    frame = stored(tmp_path, "orders")
    assert frame["order_id"].tolist() == ["C-2", "C-3", "O1"]
    assert frame["revenue"].tolist() == [-4.0, -3.0, 10.0]
    assert report["orders"].credit_lines == 2


@pytest.mark.parametrize(
    ("line", "reason", "kind"),
    [
        pytest.param(
            "C9,K1,2024-01-10,3,abc",
            "revenue: quantity x unit price not a number '3 x abc'",
            "revenue: quantity x unit price not a number",
            id="price-not-a-number",
        ),
        pytest.param(
            "9,K1,2024-01-10,2 boxes,2.5",
            "revenue: quantity x unit price not a number '2 boxes x 2.5'; "
            "quantity: not a number '2 boxes'",
            "revenue: quantity x unit price not a number",
            id="quantity-not-a-number",
        ),
        pytest.param(
            "9,K1,2024-01-10,3,",
            "missing required value revenue",
            "missing required value revenue",
            id="price-missing",
        ),
    ],
)
def test_line_whose_quantity_or_price_is_not_a_number_is_rejected_with_its_reason(
    tmp_path: Path, line: str, reason: str, kind: str
) -> None:
    write(tmp_path, "lines.csv", ERP_LINES + line + "\n")
    mapping = ERP_MAPPING + "  credit_notes: {id_prefix: C, column: Invoice}\n"
    write(tmp_path, "mapping.yaml", mapping)
    report = run(tmp_path, mapping=tmp_path / "mapping.yaml")

    rejected = rejects(tmp_path, "orders")
    assert rejected.columns.tolist() == [
        "Invoice",
        "Customer",
        "Date",
        "Qty",
        "Price",
        "order_id",
        "reason",
    ]
    assert rejected[["order_id", "reason"]].values.tolist() == [["6", reason]]
    assert report["orders"].reasons[kind] == 1
    assert (report["orders"].read, report["orders"].kept, report["orders"].rejected) == (6, 5, 1)
    assert report["orders"].credit_lines == 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "orders: {revenue_from: {quantity: Qty}}\n",
            "table 'orders', key 'revenue_from': 'unit_price' is missing",
            id="revenue-from-without-unit-price",
        ),
        pytest.param(
            "orders: {revenue_from: {quantity: Qty, price: P, unit_price: P}}\n",
            "table 'orders', key 'revenue_from': 'price' is not one of quantity, unit_price",
            id="revenue-from-unknown-key",
        ),
        pytest.param(
            "orders: {revenue_from: Qty * Price}\n",
            "table 'orders', key 'revenue_from': expected {quantity",
            id="revenue-from-not-a-mapping",
        ),
        pytest.param(
            "orders: {columns: {Umsatz: revenue}, revenue_from: {quantity: Q, unit_price: P}}\n",
            "table 'orders', key 'revenue_from': revenue is also mapped",
            id="revenue-from-and-a-revenue-column",
        ),
        pytest.param(
            "orders: {credit_notes: {prefix: C}}\n",
            "table 'orders', key 'credit_notes': 'prefix' is not one of",
            id="credit-notes-unknown-key",
        ),
        pytest.param(
            "orders: {credit_notes: {id_prefix: []}}\n",
            "table 'orders', key 'credit_notes': 'id_prefix': expected a prefix",
            id="credit-notes-empty-prefix",
        ),
        pytest.param(
            "orders: {credit_notes: {negative_quantity: maybe}}\n",
            "table 'orders', key 'credit_notes': 'negative_quantity': expected true or false",
            id="credit-notes-negative-quantity-not-a-bool",
        ),
        pytest.param(
            "orders: {id_from_row: order_id, credit_notes: {id_prefix: C}}\n",
            "table 'orders', key 'credit_notes': order_id is numbered from the rows",
            id="credit-notes-prefix-on-numbered-rows",
        ),
        pytest.param(
            "complaints: {credit_notes: {negative_quantity: true}}\n",
            "table 'complaints', key 'credit_notes': applies to the orders table only",
            id="credit-notes-outside-orders",
        ),
    ],
)
def test_malformed_order_line_keys_name_the_key_and_the_problem(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = write(tmp_path, "mapping.yaml", text)
    with pytest.raises(MappingError) as err:
        load_mapping(path)
    assert expected in str(err.value)
    assert str(path) in str(err.value)


def test_revenue_from_a_column_the_file_lacks_names_file_and_column(tmp_path: Path) -> None:
    write(tmp_path, "lines.csv", ERP_LINES)
    write(tmp_path, "mapping.yaml", ERP_MAPPING.replace("unit_price: Price", "unit_price: Preis"))
    with pytest.raises(DataContractError, match=r"lines\.csv.*revenue_from\.unit_price.*'Preis'"):
        run(tmp_path, mapping=tmp_path / "mapping.yaml")


def test_shipped_erp_lines_mapping_ingests_its_example_rows(tmp_path: Path) -> None:
    mapping = BUILTIN_MAPPINGS / "erp_lines.yaml"
    example = [
        line.removeprefix("#     ")
        for line in mapping.read_text().splitlines()
        if line.startswith("#     ") and "," in line
    ]
    write(tmp_path, "erp_lines.csv", "\n".join(example) + "\n")
    report = run(tmp_path, mapping=mapping)

    frame = stored(tmp_path, "orders")
    assert frame["order_id"].tolist() == ["1", "2", "3"]
    assert frame["account_id"].tolist() == ["17850", "17850", "14527"]
    assert frame["order_date"].tolist() == [
        pd.Timestamp("2010-12-01 08:26"),
        pd.Timestamp("2010-12-01 08:26"),
        pd.Timestamp("2010-12-01 09:41"),
    ]
    assert frame["revenue"].tolist() == [6 * 2.55, 6 * 3.39, -27.5]
    assert frame["quantity"].tolist() == [6.0, 6.0, -1.0]
    assert report["orders"].credit_lines == 1
    assert report["orders"].rejected == 0
    assert report["orders"].ignored_columns == ("StockCode", "Description", "Country")
