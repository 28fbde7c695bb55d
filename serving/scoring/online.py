"""Online scoring: posted feature rows, scored without the store.

``score_features`` scores feature rows a caller computed (the ``POST /v1/score`` path);
``score_matrix`` scores rows already validated into a matrix, as the API's row batches are.
The rules are those of batch scoring (:mod:`kam.serving.scoring.batch`); without the store
there is no account history, so cool-downs are not applied and the value at stake is the
posted ``revenue_365d``, and tiers come from the latest batch's cut-offs (else the posted
``spend_tier``).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from kam.models.registry import LoadedModel
from kam.models.scorer import SINGLE_ROW_MAX
from kam.serving.decisions.drivers import DEFAULT_TOP, compute_drivers
from kam.serving.decisions.evidence import Evidence
from kam.serving.decisions.one_row import recommend_row, relationship_stage_one, row_drivers
from kam.serving.decisions.phrasebook import Phrasebook, load_phrasebook
from kam.serving.decisions.playbook import Playbook, load_playbook
from kam.serving.decisions.recommend import DEFAULT_MAX_ACTIONS, recommend
from kam.serving.decisions.stages import relationship_stage, tiers_from_cutoffs
from kam.serving.record import RECORD
from kam.serving.scoring.batch import STAKE_FEATURE


def score_features(
    model: LoadedModel,
    records: list[Mapping[str, Any]],
    *,
    playbook: Playbook | None = None,
    phrasebook: Phrasebook | None = None,
    as_of: Any = None,
    tier_cutoffs: tuple[float, float] | None = None,
    max_actions: int = DEFAULT_MAX_ACTIONS,
) -> list[dict[str, Any]]:
    """Score posted feature rows: risk, value, tier, stage, drivers and actions.

    Without the store there is no account history: cool-downs are not applied, and the value
    at stake is the posted ``revenue_365d`` (NaN when not posted).

    Parameters
    ----------
    model
        The loaded scoring bundle.
    records
        Feature rows, name -> value (missing names are missing values).
    playbook, phrasebook
        Defaults shipped with the package when None.
    as_of
        Date the due dates count from (today when None).
    tier_cutoffs
        Smallest predicted values of tiers A and B in the latest batch
        (:func:`kam.serving.decisions.stages.tier_cutoffs`); without them the posted ``spend_tier``
        is used, and without that the tier is None and actions of every tier apply.
    max_actions
        Recommended actions kept per row.

    Returns
    -------
    list of dict
        Per row, the record's fields a posted row is scored for
        (:attr:`kam.serving.record.ScoreRecord.scored_on_posted_rows`): defection_probability,
        value, value_low, value_high, value_at_stake, value_at_risk, tier, relationship_stage,
        top_driver, top_driver_cause, drivers (list of dicts), first_action, first_action_owner,
        first_action_due, actions (list of dicts), model_name, model_version, playbook_version.

    Raises
    ------
    models.errors.FeatureRowError
        Naming each bad field of the posted rows.
    """
    x = model.scorer.spec.record_matrix(list(records))
    return score_matrix(
        model,
        x,
        playbook=playbook,
        phrasebook=phrasebook,
        as_of=as_of,
        tier_cutoffs=tier_cutoffs,
        max_actions=max_actions,
    )


def score_matrix(
    model: LoadedModel,
    x: np.ndarray,
    *,
    playbook: Playbook | None = None,
    phrasebook: Phrasebook | None = None,
    as_of: Any = None,
    tier_cutoffs: tuple[float, float] | None = None,
    max_actions: int = DEFAULT_MAX_ACTIONS,
    one_by_one: bool | None = None,
    evidence: Evidence | None = None,
) -> list[dict[str, Any]]:
    """Score validated feature rows (``FeatureSpec.record_matrix``); see :func:`score_features`.

    Drivers, actions and stages come from the vectorised functions, or for a batch of at most
    :data:`~kam.models.scorer.SINGLE_ROW_MAX` rows (``one_by_one=None``) from their one-row
    twins (:mod:`kam.serving.decisions.one_row`): the same rules on plain floats, cheaper
    where numpy's fixed cost per call would dominate. ``one_by_one`` forces either way.
    ``evidence`` (the actions' measured effects) gives the actions their expected savings.
    """
    playbook = playbook or load_playbook()
    phrasebook = phrasebook or load_phrasebook()
    scorer = model.scorer
    spec = scorer.spec
    n = len(x)
    contributions = scorer.contributions(x, num_threads=1)
    # the contributions add up to the defection log-odds: no second pass over those trees
    predictions = scorer.predict_matrix(
        x, num_threads=1, defection_log_odds=contributions.sum(axis=1)
    )
    if tier_cutoffs is not None:
        tiers = tiers_from_cutoffs(predictions["value"], tier_cutoffs)
    elif "spend_tier" in spec.categories:
        levels = np.array([*spec.categories["spend_tier"], None], dtype=object)
        codes = x[:, spec.names.index("spend_tier")]
        tiers = levels[np.where(np.isnan(codes), len(levels) - 1, codes).astype(int)]
    else:
        tiers = np.full(n, None, dtype=object)
    day = pd.Timestamp(as_of).normalize() if as_of is not None else pd.Timestamp.now().normalize()
    if one_by_one if one_by_one is not None else n <= SINGLE_ROW_MAX:
        numeric = [name for name in spec.names if name not in spec.categories]
        columns = [j for j, name in enumerate(spec.names) if name not in spec.categories]
        return [
            _score_one(
                i, dict(zip(numeric, x[i, columns].tolist(), strict=True)), predictions,
                contributions, tiers, model, playbook, phrasebook, day.date(), max_actions,
                evidence,
            )
            for i in range(n)
        ]
    values = {name: x[:, j] for j, name in enumerate(spec.names) if name not in spec.categories}
    stake = np.clip(values.get(STAKE_FEATURE, np.full(n, np.nan)), 0.0, None)
    drivers = compute_drivers(contributions, spec, values, phrasebook, top=DEFAULT_TOP)
    actions = recommend(playbook, drivers, values, tiers, day, phrasebook, max_actions=max_actions,
                        evidence=evidence, probability=predictions["defection_probability"],
                        stake=stake)
    stages = relationship_stage(values, n)
    return [
        _online_row(
            predictions, i, float(stake[i]), tiers[i], str(stages[i]), drivers.records(i),
            actions.records(i), model, playbook,
        )
        for i in range(n)
    ]


def _score_one(
    i: int,
    row: dict[str, float],
    predictions: Mapping[str, np.ndarray],
    contributions: np.ndarray,
    tiers: np.ndarray,
    model: LoadedModel,
    playbook: Playbook,
    phrasebook: Phrasebook,
    day: dt.date,
    max_actions: int,
    evidence: Evidence | None = None,
) -> dict[str, Any]:
    """Row ``i`` of a small batch, its numeric features in ``row``, on plain floats (the rules
    of the vectorised path)."""
    tier = tiers[i]
    drivers = row_drivers(
        contributions[i].tolist(), model.scorer.spec, row, phrasebook, top=DEFAULT_TOP
    )
    stake = row.get(STAKE_FEATURE, math.nan)
    stake = stake if math.isnan(stake) else max(stake, 0.0)
    actions = recommend_row(
        playbook, drivers, row, tier, day, phrasebook, max_actions=max_actions,
        evidence=evidence, probability=float(predictions["defection_probability"][i]),
        stake=stake,
    )
    return _online_row(
        predictions, i, stake, tier,
        relationship_stage_one(row), drivers.records(), actions, model, playbook,
    )


def _online_row(
    predictions: Mapping[str, np.ndarray],
    i: int,
    at_stake: float,
    tier: str | None,
    stage: str,
    listed: list[dict[str, Any]],
    chosen: list[dict[str, Any]],
    model: LoadedModel,
    playbook: Playbook,
) -> dict[str, Any]:
    probability = float(predictions["defection_probability"][i])
    row: dict[str, Any] = {
        "defection_probability": probability,
        "value": float(predictions["value"][i]),
        "value_low": float(predictions["value_low"][i]),
        "value_high": float(predictions["value_high"][i]),
        "value_at_stake": at_stake,
        "value_at_risk": probability * at_stake,
        "tier": tier,
        "relationship_stage": stage,
        "drivers": listed,
        "actions": chosen,
        "model_name": model.name or model.metadata.model_name,
        "model_version": model.version,
        "playbook_version": playbook.version,
    }
    # the summary fields (top driver, first action, ...) as the record derives them
    for name, source, key in RECORD.summaries:
        items = row[source]
        row[name] = items[0][key] if items else None
    return row
