"""What a posted feature value may be: each feature's kind, unit and sane range, from the catalog.

A model's inputs are catalog features (:mod:`kam.features.catalog`); :func:`feature_fields`
gives, for each input of a :class:`~kam.models.feature_spec.FeatureSpec`, what a caller may send:
a number within a range, a whole count, or one of the category levels the model was trained on.
The API's OpenAPI schema (:func:`row_json_schema`) and the row validation
(:meth:`FeatureSpec.check_rows <kam.models.feature_spec.FeatureSpec.check_rows>`) both read it,
so the documented rules are the enforced ones.

The ranges are sanity bounds, not the ranges seen in training: they refuse values no account
can have (a share of 7, a recency of a million days, revenue of 1e300), and leave the model to
judge merely unusual ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kam.features.catalog import CATALOG, Feature, FeatureKind

if TYPE_CHECKING:
    from kam.models.feature_spec import FeatureSpec

# revenue of one account over a window: far above any real account, far below overflow
MAX_MONEY = 1e12
MAX_DAYS = 36_500  # a century
MAX_COUNT = 1_000_000
MAX_RATIO = 1e6

# unit -> (minimum, maximum)
UNIT_RANGES: dict[str, tuple[float, float]] = {
    "currency": (-MAX_MONEY, MAX_MONEY),
    "days": (0, MAX_DAYS),
    "count": (0, MAX_COUNT),
    "share": (0, 1),
    "probability": (0, 1),
    "change": (-1, 1),
    "ratio": (-MAX_RATIO, MAX_RATIO),
}
# features whose range is narrower or wider than their unit's
_RANGES: dict[str, tuple[float, float]] = {
    "btyd_expected_value": (0, MAX_MONEY),
    "btyd_expected_order_value": (0, MAX_MONEY),
    "sentiment_mean_180d": (-1, 1),
    "sentiment_trend_180d": (-2, 2),
    "satisfaction_mean_365d": (1, 5),
    "season_month_sin": (-1, 1),
    "season_month_cos": (-1, 1),
    "overdue_ratio": (0, MAX_RATIO),
    "lines_per_order_day_365d": (0, MAX_RATIO),
    "order_days_per_month": (0, 31),
    "btyd_expected_order_days": (0, MAX_DAYS),
    "return_share_365d": (0, MAX_RATIO),  # credits can exceed a year's sales
    "fill_rate_180d": (0, MAX_RATIO),  # over-deliveries exceed 1
}
_UNITS: dict[str, str] = {
    "avg_order_value_365d": "currency",
    "btyd_expected_order_value": "currency",
    "btyd_expected_value": "currency",
    "btyd_p_alive": "probability",
    "btyd_p_no_order": "probability",
    "discount_rate_365d": "share",
    "discount_rate_trend_180d": "change",
    "on_time_rate_180d": "share",
    "on_time_rate_trend_180d": "change",
    "spend_percentile": "share",
    "active_months_share_12m": "share",
    "return_share_365d": "ratio",
    "fill_rate_180d": "ratio",
    "sentiment_mean_180d": "ratio",
    "sentiment_trend_180d": "ratio",
    "satisfaction_mean_365d": "ratio",
    "season_month_sin": "ratio",
    "season_month_cos": "ratio",
    "btyd_expected_order_days": "ratio",
}


@dataclass(frozen=True)
class FeatureField:
    """What a caller may send for one model input.

    Parameters
    ----------
    name, family, description
        As in the catalog.
    kind
        ``number``, ``count`` (a whole number) or ``category`` (one of ``categories``).
    unit
        ``currency``, ``days``, ``count``, ``share`` (0..1), ``probability``, ``change``
        (-1..1) or ``ratio``; None for a category.
    minimum, maximum
        The sane range of a number or count; None for a category.
    categories
        The levels a category feature accepts, matched exactly (case included).
    """

    name: str
    family: str
    description: str
    kind: FeatureKind
    unit: str | None
    minimum: float | None
    maximum: float | None
    categories: tuple[str, ...] | None = None


def _unit(feature: Feature) -> str | None:
    declared = getattr(feature, "unit", None)  # the catalog may declare units itself
    name = feature.name
    if feature.kind == "category":
        return None
    if feature.kind == "count":
        return "count"
    if name in _UNITS:
        return _UNITS[name]
    if isinstance(declared, str) and declared in UNIT_RANGES:
        return declared
    if name.startswith("revenue"):
        return "currency" if "trend" not in name and "change" not in name and "yoy" not in name \
            else "change"
    if name.endswith("_days") or name.endswith("_days_365d") or "_days_mean" in name:
        return "days"
    if "(-1..1)" in feature.description:
        return "change"
    if "_share_" in name or name.endswith("_rate_365d") or name.endswith("_rate_180d"):
        return "share"
    return "ratio"


def field_of(feature: Feature, categories: tuple[str, ...] | None = None) -> FeatureField:
    """What a caller may send for ``feature`` (``categories``: the levels a model knows)."""
    unit = _unit(feature)
    low, high = (None, None) if unit is None else _RANGES.get(feature.name, UNIT_RANGES[unit])
    if feature.name == "margin_rate_365d" or feature.name == "margin_rate_trend_180d":
        unit, (low, high) = "ratio", UNIT_RANGES["ratio"]  # a loss makes margins below -1
    return FeatureField(
        name=feature.name,
        family=feature.family,
        description=feature.description,
        kind=feature.kind,
        unit=unit,
        minimum=low,
        maximum=high,
        categories=tuple(categories or ()) if feature.kind == "category" else None,
    )


def _catalog_entry(name: str, family: str, categorical: bool) -> Feature:
    for feature in CATALOG:
        if feature.name == name:
            return feature
    # a model input the catalog does not list (a bundle from an older catalog): bounds by kind
    kind: FeatureKind = "category" if categorical else "number"
    return Feature(name, family, name.replace("_", " "), None, kind)


def feature_fields(spec: FeatureSpec | None = None) -> list[FeatureField]:
    """The fields of a model's inputs in model order, or of every catalog feature without one."""
    if spec is None:
        return [field_of(feature) for feature in CATALOG]
    out = []
    for name in spec.names:
        levels = spec.categories.get(name)
        feature = _catalog_entry(name, spec.families.get(name, "other"), levels is not None)
        if levels is not None and feature.kind != "category":  # the model says it is text
            feature = Feature(name, feature.family, feature.description, feature.table, "category")
        out.append(field_of(feature, levels))
    return out


def field_json_schema(field: FeatureField) -> dict[str, Any]:
    """The JSON schema of one feature's value (null: not known)."""
    kind = "category" if field.kind == "category" else field.kind
    parts = [field.description, f"kind: {kind}"]
    if field.unit:
        parts.append(f"unit: {field.unit}")
    value: dict[str, Any]
    if field.kind == "category":
        value = {"type": "string"}
        if field.categories:
            value["enum"] = list(field.categories)
            parts.append("one of these levels, case included")
    else:
        value = {"type": "integer" if field.kind == "count" else "number"}
        if field.minimum is not None:
            value["minimum"] = field.minimum
        if field.maximum is not None:
            value["maximum"] = field.maximum
    return {
        "anyOf": [value, {"type": "null"}],
        "title": field.name,
        "description": "; ".join(parts),
        "x-family": field.family,
        "x-kind": kind,
        "x-unit": field.unit,
    }


def row_json_schema(spec: FeatureSpec | None = None) -> dict[str, Any]:
    """The JSON schema of a posted feature row: every input optional, nothing else allowed."""
    fields = feature_fields(spec)
    return {
        "type": "object",
        "title": "FeatureRow",
        "description": (
            "One account's features, computed by the caller. Every feature is optional (left "
            "out or null: not known); a row giving fewer than half of the model's features is "
            "scored but marked unreliable. Names not listed are refused."
        ),
        "properties": {f.name: field_json_schema(f) for f in fields},
        "additionalProperties": False,
    }
