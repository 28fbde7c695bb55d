"""Batch scoring on Spark: the same score records as ``kam score``, computed by the executors.

Scoring runs through ``mapInPandas``, not ``mlflow.pyfunc.spark_udf``. A pyfunc UDF returns
what the bundle's ``predict`` returns for a row (probabilities and values); a score record also
needs each account's SHAP drivers, its tier and rank (which depend on every account's value),
the playbook's actions with their cool-downs (which read the actions taken) and the account
master. ``mapInPandas`` hands each executor a batch of feature rows as a pandas frame, so the
executors run :func:`kam.serving.scoring.batch.score_frame`, the very code of local scoring,
and the records come out identical.

The work, with what crosses the driver:

1. the snapshot at as_of is one Spark query over the Parquet tables (the feature code on
   Ibis's PySpark backend); the BG/NBD fit needs each account's purchase summary on the
   driver (one row per account), and its features go back as a broadcast join;
2. a first pass predicts value and defection probability per account (no drivers): only
   ``account_id``, value and value at risk come to the driver, which assigns tiers and ranks
   over the whole book with the same functions as local scoring;
3. a second pass scores each batch in full, tier and rank given, and Spark writes the records
   as Parquet (``<folder>/as_of=<day>/``), never collecting them.

The model travels to the executors as a broadcast variable, so they need no access to the
tracking server.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from kam.features import labels
from kam.features.catalog import available
from kam.features.errors import EmptyWindowError
from kam.features.families import btyd
from kam.features.snapshots import snapshot_table
from kam.features.store import input_tables
from kam.models.registry import LoadedModel
from kam.serving.decision_tables import read_effects
from kam.serving.decisions.evidence import Evidence, evidence_for
from kam.serving.decisions.playbook import Playbook, load_playbook
from kam.serving.decisions.recommend import days_since_taken
from kam.serving.decisions.stages import DEFAULT_TIER_THRESHOLDS, assign_tiers
from kam.serving.record import DEFAULT_CURRENCY, RECORD
from kam.serving.scoring.batch import label_settings, score_frame
from kam.serving.store import read_master

# the store's DuckDB types as Spark SQL types
_SPARK_TYPES = {
    "VARCHAR": "string",
    "DOUBLE": "double",
    "BIGINT": "bigint",
    "DATE": "date",
    "TIMESTAMP": "timestamp",
}
_HISTORY = "_since_"
_DAYS = [name for name, kind in RECORD.store_schema.items() if kind == "DATE"]


@dataclass(frozen=True)
class SparkScores:
    """What a Spark scoring run wrote: where, how many accounts, at which as_of, how long."""

    path: Path
    accounts: int
    as_of: pd.Timestamp
    seconds: dict[str, float]


def record_schema() -> str:
    """The score record as a Spark DDL schema, column for column the store's ``scores``."""
    return ", ".join(f"`{name}` {_SPARK_TYPES[kind]}" for name, kind in RECORD.store_schema.items())


def spark_snapshot(con: Any, day: pd.Timestamp, model: LoadedModel) -> Any:
    """The snapshot at ``day`` as a Spark DataFrame, BG/NBD features joined, cached.

    Raises
    ------
    EmptyWindowError
        When no account is active at ``day``.
    """
    from pyspark.sql import functions as F

    period, window, cut = label_settings(model.metadata)
    expr = snapshot_table(con, [day], horizon=period, activity_window=window, decline=cut)
    view = f"_kam_snapshot_{day:%Y%m%d}"
    con.create_view(view, expr, overwrite=True)
    spark = con._session
    frame = spark.table(view)
    summary = con.execute(btyd.purchase_summary(con.table(btyd.TABLE), [day]))
    summary = summary.sort_values("account_id", ignore_index=True)
    fitted = btyd.fit_features(summary, day, period.approx_days())
    fitted["account_id"] = fitted["account_id"].astype(str)
    fits = spark.createDataFrame(fitted, schema=_btyd_schema())
    frame = frame.join(F.broadcast(fits), "account_id", "left").cache()
    if frame.limit(1).count() == 0:
        raise EmptyWindowError(
            f"no account has an order in the activity window before as_of {day.date()}"
        )
    return frame


def score_on_spark(
    con: Any,
    model: LoadedModel,
    out: Path,
    *,
    as_of: Any = None,
    playbook: Playbook | None = None,
    tier_thresholds: tuple[float, float] = DEFAULT_TIER_THRESHOLDS,
    scored_at: datetime | None = None,
    currency: str = DEFAULT_CURRENCY,
) -> SparkScores:
    """Score every active account at ``as_of`` on Spark and write the records as Parquet.

    Parameters
    ----------
    con
        Ibis PySpark connection to the store (``kam.features.store.connect("spark:///...")``).
    model
        The loaded scoring bundle.
    out
        Folder of the scores; this as_of's records replace ``out/as_of=<day>/``.
    as_of
        Scoring date; the end of the data when None.
    playbook, tier_thresholds, scored_at, currency
        As for :func:`kam.serving.scoring.batch.score_accounts`; the actions' effect evidence
        is read from the store (``kam effects``), as local scoring reads it.

    Returns
    -------
    SparkScores
        Where the records are and how many.
    """
    from kam.features.snapshots import data_end

    began = time.perf_counter()
    day = data_end(con) if as_of is None else pd.Timestamp(as_of).normalize()
    playbook = playbook or load_playbook()
    evidence = evidence_for(playbook, read_effects(con))
    stamp = pd.Timestamp(scored_at if scored_at is not None else datetime.now(UTC))
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    features = spark_snapshot(con, day, model)
    seconds = {"features": time.perf_counter() - began}

    began = time.perf_counter()
    shared = con._session.sparkContext.broadcast(model)
    kinds = _feature_kinds(con)
    predicted = features.mapInPandas(
        lambda batches: _predict(batches, shared.value, kinds),
        "account_id string, value double, value_at_risk double",
    ).toPandas()
    book = _book(con, predicted, day, playbook, tier_thresholds)
    spark = con._session
    ranked = features.join(spark.createDataFrame(book), "account_id")
    actions = len(playbook.actions)
    records = ranked.mapInPandas(
        lambda batches: _score(
            batches, shared.value, kinds, day, playbook, tier_thresholds, stamp, actions,
            evidence, currency,
        ),
        record_schema(),
    )
    target = Path(out) / f"as_of={day.date().isoformat()}"
    records.write.mode("overwrite").parquet(str(target))
    features.unpersist()
    seconds["scoring"] = time.perf_counter() - began
    return SparkScores(target, len(book), day, seconds)


def read_scores(path: Path) -> pd.DataFrame:
    """Scores written by :func:`score_on_spark`, in rank order, typed as local scoring's."""
    frame = pd.read_parquet(path).sort_values("rank", ignore_index=True)
    for name, kind in RECORD.store_schema.items():
        if kind in {"DATE", "TIMESTAMP"}:
            stamps = pd.to_datetime(frame[name])
            # Spark writes instants in UTC; the store keeps them naive, in UTC
            if isinstance(stamps.dtype, pd.DatetimeTZDtype):
                stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
            frame[name] = stamps
    return frame[list(RECORD.names)]


def _btyd_schema() -> str:
    return ", ".join(["account_id string", *(f"{name} double" for name in btyd.FEATURES)])


def _feature_kinds(con: Any) -> dict[str, str]:
    return {f.name: f.kind for f in available(input_tables(con))}


def _typed(frame: pd.DataFrame, kinds: dict[str, str]) -> pd.DataFrame:
    """A batch's columns typed as :func:`kam.features.snapshots.build_snapshots` types them."""
    types: dict[str, Literal["float64", "int64", "str"]] = {
        "number": "float64", "count": "int64", "category": "str"
    }
    columns = {name: frame[name].astype(types[kind]) for name, kind in kinds.items()}
    return frame.assign(**columns, as_of=pd.to_datetime(frame["as_of"]))


def _predict(
    batches: Iterator[pd.DataFrame], model: LoadedModel, kinds: dict[str, str]
) -> Iterator[pd.DataFrame]:
    from kam.serving.scoring.batch import STAKE_FEATURE

    for batch in batches:
        rows = _typed(batch, kinds)
        x = model.scorer.spec.matrix(rows)
        # log-odds from the contributions, as score_frame takes them: the same figures to
        # the last digit, so ties in tiers and ranks fall the same way
        contributions = model.scorer.contributions(x)
        p = model.scorer.predict_matrix(x, defection_log_odds=contributions.sum(axis=1))
        stake = np.clip(np.nan_to_num(rows[STAKE_FEATURE].to_numpy(dtype=float)), 0.0, None)
        yield pd.DataFrame(
            {
                "account_id": rows["account_id"].astype(str).to_numpy(),
                "value": p["value"],
                "value_at_risk": p["defection_probability"] * stake,
            }
        )


def _book(
    con: Any,
    predicted: pd.DataFrame,
    day: pd.Timestamp,
    playbook: Playbook,
    tier_thresholds: tuple[float, float],
) -> pd.DataFrame:
    """Per account: tier, rank, master columns and days since each action (the driver's part)."""
    # the order local scoring sees its rows in (account_id), so ties resolve alike
    book = predicted.sort_values("account_id", ignore_index=True)
    ids = book["account_id"].to_numpy(dtype=object)
    order = np.lexsort((ids, -book["value_at_risk"].to_numpy()))
    rank = np.empty(len(book), dtype=np.int64)
    rank[order] = np.arange(1, len(book) + 1)
    out = pd.DataFrame(
        {"account_id": ids, "_tier": assign_tiers(book["value"].to_numpy(), tier_thresholds),
         "_rank": rank}
    )
    history = days_since_taken(con, ids, day, playbook)
    for k in range(len(playbook.actions)):
        out[f"{_HISTORY}{k}"] = np.nan if history is None else history[:, k]
    master = read_master(con)
    found = None
    if master is not None and len(master):
        master = master.drop_duplicates("account_id").astype({"account_id": str})
        found = master.set_index("account_id").reindex(ids)
    for column in RECORD.master_columns:
        values: list[str | None] = [None] * len(ids)
        if found is not None and column in found.columns:
            values = [None if pd.isna(v) else str(v) for v in found[column].tolist()]
        out[f"_master_{column}"] = pd.Series(values, dtype=object)
    return out


def _score(
    batches: Iterator[pd.DataFrame],
    model: LoadedModel,
    kinds: dict[str, str],
    day: pd.Timestamp,
    playbook: Playbook,
    tier_thresholds: tuple[float, float],
    stamp: pd.Timestamp,
    actions: int,
    evidence: Evidence,
    currency: str,
) -> Iterator[pd.DataFrame]:
    for batch in batches:
        if batch.empty:
            continue
        rows = _typed(batch, kinds)
        master = pd.DataFrame(
            {"account_id": rows["account_id"].astype(str)}
            | {c: rows[f"_master_{c}"] for c in RECORD.master_columns}
        )
        history = rows[[f"{_HISTORY}{k}" for k in range(actions)]].to_numpy(dtype=float)
        scores = score_frame(
            rows[["account_id", "as_of", *kinds, *labels.LABELS]],
            model,
            as_of=day,
            playbook=playbook,
            tier_thresholds=tier_thresholds,
            accounts=master,
            history=history,
            scored_at=stamp.to_pydatetime(),
            tiers=rows["_tier"].to_numpy(dtype=object),
            ranks=rows["_rank"].to_numpy(dtype=np.int64),
            evidence=evidence,
            currency=currency,
        )
        yield scores.assign(**{name: scores[name].dt.date for name in _DAYS})
