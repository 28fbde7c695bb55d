"""The store's decision tables: the actions' effects (``kam effects``) and the plan (``kam plan``).

Each table is replaced whole when written, and the serving snapshot is rewritten with it; the
service reads both from the snapshot (:func:`kam.serving.snapshot.open_for_serving`).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from kam.features.store import connect
from kam.serving.snapshot import open_for_serving
from kam.serving.store import EFFECTS_TABLE, PLAN_TABLE, none_if_missing, refresh_snapshot


def _replace(con_or_url: Any, table: str, frame: pd.DataFrame) -> int:
    con = connect(con_or_url) if isinstance(con_or_url, str) else con_or_url
    con.create_table(table, frame.reset_index(drop=True), overwrite=True)
    refresh_snapshot(con)
    return len(frame)


def _read(con_or_url: Any, table: str) -> pd.DataFrame | None:
    """The table, None when the store has none. Given a URL, what the service reads is read:
    the serving snapshot, else the store."""
    con = open_for_serving(con_or_url)[0] if isinstance(con_or_url, str) else con_or_url
    try:
        return con.execute(con.table(table)) if table in con.list_tables() else None
    finally:
        if isinstance(con_or_url, str):
            con.disconnect()


def write_effects(con_or_url: Any, frame: pd.DataFrame) -> int:
    """Replace the store's action effects (:func:`kam.serving.scoring.effects.estimate_effects`);
    returns the rows written."""
    return _replace(con_or_url, EFFECTS_TABLE, frame)


def read_effects(con_or_url: Any) -> list[dict[str, Any]] | None:
    """The store's action effects as records; None when ``kam effects`` has not run."""
    frame = _read(con_or_url, EFFECTS_TABLE)
    if frame is None:
        return None
    return [{str(k): none_if_missing(v) for k, v in r.items()} for r in frame.to_dict("records")]


def write_plan(con_or_url: Any, frame: pd.DataFrame) -> int:
    """Replace the store's plan (:func:`kam.serving.scoring.planning.make_plan`'s rows)."""
    return _replace(con_or_url, PLAN_TABLE, frame)


def read_plan(con_or_url: Any) -> pd.DataFrame | None:
    """The store's latest plan; None when ``kam plan`` has not run."""
    return _read(con_or_url, PLAN_TABLE)
