"""The HTTP API's schemas, as a family apart from the internal frames.

Scores of known accounts (``AccountScore`` and what embeds it), requests (``ScoreRequest``,
``FeatureRowRequest``), the ranked list (``AtRiskPage``), and what the service says about itself
(``ModelInfo``, ``Readiness``, ``ReloadResult``). The scores' models (``AccountScore``,
``FeatureRowScore``, and their ``Driver`` and ``ActionRecommendation`` items) are derived from
the score record, :mod:`kam.serving.record`.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
)

from kam.serving.api.problems import FieldError, Problem  # noqa: F401 - one family of schemas
from kam.serving.decisions.vocabulary import Tier

# the items of the scores' lists are re-exported: the API's schemas stay one family
from kam.serving.record import RECORD, ActionRecommendation, Driver  # noqa: F401

MAX_BATCH_IDS = 1000
DEFAULT_PAGE = 50
MAX_PAGE = 500
MAX_FEATURES = 1000
MAX_ID_LENGTH = 200
# posted rows: due dates count from as_of, so a date far out would overflow them
EARLIEST_AS_OF = dt.date(1900, 1, 1)
LATEST_AS_OF = dt.date(2099, 12, 31)
# the range above, as the schema can state it (JSON Schema has no bounds for dates)
AS_OF_PATTERN = r"^(19|20)[0-9]{2}-[0-9]{2}-[0-9]{2}$"

FeatureValue = float | str | bool | None


def _no_surrogates(text: str) -> str:
    # a lone surrogate cannot be encoded as UTF-8: refuse it here rather than fail later
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("contains a lone surrogate (not valid Unicode text)") from None
    return text


def _date_as_text(value: Any) -> Any:
    # JSON has no dates: a number would be read as seconds since 1970, never what was meant
    if not isinstance(value, str | dt.date):
        raise ValueError("as_of must be a date written as text, e.g. \"2025-12-31\"")
    return value


def _sane_as_of(day: dt.date) -> dt.date:
    if not EARLIEST_AS_OF <= day <= LATEST_AS_OF:
        raise ValueError(f"as_of must lie between {EARLIEST_AS_OF} and {LATEST_AS_OF}")
    return day


Text = Annotated[str, AfterValidator(_no_surrogates)]
AccountId = Annotated[
    str, Field(min_length=1, max_length=MAX_ID_LENGTH), AfterValidator(_no_surrogates)
]
AsOf = Annotated[
    dt.date,
    BeforeValidator(_date_as_text),
    AfterValidator(_sane_as_of),
    WithJsonSchema({"type": "string", "format": "date", "pattern": AS_OF_PATTERN}),
]


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
    model_config = ConfigDict(
        coerce_numbers_to_str=True,
        extra="forbid",
        json_schema_extra={"examples": [{"account_ids": ["A-1042", "A-2077"]}]},
    )

    account_ids: list[AccountId] = Field(
        min_length=1,
        max_length=MAX_BATCH_IDS,
        # what the coercion above accepts, so the schema does not call a numeric id invalid
        json_schema_extra={
            "items": {
                "anyOf": [
                    {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH},
                    {"type": "number"},
                ]
            }
        },
    )


class AccountScores(BaseModel):
    """Latest scores of the requested accounts (in request order) and the ids not known."""

    items: list[AccountScore]
    unknown: list[str]


class FeatureRowRequest(BaseModel):
    """One account's features, computed by the caller; features left out count as missing."""

    # the example is made from the served model's features (kam.serving.api.openapi)
    model_config = ConfigDict(extra="forbid")

    account_id: AccountId | None = Field(None, description="echoed back; not looked up")
    as_of: AsOf | None = Field(
        None, description="date of the features (1900-2099); due dates count from it"
    )
    features: dict[Text, FeatureValue] = Field(
        max_length=MAX_FEATURES,
        description="feature name -> value (the FeatureRow schema: names, kinds, units, ranges)",
    )


# what a posted row's score adds to the record's fields, in body order
POSTED_EXTRAS = ("missing_features", "known_features", "reliable", "horizon", "currency")

FeatureRowScore = RECORD.response_model(
    "FeatureRowScore",
    "Scores of a posted feature row.",
    module=__name__,
    posted=True,
    extra={
        "missing_features": (
            list[str],
            Field(description="features of the model the row did not give"),
        ),
        "known_features": (
            int,
            Field(description="features of the model the row gave (not null)"),
        ),
        "reliable": (
            bool,
            Field(
                description=(
                    "false when the row gave fewer than min_known_features (GET /v1/model): "
                    "the model was never trained on rows so empty; do not act on the score"
                )
            ),
        ),
        "horizon": (
            str | None,
            Field(description="the period the probability and value are over, e.g. 365d"),
        ),
        "currency": (
            str,
            Field(description="the currency of the value fields (the service's setting)"),
        ),
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
    """A model input: what it means and what a posted row may give for it."""

    name: str
    family: str
    description: str
    kind: Literal["number", "count", "category"]
    unit: str | None = Field(None, description="currency, days, count, share, ... (not categories)")
    minimum: float | None = Field(None, description="smallest value a posted row may give")
    maximum: float | None = Field(None, description="largest value a posted row may give")
    categories: list[str] | None = Field(
        None, description="known levels of a categorical feature, matched case exactly"
    )


class ScoresInfo(BaseModel):
    """The scores table the service answers from."""

    accounts: int
    as_of: dt.date | None = None
    scored_at: dt.datetime | None = Field(None, description="when the scores were made (UTC)")
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
    description: str | None = Field(None, description="the registered version's description")
    tags: dict[str, str] = Field(
        default_factory=dict,
        description="the registered version's tags: horizon, decline, population, code version",
    )
    currency: str = Field(description="the currency of value fields in scores")
    min_known_features: int = Field(
        description="fewest known features a posted row must give to be scored"
    )
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


class Health(BaseModel):
    """The process is up."""

    status: Literal["ok"] = "ok"
