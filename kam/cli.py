"""The ``kam`` command: one entry point that wires every stage, with no logic of its own."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar, cast

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

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
    OutOpt,
    PopulationOpt,
    RequiredOutOpt,
)

app = typer.Typer(
    help="Defection risk and value prediction for B2B key accounts.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)

S = TypeVar("S", bound=StoreSettings)


def _fail(message: str) -> NoReturn:
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code=2)


def _invalid(err: ValidationError) -> str:
    """A settings error in one line per field: which setting, and what is wrong with it."""
    return "; ".join(
        f"setting {'.'.join(str(p) for p in e['loc']) or '?'}: "
        f"{str(e['msg']).removeprefix('Value error, ')}"
        for e in err.errors()
    )


def _load(kind: type[S], data: Path | None = None, **options: Any) -> S:
    """The command's settings: ``kind``'s sources, then ``--data`` and the other options."""
    try:
        return kind().override(**options).for_data(data)
    except ValidationError as err:
        _fail(_invalid(err))


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

    target = _load(StoreSettings, data).resolved_data_dir
    with _progress() as progress:
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

    settings = _load(StoreSettings, data)
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
        _fail(str(err))
    except OSError as err:
        _fail(f"cannot write the store or the rejects: {err}; both are as the last run left them")
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
        _fail("--from and --to go together")
    if every and not start:
        _fail("--every needs --from and --to")
    settings = _load(
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
            _fail("give at least one --as-of, or --from and --to")
        frame = build_snapshots(
            con,
            dates,
            horizon=settings.horizon,
            activity_window=settings.activity_window,
            decline=settings.decline,
        )
    except (DataContractError, EmptyWindowError, ValueError) as err:
        _fail(str(err))
    try:
        write_snapshots(frame, out)
    except OSError as err:
        _fail(f"cannot write {out}: {err}")
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
            _load(TrainSettings),
            data=data,
            test_as_of=as_of,
            register=register,
            horizon=horizon,
            decline=decline,
            activity_window=population,
            snapshot_every=every,
        )
    except ValidationError as err:
        _fail(_invalid(err))
    except ValueError as err:  # an unreadable --as-of
        _fail(f"--as-of: {err}")
    try:
        with console.status("training") as status:

            def progress(message: str) -> None:
                console.log(message)
                status.update(message)

            # the registered pyfunc is the product: it returns the score record
            outcome = train_candidate(replace(request, bundle=ProductBundle), progress=progress)
    except (DataContractError, EmptyWindowError, SplitError) as err:
        _fail(str(err))
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
        _estimate_effects(
            request.store_url, f"models:/{request.model_name}/{outcome.model_version}",
            request.tracking_uri, run_id=outcome.run_id,
        )


def _estimate_effects(store_url: str, model_uri: str, tracking_uri: str,
                      run_id: str | None = None) -> None:
    """Estimate the actions' effects with a model, store them, log them with its run."""
    from kam.features.store import connect
    from kam.models.registry import load_model
    from kam.serving.decisions.playbook import load_playbook
    from kam.serving.scoring.batch import label_settings
    from kam.serving.scoring.effects import EffectsError, estimate_effects, log_effects
    from kam.serving.settings import ServeSettings
    from kam.serving.snapshot import SnapshotError
    from kam.serving.store import write_effects

    con = connect(store_url)
    model = load_model(model_uri, tracking_uri)
    horizon, window, decline = label_settings(model.metadata)
    try:
        with console.status("estimating the actions' effects from their history"):
            found = estimate_effects(
                con, model.scorer, horizon=horizon, activity_window=window, decline=decline,
                playbook=load_playbook(_load(ServeSettings).playbook_path),
            )
    except EffectsError as err:
        console.print(f"[yellow]no action effects:[/] {err}")
        con.disconnect()
        return
    try:
        write_effects(con, found)
    except SnapshotError as err:
        _fail(str(err))
    finally:
        con.disconnect()
    if run_id is not None:
        log_effects(found, run_id, tracking_uri)
    for line in found["summary"]:
        console.print(f"  {line}")
    console.print(f"{int(found['supported'].sum())} of {len(found)} actions have a supported "
                  "effect; stored in the store's action_effects table")


@app.command()
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

    settings = _load(ServeSettings, data, model_uri=model_uri)
    try:
        _estimate_effects(settings.store_url_for(), settings.resolved_model_uri,
                          settings.resolved_tracking_uri)
    except (ModelNotLoadedError, PlaybookError, DataContractError, EmptyWindowError) as err:
        _fail(str(err))


@app.command()
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

    From the latest scores' actions with a supported saving; at most one action
    per account per owner; written to the store's plan table (GET /v1/plan, the
    page's plan view) and, with --out, to a file.
    """
    from kam.features.store import connect
    from kam.serving.decisions.plan import CapacityError, parse_capacity
    from kam.serving.decisions.playbook import PlaybookError, load_playbook
    from kam.serving.scoring.planning import make_plan
    from kam.serving.settings import ServeSettings
    from kam.serving.snapshot import SnapshotError
    from kam.serving.store import read_scores, write_plan

    settings = _load(ServeSettings, data)
    try:
        playbook = load_playbook(settings.playbook_path)
        capacities = parse_capacity(capacity, playbook)
    except (PlaybookError, CapacityError) as err:
        _fail(f"--capacity: {err}" if isinstance(err, CapacityError) else str(err))
    con = connect(settings.store_url_for())
    scores = read_scores(con)
    if scores.empty:
        con.disconnect()
        _fail("no scores in the store: run kam score first")
    made = make_plan(scores, playbook, capacities)
    try:
        write_plan(con, made.rows)
    except SnapshotError as err:
        _fail(str(err))
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
    result = made.result
    proof = "proven optimal" if result.gap <= 1e-6 else f"within {result.gap:.2%} of the optimum"
    console.print(
        f"{len(made.rows):,} actions from {made.candidates:,} candidates with a supported "
        f"saving; total expected saving {result.total:,.0f} ({proof}, {result.seconds:.1f} s)"
        + (f"; written to {out}" if out else "")
    )


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

    settings = _load(RegistrySettings)
    try:
        decision = run_promote(
            settings.model_name,
            tracking_uri=settings.resolved_tracking_uri,
            version=version,
            force=force,
            new_definition=new_definition,
        )
    except ModelNotLoadedError as err:
        _fail(str(err))
    colour = "green" if decision.promoted else "yellow"
    verdict = "promoted" if decision.promoted else "not promoted"
    console.print(f"[{colour}]{verdict}:[/] {decision.reason}")


@app.command()
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

    settings = _load(ServeSettings, data, model_uri=model_uri)
    uri = settings.resolved_model_uri
    if as_of is not None:
        try:
            as_of = date.fromisoformat(as_of).isoformat()
        except ValueError as err:
            _fail(f"--as-of: {err}")
    try:
        model = load_model(uri, settings.resolved_tracking_uri)
        playbook = load_playbook(settings.playbook_path)
        con = connect(settings.store_url_for())
    except (ModelNotLoadedError, PlaybookError, DataContractError) as err:
        _fail(str(err))
    try:
        if settings.engine == "spark":
            _score_on_spark(con, model, playbook, settings, as_of, out)
            return
        with console.status(f"scoring with {uri}"):
            frame = score_accounts(
                con,
                model,
                as_of=as_of,
                playbook=playbook,
                tier_thresholds=settings.tier_thresholds,
                today=settings.today,
                currency=settings.currency,
            )
        if out is not None:
            # The file first: when it cannot be written, the store keeps its earlier scores.
            try:
                export_scores(frame, out)
            except OSError as err:
                _fail(f"cannot write {out}: {err}; the store's scores are unchanged")
        written = write_scores(con, frame)
    except (DataContractError, EmptyWindowError, SnapshotError) as err:
        _fail(str(err))
    finally:
        con.disconnect()
    top = frame.head(5)[["account_id", "tier", "defection_probability", "value_at_risk"]]
    console.print(top.to_string(index=False, float_format="{:,.2f}".format))
    console.print(
        f"scored {len(frame):,} accounts at {frame['as_of'].iloc[0].date()} with {uri} "
        f"(playbook {playbook.version}); {written:,} rows in the store's scores table"
        + (f"; written to {out}" if out else "")
    )


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

    settings = _load(
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
        _fail(str(err))


@app.command()
def demo(
    data: DataOpt = None,
    accounts: AccountsOrSettingOpt = None,
    serve_after: Annotated[
        bool, typer.Option("--serve/--no-serve", help="end by serving the API and page")
    ] = True,
) -> None:
    """Run the whole product on a synthetic world: simulate ... train, promote, score, serve."""
    from kam.settings import DemoSettings

    settings = _load(DemoSettings, data)
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
    if serve_after:
        console.rule("7. serve (Ctrl-C stops)")
        serve(data=data_dir)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


if __name__ == "__main__":
    app()
