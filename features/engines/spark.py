"""The Spark engine: the contract's tables read where they lie, as Parquet, through Ibis.

``connect("spark:///path/to/tables")`` starts (or joins) a Spark session, registers each
contract table found under the folder (see :func:`kam.features.engines.parquet.table_path`)
as a temporary view over its files, and returns Ibis's PySpark backend on that session. The
feature code then runs unchanged: the snapshot query is planned and executed by Spark, over
partitioned folders as large as the cluster holds, and only its result comes back.

Each table is checked against the data contract when registered (required columns present,
dates as dates, numbers as numbers); optional columns a table lacks are added as typed nulls,
as ingestion does for the embedded store. The Parquet files are expected to hold clean rows,
such as ``kam ingest`` keeps (see :func:`~kam.features.engines.parquet.export_tables`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from kam.features.contract import TABLES, Column
from kam.features.engines.parquet import table_path
from kam.features.errors import DataContractError

SCHEME = "spark:///"
# the Spark SQL type each contract kind is given when an optional column is absent
_SPARK_TYPES = {
    "id": "string",
    "text": "string",
    "category": "string",
    "number": "double",
    "date": "timestamp",
}
_ACCEPTED = {
    "id": ("string",),
    "text": ("string",),
    "category": ("string",),
    "number": ("double", "float", "int", "bigint", "smallint", "tinyint", "decimal"),
    "date": ("timestamp", "timestamp_ntz", "date"),
}


def session(master: str = "local[2]", *, app_name: str = "kam", **conf: str) -> Any:
    """The Spark session (created on first use, shared afterwards).

    Parameters
    ----------
    master
        Spark master URL: ``local[N]`` on one machine, ``yarn``, ``spark://host:7077``,
        ``k8s://...`` on a cluster. Ignored when a session already runs (e.g. under
        ``spark-submit``, which sets it).
    conf
        Further Spark settings, e.g. ``{"spark.executor.memory": "8g"}``.
    """
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master(master).appName(app_name)
    defaults = {
        # the snapshot keys are dates: one time zone, whatever the machine's
        "spark.sql.session.timeZone": "UTC",
        # pandas exchange (mapInPandas, toPandas) through Arrow, not row by row
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.ui.showConsoleProgress": "false",
    }
    if master.startswith("local"):
        # a local session's shuffles are small: the default 200 partitions cost more than
        # they split; its web UI and a routable address only slow its start
        defaults["spark.sql.shuffle.partitions"] = "8"
        defaults["spark.ui.enabled"] = "false"
        defaults["spark.driver.host"] = "127.0.0.1"
        defaults["spark.driver.bindAddress"] = "127.0.0.1"
        # the Python workers (mapInPandas) must be this interpreter, with kam and its
        # libraries, not whichever python3 comes first on the PATH; PySpark reads the
        # variable, not the setting, when it starts its context
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        defaults["spark.pyspark.python"] = os.environ["PYSPARK_PYTHON"]
    for key, value in {**defaults, **conf}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def connect(url: str, *, master: str | None = None, **conf: str) -> Any:
    """The Ibis PySpark backend over the contract tables under the folder ``url`` names.

    Parameters
    ----------
    url
        ``spark:///absolute/path``: the folder holding ``orders`` (required) and the other
        contract tables as Parquet.
    master, conf
        See :func:`session`; ``master`` defaults to the setting ``KAM_SPARK_MASTER``, so that
        every command (features, training, scoring) runs where the settings say.

    Raises
    ------
    DataContractError
        When the folder has no orders, or a table breaks the contract (named with the column).
    """
    import ibis

    root = Path("/" + url.removeprefix(SCHEME).lstrip("/"))
    if not root.is_dir():
        raise DataContractError(f"the Spark store {url} names {root}, which is not a folder")
    if table_path(root, "orders") is None:
        raise DataContractError(
            f"no orders under {root}: the Spark engine reads orders.parquet or orders/ "
            "(a folder of Parquet files) there"
        )
    if master is None:
        from kam.features.settings import StoreSettings

        master = StoreSettings().spark_master
    spark = session(master, **conf)
    con = ibis.pyspark.connect(spark)
    for name in TABLES:
        path = table_path(root, name)
        if path is not None:
            register(spark, name, str(path))
    return con


def register(spark: Any, name: str, path: str) -> None:
    """Register the Parquet file or folder ``path`` as the view of contract table ``name``."""
    frame = spark.read.parquet(path)
    types = dict(frame.dtypes)
    table = TABLES[name]
    missing = [c.name for c in table.columns if c.required and c.name not in types]
    if missing:
        raise DataContractError(
            f"table {name} at {path} lacks the required column(s) {', '.join(missing)}"
        )
    columns = []
    for column in table.columns:
        if column.name in types:
            _check_type(name, path, column, types[column.name])
            columns.append(_normalised(column, types[column.name]))
        else:
            columns.append(f"CAST(NULL AS {_SPARK_TYPES[column.kind]}) AS `{column.name}`")
    frame.createOrReplaceTempView(f"_kam_raw_{name}")
    spark.sql(
        f"CREATE OR REPLACE TEMPORARY VIEW `{name}` AS SELECT {', '.join(columns)} "
        f"FROM `_kam_raw_{name}`"
    )


def _check_type(table: str, path: str, column: Column, spark_type: str) -> None:
    accepted = _ACCEPTED[column.kind]
    if not spark_type.startswith(accepted):
        raise DataContractError(
            f"column {column.name} of table {table} at {path} is {spark_type}; the contract "
            f"wants {' or '.join(accepted)} ({column.kind})"
        )


def _normalised(column: Column, spark_type: str) -> str:
    # one type per kind, as in the embedded store: the features' arithmetic and the
    # comparisons with DuckDB's results then do not depend on how a file was written
    name = f"`{column.name}`"
    if column.kind == "number" and spark_type != "double":
        return f"CAST({name} AS double) AS {name}"
    if column.kind == "date" and spark_type != "timestamp":
        return f"CAST({name} AS timestamp) AS {name}"
    return name
