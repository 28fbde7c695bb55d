"""The score record: every field of an account's score, declared once.

A score record is what scoring produces for one account at one as_of: the row of the store's
``scores`` table, the body the API returns, a row of the managers' list and of its CSV export.
:data:`RECORD` declares each field once: its kind (the store's column type and the JSON type
that go with it), where it stands in the API body and in the CSV export (and under which
header), whether the list page and a posted row's score carry it, and for the summary columns
which item of ``drivers`` or ``actions`` they repeat. Everything else is derived from it: the
scores table's schema, the API's response models, the SQL writing the JSON bodies, the page's
row columns and the export's columns.

Adding a field is one edit here, one :class:`ScoreField` in :data:`RECORD` (placed before
others in the body or the export, their positions move up by one), plus its test; the only
other place to touch is the code computing its value (:mod:`kam.serving.scoring`). A scores
table written before the field existed gains its column at the next write.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, Field, create_model

DAY_FORMAT = "%Y-%m-%d"
# moments are stored in UTC without a zone (DuckDB TIMESTAMP); the text says so with its "Z"
MOMENT_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
# the currency recorded on scores when the settings name none
DEFAULT_CURRENCY = "¥"


# ------------------------------------------------------------------------------------------------
# The JSON shapes of the list fields' items
# ------------------------------------------------------------------------------------------------
class Driver(BaseModel):
    """A family of features that pushes the account's defection risk up, in business words."""

    family: str = Field(description="feature family, e.g. service, supply, relationship")
    cause: str | None = Field(None, description="defection cause the family points to")
    feature: str = Field(description="the strongest feature inside the family")
    contribution: float = Field(description="the family's SHAP contribution (log-odds)")
    phrase: str = Field(description="the driver with the account's own figures")
    phrase_zh: str | None = Field(None, description="the same phrase in Chinese (zh-CN)")


class ActionRecommendation(BaseModel):
    """A retention action from the playbook, with who owns it and by when."""

    action_id: str
    title: str
    technique: str = Field(description="retention technique the action applies")
    owner: str = Field(description="AR, SR, FR or executive sponsor")
    due_date: dt.date | None = None
    reason: str | None = Field(None, description="why, in the account's own figures")
    cause: str | None = Field(None, description="defection cause the action addresses")
    title_zh: str | None = Field(None, description="the title in Chinese (zh-CN)")
    reason_zh: str | None = Field(None, description="the reason in Chinese (zh-CN)")
    expected_saving: float | None = Field(
        None,
        description="defection probability x value at stake x risk_reduction, minus the "
        "action's cost; null unless the actions history supports its effect or its "
        "estimate favours it (evidence: unproven)",
    )
    risk_reduction: float | None = Field(
        None, description="share of this account's defection risk the action removes"
    )
    evidence: str = Field(
        "untested",
        description="what the actions history shows: helps (supported), unproven (an "
        "estimate in its favour whose interval includes zero), no_effect, harms or untested "
        "(too few or no comparable accounts)",
    )
    effect: float | None = Field(
        None, description="change in defection probability among the accounts it was run on"
    )
    effect_low: float | None = Field(None, description="lower end of the effect's interval")
    effect_high: float | None = Field(None, description="upper end of the effect's interval")
    evidence_accounts: int = Field(0, description="accounts the effect was measured on")


# ------------------------------------------------------------------------------------------------
# Kinds: a store type and the JSON type that goes with it
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Kind:
    """What a field holds: its column type in the store and its type in the API.

    Parameters
    ----------
    store
        The DuckDB type of the ``scores`` column.
    json
        The Python type the API models give the field.
    sql
        DuckDB expression encoding the column ``{c}`` for ``to_json``; None for a list stored
        as JSON text, spliced into the body as it is.
    text
        ``strftime`` format of the field in text exports, for dates and times.
    item
        For a list: the model of its items.
    """

    store: str
    json: Any
    sql: str | None
    text: str | None = None
    item: type[BaseModel] | None = None

    @property
    def is_list(self) -> bool:
        return self.item is not None


TEXT = Kind("VARCHAR", str, 'CAST("{c}" AS VARCHAR)')
# JSON has no NaN or infinity: they become null
NUMBER = Kind("DOUBLE", float, 'CASE WHEN isfinite("{c}") THEN "{c}" END')
INTEGER = Kind("BIGINT", int, 'CAST("{c}" AS BIGINT)')
DAY = Kind("DATE", dt.date, f"strftime(CAST(\"{{c}}\" AS DATE), '{DAY_FORMAT}')", DAY_FORMAT)
MOMENT = Kind(
    "TIMESTAMP", dt.datetime, f"strftime(CAST(\"{{c}}\" AS TIMESTAMP), '{MOMENT_FORMAT}')",
    MOMENT_FORMAT,
)
DRIVERS = Kind("VARCHAR", list[Driver], None, item=Driver)
ACTIONS = Kind("VARCHAR", list[ActionRecommendation], None, item=ActionRecommendation)

Posted = Literal["scored", "echoed"]


@dataclass(frozen=True)
class ScoreField:
    """One field of the score record.

    Parameters
    ----------
    name
        Column of the scores table and key of the API body.
    kind
        Store type and JSON type.
    body
        Position in the API body (1 = first); None when the body leaves it out.
    csv
        Column number in the CSV export (1 = first); None when not exported.
    header
        The export's column header; the name when None.
    nullable
        May be null in an API body (JSON has no NaN: a missing number is null).
    page
        A column of the list page's rows.
    master
        Copied from the account master (the ``accounts`` table).
    posted
        In a posted row's score: ``scored`` from the row, or ``echoed`` from the request.
    first_of
        (list field, item key): the field repeats that key of the list's first item.
    description, ge, le
        For the API's schema.
    """

    name: str
    kind: Kind
    body: int | None = None
    csv: int | None = None
    header: str | None = None
    nullable: bool = True
    page: bool = False
    master: bool = False
    posted: Posted | None = None
    first_of: tuple[str, str] | None = None
    description: str | None = None
    ge: float | None = None
    le: float | None = None

    @property
    def export_header(self) -> str:
        return self.header or self.name


@dataclass(frozen=True)
class BodyPart:
    """A part of the API body: a run of scalar fields, or one list field.

    Parameters
    ----------
    sql
        DuckDB ``to_json`` of a scores row's run of consecutive scalar fields (an object).
    list_field
        A list field, stored as JSON text and spliced into the body as it is: DuckDB would
        parse it and write it again, twice as slow.
    """

    sql: str | None = None
    list_field: str | None = None


class RecordError(ValueError):
    """A score record declared inconsistently (it would derive a broken table, body or CSV)."""


@dataclass(frozen=True)
class ScoreRecord:
    """The fields of a score record, in the scores table's column order, and what derives
    from them.

    Raises
    ------
    RecordError
        When the declaration is inconsistent, naming the field and what to fix.
    """

    fields: tuple[ScoreField, ...]

    def __post_init__(self) -> None:
        names = [f.name for f in self.fields]
        doubled = sorted({n for n in names if names.count(n) > 1})
        if doubled:
            raise RecordError(f"fields declared twice: {doubled}")
        for attribute in ("body", "csv"):
            at = sorted(
                getattr(f, attribute) for f in self.fields if getattr(f, attribute) is not None
            )
            if at != list(range(1, len(at) + 1)):
                raise RecordError(
                    f"the {attribute} positions {at} must number 1 to {len(at)}, each once"
                )
        headers = [f.export_header for f in self.exported]
        if len(set(headers)) != len(headers):
            raise RecordError(f"export headers declared twice: {headers}")
        for f in self.fields:
            self._check(f)

    def _check(self, f: ScoreField) -> None:
        if f.first_of is not None:
            source, key = f.first_of
            if source not in self.names or not self[source].kind.is_list:
                raise RecordError(f"{f.name} repeats an item of {source!r}, not a list field")
            item = self[source].kind.item
            if item is None or key not in item.model_fields:
                raise RecordError(f"{f.name} repeats {key!r}, which {source} items do not have")
            if f.body is not None:
                raise RecordError(f"{f.name} repeats {source} items: the body has them already")
        if f.csv is not None and f.body is None and f.first_of is None:
            # the export is written from the API bodies
            raise RecordError(f"{f.name} is exported, so it must be in the body or repeat an item")
        if f.kind.is_list and f.nullable:
            # a missing list is written as [] (serving.state.account_json)
            raise RecordError(f"{f.name} is a list, never null: declare it nullable=False")
        if f.posted == "echoed" and f.body is None:
            raise RecordError(f"{f.name} is echoed in posted rows' scores: give it a body position")

    # --------------------------------------------------------------------------------------------
    # Lookups
    # --------------------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[ScoreField]:
        return iter(self.fields)

    def __getitem__(self, name: str) -> ScoreField:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    @cached_property
    def names(self) -> tuple[str, ...]:
        """Every field, in the scores table's column order."""
        return tuple(f.name for f in self.fields)

    @cached_property
    def body(self) -> tuple[ScoreField, ...]:
        """The fields of the API body, in its order."""
        return tuple(
            sorted((f for f in self.fields if f.body is not None), key=lambda f: f.body or 0)
        )

    @cached_property
    def exported(self) -> tuple[ScoreField, ...]:
        """The fields of the CSV export, in its column order."""
        return tuple(
            sorted((f for f in self.fields if f.csv is not None), key=lambda f: f.csv or 0)
        )

    # --------------------------------------------------------------------------------------------
    # Derived: the store, the page, the export
    # --------------------------------------------------------------------------------------------
    @cached_property
    def store_schema(self) -> dict[str, str]:
        """The scores table: column -> DuckDB type, in column order."""
        return {f.name: f.kind.store for f in self.fields}

    @cached_property
    def body_columns(self) -> tuple[str, ...]:
        """The columns an API body is made from, in body order."""
        return tuple(f.name for f in self.body)

    @cached_property
    def page_columns(self) -> tuple[str, ...]:
        """The columns of the list page's rows."""
        return tuple(f.name for f in self.fields if f.page)

    @cached_property
    def master_columns(self) -> tuple[str, ...]:
        """The columns copied from the account master."""
        return tuple(f.name for f in self.fields if f.master)

    @cached_property
    def export_headers(self) -> tuple[str, ...]:
        """The CSV export's header row."""
        return tuple(f.export_header for f in self.exported)

    @cached_property
    def summaries(self) -> tuple[tuple[str, str, str], ...]:
        """(field, list field, item key) of each field repeating a list's first item."""
        return tuple((f.name, *f.first_of) for f in self.fields if f.first_of)

    @cached_property
    def scored_on_posted_rows(self) -> tuple[str, ...]:
        """The fields that scoring a posted feature row gives."""
        return tuple(f.name for f in self.fields if f.posted == "scored")

    def summarise(self, lists: Mapping[str, Any]) -> dict[str, Any]:
        """The summary fields of an account from its lists (the first driver's phrase, ...)."""
        out: dict[str, Any] = {}
        for name, source, key in self.summaries:
            items = lists.get(source) or ()
            out[name] = items[0].get(key) if items else None
        return out

    def export_values(self, body: Mapping[str, Any]) -> list[Any]:
        """One export row's values from an account's API body, in column order."""
        values = {**body, **self.summarise(body)}
        return [values.get(f.name) for f in self.exported]

    @cached_property
    def body_parts(self) -> tuple[BodyPart, ...]:
        """The API body in order: runs of consecutive scalar fields, and the list fields."""
        parts: list[BodyPart] = []
        run: list[str] = []
        for f in self.body:
            if f.kind.sql is not None:
                run.append(f"'{f.name}': {f.kind.sql.replace('{c}', f.name)}")
                continue
            if run:
                parts.append(BodyPart(sql="to_json({" + ", ".join(run) + "})"))
                run = []
            parts.append(BodyPart(list_field=f.name))
        if run:
            parts.append(BodyPart(sql="to_json({" + ", ".join(run) + "})"))
        return tuple(parts)

    # --------------------------------------------------------------------------------------------
    # Derived: the API's response models
    # --------------------------------------------------------------------------------------------
    def response_model(
        self,
        name: str,
        doc: str,
        *,
        module: str,
        posted: bool = False,
        extra: Mapping[str, tuple[Any, Any]] | None = None,
    ) -> type[BaseModel]:
        """A pydantic model of the API body: every body field, in body order, all required.

        Every key is always in a body (null where nullable), so the schema says so.

        Parameters
        ----------
        name, doc, module
            The model's name (its OpenAPI schema's), docstring and module.
        posted
            The score of a posted feature row: only the fields it scores or echoes, the echoed
            ones nullable (the caller may leave them out of the request).
        extra
            Further fields after the record's: name -> (type, pydantic ``Field``).

        Returns
        -------
        type of pydantic.BaseModel
        """
        fields: dict[str, Any] = {}
        for f in self.body:
            if posted and f.posted is None:
                continue
            nullable = f.nullable or (posted and f.posted == "echoed")
            kind = f.kind.json | None if nullable else f.kind.json
            fields[f.name] = (kind, Field(description=f.description, ge=f.ge, le=f.le))
        fields.update(extra or {})
        return create_model(name, __doc__=doc, __module__=module, **fields)


# ------------------------------------------------------------------------------------------------
# The record
# ------------------------------------------------------------------------------------------------
RECORD = ScoreRecord((
    ScoreField("account_id", TEXT, body=1, csv=2, nullable=False, page=True, posted="echoed"),
    ScoreField(
        "as_of", DAY, body=6, csv=7, nullable=False, posted="echoed",
        description="the date the features were taken at",
    ),
    ScoreField("name", TEXT, body=2, csv=3, page=True, master=True),
    ScoreField("industry", TEXT, body=3, csv=4, master=True),
    ScoreField("region", TEXT, body=4, csv=5, page=True, master=True),
    ScoreField("account_manager", TEXT, body=5, csv=6, page=True, master=True),
    ScoreField(
        "defection_probability", NUMBER, body=7, csv=10, nullable=False, page=True,
        posted="scored", description="calibrated, over the horizon", ge=0, le=1,
    ),
    ScoreField(
        "value", NUMBER, body=8, csv=11, nullable=False, page=True, posted="scored",
        description="predicted net revenue over the horizon",
    ),
    ScoreField(
        "value_low", NUMBER, body=9, csv=12, nullable=False, page=True, posted="scored",
        description="lower bound of the value interval",
    ),
    ScoreField(
        "value_high", NUMBER, body=10, csv=13, nullable=False, page=True, posted="scored",
        description="upper bound of the value interval",
    ),
    ScoreField(
        "value_at_stake", NUMBER, body=11, csv=14, posted="scored",
        description="revenue the account could take away (last year's); null when unknown",
    ),
    ScoreField(
        "value_at_risk", NUMBER, body=12, csv=15, page=True, posted="scored",
        description="defection probability x value at stake; null when unknown",
    ),
    ScoreField(
        "tier", TEXT, body=13, csv=8, page=True, posted="scored",
        description="A/B/C by cumulative share of predicted value",
    ),
    ScoreField("relationship_stage", TEXT, body=14, csv=9, posted="scored"),
    ScoreField(
        "rank", INTEGER, body=15, csv=1, page=True,
        description="position by value at risk (1 = most at risk)",
    ),
    ScoreField(
        "top_driver", TEXT, csv=16, page=True, posted="scored", first_of=("drivers", "phrase")
    ),
    ScoreField(
        "top_driver_cause", TEXT, csv=17, page=True, posted="scored",
        first_of=("drivers", "cause"),
    ),
    ScoreField(
        "top_driver_zh", TEXT, page=True, posted="scored", first_of=("drivers", "phrase_zh")
    ),
    ScoreField(
        "drivers", DRIVERS, body=20, csv=21, nullable=False, posted="scored",
        description="what pushes the risk up, strongest first",
    ),
    ScoreField(
        "first_action", TEXT, csv=18, page=True, posted="scored", first_of=("actions", "title")
    ),
    ScoreField(
        "first_action_owner", TEXT, csv=19, page=True, posted="scored",
        first_of=("actions", "owner"),
    ),
    ScoreField(
        "first_action_due", DAY, csv=20, page=True, posted="scored",
        first_of=("actions", "due_date"),
    ),
    ScoreField(
        "first_action_zh", TEXT, page=True, posted="scored", first_of=("actions", "title_zh")
    ),
    ScoreField(
        "actions", ACTIONS, body=21, csv=22, nullable=False, posted="scored",
        description="recommended retention actions, first one first",
    ),
    ScoreField("model_name", TEXT, body=16, csv=23, posted="scored"),
    ScoreField("model_version", TEXT, body=17, csv=24, posted="scored"),
    ScoreField("playbook_version", TEXT, body=18, csv=25, posted="scored"),
    ScoreField("scored_at", MOMENT, body=19, csv=26, description="when it was scored (UTC)"),
    ScoreField(
        "horizon", TEXT, body=22,
        description="the period the probability and value are over, e.g. 365d (the model's)",
    ),
    ScoreField(
        "currency", TEXT, body=23,
        description="the currency of value, value_at_stake and value_at_risk",
    ),
    ScoreField(
        "first_action_saving", NUMBER, csv=27, page=True, posted="scored",
        first_of=("actions", "expected_saving"),
    ),
))


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
"""How text starts that a spreadsheet opening a CSV would run as a formula."""


def formula_safe(text: str) -> str:
    """``text`` for a CSV cell: with a leading quote when a spreadsheet would run it."""
    return "'" + text if text.startswith(FORMULA_START) else text
