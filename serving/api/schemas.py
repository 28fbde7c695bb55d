"""The HTTP API's schemas, as a family apart from the internal frames.

Scores of known accounts (``AccountScore`` and what embeds it), requests (``ScoreRequest``,
``FeatureRowRequest``), the ranked list (``AtRiskPage``), and what the service says about itself
(``ModelInfo``, ``Readiness``, ``ReloadResult``). The scores' models (``AccountScore``,
``FeatureRowScore``, and their ``Driver`` and ``ActionRecommendation`` items) are derived from
the score record, :mod:`kam.serving.record`.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field

from kam.serving.decisions.vocabulary import Tier

# the items of the scores' lists are re-exported: the API's schemas stay one family
from kam.serving.record import RECORD, ActionRecommendation, Driver  # noqa: F401

MAX_BATCH_IDS = 1000
DEFAULT_PAGE = 50
MAX_PAGE = 500
MAX_FEATURES = 1000

FeatureValue = float | str | bool | None


# The scores' models come from the score record: its fields, their order and types. Built at
# run time, they are plain pydantic models to a type checker, which cannot see their fields.
if TYPE_CHECKING:
    AccountScore: TypeAlias = BaseModel
else:
    AccountScore = RECORD.response_model(
        "AccountScore",
        "An account's latest score: risk, value with interval, tier, stage, drivers and actions.",
        module=__name__,
    )


class ScoreRequest(BaseModel):
    """Account ids whose latest scores are wanted."""

    # CRMs often hold numeric ids: accept 1042 as "1042"
    model_config = ConfigDict(coerce_numbers_to_str=True)

    account_ids: list[str] = Field(
        min_length=1,
        max_length=MAX_BATCH_IDS,
        # what the coercion above accepts, so the schema does not call a numeric id invalid
        json_schema_extra={"items": {"anyOf": [{"type": "string"}, {"type": "number"}]}},
    )


class AccountScores(BaseModel):
    """Latest scores of the requested accounts (in request order) and the ids not known."""

    items: list[AccountScore]
    unknown: list[str]


class FeatureRowRequest(BaseModel):
    """One account's features, computed by the caller; features left out count as missing."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "account_id": "A-1042",
                    "as_of": "2025-12-31",
                    "features": {"revenue_365d": 182000.0, "recency_days": 41, "region": "North"},
                }
            ]
        }
    )

    account_id: str | None = Field(None, description="echoed back; not looked up")
    as_of: dt.date | None = Field(None, description="date of the features; due dates count from it")
    features: dict[str, FeatureValue] = Field(
        max_length=MAX_FEATURES, description="feature name -> value"
    )


FeatureRowScore = RECORD.response_model(
    "FeatureRowScore",
    "Scores of a posted feature row.",
    module=__name__,
    posted=True,
    extra={
        "missing_features": (
            list[str],
            Field(description="features of the model the row did not give"),
        )
    },
)


class AtRiskFilters(BaseModel):
    """The filters a page of the at-risk list was selected with."""

    tier: list[Tier] | None = None
    region: str | None = None
    account_manager: str | None = None
    min_value_at_risk: float | None = None


class AtRiskPage(BaseModel):
    """A page of the ranked at-risk list, sorted by value at risk (largest first)."""

    total: int = Field(description="accounts matching the filters, over all pages")
    limit: int
    offset: int
    filters: AtRiskFilters
    items: list[AccountScore]


class FeatureInfo(BaseModel):
    """A model input."""

    name: str
    family: str
    categories: list[str] | None = Field(None, description="known levels of a categorical feature")


class ScoresInfo(BaseModel):
    """The scores table the service answers from."""

    accounts: int
    as_of: dt.date | None = None
    scored_at: dt.datetime | None = None
    model_version: str | None = Field(None, description="model version that produced the scores")
    playbook_version: str | None = None


class ModelInfo(BaseModel):
    """The model being served: registry identity, training window, test metrics, features."""

    name: str | None
    version: str | None
    alias: str | None
    uri: str
    run_id: str | None
    horizon: str | None = None
    decline: float | None = Field(
        None, description="defection: value in the horizon below (1 - decline) x the prior"
    )
    activity_window: str | None = Field(
        None, description="population: accounts with an order in this window before as_of, or ever"
    )
    train_as_of: list[str] | None = Field(
        None, description="first and last as_of the served model was fitted on"
    )
    backtest_train_as_of: list[str] | None = Field(
        None, description="first and last training as_of of the backtest behind the metrics"
    )
    test_as_of: str | None = Field(None, description="as_of the metrics were measured at")
    evaluation: str | None = Field(
        None, description="'out-of-time' or 'account-grouped folds' (no later window fitted)"
    )
    data_end: str | None = None
    metrics: dict[str, float] = Field(description="test metrics (see evaluation)")
    features: list[FeatureInfo]
    scores: ScoresInfo | None = None
    loaded_at: dt.datetime


class Readiness(BaseModel):
    """Whether the service can answer scoring calls, and what is missing when it cannot."""

    ready: bool
    model_version: str | None = None
    scores_accounts: int = 0
    missing: dict[str, str] = Field(default_factory=dict, description="component -> why")


class ReloadResult(BaseModel):
    """What a reload swapped in."""

    model_version: str | None
    previous_model_version: str | None
    scores_accounts: int
    scores_as_of: dt.date | None = None
    seconds: float
    missing: dict[str, str] = Field(default_factory=dict)


class Problem(BaseModel):
    """Why a request was refused or could not be answered."""

    detail: str


class Health(BaseModel):
    """The process is up."""

    status: Literal["ok"] = "ok"
