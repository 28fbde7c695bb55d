"""`GET /v1/model`: the model being served, its registered version, and the scores loaded."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from fastapi import Request
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from starlette.concurrency import run_in_threadpool

from kam.models.registry import LoadedModel
from kam.serving.api.deps import ScorerDep, StateDep, v1_router
from kam.serving.api.schemas import FeatureInfo, ModelInfo, ScoresInfo
from kam.serving.record import DEFAULT_CURRENCY

router = v1_router()
logger = logging.getLogger(__name__)
Registered = tuple[str | None, dict[str, str]]


def _registered(settings: Any, model: LoadedModel) -> Registered:
    """The registered version's description and tags; none when the registry cannot say."""
    if model.name is None or model.version is None:
        return None, {}
    uri = settings.resolved_tracking_uri
    try:
        version = MlflowClient(tracking_uri=uri, registry_uri=uri).get_model_version(
            model.name, model.version
        )
    except (MlflowException, OSError) as err:
        logger.warning("cannot read version %s of %s: %s", model.version, model.name, err)
        return None, {}
    return version.description or None, {str(k): str(v) for k, v in sorted(version.tags.items())}


async def _registered_once(request: Request, model: LoadedModel) -> Registered:
    """:func:`_registered`, read once per served version (the registry is a database away)."""
    cache: dict[tuple[str | None, str | None], Registered] = getattr(
        request.app.state, "registered_versions", {}
    )
    request.app.state.registered_versions = cache
    key = (model.name, model.version)
    if key not in cache:
        cache[key] = await run_in_threadpool(_registered, request.app.state.settings, model)
    return cache[key]


def _utc(moment: datetime | None) -> datetime | None:
    """A stored moment (UTC, kept without a zone) with its zone."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


@router.get("/model", response_model=ModelInfo, tags=["service"])
async def model_info(model: ScorerDep, state: StateDep, request: Request) -> ModelInfo:
    """The model being served: registry version, its description and tags, training window,
    metrics, and each feature with its kind, unit, range and levels (what `POST /v1/score`
    accepts)."""
    trained = model.metadata
    recorded = trained.to_meta()  # periods and dates as text, as the bundle records them
    spec = model.scorer.spec
    scores = state.scores
    description, tags = await _registered_once(request, model)
    return ModelInfo(
        name=model.name or trained.model_name,
        version=model.version,
        alias=model.alias,
        uri=model.uri,
        run_id=model.run_id,
        horizon=recorded["horizon"],
        decline=trained.decline,
        activity_window=recorded["activity_window"],
        train_as_of=recorded["train_as_of"],
        backtest_train_as_of=recorded["backtest_train_as_of"],
        test_as_of=recorded["test_as_of"],
        evaluation=trained.evaluation,
        data_end=recorded["data_end"],
        metrics={k: v for k, v in sorted(model.metrics.items()) if k.startswith("test_")},
        description=description,
        tags=tags,
        currency=getattr(request.app.state.settings, "currency", None) or DEFAULT_CURRENCY,
        min_known_features=spec.min_known,
        features=[
            FeatureInfo(
                name=f.name,
                family=f.family,
                description=f.description,
                kind=f.kind,
                unit=f.unit,
                minimum=f.minimum,
                maximum=f.maximum,
                categories=list(f.categories) if f.categories is not None else None,
            )
            for f in spec.fields
        ],
        scores=None
        if scores is None
        else ScoresInfo(
            accounts=len(scores),
            as_of=scores.as_of,
            scored_at=_utc(scores.scored_at),
            model_version=scores.model_version,
            playbook_version=scores.playbook_version,
        ),
        loaded_at=state.loaded_at,
    )
