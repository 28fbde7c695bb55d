"""``kam effects`` and ``kam plan``: what the actions history shows, and what to do with it."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from kam.commands.shared import console, fail, load_settings
from kam.features.errors import DataContractError, EmptyWindowError
from kam.options import DataOpt, ModelUriOpt, OutOpt


def estimate_effects(store_url: str, model_uri: str, tracking_uri: str,
                      run_id: str | None = None) -> None:
    """Estimate the actions' effects with a model, store them, log them with its run."""
    from kam.features.store import connect
    from kam.models.registry import load_model
    from kam.serving.decision_tables import write_effects
    from kam.serving.decisions.playbook import load_playbook
    from kam.serving.scoring.batch import label_settings
    from kam.serving.scoring.effects import EffectsError, estimate_effects, log_effects
    from kam.serving.settings import ServeSettings
    from kam.serving.snapshot import SnapshotError

    con = connect(store_url)
    model = load_model(model_uri, tracking_uri)
    horizon, window, decline = label_settings(model.metadata)
    try:
        with console.status("estimating the actions' effects from their history"):
            found = estimate_effects(
                con, model.scorer, horizon=horizon, activity_window=window, decline=decline,
                playbook=load_playbook(load_settings(ServeSettings).playbook_path),
            )
    except EffectsError as err:
        console.print(f"[yellow]no action effects:[/] {err}")
        con.disconnect()
        return
    try:
        write_effects(con, found)
    except SnapshotError as err:
        fail(str(err))
    finally:
        con.disconnect()
    if run_id is not None:
        log_effects(found, run_id, tracking_uri)
    for line in found["summary"]:
        console.print(f"  {line}")
    console.print(f"{int(found['supported'].sum())} of {len(found)} actions have a supported "
                  "effect; stored in the store's action_effects table")


def effects(
    data: DataOpt = None,
    model_uri: ModelUriOpt = None,
) -> None:
    """Estimate each action's effect on defection and value from the actions history.

    Treated and comparable untreated accounts are compared at monthly as_of dates
    (doubly robust, overlap checked); the effects go into the store, and scoring
    ranks actions by the saving they support.
    """
    from kam.models.errors import ModelNotLoadedError
    from kam.serving.decisions.playbook import PlaybookError
    from kam.serving.settings import ServeSettings

    settings = load_settings(ServeSettings, data, model_uri=model_uri)
    try:
        estimate_effects(settings.store_url_for(), settings.resolved_model_uri,
                          settings.resolved_tracking_uri)
    except (ModelNotLoadedError, PlaybookError, DataContractError, EmptyWindowError) as err:
        fail(str(err))


def plan(
    capacity: Annotated[
        str,
        typer.Option(help="each owner's capacity for the period, in the playbook's units, "
                     "e.g. AR=120h,SR=60h,FR=40h,executive=10"),
    ],
    data: DataOpt = None,
    out: OutOpt = None,
) -> None:
    """Choose the accounts and actions that save the most within each owner's capacity.

    From the latest scores' actions with an expected saving: those the actions
    history supports first, then unproven ones (an estimate in their favour, an
    interval including zero) on the capacity left; at most one action per account
    per owner; written to the store's plan table (GET /v1/plan, the
    page's plan view) and, with --out, to a file.
    """
    from kam.features.store import connect
    from kam.serving.decision_tables import write_plan
    from kam.serving.decisions.plan import CapacityError, parse_capacity
    from kam.serving.decisions.playbook import PlaybookError, load_playbook
    from kam.serving.scoring.planning import make_plan, unproven_rows
    from kam.serving.settings import ServeSettings
    from kam.serving.snapshot import SnapshotError
    from kam.serving.store import read_scores

    settings = load_settings(ServeSettings, data)
    try:
        playbook = load_playbook(settings.playbook_path)
        capacities = parse_capacity(capacity, playbook)
    except (PlaybookError, CapacityError) as err:
        fail(f"--capacity: {err}" if isinstance(err, CapacityError) else str(err))
    con = connect(settings.store_url_for())
    scores = read_scores(con)
    if scores.empty:
        con.disconnect()
        fail("no scores in the store: run kam score first")
    made = make_plan(scores, playbook, capacities)
    try:
        write_plan(con, made.rows)
    except SnapshotError as err:
        fail(str(err))
    finally:
        con.disconnect()
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix.lower() == ".csv":
            made.rows.to_csv(out, index=False)
        else:
            made.rows.to_parquet(out, index=False)
    table = Table(title=f"plan at as_of {scores['as_of'].iloc[0]:%Y-%m-%d}")
    for column in ("owner", "capacity", "used", "actions", "expected saving"):
        table.add_column(column, justify="left" if column == "owner" else "right")
    for row in made.owners(playbook).itertuples():
        table.add_row(str(row.owner), f"{row.capacity:g} {row.unit}", f"{row.used:g} {row.unit}",
                      str(row.actions), f"{row.expected_saving:,.0f}")
    console.print(table)
    if made.candidates == 0:
        console.print("[yellow]no action has a supported or unproven saving:[/] the actions "
                      "history neither backs nor favours any action's effect yet (see kam "
                      "effects), so the plan is empty")
    result = made.result
    proof = "proven optimal" if result.gap <= 1e-6 else f"within {result.gap:.2%} of the optimum"
    unproven = int(unproven_rows(made.rows).sum())
    console.print(
        f"{len(made.rows):,} actions ({len(made.rows) - unproven:,} supported, {unproven:,} "
        f"unproven) from {made.candidates:,} candidates with a saving; total expected saving "
        f"{result.total:,.0f} ({proof}, {result.seconds:.1f} s)"
        + (f"; written to {out}" if out else "")
    )
