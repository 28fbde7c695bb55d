"""``kam score``: every account's risk, value, drivers and actions, locally or on Spark."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from kam.commands.shared import console, fail, load_settings
from kam.features.errors import DataContractError, EmptyWindowError
from kam.options import AsOfOpt, DataOpt, ModelUriOpt, OutOpt


def score(
    out: OutOpt = None,
    data: DataOpt = None,
    as_of: AsOfOpt = None,
    model_uri: ModelUriOpt = None,
) -> None:
    """Score every account with the champion: risk, value, drivers and actions, into the store.

    At --as-of (default: the end of the data; neither may be after today, KAM_NOW),
    into a file with --out, then into the store's scores table.
    """
    from kam.features.store import connect
    from kam.models.errors import ModelNotLoadedError
    from kam.models.registry import load_model
    from kam.serving.decisions.playbook import PlaybookError, load_playbook
    from kam.serving.scoring.batch import export_scores, score_accounts
    from kam.serving.settings import ServeSettings
    from kam.serving.snapshot import SnapshotError
    from kam.serving.store import write_scores

    settings = load_settings(ServeSettings, data, model_uri=model_uri)
    uri = settings.resolved_model_uri
    if as_of is not None:
        try:
            as_of = date.fromisoformat(as_of).isoformat()
        except ValueError as err:
            fail(f"--as-of: {err}")
    try:
        model = load_model(uri, settings.resolved_tracking_uri)
        playbook = load_playbook(settings.playbook_path)
        con = connect(settings.store_url_for())
    except (ModelNotLoadedError, PlaybookError, DataContractError) as err:
        fail(str(err))
    try:
        if settings.engine == "spark":
            _score_on_spark(con, model, playbook, settings, as_of, out)
            return
        notes: list[str] = []
        with console.status(f"scoring with {uri}"):
            frame = score_accounts(
                con,
                model,
                as_of=as_of,
                playbook=playbook,
                tier_thresholds=settings.tier_thresholds,
                today=settings.today,
                currency=settings.currency,
                notes=notes,
            )
        if out is not None:
            # The file first: when it cannot be written, the store keeps its earlier scores.
            try:
                export_scores(frame, out)
            except OSError as err:
                fail(f"cannot write {out}: {err}; the store's scores are unchanged")
        written = write_scores(con, frame)
    except (DataContractError, EmptyWindowError, SnapshotError) as err:
        fail(str(err))
    finally:
        con.disconnect()
    top = frame.head(5)[["account_id", "tier", "defection_probability", "value_at_risk"]]
    console.print(top.to_string(index=False, float_format="{:,.2f}".format))
    console.print(
        f"scored {len(frame):,} accounts at {frame['as_of'].iloc[0].date()} with {uri} "
        f"(playbook {playbook.version}); {written:,} rows in the store's scores table"
        + (f"; written to {out}" if out else "")
    )
    for note in notes:
        console.print(f"[yellow]note:[/] {note}")


def _score_on_spark(
    con: Any, model: Any, playbook: Any, settings: Any, as_of: str | None, out: Path | None
) -> None:
    """Score on the Spark engine: records written as Parquet by the executors (no store table)."""
    from kam.serving.scoring.spark import score_on_spark

    folder = out if out is not None else settings.resolved_data_dir / "scores"
    with console.status(f"scoring on Spark ({settings.spark_master})"):
        done = score_on_spark(
            con, model, folder, as_of=as_of, playbook=playbook,
            tier_thresholds=settings.tier_thresholds, currency=settings.currency,
        )
    console.print(
        f"scored {done.accounts:,} accounts at {done.as_of.date()} on Spark; written to {done.path}"
    )
