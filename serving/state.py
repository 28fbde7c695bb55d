"""What the service answers from: the model, the latest scores and the playbook.

Everything is loaded into one immutable :class:`ServingState`; a reload builds a new one beside
the old and the app swaps a single reference, so a request in flight finishes on the state it
started with and never sees a model from one load with scores from another.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from kam.models.errors import ModelNotLoadedError
from kam.models.registry import LoadedModel, TrackingStoreMissingError, load_model
from kam.serving.decision_tables import read_effects
from kam.serving.decisions.evidence import Evidence, evidence_for
from kam.serving.decisions.playbook import Playbook, load_playbook
from kam.serving.decisions.stages import tier_cutoffs
from kam.serving.record import RECORD
from kam.serving.settings import ServeSettings
from kam.serving.store import ScoresNotLoadedError, read_latest_scores

logger = logging.getLogger(__name__)

MODEL = "model"
SCORES = "scores"
BODY_COLUMNS = RECORD.body_columns
# A body is the record's parts in order (:attr:`kam.serving.record.ScoreRecord.body_parts`):
# each run of scalar fields encoded by DuckDB's ``to_json`` (its braces dropped by the query),
# each list, stored as JSON text, checked and spliced in as it is. Splicing in Python is three
# times faster than having DuckDB join the texts.
_RUNS_SQL = (
    "SELECT "
    + ", ".join(
        f"CAST({part.sql} AS VARCHAR)[2:-2] AS run{k}"
        for k, part in enumerate(p for p in RECORD.body_parts if p.sql is not None)
    )
    + " FROM frame ORDER BY _position"
)
_BODY = (
    "{"
    + ",".join("%s" if p.sql is not None else f'"{p.list_field}":%s' for p in RECORD.body_parts)
    + "}"
)


def _texts(frame: pd.DataFrame, column: str) -> list[str | None]:
    """A text column as Python strings, missing values (or a missing column) as None."""
    if column not in frame.columns:
        return [None] * len(frame)
    missing = frame[column].isna().to_numpy()
    return [None if m else str(v) for v, m in zip(frame[column].tolist(), missing, strict=True)]


def _json_list(value: str | None, account_id: str, column: str) -> str:
    """Stored drivers or actions (JSON text), checked to be a list; an empty list when missing."""
    if value is None or not value.strip():
        return "[]"
    text = value.strip()
    if not (text.startswith("[") and text.endswith("]")):
        raise ScoresNotLoadedError(
            f"the scores of account {account_id!r} hold {column} that are not a JSON list: "
            "run `kam score` again"
        )
    return text


def account_json(frame: pd.DataFrame) -> list[bytes]:
    """Each row of a scores frame as the JSON body of an ``AccountScore``, in frame order.

    The scalar fields are encoded by an in-memory DuckDB query over the frame (whatever store
    it came from), as the record says (:attr:`kam.serving.record.ScoreRecord.body_parts`);
    drivers and actions, stored as JSON text already, are spliced in as they are. Several times
    faster than encoding row by row in Python: 100,000 bodies in about a second.

    Raises
    ------
    ScoresNotLoadedError
        When a column is missing, or drivers / actions are not JSON lists.
    """
    missing = [c for c in BODY_COLUMNS if c not in frame.columns]
    if missing:
        raise ScoresNotLoadedError(f"the scores table lacks columns {missing}: run `kam score`")
    rows = frame[list(BODY_COLUMNS)].reset_index(drop=True)
    rows["_position"] = np.arange(len(rows))
    con = duckdb.connect()
    try:
        # an Arrow table scans several times faster than pandas string columns
        con.register("frame", pa.Table.from_pandas(rows, preserve_index=False))
        runs = iter(con.execute(_RUNS_SQL).fetchnumpy().values())
    except duckdb.Error as err:
        raise ScoresNotLoadedError(f"cannot read the stored scores: {err}") from err
    finally:
        con.close()
    ids = rows["account_id"].astype(str).tolist()
    parts: list[list[object]] = []
    for part in RECORD.body_parts:
        if part.list_field is None:
            parts.append(next(runs).tolist())
            continue
        texts = _texts(rows, part.list_field)
        parts.append([
            _json_list(text, account_id, part.list_field)
            for text, account_id in zip(texts, ids, strict=True)
        ])
    return [(_BODY % body).encode() for body in zip(*parts, strict=True)]


def _utc(moment: Any) -> datetime:
    """A stored moment as an aware UTC datetime (the store keeps UTC without its zone)."""
    stamp = pd.Timestamp(moment)
    aware = stamp.tz_localize(UTC) if stamp.tzinfo is None else stamp.tz_convert(UTC)
    return aware.to_pydatetime()


@dataclass(frozen=True)
class ScoreTable:
    """The latest score of every account, in at-risk order, with ready-made JSON bodies.

    Parameters
    ----------
    frame
        One row per account (its latest as_of), sorted by value at risk, largest first; the
        index is the account id.
    bodies
        The ``AccountScore`` JSON of each row, aligned with ``frame``.
    """

    frame: pd.DataFrame
    bodies: list[bytes]
    position: Mapping[str, int] = field(repr=False)
    tier: np.ndarray = field(repr=False)
    region: np.ndarray = field(repr=False)
    account_manager: np.ndarray = field(repr=False)
    value_at_risk: np.ndarray = field(repr=False)
    as_of: date | None = None
    scored_at: datetime | None = None
    model_version: str | None = None
    playbook_version: str | None = None
    tier_cutoffs: tuple[float, float] | None = None

    @classmethod
    def from_frame(cls, scores: pd.DataFrame) -> ScoreTable:
        """Keep each account's latest row and prepare lookups, filters and bodies."""
        if scores.empty:
            raise ScoresNotLoadedError("the scores table is empty: run `kam score`")
        frame = scores.copy()
        frame["account_id"] = frame["account_id"].astype(str)
        frame = frame.sort_values(["account_id", "as_of", "scored_at"]).drop_duplicates(
            "account_id", keep="last"
        )
        risk = pd.to_numeric(frame["value_at_risk"], errors="coerce").fillna(-np.inf)
        order = np.lexsort((frame["account_id"].to_numpy(), -risk.to_numpy()))
        frame = frame.iloc[order].set_index("account_id", drop=False)
        frame.index.name = None
        ids = frame["account_id"].tolist()
        latest = frame.loc[frame["as_of"] == frame["as_of"].max()]
        cutoffs = None
        if latest["tier"].notna().any():
            cutoffs = tier_cutoffs(
                latest["value"].to_numpy(dtype=float), latest["tier"].to_numpy(dtype=object)
            )

        def folded(column: str) -> np.ndarray:
            return np.array([v.casefold() if v else None for v in _texts(frame, column)], object)

        newest = frame["scored_at"].max() if "scored_at" in frame.columns else None
        versions = latest["model_version"].dropna().astype(str).unique().tolist()
        playbooks = latest["playbook_version"].dropna().astype(str).unique().tolist()
        return cls(
            frame=frame,
            bodies=account_json(frame),
            position={account_id: i for i, account_id in enumerate(ids)},
            tier=frame["tier"].astype(object).to_numpy(),
            region=folded("region"),
            account_manager=folded("account_manager"),
            value_at_risk=pd.to_numeric(frame["value_at_risk"], errors="coerce").to_numpy(),
            as_of=pd.Timestamp(frame["as_of"].max()).date(),
            scored_at=None if newest is None or pd.isna(newest) else _utc(newest),
            model_version=", ".join(versions) or None,
            playbook_version=", ".join(playbooks) or None,
            tier_cutoffs=cutoffs,
        )

    def __len__(self) -> int:
        return len(self.bodies)

    def body(self, account_id: str) -> bytes | None:
        """The JSON of one account's latest score, or None for an unknown account."""
        at = self.position.get(account_id)
        return None if at is None else self.bodies[at]

    def select(
        self,
        *,
        tiers: Sequence[str] | None = None,
        region: str | None = None,
        account_manager: str | None = None,
        min_value_at_risk: float | None = None,
    ) -> np.ndarray:
        """Positions (in at-risk order) of the accounts matching every filter given.

        Region and account manager match whole values, ignoring case.
        """
        keep = np.ones(len(self), dtype=bool)
        if tiers:
            keep &= np.isin(self.tier, list(tiers))
        if region is not None:
            keep &= self.region == region.casefold()
        if account_manager is not None:
            keep &= self.account_manager == account_manager.casefold()
        if min_value_at_risk is not None:
            keep &= self.value_at_risk >= min_value_at_risk
        return np.flatnonzero(keep)

    def json_list(self, positions: Sequence[int] | np.ndarray) -> bytes:
        """A JSON array of the bodies at ``positions``."""
        return b"[" + b", ".join(self.bodies[i] for i in positions) + b"]"


@dataclass(frozen=True)
class ServingState:
    """One consistent set of what the routes answer from.

    Parameters
    ----------
    model
        The loaded scoring bundle, or None when none could be loaded.
    scores
        The latest scores, or None when none could be read.
    playbook
        The retention playbook applied to posted feature rows.
    evidence
        The actions' measured effects (``kam effects``) for posted rows' savings; None: untested.
    missing
        For each component that could not be loaded (``model``, ``scores``), why.

    Attributes
    ----------
    derived
        What routes build from these scores and keep, by key (the web list's prepared book).
    """

    model: LoadedModel | None
    scores: ScoreTable | None
    playbook: Playbook
    missing: Mapping[str, str]
    model_uri: str
    loaded_at: datetime
    seconds: float = 0.0
    evidence: Evidence | None = None
    # Held here rather than in a module, it goes with this state at a reload and is never
    # shared between apps; not an init field, so ``dataclasses.replace`` starts it empty.
    derived: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def ready(self) -> bool:
        return self.model is not None and self.scores is not None


def load_state(settings: ServeSettings) -> ServingState:
    """Load the model, the latest scores and the playbook named by ``settings``.

    A model or scores that cannot be loaded are recorded in ``missing`` rather than raised, so
    that the service can start and say what is missing.

    Raises
    ------
    serving.playbook.PlaybookError
        When the playbook is malformed: a bad edit must be fixed, not served.
    """
    started = time.perf_counter()
    playbook = load_playbook(settings.playbook_path)
    missing: dict[str, str] = {}
    uri = settings.resolved_model_uri
    model: LoadedModel | None = None
    try:
        model = load_model(uri, settings.resolved_tracking_uri)
    except TrackingStoreMissingError as err:
        missing[MODEL] = str(err)
        logger.warning("no model loaded: %s", err)
    except ModelNotLoadedError as err:
        missing[MODEL] = f"{err}; run `kam train` and `kam promote`"
        logger.warning("no model loaded: %s", missing[MODEL])
    except Exception as err:  # a bundle this code cannot unpack: say so rather than crash
        missing[MODEL] = (
            f"cannot load model {uri}: {type(err).__name__}: {err}; retrain it with this "
            "release (`kam train`, `kam promote`)"
        )
        logger.exception("no model loaded")
    scores: ScoreTable | None = None
    try:
        scores = ScoreTable.from_frame(read_latest_scores(settings.store_url_for()))
    except ScoresNotLoadedError as err:
        missing[SCORES] = str(err)
        logger.warning("no scores loaded: %s", err)
    if model is not None and scores is not None and scores.model_version != model.version:
        logger.warning(
            "the scores were made by model version %s but version %s is loaded: "
            "run `kam score` to rescore with it",
            scores.model_version,
            model.version,
        )
    try:
        evidence = evidence_for(playbook, read_effects(settings.store_url_for()))
    except Exception as err:  # no store, a writer holding it: posted rows go untested
        logger.warning("no action effects loaded: %s", err)
        evidence = None
    return ServingState(
        evidence=evidence,
        model=model,
        scores=scores,
        playbook=playbook,
        missing=missing,
        model_uri=uri,
        loaded_at=datetime.now(UTC),
        seconds=time.perf_counter() - started,
    )
