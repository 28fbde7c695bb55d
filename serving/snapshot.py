"""The serving snapshot: the copy of a DuckDB store the service reads, replaced atomically.

The service never reads a DuckDB store that a batch run may be writing: DuckDB lets one process
write a file and nobody else even read it meanwhile, so ``kam score`` or ``kam ingest`` while
managers browse made pages fail. Each :func:`kam.serving.store.write_scores` into a DuckDB
store also writes a **serving snapshot** beside it (``<store>.serving.duckdb``: the scores
table and the input tables an account page reads), into a temporary file renamed over the
previous one once it is complete. The service reads only the snapshot, read-only: a rename is
atomic, so a reader sees the old snapshot or the new one, never a part, and never waits for a
writer. Scores and pages then show the data as of the last ``kam score`` (an account page's
activity ends at its score's as_of in any case). A store without a snapshot (written by an
earlier release, or another Ibis backend) is read directly, retried for a while when a writer
holds it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kam.features.store import connect

SNAPSHOT_SUFFIX = ".serving.duckdb"
# Reading a store without a snapshot while a writer holds it: tries, and seconds between them.
LOCKED_TRIES = 5
LOCKED_WAIT = 0.2


class SnapshotError(RuntimeError):
    """The scores were stored but the serving snapshot could not be written."""


def snapshot_path(store_url: str) -> Path | None:
    """The serving snapshot of a DuckDB store (``duckdb:///dir/kam.duckdb`` gives
    ``dir/kam.serving.duckdb``); None for any other store."""
    if not store_url.startswith("duckdb:///"):
        return None
    return snapshot_of(Path(store_url.removeprefix("duckdb:///")))


def _publish(partial: Path, target: Path) -> None:
    """Put a complete file in place under its final name, atomically."""
    os.replace(partial, target)


def snapshot_of(store: Path) -> Path:
    """The snapshot file beside a DuckDB store file."""
    return store.with_name(store.stem + SNAPSHOT_SUFFIX)


def write_snapshot(raw: Any, target: Path, tables: Sequence[str]) -> Path:
    """Write the serving snapshot of the DuckDB store ``raw`` is connected to.

    Those of ``tables`` the store has are copied into a temporary file beside ``target``,
    which then replaces ``target`` in one rename.

    Raises
    ------
    SnapshotError
        When it cannot be written (a full disk, no permission); the partial file is removed
        and the previous snapshot, if any, is kept.
    """
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    partial.unlink(missing_ok=True)
    present = {r[0] for r in raw.execute("SELECT table_name FROM duckdb_tables() "
                                        "WHERE database_name = current_database()").fetchall()}
    copied = [t for t in tables if t in present]
    try:
        quoted = str(partial).replace("'", "''")  # ATTACH takes no parameters
        raw.execute(f"ATTACH '{quoted}' AS kam_snapshot")
        try:
            for table in copied:
                raw.execute(f"CREATE TABLE kam_snapshot.{table} AS SELECT * FROM {table}")
        finally:
            raw.execute("DETACH kam_snapshot")
        _publish(partial, target)
    except Exception as err:  # duckdb.IOException, OSError: the reason is what matters
        partial.unlink(missing_ok=True)
        partial.with_name(partial.name + ".wal").unlink(missing_ok=True)
        raise SnapshotError(
            f"the scores are in the store, but the service's snapshot {target} could not be "
            f"written ({err}); the service keeps the previous scores until `kam score` "
            "succeeds"
        ) from err
    return target


def database_file(raw: Any) -> Path | None:
    """The file of the database a DuckDB connection is in (None in memory)."""
    found = raw.execute(
        "SELECT path FROM duckdb_databases() WHERE database_name = current_database()"
    ).fetchone()
    return Path(found[0]) if found and found[0] else None


def open_for_serving(store_url: str) -> tuple[Any, str]:
    """A read-only connection to what the service reads, and that file's URL: the serving
    snapshot when there is one, else the store itself (retried while a writer holds it).

    Raises
    ------
    Exception
        The backend's own error when neither can be opened.
    """
    snapshot = snapshot_path(store_url)
    if snapshot is not None and snapshot.is_file():
        url = f"duckdb:///{snapshot}"
        return connect(url, read_only=True), url
    for attempt in range(LOCKED_TRIES):
        try:
            return connect(store_url, read_only=True), store_url
        except Exception as err:
            if "lock" not in str(err).lower() or attempt == LOCKED_TRIES - 1:
                raise
            time.sleep(LOCKED_WAIT)
    raise AssertionError("unreachable")  # pragma: no cover
