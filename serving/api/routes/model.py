"""`GET /v1/model`: the model being served and the scores loaded with it."""

from __future__ import annotations

from kam.serving.api.deps import ScorerDep, StateDep, v1_router
from kam.serving.api.schemas import FeatureInfo, ModelInfo, ScoresInfo

router = v1_router()


@router.get("/model", response_model=ModelInfo, tags=["service"])
async def model_info(model: ScorerDep, state: StateDep) -> ModelInfo:
    """The model being served: registry version and alias, training window, metrics, features."""
    trained = model.metadata
    recorded = trained.to_meta()  # periods and dates as text, as the bundle records them
    spec = model.scorer.spec
    scores = state.scores
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
        features=[
            FeatureInfo(
                name=name,
                family=spec.families.get(name, "other"),
                categories=list(spec.categories[name]) if name in spec.categories else None,
            )
            for name in spec.names
        ],
        scores=None
        if scores is None
        else ScoresInfo(
            accounts=len(scores),
            as_of=scores.as_of,
            scored_at=scores.scored_at,
            model_version=scores.model_version,
            playbook_version=scores.playbook_version,
        ),
        loaded_at=state.loaded_at,
    )
