"""Promotion: move the ``champion`` alias to a candidate only when it is at least as good.

Candidate and champion are compared on the same accounts: the candidate's test snapshot, which
its run logged, scored by both bundles. The agreed metrics are defection PR-AUC and value
normalized Gini; the candidate must be no worse on both and better on at least one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from kam.models.errors import ModelNotLoadedError
from kam.models.registry import CHAMPION, LoadedModel, load_model
from kam.models.scorer import Scorer
from kam.training.metrics import defection_metrics, normalized_gini
from kam.training.run import BACKTEST_SCORER, TEST_SNAPSHOT

AGREED = ("defection_pr_auc", "value_gini")

Verdict = Literal[
    "first", "same", "better", "worse", "no better", "incomparable", "new definition"
]
DEFINITION_TAG = "definition_change"


@dataclass
class Comparison:
    """Candidate and champion measured on the candidate's test accounts."""

    candidate_version: str
    champion_version: str | None
    verdict: Verdict
    summary: str
    candidate: dict[str, float] = field(default_factory=dict)
    champion: dict[str, float] = field(default_factory=dict)


@dataclass
class Decision:
    """The outcome of a promotion attempt and why."""

    promoted: bool
    candidate_version: str
    champion_version: str | None
    reason: str
    candidate: dict[str, float] = field(default_factory=dict)
    champion: dict[str, float] = field(default_factory=dict)


def _evidence_scorer(client: MlflowClient, model_name: str, version: str) -> Scorer:
    """The version's backtest scorer where its run kept one, else the registered bundle.

    A deployed bundle is refitted on the freshest labels, the candidate's test as_of among
    them, so it is compared through the backtest model its run logged beside it.
    """
    run_id = client.get_model_version(model_name, version).run_id
    names = (
        {Path(a.path).name for a in client.list_artifacts(run_id, BACKTEST_SCORER)}
        if run_id is not None
        else set()
    )
    if names:
        folder = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=BACKTEST_SCORER)
        return Scorer.load_dir(Path(folder))
    return load_model(f"models:/{model_name}/{version}").scorer


def definition_differences(champion: LoadedModel, candidate: LoadedModel) -> list[str]:
    """What the two bundles predict differently: label horizon, decline, population, features.

    Probabilities of different events (or over different populations, or from different
    feature rows) cannot be compared on either one's labels as if they were the same.
    """
    old, new = champion.metadata, candidate.metadata
    found = []
    if old.horizon != new.horizon:
        found.append(f"horizon {new.horizon} vs the champion's {old.horizon}")
    if old.decline != new.decline:
        found.append(f"decline threshold {new.decline:g} vs the champion's {old.decline:g}")
    if old.activity_window != new.activity_window:
        found.append(f"population {new.population!r} vs the champion's {old.population!r}")
    old_spec, new_spec = champion.scorer.spec, candidate.scorer.spec
    added = sorted(set(new_spec.names) - set(old_spec.names))
    dropped = sorted(set(old_spec.names) - set(new_spec.names))
    if added or dropped:
        found.append(
            "features"
            + (f" added {', '.join(added)}" if added else "")
            + (";" if added and dropped else "")
            + (f" dropped {', '.join(dropped)}" if dropped else "")
        )
    recoded = sorted(
        name
        for name in set(old_spec.categories) & set(new_spec.categories)
        if old_spec.categories[name] != new_spec.categories[name]
    )
    if recoded:
        found.append(f"categories of {', '.join(recoded)}")
    return found


def _agreed_metrics(scorer: Scorer, frame: pd.DataFrame) -> dict[str, float]:
    scores = scorer.predict_frame(frame)
    y = frame["label_defection"].to_numpy(dtype=int)
    value = np.clip(frame["label_value"].to_numpy(dtype=float), 0, None)
    return {
        "defection_pr_auc": defection_metrics(
            y, scores["defection_probability"].to_numpy(), is_probability=True
        )["pr_auc"],
        "value_gini": normalized_gini(value, scores["value"].to_numpy()),
    }


def _client(tracking_uri: str) -> MlflowClient:
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    return MlflowClient()


def compare(model_name: str, *, tracking_uri: str, version: str | None = None) -> Comparison:
    """Measure ``version`` (default: the newest) and the champion on the same accounts.

    Raises
    ------
    ModelNotLoadedError
        When nothing is registered under ``model_name``.
    """
    client = _client(tracking_uri)
    try:
        versions = client.search_model_versions(f"name = '{model_name}'")
    except MlflowException as err:
        raise ModelNotLoadedError(f"cannot read the registry at {tracking_uri}: {err}") from err
    if not versions:
        raise ModelNotLoadedError(
            f"no versions registered under {model_name!r} at {tracking_uri}: run `kam train`"
        )
    version = str(version or max(int(v.version) for v in versions))
    candidate = client.get_model_version(model_name, version)
    try:
        champion: str | None = str(client.get_model_version_by_alias(model_name, CHAMPION).version)
    except MlflowException:
        champion = None
    if champion is None:
        return Comparison(version, None, "first", f"{model_name!r} has no champion yet")
    if champion == version:
        return Comparison(version, champion, "same", f"version {version} is already champion")
    differences = definition_differences(
        load_model(f"models:/{model_name}/{champion}"),
        load_model(f"models:/{model_name}/{version}"),
    )
    if differences:
        return Comparison(
            version,
            champion,
            "new definition",
            f"version {version} predicts something other than champion {champion}: "
            + "; ".join(differences),
        )

    path = mlflow.artifacts.download_artifacts(run_id=candidate.run_id, artifact_path=TEST_SNAPSHOT)
    frame = pd.read_parquet(path)
    cand = _agreed_metrics(_evidence_scorer(client, model_name, version), frame)
    try:
        champ = _agreed_metrics(_evidence_scorer(client, model_name, champion), frame)
    except (KeyError, ValueError) as err:
        return Comparison(
            version,
            champion,
            "incomparable",
            f"the champion (version {champion}) cannot score the candidate's test snapshot ({err})",
            cand,
        )
    as_of = pd.Timestamp(frame["as_of"].iloc[0]).date()
    figures = ", ".join(f"{m} {cand[m]:.4f} vs {champ[m]:.4f}" for m in AGREED)
    worse = [m for m in AGREED if cand[m] < champ[m]]
    better = [m for m in AGREED if cand[m] > champ[m]]
    where = f"version {version} vs champion {champion} on {len(frame):,} accounts at {as_of}"
    if worse:
        verdict: Verdict = "worse"
        summary = f"{where}: worse on {', '.join(worse)} ({figures})"
    elif not better:
        verdict = "no better"
        summary = f"{where}: no better ({figures})"
    else:
        verdict = "better"
        summary = f"{where}: better on {', '.join(better)}, no worse on the rest ({figures})"
    return Comparison(version, champion, verdict, summary, cand, champ)


def promote(
    model_name: str,
    *,
    tracking_uri: str,
    version: str | None = None,
    force: bool = False,
    new_definition: bool = False,
    dry_run: bool = False,
) -> Decision:
    """Set the champion alias on ``version`` (default: the newest) if it is at least as good.

    Parameters
    ----------
    model_name
        Registered model name.
    tracking_uri
        MLflow tracking and registry URI.
    version
        Candidate version; default the newest registered one.
    force
        Promote whatever the comparison of metrics says (not over a change of definition).
    new_definition
        Promote a candidate that predicts something else than the champion (another horizon,
        decline threshold, population or feature set); the change is recorded on the version.
    dry_run
        Decide, but change nothing in the registry (the decision says what would be done).

    Returns
    -------
    Decision
    """
    result = compare(model_name, tracking_uri=tracking_uri, version=version)
    cand, champ = result.candidate_version, result.champion_version

    def decide(promoted: bool, reason: str) -> Decision:
        if promoted and not dry_run:
            _client(tracking_uri).set_registered_model_alias(model_name, CHAMPION, cand)
        return Decision(promoted, cand, champ, reason, result.candidate, result.champion)

    if result.verdict == "first":
        return decide(True, f"version {cand} is the first champion of {model_name!r}")
    if result.verdict == "same":
        return decide(False, result.summary)
    if result.verdict == "new definition":
        if not new_definition:
            return decide(
                False,
                f"kept version {champ}: {result.summary}. Its scores would change meaning for "
                "every client; pass --new-definition to make it champion all the same",
            )
        if not dry_run:
            _client(tracking_uri).set_model_version_tag(
                model_name, cand, DEFINITION_TAG, f"replaced version {champ}: {result.summary}"
            )
        return decide(True, f"new definition: version {cand} replaces version {champ} "
                      f"({result.summary})")
    if force:
        return decide(True, f"forced: version {cand} replaces version {champ} ({result.summary})")
    if result.verdict == "better":
        return decide(True, result.summary)
    if result.verdict == "incomparable":
        return decide(False, f"kept version {champ}: {result.summary}; compare by hand, --force")
    return decide(False, f"kept version {champ}: {result.summary}")
