"""kam from Python: one project object for notebooks and scripts.

:func:`open_project` finds the working directory (``KAM_WORKDIR``) and reads the settings once;
the :class:`Project` it returns builds snapshots, trains, compares, promotes, scores and
explains, each step returning a DataFrame or a typed result. It calls the same functions as the
``kam`` command line, with the same settings, and registers the same product bundle
(:class:`kam.pyfunc.ProductBundle`).

Paths do not depend on the current directory: a relative working directory (the default
``.kam``) is looked for in the current folder and the folders above it, so a notebook in
``notebooks/`` finds the project's ``.kam``; an absolute ``KAM_WORKDIR`` is taken as it is.

Examples
--------
>>> import kam
>>> project = kam.open_project(workdir)
>>> int(project.tables().loc["orders", "rows"]) > 0
True
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from kam.features.contract import EVENT_DATE
from kam.features.errors import DataContractError
from kam.features.snapshots import build_snapshots, data_end
from kam.features.store import connect, input_tables
from kam.models.registry import LoadedModel, alias_uri, load_model
from kam.models.support import ExtrapolationWarning
from kam.pyfunc import ProductBundle, score_rows
from kam.serving.decisions.playbook import load_playbook
from kam.serving.record import ActionRecommendation, Driver
from kam.serving.scoring.batch import score_accounts
from kam.serving.settings import ServeSettings
from kam.serving.store import write_scores
from kam.training.evaluate import format_table
from kam.training.promote import Comparison, Decision, compare, promote
from kam.training.run import TrainOutcome, train_candidate
from kam.training.settings import TrainSettings, train_request

WORKDIR_SETTING = "KAM_WORKDIR"
S = TypeVar("S", TrainSettings, ServeSettings)


class ProjectNotFoundError(FileNotFoundError):
    """No kam working directory where the settings point; the message names the setting."""


@dataclass
class Candidate:
    """A trained (and usually registered) candidate: its evidence as DataFrames."""

    version: str | None
    run_id: str
    metrics: pd.DataFrame  # the table `kam train` prints: model, 90% CI, baseline, BG/NBD
    windows: pd.DataFrame  # the validation windows the choices were made on
    warnings: list[str]
    notes: list[str]
    outcome: TrainOutcome = field(repr=False)
    tracking_uri: str = field(repr=False, default="")

    def plots(self, folder: Path | str | None = None) -> dict[str, Path]:
        """The run's plots (calibration, gains, importance, ...), downloaded: name -> file."""
        mlflow.set_tracking_uri(self.tracking_uri)
        local = mlflow.artifacts.download_artifacts(
            run_id=self.run_id, artifact_path="plots",
            dst_path=None if folder is None else str(folder),
        )
        return {p.stem: p for p in sorted(Path(local).glob("*.png"))}


@dataclass
class Explanation:
    """One account's score at one as_of: the record, its drivers and actions, its features."""

    account_id: str
    as_of: pd.Timestamp
    record: pd.Series  # the score record: probability, value and interval, tier, rank, ...
    drivers: pd.DataFrame  # what pushes the risk up, strongest first
    actions: pd.DataFrame  # recommended retention actions, first one first
    features: pd.Series  # the account's feature row at as_of

    def summary(self) -> str:
        """Two lines in words, for a notebook's output."""
        r = self.record
        return (
            f"{self.account_id} at {self.as_of.date()}: defection {r['defection_probability']:.1%},"
            f" value {r['value']:,.0f} ({r['value_low']:,.0f}..{r['value_high']:,.0f}), tier "
            f"{r['tier']}, rank {r['rank']}\n"
            f"top driver: {r['top_driver'] or '-'}; first action: {r['first_action'] or '-'}"
        )


def _find_workdir(workdir: Path) -> Path:
    """``workdir`` itself when absolute, else the first folder up from here that holds it."""
    workdir = workdir.expanduser()
    if workdir.is_absolute():
        candidates = [workdir]
    else:
        here = Path.cwd().resolve()
        candidates = [folder / workdir for folder in (here, *here.parents)]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate.resolve()
    where = (
        str(workdir) if workdir.is_absolute()
        else f"{workdir} in {Path.cwd().resolve()} or any folder above it"
    )
    raise ProjectNotFoundError(
        f"no kam working directory: {where}. Set {WORKDIR_SETTING} to the absolute path of the "
        "working directory `kam demo` wrote (the folder holding data/ and mlflow.db), or pass "
        "open_project(workdir=...)"
    )


def open_project(workdir: Path | str | None = None, **settings: Any) -> Project:
    """Open the project whose working directory is ``workdir`` (default: the ``KAM_WORKDIR``
    setting, ``.kam``, looked for here and in the folders above).

    Parameters
    ----------
    workdir
        The working directory (holding ``data/kam.duckdb`` and ``mlflow.db`` by default).
    **settings
        Other settings for this project, e.g. ``model_name="kam-eu"`` or ``horizon="26w"``;
        the ``KAM_*`` variables and the config file give the rest.

    Raises
    ------
    ProjectNotFoundError
        When the working directory is not found, naming ``KAM_WORKDIR``.

    Examples
    --------
    >>> project = open_project(workdir)
    >>> project.workdir == Path(workdir).resolve()
    True
    """
    known = set(TrainSettings.model_fields) | set(ServeSettings.model_fields)
    unknown = sorted(set(settings) - known)
    if unknown:
        raise TypeError(f"no setting {', '.join(unknown)}")

    def of(kind: type[S]) -> S:
        return kind().override(**{k: v for k, v in settings.items() if k in kind.model_fields})

    base = of(TrainSettings)
    found = _find_workdir(Path(workdir) if workdir is not None else base.workdir)
    data_dir = base.data_dir
    if data_dir is not None and not data_dir.expanduser().is_absolute():
        data_dir = found.parent / data_dir  # beside the working directory, like the workdir
    where = {"workdir": found, "data_dir": data_dir}
    return Project(base.model_copy(update=where), of(ServeSettings).model_copy(update=where))


@dataclass(frozen=True)
class Project:
    """A working directory's store, tracking store and registered model, with its settings.

    Get one with :func:`open_project`.
    """

    settings: TrainSettings
    serve_settings: ServeSettings

    @property
    def workdir(self) -> Path:
        return self.settings.workdir

    @property
    def store_url(self) -> str:
        return self.settings.store_url_for()

    @property
    def tracking_uri(self) -> str:
        return self.settings.resolved_tracking_uri

    @property
    def model_name(self) -> str:
        return self.settings.model_name

    def _connect(self, *, read_only: bool = True) -> Any:
        try:
            return connect(self.store_url, read_only=read_only)
        except DataContractError as err:
            raise DataContractError(
                f"{err} (the store follows the settings {WORKDIR_SETTING}, KAM_DATA_DIR or "
                "KAM_STORE_URL)"
            ) from err

    # -- data --------------------------------------------------------------------------------
    def tables(self) -> pd.DataFrame:
        """The store's input tables: rows, first and last event date.

        Examples
        --------
        >>> sorted(project.tables().columns)
        ['first', 'last', 'rows']
        """
        con = self._connect()
        try:
            rows = []
            for name in sorted(input_tables(con)):
                table = con.table(name)
                column = EVENT_DATE.get(name)
                bounds = (
                    table.aggregate(first=table[column].min(), last=table[column].max()).execute()
                    if column else pd.DataFrame({"first": [pd.NaT], "last": [pd.NaT]})
                )
                rows.append({"table": name, "rows": int(table.count().execute()),
                             "first": bounds["first"].iloc[0], "last": bounds["last"].iloc[0]})
        finally:
            con.disconnect()
        return pd.DataFrame(rows).set_index("table")

    def data_end(self) -> pd.Timestamp:
        """The last event date in the store (the default scoring date)."""
        con = self._connect()
        try:
            return data_end(con)
        finally:
            con.disconnect()

    def snapshots(
        self,
        as_of: Any | Sequence[Any],
        *,
        horizon: str | None = None,
        population: str | None = None,
        decline: float | None = None,
    ) -> pd.DataFrame:
        """Point-in-time feature rows (and labels where the horizon is observed) at ``as_of``.

        Horizon, population (``activity_window``) and decline default to the settings.

        Examples
        --------
        >>> frame = project.snapshots(project.data_end())
        >>> frame["as_of"].nunique(), "recency_days" in frame.columns
        (1, True)
        """
        chosen = self.settings.override(
            horizon=horizon, activity_window=population, decline=decline
        )
        dates = [as_of] if isinstance(as_of, str) or not isinstance(as_of, Sequence) else as_of
        con = self._connect()
        try:
            return build_snapshots(
                con, [pd.Timestamp(d).normalize() for d in dates], horizon=chosen.horizon,
                activity_window=chosen.activity_window, decline=chosen.decline,
            )
        finally:
            con.disconnect()

    # -- models ------------------------------------------------------------------------------
    def train(
        self,
        *,
        features: Sequence[str] | None = None,
        test_as_of: Any = None,
        register: bool = True,
        progress: Callable[[str], None] | None = None,
        **settings: Any,
    ) -> Candidate:
        """Train, backtest, log and register a candidate, as ``kam train`` does.

        Parameters
        ----------
        features
            Restrict the models to these features (all available when None).
        test_as_of
            The backtest's test as_of; the latest fully labelled one when None.
        register
            Register the bundle (the product, :class:`kam.pyfunc.ProductBundle`).
        progress
            Called with a short message as each stage starts (e.g. ``print``).
        **settings
            Training settings for this run: ``horizon``, ``activity_window``, ``decline``,
            ``snapshot_every``.

        Examples
        --------
        >>> candidate = project.train(features=["recency_days", "tenure_days"], register=False)
        >>> candidate.version is None, list(candidate.metrics.columns[:2])
        (True, ['model', '90% CI'])
        """
        request = train_request(
            self.settings, test_as_of=test_as_of, register=register, features=features,
            **settings,
        )
        outcome = train_candidate(replace(request, bundle=ProductBundle), progress=progress)
        return Candidate(
            version=outcome.model_version,
            run_id=outcome.run_id,
            metrics=format_table(outcome.evaluation),
            windows=outcome.window_table,
            warnings=list(outcome.evaluation.warnings),
            notes=list(outcome.fit.notes),
            outcome=outcome,
            tracking_uri=request.tracking_uri,
        )

    def versions(self) -> pd.DataFrame:
        """Registered versions, newest first: aliases, what each predicts (its tags), run.

        Examples
        --------
        >>> "aliases" in project.versions().columns
        True
        """
        client = MlflowClient(self.tracking_uri, self.tracking_uri)
        found = client.search_model_versions(f"name = '{self.model_name}'")
        rows = [
            {"version": int(v.version), "aliases": ",".join(v.aliases), "run_id": v.run_id,
             "description": v.description, **v.tags}
            for v in found
        ]
        frame = pd.DataFrame(rows, columns=["version", "aliases", "run_id", "description"])
        if rows:
            frame = pd.DataFrame(rows)
        return frame.sort_values("version", ascending=False).set_index("version")

    def compare(self, version: str | int | None = None) -> Comparison:
        """A version (default: the newest) against the champion on the same accounts.

        ``verdict`` says what was found (first, same, better, worse, no better, incomparable,
        new definition), ``summary`` why, ``candidate`` and ``champion`` the figures.

        Examples
        --------
        >>> project.compare().verdict in {"first", "same", "better", "worse", "no better",
        ...                               "incomparable", "new definition"}
        True
        """
        return compare(
            self.model_name, tracking_uri=self.tracking_uri,
            version=None if version is None else str(version),
        )

    def promote(
        self,
        version: str | int | None = None,
        *,
        force: bool = False,
        new_definition: bool = False,
        dry_run: bool = False,
    ) -> Decision:
        """Make a version (default: the newest) champion if it is at least as good, as
        ``kam promote`` does; with ``dry_run``, only say what would be decided.

        Examples
        --------
        >>> decision = project.promote(dry_run=True)
        >>> decision.reason != ""
        True
        """
        return promote(
            self.model_name, tracking_uri=self.tracking_uri,
            version=None if version is None else str(version),
            force=force, new_definition=new_definition, dry_run=dry_run,
        )

    def model(self, uri: str | None = None) -> LoadedModel:
        """The scoring bundle at ``uri`` (default: the ``KAM_MODEL_URI`` setting, else the
        champion)."""
        chosen = uri or self.serve_settings.model_uri or alias_uri(
            self.model_name, self.serve_settings.model_alias
        )
        return load_model(chosen, self.tracking_uri)

    # -- scores ------------------------------------------------------------------------------
    def score(
        self, as_of: Any = None, *, model_uri: str | None = None, write: bool = False
    ) -> pd.DataFrame:
        """Score every account at ``as_of`` (default: the end of the data), as ``kam score``
        does: one score record per account, ranked by value at risk.

        With ``write``, the rows also go into the store's ``scores`` table (the page's and
        the API's source), replacing that as_of's. When many accounts lie beyond every
        training row on some features (older, longer silent, another time of year), an
        :class:`~kam.models.support.ExtrapolationWarning` names them.

        Examples
        --------
        >>> scores = project.score()
        >>> int(scores["rank"].iloc[0]), {"drivers", "actions", "tier"} <= set(scores.columns)
        (1, True)
        """
        model = self.model(model_uri)
        playbook = load_playbook(self.serve_settings.playbook_path)
        con = self._connect(read_only=not write)
        try:
            notes: list[str] = []
            frame = score_accounts(
                con, model, as_of=as_of, playbook=playbook,
                tier_thresholds=self.serve_settings.tier_thresholds, notes=notes,
            )
            for note in notes:
                warnings.warn(note, ExtrapolationWarning, stacklevel=2)
            if write:
                write_scores(con, frame)
        finally:
            con.disconnect()
        return frame

    def score_rows(self, rows: pd.DataFrame, *, model_uri: str | None = None) -> pd.DataFrame:
        """Score feature rows you hold (any feature may be missing), as the registered pyfunc
        does: one score record per row, in the rows' order.

        Examples
        --------
        >>> out = project.score_rows(pd.DataFrame({"recency_days": [30.0, None]}))
        >>> len(out), bool(out["defection_probability"].between(0, 1).all())
        (2, True)
        """
        model = self.model(model_uri)
        return score_rows(
            model, rows, tier_cutoffs=_logged_cutoffs(model),
            playbook=load_playbook(self.serve_settings.playbook_path),
        )

    def explain(
        self, account_id: str, *, as_of: Any = None, model_uri: str | None = None
    ) -> Explanation:
        """Why an account scores as it does at ``as_of`` (default: the end of the data).

        The account is scored with the whole book (its tier and rank depend on it).

        Raises
        ------
        KeyError
            When the account is not in the population at that as_of.

        Examples
        --------
        >>> top = project.score()["account_id"].iloc[0]
        >>> card = project.explain(top)
        >>> int(card.record["rank"]), list(card.drivers.columns)
        (1, ['family', 'cause', 'feature', 'contribution', 'phrase', 'phrase_zh'])
        """
        scores = self.score(as_of, model_uri=model_uri)
        found = scores[scores["account_id"] == str(account_id)]
        if found.empty:
            at = scores["as_of"].iloc[0].date() if len(scores) else as_of
            raise KeyError(
                f"account {account_id!r} is not in the population scored at {at} "
                f"({len(scores):,} accounts)"
            )
        record = found.iloc[0]
        day = pd.Timestamp(record["as_of"])
        features = self.snapshots(day)
        row = features[features["account_id"].astype(str) == str(account_id)].iloc[0]
        return Explanation(
            account_id=str(account_id),
            as_of=day,
            record=record,
            drivers=_items(record["drivers"], Driver),
            actions=_items(record["actions"], ActionRecommendation),
            features=row,
        )


def _items(text: str, item: Any) -> pd.DataFrame:
    frame = pd.read_json(io.StringIO(text or "[]"), orient="records", dtype=False)
    return frame.reindex(columns=list(item.model_fields))


def _logged_cutoffs(model: LoadedModel) -> tuple[float, float] | None:
    """The tier cut-offs logged with the bundle (None for bundles logged without them)."""
    try:
        flavor = mlflow.models.get_model_info(model.uri).flavors.get("python_function", {})
    except (MlflowException, OSError):  # not an MLflow URI: no logged settings
        return None
    cut = flavor.get("config", {}).get("tier_cutoffs")
    return None if cut is None else (float(cut[0]), float(cut[1]))
