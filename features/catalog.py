"""The feature catalog: every snapshot feature with its family, meaning and source table.

This is the one place later stages read to explain a feature (drivers in business words, model
cards, docs). The snapshot builder emits exactly the catalog's features for the tables present,
in catalog order.

Conventions shared by the descriptions:

- A window of N days ends at ``as_of`` and includes it: events dated in (as_of - N, as_of].
- "Change" features are symmetric changes, (now - before) / (abs(now) + abs(before)), bounded to
  -1..1 (-1 = fell to nothing, +1 = grew from nothing); null when both are zero. Unlike a plain
  ratio they stay finite for accounts that start or stop buying.
- Quantities that would grow without bound with the age of an account are expressed as rates or
  shares, because tree models cannot extrapolate to older accounts than they were trained on.
- Recency of a contact that did not happen within the interaction lookback
  (:data:`CONTACT_LOOKBACK_DAYS`) is capped at that lookback, so "never" and "not in two years"
  read the same and the feature is never null while interaction history exists.
- Ratios are null where undefined (no denominator); counts are zero when the table is present
  but the account has no events in the window.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Literal

FeatureKind = Literal["number", "count", "category"]

# Longest look-back of the interaction features; also the cap of contact recencies.
CONTACT_LOOKBACK_DAYS = 730
# Complaints open longer than this count as overdue (DOMAIN: resolve key-account issues fast).
OVERDUE_COMPLAINT_DAYS = 21


@dataclass(frozen=True)
class Feature:
    """One snapshot feature.

    Parameters
    ----------
    name
        Column name in the snapshot frame.
    family
        Feature family (spend, rhythm, breadth, price, relationship, service, supply, account,
        season); drivers are grouped by it.
    description
        Short business phrase explaining the value, for managers.
    table
        Input table the feature needs; ``None`` when it needs none beyond ``as_of``.
    kind
        ``number`` (continuous), ``count`` (non-negative integer) or ``category`` (string).
    unit
        What one unit of the value is (``days``, ``currency``: the orders' own currency,
        ``probability (0..1)``, ...); None for categories.
    """

    name: str
    family: str
    description: str
    table: str | None
    kind: FeatureKind = "number"
    unit: str | None = None


def _f(
    name: str,
    family: str,
    description: str,
    table: str | None,
    kind: FeatureKind = "number",
    *,
    unit: str | None = None,
) -> Feature:
    if (unit is None) != (kind == "category"):  # pragma: no cover - guards edits of the catalog
        raise RuntimeError(f"{name}: a unit for every number and count, none for categories")
    return Feature(name, family, description, table, kind, unit)


_C = CONTACT_LOOKBACK_DAYS

CATALOG: tuple[Feature, ...] = (
    # spend ------------------------------------------------------------------------------------
    _f("revenue_90d", "spend", "net revenue in the last 90 days", "orders", unit="currency"),
    _f("revenue_180d", "spend", "net revenue in the last 180 days", "orders", unit="currency"),
    _f("revenue_365d", "spend", "net revenue in the last 365 days", "orders", unit="currency"),
    _f(
        "revenue_trend_90d", "spend",
        "change of revenue, last 90 days vs the 90 days before (-1..1)", "orders",
        unit="symmetric change (-1..1)",
    ),
    _f(
        "revenue_90d_last_year", "spend",
        "net revenue in the same 90 days one year earlier", "orders", unit="currency",
    ),
    _f(
        "revenue_yoy_90d", "spend",
        "change of last-90-day revenue vs the same 90 days a year earlier (-1..1)", "orders",
        unit="symmetric change (-1..1)",
    ),
    _f(
        "revenue_change_365d", "spend",
        "change of revenue, last 365 days vs the 365 days before (-1..1)", "orders",
        unit="symmetric change (-1..1)",
    ),
    _f(
        "avg_order_value_365d", "spend",
        "average net revenue per ordering day, last 365 days", "orders",
        unit="currency per ordering day",
    ),
    _f(
        "order_days_90d", "spend", "days with an order in the last 90 days", "orders", "count",
        unit="days",
    ),
    _f(
        "order_days_365d", "spend", "days with an order in the last 365 days", "orders", "count",
        unit="days",
    ),
    _f(
        "lines_per_order_day_365d", "spend",
        "order lines per ordering day, last 365 days", "orders",
        unit="order lines per ordering day",
    ),
    _f(
        "return_share_365d", "spend",
        "returns and credits as a share of sales, last 365 days", "orders", unit="share of sales",
    ),
    # rhythm -----------------------------------------------------------------------------------
    _f("recency_days", "rhythm", "days since the last order", "orders", unit="days"),
    _f(
        "mean_gap_days", "rhythm",
        "typical days between ordering days, last two years", "orders", unit="days",
    ),
    _f(
        "overdue_ratio", "rhythm",
        "days since the last order relative to the typical gap (above 1 = overdue)", "orders",
        unit="ratio (1 = the typical gap)",
    ),
    _f("tenure_days", "rhythm", "days since the first order", "orders", unit="days"),
    _f(
        "order_days_per_month", "rhythm",
        "ordering days per month over the last two years (or the tenure, if shorter)", "orders",
        unit="days per month",
    ),
    _f(
        "active_months_share_12m", "rhythm",
        "share of the last 12 months with at least one order", "orders",
        unit="share of months (0..1)",
    ),
    # the statistical model of repeat buying (BG/NBD, Gamma-Gamma), fitted at each as_of
    _f(
        "btyd_p_alive", "rhythm",
        "probability that the account still buys, from its buying rhythm (BG/NBD)", "orders",
        unit="probability (0..1)",
    ),
    _f(
        "btyd_p_no_order", "rhythm",
        "probability of no order over the coming horizon (BG/NBD)", "orders",
        unit="probability (0..1)",
    ),
    _f(
        "btyd_expected_order_days", "rhythm",
        "ordering days expected over the coming horizon (BG/NBD)", "orders", unit="days",
    ),
    _f(
        "btyd_expected_order_value", "spend",
        "expected revenue per ordering day (Gamma-Gamma)", "orders",
        unit="currency per ordering day",
    ),
    _f(
        "btyd_expected_value", "spend",
        "revenue expected over the coming horizon (BG/NBD x Gamma-Gamma)", "orders",
        unit="currency",
    ),
    # breadth ----------------------------------------------------------------------------------
    _f(
        "categories_365d", "breadth",
        "distinct product categories bought in the last 365 days", "orders", "count",
        unit="categories",
    ),
    _f(
        "categories_prev_365d", "breadth",
        "distinct product categories bought in the 365 days before that", "orders", "count",
        unit="categories",
    ),
    _f(
        "categories_lost_365d", "breadth",
        "product categories bought the year before but not in the last 365 days",
        "orders", "count", unit="categories",
    ),
    _f(
        "categories_new_365d", "breadth",
        "product categories bought in the last 365 days but not the year before",
        "orders", "count", unit="categories",
    ),
    # price ------------------------------------------------------------------------------------
    _f(
        "discount_rate_365d", "price",
        "discount as a share of gross (pre-discount) value, last 365 days", "orders",
        unit="share of gross value (0..1)",
    ),
    _f(
        "discount_rate_trend_180d", "price",
        "discount rate of the last 180 days minus that of the rest of the year", "orders",
        unit="difference of shares (-1..1)",
    ),
    _f(
        "margin_rate_365d", "price",
        "gross margin as a share of net revenue, last 365 days", "orders",
        unit="share of net revenue",
    ),
    _f(
        "margin_rate_trend_180d", "price",
        "margin rate of the last 180 days minus that of the rest of the year", "orders",
        unit="difference of shares",
    ),
    # relationship -----------------------------------------------------------------------------
    _f(
        "interactions_90d", "relationship",
        "contacts of any kind (visits, calls, e-mails, meetings, events), last 90 days",
        "interactions", "count", unit="contacts",
    ),
    _f(
        "interactions_trend_90d", "relationship",
        "change of contact volume, last 90 days vs the 90 days before (-1..1)", "interactions",
        unit="symmetric change (-1..1)",
    ),
    _f(
        "contacts_180d", "relationship",
        "distinct people at the account we spoke with, last 180 days", "interactions", "count",
        unit="people",
    ),
    _f(
        "contacts_dropped_180d", "relationship",
        "people we spoke with in the 180 days before but not in the last 180 days",
        "interactions", "count", unit="people",
    ),
    _f(
        "contact_roles_180d", "relationship",
        "distinct buyer roles reached (economic, technical, user, ...), last 180 days",
        "interactions", "count", unit="roles",
    ),
    _f(
        "economic_buyer_recency_days", "relationship",
        f"days since the last contact with the economic buyer ({_C} = none in two years)",
        "interactions", unit="days",
    ),
    _f(
        "executive_contact_recency_days", "relationship",
        f"days since the last executive-level contact ({_C} = none in two years)",
        "interactions", unit="days",
    ),
    _f(
        "executive_contacts_180d", "relationship",
        "executive-level contacts (either side) in the last 180 days", "interactions", "count",
        unit="contacts",
    ),
    _f(
        "visits_180d", "relationship", "visits in the last 180 days", "interactions", "count",
        unit="visits",
    ),
    _f(
        "visit_recency_days", "relationship",
        f"days since the last visit ({_C} = none in two years)", "interactions", unit="days",
    ),
    _f(
        "visit_gap_days_365d", "relationship",
        "typical days between visits, last 365 days", "interactions", unit="days",
    ),
    _f(
        "sentiment_mean_180d", "relationship",
        "average sentiment of contacts (-1..1), last 180 days", "interactions",
        unit="sentiment (-1..1)",
    ),
    _f(
        "sentiment_trend_180d", "relationship",
        "average sentiment of the last 180 days minus that of the 180 days before",
        "interactions", unit="difference of sentiment (-2..2)",
    ),
    _f(
        "reps_180d", "relationship",
        "distinct people on our side in contact, last 180 days", "interactions", "count",
        unit="people",
    ),
    _f(
        "reps_new_180d", "relationship",
        "our people in contact in the last 180 days who were not in the 180 days before",
        "interactions", "count", unit="people",
    ),
    _f(
        "reps_dropped_180d", "relationship",
        "our people in contact in the 180 days before who were not in the last 180 days",
        "interactions", "count", unit="people",
    ),
    # service ----------------------------------------------------------------------------------
    _f(
        "complaints_open", "service", "complaints open at as_of", "complaints", "count",
        unit="complaints",
    ),
    _f(
        "complaints_open_overdue", "service",
        f"open complaints older than {OVERDUE_COMPLAINT_DAYS} days", "complaints", "count",
        unit="complaints",
    ),
    _f(
        "open_complaint_max_age_days", "service",
        "age in days of the oldest open complaint", "complaints", unit="days",
    ),
    _f(
        "complaints_90d", "service", "complaints opened in the last 90 days", "complaints", "count",
        unit="complaints",
    ),
    _f(
        "complaints_365d", "service", "complaints opened in the last 365 days",
        "complaints", "count", unit="complaints",
    ),
    _f(
        "complaints_severe_365d", "service",
        "high or critical complaints opened in the last 365 days", "complaints", "count",
        unit="complaints",
    ),
    _f(
        "resolution_days_mean_365d", "service",
        "average days to resolve, complaints resolved in the last 365 days", "complaints",
        unit="days",
    ),
    _f(
        "complaint_share_quality_365d", "service",
        "share of last-365-day complaints about product quality", "complaints",
        unit="share of complaints (0..1)",
    ),
    _f(
        "complaint_share_delivery_365d", "service",
        "share of last-365-day complaints about delivery", "complaints",
        unit="share of complaints (0..1)",
    ),
    _f(
        "complaint_share_price_365d", "service",
        "share of last-365-day complaints about price", "complaints",
        unit="share of complaints (0..1)",
    ),
    _f(
        "satisfaction_mean_365d", "service",
        "average satisfaction (1-5) of complaints resolved in the last 365 days", "complaints",
        unit="score (1..5)",
    ),
    # supply -----------------------------------------------------------------------------------
    _f(
        "on_time_rate_180d", "supply",
        "share of deliveries due in the last 180 days delivered by the promised date",
        "deliveries", unit="share of deliveries (0..1)",
    ),
    _f(
        "on_time_rate_trend_180d", "supply",
        "on-time rate of the last 180 days minus that of the 180 days before", "deliveries",
        unit="difference of shares (-1..1)",
    ),
    _f(
        "fill_rate_180d", "supply",
        "delivered / ordered quantity, deliveries due in the last 180 days", "deliveries",
        unit="ratio of quantities (1 = in full)",
    ),
    _f(
        "late_deliveries_180d", "supply",
        "deliveries due in the last 180 days that came late or have not come",
        "deliveries", "count", unit="deliveries",
    ),
    # account ----------------------------------------------------------------------------------
    _f("industry", "account", "industry of the account", "accounts", "category"),
    _f("region", "account", "sales region of the account", "accounts", "category"),
    _f(
        "account_age_days", "account",
        "days since the account was created in the account master", "accounts", unit="days",
    ),
    _f(
        "spend_percentile", "account",
        "rank of last-365-day revenue among active accounts (0 smallest, 1 largest)", "orders",
        unit="percentile rank (0..1)",
    ),
    _f(
        "spend_tier", "account",
        "A/B/C tier by cumulative share of last-365-day revenue (A: top 70%, B: next 20%)",
        "orders", "category",
    ),
    # season -----------------------------------------------------------------------------------
    _f(
        "season_month_sin", "season", "month of the year of as_of (sine part)", None,
        unit="sine of the month angle (-1..1)",
    ),
    _f(
        "season_month_cos", "season", "month of the year of as_of (cosine part)", None,
        unit="cosine of the month angle (-1..1)",
    ),
)

_BY_NAME = {feature.name: feature for feature in CATALOG}
if len(_BY_NAME) != len(CATALOG):  # pragma: no cover - guards edits of the catalog
    raise RuntimeError("feature names in the catalog must be unique")


def available(tables: set[str]) -> list[Feature]:
    """The features that can be built from the given input tables, in catalog order.

    Parameters
    ----------
    tables
        Names of the input tables present (e.g. ``{"orders", "accounts"}``).

    Returns
    -------
    list of Feature
        Catalog features whose source table is among ``tables`` (or which need none).
    """
    return [f for f in CATALOG if f.table is None or f.table in tables]


def by_name(name: str) -> Feature:
    """The catalog entry of feature ``name``.

    Raises
    ------
    KeyError
        When no feature has that name; the message lists the families to look in.
    """
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(
            f"no feature named {name!r} in the catalog (families: {', '.join(families())})"
        ) from None


def families() -> list[str]:
    """The feature families, in catalog order."""
    return list(dict.fromkeys(f.family for f in CATALOG))


def markdown() -> str:
    """The catalog as the markdown page ``docs/features.md`` (regenerate with ``--markdown``)."""
    lines = [
        "# Features",
        "",
        "<!-- generated from features/catalog.py by "
        "`python -m kam.features.catalog --markdown > docs/features.md`; do not edit -->",
        "",
        f"{len(CATALOG)} features in {len(families())} families, in the snapshot's column "
        "order within each family. A feature is built when its source table is present "
        "(`orders` always is).",
        "Windows end at as_of and include it; \"symmetric change\" is (now - before) / "
        "(|now| + |before|), from -1 (fell to nothing) to +1 (grew from nothing); \"currency\" "
        "is the currency of the orders' revenue.",
    ]
    for family in families():
        lines += ["", f"## {family}", "", "| name | kind | unit | source table | description |"]
        lines.append("|---|---|---|---|---|")
        for f in CATALOG:
            if f.family == family:
                lines.append(
                    f"| `{f.name}` | {f.kind} | {f.unit or ''} | {f.table or '(none)'} | "
                    f"{f.description.replace('|', '/')} |"
                )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    """``python -m kam.features.catalog --markdown``: print the catalog page."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m kam.features.catalog", description=__doc__)
    parser.add_argument("--markdown", action="store_true", help="print docs/features.md")
    args = parser.parse_args(argv)
    if not args.markdown:
        parser.error("say what to print: --markdown")
    sys.stdout.write(markdown())


if __name__ == "__main__":
    main()
