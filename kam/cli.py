"""The ``kam`` command: one entry point that wires every stage, with no logic of its own."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Annotated, cast

import typer
from pydantic import ValidationError
from rich.table import Table

from kam.commands.decisions import effects, estimate_effects, plan
from kam.commands.scoring import score
from kam.commands.shared import console, fail, invalid, load_settings, progress_bar
from kam.features.errors import DataContractError, EmptyWindowError
from kam.features.periods import Period
from kam.features.settings import StoreSettings
from kam.options import (
    AccountsOpt,
    AccountsOrSettingOpt,
    AsOfListOpt,
    AsOfOpt,
    DataOpt,
    DeclineOpt,
    EveryOpt,
    HorizonOpt,
    ModelUriOpt,
    PopulationOpt,
    RequiredOutOpt,
)

app = typer.Typer(
    help="Defection risk and value prediction for B2B key accounts.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.command()
def simulate(
    data: DataOpt = None,
    accounts: AccountsOpt = 2000,
    years: Annotated[int, typer.Option(min=1, help="years of history")] = 3,
    seed: Annotated[int, typer.Option(help="random seed (same seed, same world)")] = 7,
    end: Annotated[str, typer.Option(help="last day of history (YYYY-MM-DD)")] = "2025-12-31",
    csv: Annotated[bool, typer.Option("--csv", help="write CSV instead of Parquet")] = False,
) -> None:
    """Write a synthetic key-account world in the data contract's format, with its ground truth.

    The tables go into --data, the ground truth into --data/truth.
    """
    from kam.features.synthetic import simulate as run_simulation

    target = load_settings(StoreSettings, data).resolved_data_dir
    with progress_bar() as progress:
        task = progress.add_task(f"simulating {accounts:,} accounts x {years} years", total=None)

        def tick(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        summary = run_simulation(
            accounts,
            years,
            seed,
            target,
            end=date.fromisoformat(end),
            file_format="csv" if csv else "parquet",
            progress=tick,
        )
    table = Table(title=f"synthetic world in {target} ({summary.start} .. {summary.end})")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, rows in summary.rows.items():
        table.add_row(name, f"{rows:,}")
    console.print(table)
    console.print(f"took {summary.seconds:.1f} s")


@app.command()
def ingest(
    data: DataOpt = None,
    mapping: Annotated[
        Path | None, typer.Option(help="YAML file mapping an export's columns onto the contract")
    ] = None,
    allow_shrink: Annotated[
        bool,
        typer.Option(
            "--allow-shrink",
            help="replace the store's tables even when one would be emptied, dropped, or "
            "shrunk by more than KAM_INGEST_MAX_SHRINK",
        ),
    ] = False,
) -> None:
    """Validate the input tables against the data contract and load them into the store.

    Rows dated after today (KAM_NOW) are rejected with their reasons.
    """
    from kam.features.ingest import ingest as run_ingest

    settings = load_settings(StoreSettings, data)
    data_dir = settings.resolved_data_dir
    try:
        report = run_ingest(
            data_dir,
            settings.store_url_for(),
            mapping=mapping,
            progress=lambda msg: console.print(f"[dim]{msg}[/]"),
            today=settings.today,
            max_shrink=settings.ingest_max_shrink,
            force=allow_shrink,
        )
    except (DataContractError, FileNotFoundError) as err:
        fail(str(err))
    except OSError as err:
        fail(f"cannot write the store or the rejects: {err}; both are as the last run left them")
    rows = report.as_rows()
    table = Table(title=f"ingested {data_dir}")
    for column in rows[0]:
        numeric = column not in {"table", "source", "rejected by reason", "mapped to other"}
        table.add_column(column, justify="right" if numeric else "left")
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    console.print(table)
    if report.rejected_total:
        console.print(f"rejected rows with their reasons are in {report.rejects_dir}")


@app.command()
def features(
    out: RequiredOutOpt,
    data: DataOpt = None,
    as_of: AsOfListOpt = None,
    start: Annotated[str | None, typer.Option("--from", help="first as_of of a series")] = None,
    stop: Annotated[str | None, typer.Option("--to", help="last as_of of a series")] = None,
    every: EveryOpt = None,
    horizon: HorizonOpt = None,
    population: PopulationOpt = None,
    decline: DeclineOpt = None,
) -> None:
    """Build point-in-time feature snapshots (and labels where the horizon is observed).

    At each --as-of (repeatable),
    and at a series of as_of from --from to --to, --every apart.
    """
    from kam.features.snapshots import (
        as_of_range,
        build_snapshots,
        data_end,
        data_start,
        write_snapshots,
    )
    from kam.features.store import connect
    from kam.training.settings import TrainSettings
    from kam.training.splits import snapshot_spacing

    if bool(start) != bool(stop):
        fail("--from and --to go together")
    if every and not start:
        fail("--every needs --from and --to")
    settings = load_settings(
        TrainSettings,
        data,
        horizon=horizon,
        activity_window=population,
        decline=decline,
        snapshot_every=every,
    )
    dates = [*(as_of or [])]
    try:
        con = connect(settings.store_url_for(), read_only=True)
        if start and stop:
            step = settings.snapshot_every or snapshot_spacing(data_start(con), data_end(con))
            dates += [d.date().isoformat() for d in as_of_range(start, stop, step)]
        if not dates:
            fail("give at least one --as-of, or --from and --to")
        frame = build_snapshots(
            con,
            dates,
            horizon=settings.horizon,
            activity_window=settings.activity_window,
            decline=settings.decline,
        )
    except (DataContractError, EmptyWindowError, ValueError) as err:
        fail(str(err))
    try:
        write_snapshots(frame, out)
    except OSError as err:
        fail(f"cannot write {out}: {err}")
    labelled = int(frame["label_observed"].sum())
    console.print(
        f"wrote {len(frame):,} snapshots ({frame['account_id'].nunique():,} accounts, "
        f"{len(dates)} as_of dates, {labelled:,} labelled) to {out}"
    )


@app.command()
def train(
    data: DataOpt = None,
    as_of: AsOfOpt = None,
    horizon: HorizonOpt = None,
    decline: DeclineOpt = None,
    population: PopulationOpt = None,
    every: EveryOpt = None,
    register: Annotated[
        bool, typer.Option(help="register the bundle in the model registry")
    ] = True,
    effects: Annotated[
        bool, typer.Option(help="estimate the actions' effects with the new model (kam effects)")
    ] = True,
) -> None:
    """Train the defection and value models, backtest them out-of-time, log and register them.

    The backtest tests at --as-of (default: the latest fully labelled as_of,
    the end of the data less the horizon);
    the registered model is then refitted on the freshest labels.
    """
    from kam.pyfunc import ProductBundle
    from kam.training.evaluate import format_table
    from kam.training.run import train_candidate
    from kam.training.settings import TrainSettings, train_request
    from kam.training.splits import SplitError

    try:
        request = train_request(
            load_settings(TrainSettings),
            data=data,
            test_as_of=as_of,
            register=register,
            horizon=horizon,
            decline=decline,
            activity_window=population,
            snapshot_every=every,
        )
    except ValidationError as err:
        fail(invalid(err))
    except ValueError as err:  # an unreadable --as-of
        fail(f"--as-of: {err}")
    try:
        with console.status("training") as status:

            def progress(message: str) -> None:
                console.log(message)
                status.update(message)

            # the registered pyfunc is the product: it returns the score record
            outcome = train_candidate(replace(request, bundle=ProductBundle), progress=progress)
    except (DataContractError, EmptyWindowError, SplitError) as err:
        fail(str(err))
    ev = outcome.evaluation
    table = Table(
        title=f"{outcome.metadata.evaluation} evidence at as_of {ev.as_of.date()}: "
        f"{ev.n_rows:,} accounts, {ev.n_defections:,} defections"
    )
    shown = format_table(ev)
    for column in ("target", "metric", *shown.columns):
        table.add_column(column, justify="left" if column in {"target", "metric"} else "right")
    for key, row in shown.iterrows():
        target, metric = cast(tuple[str, str], key)  # rows are keyed (target, metric)
        table.add_row(target, metric, *row.tolist())
    console.print(table)
    for warning in ev.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    for note in outcome.fit.notes:
        console.print(f"[dim]{note}[/]")
    console.print(outcome.window_table.to_string(index=False, float_format="{:.4f}".format))
    registered = (
        f"registered {request.model_name} version {outcome.model_version}"
        if outcome.model_version
        else "not registered"
    )
    if outcome.training_plan is not None:
        console.print(outcome.training_plan.describe())
    console.print(f"run {outcome.run_id}: {registered}; took {outcome.seconds:.1f} s")
    if effects and outcome.model_version:
        estimate_effects(
            request.store_url, f"models:/{request.model_name}/{outcome.model_version}",
            request.tracking_uri, run_id=outcome.run_id,
        )


app.command()(effects)
app.command()(plan)


@app.command()
def promote(
    version: Annotated[str | None, typer.Option(help="candidate version; default newest")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="promote whatever the comparison says")
    ] = False,
    new_definition: Annotated[
        bool,
        typer.Option(
            "--new-definition",
            help="promote a version with another horizon, decline, population or feature set "
            "(recorded on the version)",
        ),
    ] = False,
) -> None:
    """Make the newest registered version champion if it beats the current one.

    Both are measured on the candidate's test accounts as its run logged them
    in MLflow, so promotion reads no store.
    """
    from kam.models.errors import ModelNotLoadedError
    from kam.models.settings import RegistrySettings
    from kam.training.promote import promote as run_promote

    settings = load_settings(RegistrySettings)
    try:
        decision = run_promote(
            settings.model_name,
            tracking_uri=settings.resolved_tracking_uri,
            version=version,
            force=force,
            new_definition=new_definition,
        )
    except ModelNotLoadedError as err:
        fail(str(err))
    colour = "green" if decision.promoted else "yellow"
    verdict = "promoted" if decision.promoted else "not promoted"
    console.print(f"[{colour}]{verdict}:[/] {decision.reason}")


app.command()(score)


@app.command()
def serve(
    data: DataOpt = None,
    model_uri: ModelUriOpt = None,
    host: Annotated[str | None, typer.Option(help="address to bind (default 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default 8000)")] = None,
    workers: Annotated[
        int | None, typer.Option(help="worker processes, one core each (default 1)")
    ] = None,
) -> None:
    """Serve the API and the at-risk page for the scores in the store."""
    from kam.serving.api.auth import KeyFileError
    from kam.serving.api.server import UnsafeBindError, run
    from kam.serving.settings import ServeSettings

    settings = load_settings(
        ServeSettings, data, model_uri=model_uri, host=host, port=port, workers=workers
    )
    base = f"http://{settings.host}:{settings.port}"
    key = ' -H "X-API-Key: $KEY"' if settings.api_keys or settings.api_keys_file else ""
    console.print(f"serving {settings.resolved_model_uri} on {base}")
    console.print(f"  at-risk page:  {base}/")
    console.print(f"  API docs:      {base}/docs")
    console.print(f"  try:           curl -s{key} '{base}/v1/at-risk?tier=A&limit=5'")
    try:
        run(settings)
    except (UnsafeBindError, KeyFileError) as err:
        fail(str(err))


@app.command()
def demo(
    data: DataOpt = None,
    accounts: AccountsOrSettingOpt = None,
    serve_after: Annotated[
        bool, typer.Option("--serve/--no-serve", help="end by serving the API and page")
    ] = True,
) -> None:
    """Run the whole product on a synthetic world: simulate ... train, score, plan, serve."""
    from kam.settings import DemoSettings

    settings = load_settings(DemoSettings, data)
    data_dir = settings.resolved_data_dir
    console.rule("1. simulate")
    simulate(
        data=data_dir,
        accounts=accounts or settings.demo_accounts,
        years=settings.demo_years,
        seed=settings.seed,
    )
    console.rule("2. ingest")
    # a new world replaces the last one, whatever its size
    ingest(data=data_dir, allow_shrink=True)
    console.rule("3. features")
    from kam.features.snapshots import data_end
    from kam.features.store import connect

    con = connect(settings.store_url_for(), read_only=True)
    end = data_end(con)
    con.disconnect()
    latest = (end - settings.horizon.offset()).normalize()
    first = (latest - Period.parse("11mo").offset()).normalize()
    features(
        out=data_dir / "snapshots.parquet",
        data=data_dir,
        every="1mo",
        start=first.date().isoformat(),
        stop=latest.date().isoformat(),
    )
    console.rule("4. train")
    train(data=data_dir)
    console.rule("5. promote")
    promote()
    console.rule("6. score")
    score(data=data_dir)
    console.rule("7. plan")
    plan(capacity=settings.demo_capacity, data=data_dir)
    if serve_after:
        console.rule("8. serve (Ctrl-C stops)")
        serve(data=data_dir)


if __name__ == "__main__":
    app()
