"""Batch scoring: risk, value, value at risk, tier, stage, drivers and actions.

``score_accounts`` scores every active account of the store at an as_of (features from the
same point-in-time snapshot code as training) and returns one row per account with exactly the
columns of the store's ``scores`` table (the fields of :data:`kam.serving.record.RECORD`);
:func:`kam.serving.store.write_scores` keeps one set of rows per as_of in that table, so earlier
scores stay for the account's history; ``export_scores`` writes a file. Posted feature rows
are scored without the store by :mod:`kam.serving.scoring.online` (numpy only, no pandas).
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pandas.api.types import is_object_dtype, is_string_dtype

from kam.features.atomic import atomic_path
from kam.features.catalog import CATALOG
from kam.features.errors import DataContractError
from kam.features.periods import Period, parse_window
from kam.features.snapshots import build_snapshots, data_end
from kam.models.metadata import TrainingMetadata
from kam.models.registry import LoadedModel
from kam.models.support import describe
from kam.serving.decision_tables import read_effects
from kam.serving.decisions.drivers import compute_drivers
from kam.serving.decisions.evidence import Evidence, evidence_for
from kam.serving.decisions.phrasebook import Phrasebook, load_phrasebook
from kam.serving.decisions.playbook import Playbook, load_playbook
from kam.serving.decisions.recommend import (
    DEFAULT_MAX_ACTIONS,
    days_since_taken,
    recommend,
)
from kam.serving.decisions.stages import (
    DEFAULT_TIER_THRESHOLDS,
    assign_tiers,
    relationship_stage,
)
from kam.serving.record import DEFAULT_CURRENCY, RECORD, formula_safe
from kam.serving.scoring.record_json import actions_json, drivers_json
from kam.serving.store import read_master

STAKE_FEATURE = "revenue_365d"
_NUMERIC = [f.name for f in CATALOG if f.kind != "category"]


def label_settings(
    metadata: TrainingMetadata,
    *,
    horizon: Period | str | None = None,
    activity_window: Period | str | None = None,
    decline: float | None = None,
) -> tuple[Period, Period | None, float]:
    """Horizon, activity window and decline: the arguments given, else the model's training.

    Scoring must build features for the population the model was trained on; an
    ``activity_window`` of ``"ever"`` takes every account that has ever ordered.
    """
    return (
        metadata.horizon if horizon is None else Period.parse(horizon),
        metadata.activity_window if activity_window is None else parse_window(activity_window),
        metadata.decline if decline is None else float(decline),
    )


def score_accounts(
    con: Any,
    model: LoadedModel,
    *,
    as_of: Any = None,
    playbook: Playbook | None = None,
    phrasebook: Phrasebook | None = None,
    tier_thresholds: tuple[float, float] = DEFAULT_TIER_THRESHOLDS,
    horizon: Period | str | None = None,
    activity_window: Period | str | None = None,
    decline: float | None = None,
    scored_at: datetime | None = None,
    max_actions: int = DEFAULT_MAX_ACTIONS,
    driver_limit: int | None = None,
    timings: dict[str, float] | None = None,
    today: date | None = None,
    currency: str = DEFAULT_CURRENCY,
    evidence: Evidence | None = None,
    notes: list[str] | None = None,
) -> pd.DataFrame:
    """Score every active account of the store at ``as_of``.

    Parameters
    ----------
    con
        Ibis connection to the store.
    model
        The loaded scoring bundle.
    as_of
        Scoring date; the end of the data when None.
    playbook
        Retention playbook; the shipped default when None.
    phrasebook
        Phrase catalog; the shipped default when None.
    tier_thresholds
        Cumulative shares of predicted value closing tiers A and B.
    horizon, activity_window, decline
        Snapshot settings; taken from the model's training (``model.metadata``) when None.
    scored_at
        Time stamp recorded on the rows (now, UTC, when None).
    max_actions
        Recommended actions kept per account.
    driver_limit
        Compute drivers for at most this many accounts, those with the highest value at risk
        (all when None); see :func:`score_frame`.
    timings
        When given, receives the seconds spent on ``features`` (the point-in-time snapshot and
        the actions history) and on ``scoring`` (model, drivers and actions).
    today
        When given, an ``as_of`` after it, or a store whose data ends after it, is refused:
        such scores would rest on events that have not happened (a mistyped date in an
        export).
    currency
        The currency of the data's money, recorded on every score.
    evidence
        The actions' effect evidence; read from the store's effects (``kam effects``) when
        None, every action untested when the store has none.
    notes
        When given, receives a sentence naming the features on which many accounts lie beyond
        every training row (:mod:`kam.models.support`), if any do.

    Returns
    -------
    pandas.DataFrame
        One row per active account, the record's columns (:attr:`RECORD.names
        <kam.serving.record.ScoreRecord.names>`), sorted by rank (1 = highest value at risk).

    Raises
    ------
    DataContractError
        When ``as_of``, or the end of the data, lies after ``today``.
    ValueError
        When ``as_of`` is not a date.
    """
    period, window, cut = label_settings(
        model.metadata, horizon=horizon, activity_window=activity_window, decline=decline
    )
    began = time.perf_counter()
    day = data_end(con) if as_of is None else pd.Timestamp(as_of).normalize()
    if today is not None and day > pd.Timestamp(today):
        if as_of is not None:
            raise DataContractError(
                f"as_of {day.date()} is after today ({today}): scores cannot rest on events "
                "that have not happened"
            )
        raise DataContractError(
            f"the store's data ends {day.date()}, after today ({today}): an export holds "
            "future dates; ingest it again (rows dated after today are rejected now), or "
            "give an as_of"
        )
    snapshot = build_snapshots(con, [day], horizon=period, activity_window=window, decline=cut)
    playbook = playbook or load_playbook()
    history = days_since_taken(con, snapshot["account_id"].to_numpy(), day, playbook)
    accounts = read_master(con)
    if evidence is None:
        evidence = evidence_for(playbook, read_effects(con))
    built = time.perf_counter()
    scores = score_frame(
        snapshot,
        model,
        as_of=day,
        playbook=playbook,
        phrasebook=phrasebook,
        tier_thresholds=tier_thresholds,
        accounts=accounts,
        history=history,
        scored_at=scored_at,
        max_actions=max_actions,
        driver_limit=driver_limit,
        currency=currency,
        evidence=evidence,
        notes=notes,
    )
    if timings is not None:
        timings["features"] = built - began
        timings["scoring"] = time.perf_counter() - built
    return scores


def score_frame(
    snapshot: pd.DataFrame,
    model: LoadedModel,
    *,
    as_of: Any,
    playbook: Playbook | None = None,
    phrasebook: Phrasebook | None = None,
    tier_thresholds: tuple[float, float] = DEFAULT_TIER_THRESHOLDS,
    accounts: pd.DataFrame | None = None,
    history: np.ndarray | None = None,
    scored_at: datetime | None = None,
    max_actions: int = DEFAULT_MAX_ACTIONS,
    driver_limit: int | None = None,
    tiers: np.ndarray | None = None,
    ranks: np.ndarray | None = None,
    currency: str = DEFAULT_CURRENCY,
    evidence: Evidence | None = None,
    notes: list[str] | None = None,
) -> pd.DataFrame:
    """Score accounts whose features are already built (one snapshot row per account).

    Parameters
    ----------
    snapshot
        Feature rows with ``account_id`` and the model's features (e.g. from
        :func:`kam.features.snapshots.build_snapshots` at one as_of).
    model
        The loaded scoring bundle.
    as_of
        The snapshot's date.
    playbook, phrasebook
        Defaults shipped with the package when None.
    tier_thresholds
        Cumulative shares of predicted value closing tiers A and B.
    accounts
        Account master (account_id, name, industry, region, account_manager), if any.
    history
        (accounts x playbook actions) days since each action was taken
        (:func:`kam.serving.decisions.recommend.days_since_taken`), for the cool-downs.
    scored_at
        Time stamp recorded on the rows.
    max_actions
        Recommended actions kept per account.
    driver_limit
        Compute drivers for at most this many accounts: those with the highest value at risk.
        Exact SHAP contributions cost about a millisecond per account on deep trees, most of a
        large batch's time; the accounts beyond the limit keep their scores, tier, stage and
        rank, get no drivers, and only the actions that need none (such as the tier C nurture
        programme); their drivers can be computed on demand
        (:func:`~kam.serving.scoring.online.score_features`). All accounts when None.
    tiers, ranks
        Each row's tier and rank when ``snapshot`` is one part of a larger book (they depend
        on every account's value: see :mod:`kam.serving.scoring.spark`); computed from these
        rows when None.
    currency
        The currency of the data's money, recorded on every score.
    evidence
        The actions' effect evidence (:func:`kam.serving.decisions.evidence.evidence_for`),
        for the expected savings; every action untested when None.
    notes
        When given, receives a sentence naming the features on which many of these accounts
        lie beyond every training row (:mod:`kam.models.support`), if any do.

    Returns
    -------
    pandas.DataFrame
        The record's columns, sorted by rank.
    """
    playbook = playbook or load_playbook()
    phrasebook = phrasebook or load_phrasebook()
    scorer = model.scorer
    snapshot = snapshot.reset_index(drop=True)
    n = len(snapshot)
    x = scorer.spec.matrix(snapshot)
    if notes is not None and (beyond := scorer.beyond_training(x)):
        notes.append(describe(beyond, n))
    limit = n if driver_limit is None else driver_limit
    every = limit >= n
    contributions = scorer.contributions(x) if every else None
    predictions = scorer.predict_matrix(
        x, defection_log_odds=None if contributions is None else contributions.sum(axis=1)
    )
    values = {
        name: snapshot[name].to_numpy(dtype=float, na_value=np.nan)
        for name in _NUMERIC
        if name in snapshot.columns
    }
    for j, name in enumerate(scorer.spec.names):
        if name not in scorer.spec.categories:
            values.setdefault(name, x[:, j])
    value = predictions["value"]
    probability = predictions["defection_probability"]
    stake = np.clip(np.nan_to_num(values.get(STAKE_FEATURE, np.zeros(n)), nan=0.0), 0.0, None)
    at_risk = probability * stake
    ids = snapshot["account_id"].astype(str).to_numpy(dtype=object)
    # rank order: value at risk, then account id
    order = np.lexsort((ids, -at_risk)) if ranks is None else np.argsort(ranks, kind="stable")
    if tiers is None:
        tiers = assign_tiers(value, tier_thresholds)
    if contributions is None:
        # all-zero contributions give no drivers: those accounts get driver-free actions only
        contributions = np.zeros((n, len(scorer.spec.names) + 1))
        chosen = order[: max(limit, 0)]
        if len(chosen):
            contributions[chosen] = scorer.contributions(x[chosen])
    drivers = compute_drivers(contributions, scorer.spec, values, phrasebook)
    actions = recommend(
        playbook,
        drivers,
        values,
        tiers,
        as_of,
        phrasebook,
        days_since_taken=history,
        max_actions=max_actions,
        evidence=evidence,
        probability=probability,
        stake=stake,
    )

    if ranks is None:
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(1, n + 1)
    else:
        rank = np.asarray(ranks, dtype=np.int64)
    top_phrase, top_cause = drivers.top()
    top_phrase_zh = drivers.top_zh()
    first_title, first_owner, first_due = actions.first()
    stamp = pd.Timestamp(scored_at) if scored_at is not None else pd.Timestamp(datetime.now(UTC))
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    master = _master_columns(ids, accounts, snapshot)
    frame = pd.DataFrame(
        {
            "account_id": ids,
            "as_of": pd.Series(pd.Timestamp(as_of).normalize(), index=range(n)),
            **master,
            "defection_probability": probability,
            "value": value,
            "value_low": predictions["value_low"],
            "value_high": predictions["value_high"],
            "value_at_stake": stake,
            "value_at_risk": at_risk,
            "tier": tiers,
            "relationship_stage": relationship_stage(values, n),
            "rank": rank,
            "top_driver": top_phrase,
            "top_driver_cause": top_cause,
            "top_driver_zh": top_phrase_zh,
            "drivers": drivers_json(drivers),
            "first_action": first_title,
            "first_action_owner": first_owner,
            "first_action_due": pd.to_datetime(first_due),
            "first_action_zh": actions.first_zh(),
            "actions": actions_json(actions),
            "model_name": model.name or model.metadata.model_name,
            "model_version": model.version,
            "playbook_version": playbook.version,
            "scored_at": stamp,
            "horizon": str(model.metadata.horizon),
            "currency": currency,
            # Python's round, as the actions' JSON rounds
            "first_action_saving": [
                round(v, 2) if np.isfinite(v) else np.nan for v in actions.saving[:, 0].tolist()
            ],
        }
    )
    return frame.iloc[order].reset_index(drop=True)[list(RECORD.names)]


def _master_columns(
    ids: np.ndarray, accounts: pd.DataFrame | None, snapshot: pd.DataFrame
) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    if accounts is not None and len(accounts):
        master = accounts.drop_duplicates("account_id").set_index(
            accounts.drop_duplicates("account_id")["account_id"].astype(str)
        )
        at = master.index.get_indexer(pd.Index(ids))
    else:
        master, at = None, np.full(len(ids), -1)
    for column in RECORD.master_columns:
        values = np.full(len(ids), None, dtype=object)
        if master is not None and column in master.columns:
            source = master[column].astype(object).to_numpy()
            found = at >= 0
            values[found] = source[at[found]]
        if column in snapshot.columns:  # industry and region also come with the features
            missing = pd.isna(values)
            values[missing] = snapshot[column].astype(object).to_numpy()[missing]
        values[pd.isna(values)] = None
        out[column] = values
    return out


def export_scores(frame: pd.DataFrame, path: Path | str) -> Path:
    """Write scores to ``path``: CSV when it ends in ``.csv``, else Parquet.

    Drivers and actions are JSON strings in both formats, as in the scores table. In CSV,
    dates are written as days and times to the microsecond, as the API writes them, and text
    a spreadsheet would run as a formula (an account named ``=HYPERLINK(...)``) gets a leading
    quote, as in the page's export. The file is written whole or not at all: a full disk or a
    failed write leaves whatever ``path`` held before.

    Returns
    -------
    pathlib.Path
        The file written.

    Raises
    ------
    OSError
        When the file cannot be written; ``path`` is left as it was.
    """
    path = Path(path)
    with atomic_path(path) as temporary:
        if path.suffix.lower() == ".csv":
            texts = {
                f.name: pd.to_datetime(frame[f.name]).dt.strftime(f.kind.text)
                for f in RECORD
                if f.kind.text is not None and f.name in frame.columns
            }
            safe = {
                name: frame[name].map(_formula_safe_cell)
                for name in frame.columns
                if name not in texts
                and (is_object_dtype(frame[name].dtype) or is_string_dtype(frame[name].dtype))
            }
            frame.assign(**texts, **safe).to_csv(temporary, index=False)
        else:
            frame.to_parquet(temporary, index=False)
    return path


def _formula_safe_cell(value: Any) -> Any:
    return formula_safe(value) if isinstance(value, str) else value
