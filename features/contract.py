"""The data contract: the input tables, their columns, types and allowed categories.

Everything that reads or writes the input tables (simulator, ingestion, features) takes its
column names and categories from here, so the contract is written once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["id", "date", "number", "category", "text"]


@dataclass(frozen=True)
class Column:
    """One column of an input table."""

    name: str
    kind: Kind
    required: bool = False
    categories: tuple[str, ...] = ()
    min_value: float | None = None
    max_value: float | None = None
    magnitude: float | None = None
    """The largest absolute value that is sane (an amount, a quantity); beyond it is an error."""
    may_be_future: bool = False
    """A date that may lie after today (a delivery promised for next month)."""


@dataclass(frozen=True)
class Table:
    """One input table: its id column, columns, and whether rows belong to an account."""

    name: str
    id_column: str
    columns: tuple[Column, ...]
    child_of_accounts: bool = True
    description: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.required)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"table {self.name} has no column {name}")


# Sane magnitudes: an amount beyond a trillion, or a quantity beyond a billion, on one line is a
# broken export (an overflow, a unit mix-up), and would dominate every sum it enters.
MAX_AMOUNT = 1e12
MAX_QUANTITY = 1e9

CHANNELS = ("visit", "call", "email", "meeting", "event", "other")
DIRECTIONS = ("outbound", "inbound", "other")
CONTACT_ROLES = (
    "economic", "technical", "user", "financial", "coach", "influencer", "procurement", "other",
)
CONTACT_SENIORITY = ("executive", "manager", "staff", "other")
OUR_SENIORITY = ("executive", "manager", "rep", "other")
COMPLAINT_CATEGORIES = ("quality", "delivery", "billing", "service", "price", "other")
SEVERITIES = ("low", "medium", "high", "critical", "other")

ORDERS = Table(
    "orders",
    "order_id",
    (
        Column("order_id", "id", required=True),
        Column("account_id", "id", required=True),
        Column("order_date", "date", required=True),
        Column("revenue", "number", required=True, magnitude=MAX_AMOUNT),
        Column("quantity", "number", magnitude=MAX_QUANTITY),
        Column("product_category", "text"),
        Column("discount_amount", "number", magnitude=MAX_AMOUNT),
        Column("gross_margin", "number", magnitude=MAX_AMOUNT),
    ),
    description="purchase lines; revenue is net (negative = return or credit)",
)

ACCOUNTS = Table(
    "accounts",
    "account_id",
    (
        Column("account_id", "id", required=True),
        Column("name", "text"),
        Column("industry", "text"),
        Column("region", "text"),
        Column("account_manager", "text"),
        Column("created_at", "date"),
        Column("parent_account_id", "id"),
    ),
    child_of_accounts=False,
    description="the account master; derived from orders when absent",
)

INTERACTIONS = Table(
    "interactions",
    "interaction_id",
    (
        Column("interaction_id", "id", required=True),
        Column("account_id", "id", required=True),
        Column("occurred_at", "date", required=True),
        Column("channel", "category", categories=CHANNELS),
        Column("direction", "category", categories=DIRECTIONS),
        Column("rep_id", "id"),
        Column("contact_id", "id"),
        Column("contact_role", "category", categories=CONTACT_ROLES),
        Column("contact_seniority", "category", categories=CONTACT_SENIORITY),
        Column("our_seniority", "category", categories=OUR_SENIORITY),
        Column("sentiment", "number", min_value=-1.0, max_value=1.0),
    ),
    description="contact history: visits, calls, e-mails, meetings, events",
)

COMPLAINTS = Table(
    "complaints",
    "complaint_id",
    (
        Column("complaint_id", "id", required=True),
        Column("account_id", "id", required=True),
        Column("opened_at", "date", required=True),
        Column("resolved_at", "date"),
        Column("category", "category", categories=COMPLAINT_CATEGORIES),
        Column("severity", "category", categories=SEVERITIES),
        Column("satisfaction", "number", min_value=1.0, max_value=5.0),
    ),
    description="complaints and service tickets",
)

DELIVERIES = Table(
    "deliveries",
    "delivery_id",
    (
        Column("delivery_id", "id", required=True),
        Column("account_id", "id", required=True),
        Column("promised_date", "date", required=True, may_be_future=True),
        Column("delivered_date", "date"),
        Column("quantity_ordered", "number", min_value=0.0, magnitude=MAX_QUANTITY),
        Column("quantity_delivered", "number", min_value=0.0, magnitude=MAX_QUANTITY),
    ),
    description="deliveries against promised dates and quantities",
)

ACTIONS = Table(
    "actions",
    "action_id",
    (
        Column("action_id", "id", required=True),
        Column("account_id", "id", required=True),
        Column("taken_at", "date", required=True),
        Column("action", "text", required=True),
        Column("owner", "text"),
        Column("note", "text"),
    ),
    description="retention actions taken",
)

TABLES: dict[str, Table] = {
    t.name: t for t in (ORDERS, ACCOUNTS, INTERACTIONS, COMPLAINTS, DELIVERIES, ACTIONS)
}
REQUIRED_TABLES = ("orders",)

# The date column each table's events are stamped with: the point-in-time cut applies to it.
EVENT_DATE = {
    "orders": "order_date",
    "interactions": "occurred_at",
    "complaints": "opened_at",
    "deliveries": "promised_date",
    "actions": "taken_at",
}
