"""The retention playbook: a versioned YAML file of actions, validated when it is loaded.

The shipped default is ``serving/decisions/playbook.yaml`` (package data); callers pass another
path to use their own (the service reads it from a setting). A malformed playbook fails at load
with a message naming each bad action by its id and the field that is wrong, so a manager who
edited it can fix it without reading code.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property, lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from kam.features.catalog import CATALOG
from kam.serving.decisions.conditions import Condition
from kam.serving.decisions.phrasebook import SUFFIXES, UNTRANSLATED
from kam.serving.decisions.vocabulary import FAMILIES, OWNERS, Cause, Owner, Technique, Tier

DEFAULT_PLAYBOOK = "playbook.yaml"
# Marks Chinese shown where a playbook gives no English title.
UNTRANSLATED_ZH = "[ZH] "
_FEATURES = {f.name for f in CATALOG}


class PlaybookError(ValueError):
    """The playbook is malformed.

    ``problems`` lists (action id, field, message) for every problem found.
    """

    def __init__(self, source: str, problems: list[tuple[str, str, str]]) -> None:
        self.source = source
        self.problems = problems
        listed = "; ".join(
            f"action {action!r}, field {field!r}: {message}" if action else f"{field}: {message}"
            for action, field, message in problems
        )
        super().__init__(f"playbook {source}: {listed}")


class Trigger(BaseModel):
    """When an action is recommended: driver causes/families/features, and feature conditions."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    causes: list[Cause] = Field(default_factory=list)
    families: list[str] = Field(default_factory=list)
    features: list[str] = Field(default_factory=list)
    when: list[str] = Field(default_factory=list)

    @field_validator("families")
    @classmethod
    def _known_families(cls, value: list[str]) -> list[str]:
        unknown = [f for f in value if f not in FAMILIES]
        if unknown:
            raise ValueError(f"unknown families {unknown}; use {sorted(FAMILIES)}")
        return value

    @field_validator("features")
    @classmethod
    def _known_features(cls, value: list[str]) -> list[str]:
        unknown = [f for f in value if f not in _FEATURES]
        if unknown:
            raise ValueError(f"unknown features {unknown}: not in the feature catalog")
        return value

    @field_validator("when", mode="before")
    @classmethod
    def _conditions(cls, value: Any) -> Any:
        items = [value] if isinstance(value, str) else value
        if isinstance(items, list):
            for item in items:
                Condition.parse(item)  # raises with the accepted forms
        return items

    @cached_property
    def conditions(self) -> tuple[Condition, ...]:
        """The parsed ``when`` conditions."""
        return tuple(Condition.parse(text) for text in self.when)

    @property
    def needs_driver(self) -> bool:
        """True when a matching driver is required (any cause, family or feature listed)."""
        return bool(self.causes or self.families or self.features)


class Action(BaseModel):
    """One playbook action."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    title: str = Field(min_length=1)
    title_zh: str | None = Field(None, min_length=1)
    technique: Technique
    owner: Owner
    cause: Cause
    due_in_days: int = Field(ge=1)
    cool_down_days: int = Field(ge=0)
    tiers: list[Tier] = Field(min_length=1)
    trigger: Trigger = Field(default_factory=Trigger)
    description: str | None = None
    description_zh: str | None = None
    effort: float = Field(1.0, gt=0, description="the owner's time, in the owner's unit")
    cost: float = Field(0.0, ge=0, description="money spent besides the owner's time")

    @model_validator(mode="before")
    @classmethod
    def _title_in_some_language(cls, data: Any) -> Any:
        # a playbook written in Chinese only: its Chinese title stands in for the English one,
        # marked, so the English page shows which text it is
        if isinstance(data, dict) and not data.get("title") and data.get("title_zh"):
            return {**data, "title": UNTRANSLATED_ZH + str(data["title_zh"])}
        return data

    def said(self, field: str, language: str) -> str | None:
        """``title`` or ``description`` in ``language`` ("en" or "zh-CN").

        A missing translation falls back to the English text marked ``[EN] ``, never to a
        blank; None only when the action has no such text at all (an optional description).
        """
        english = getattr(self, field)
        if language == "en":
            return english
        local = getattr(self, field + SUFFIXES[language], None)
        if local:
            return local
        return None if english is None else UNTRANSLATED + english


class OwnerUnit(BaseModel):
    """How an owner's capacity is counted (hours, visits) and what one unit costs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    unit: str = Field(pattern=r"^[a-z]+$", description="e.g. h (hours) or visit")
    cost_per_unit: float = Field(ge=0, description="money per unit of the owner's time")
    alias: str | None = Field(None, pattern=r"^[A-Za-z][A-Za-z0-9_]*$")


# Used when a playbook does not say: the iron triangle counts hours, the sponsor visits.
DEFAULT_OWNERS: dict[Owner, OwnerUnit] = {
    "AR": OwnerUnit(unit="h", cost_per_unit=600.0),
    "SR": OwnerUnit(unit="h", cost_per_unit=800.0),
    "FR": OwnerUnit(unit="h", cost_per_unit=500.0),
    "executive sponsor": OwnerUnit(unit="visit", cost_per_unit=5000.0, alias="executive"),
}


class Playbook(BaseModel):
    """A versioned list of actions with unique ids."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str = Field(min_length=1)
    owners: dict[Owner, OwnerUnit] = Field(default_factory=lambda: dict(DEFAULT_OWNERS))
    actions: list[Action] = Field(min_length=1)

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int | float) else value

    @model_validator(mode="after")
    def _unique_ids(self) -> Playbook:
        seen: set[str] = set()
        for action in self.actions:
            if action.id in seen:
                raise ValueError(f"action id {action.id!r} appears twice")
            seen.add(action.id)
        missing = sorted({a.owner for a in self.actions} - set(self.owners), key=OWNERS.index)
        if missing:
            raise ValueError(f"owners {missing} have actions but no unit and cost under owners")
        names = [n.lower() for o, u in self.owners.items() for n in {o, u.alias or o}]
        if len(set(names)) != len(names):
            raise ValueError(f"owner names and aliases must differ: {names}")
        return self

    def action_cost(self, action: Action) -> float:
        """Money one run of ``action`` costs: the owner's time at its rate, plus ``cost``."""
        return action.effort * self.owners[action.owner].cost_per_unit + action.cost

    @cached_property
    def by_id(self) -> Mapping[str, Action]:
        """Actions by id."""
        return {a.id: a for a in self.actions}

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(a.id for a in self.actions)


def parse_playbook(data: Any, source: str = "<playbook>") -> Playbook:
    """Validate a playbook from already-parsed YAML data.

    Raises
    ------
    PlaybookError
        Naming every bad action by id and the field that is wrong.
    """
    if not isinstance(data, dict):
        problem = ("", "playbook", "expected a mapping with version and actions")
        raise PlaybookError(source, [problem])
    try:
        return Playbook.model_validate(data)
    except ValidationError as err:
        raise PlaybookError(source, _problems(err, data)) from None


def load_playbook(path: Path | str | None = None) -> Playbook:
    """Read and validate the playbook at ``path`` (the shipped default when None).

    Parameters
    ----------
    path
        A playbook YAML file; ``None`` for the default shipped with the package.

    Returns
    -------
    Playbook

    Raises
    ------
    PlaybookError
        When the file is malformed, naming each bad action and field.
    FileNotFoundError
        When ``path`` does not exist.
    """
    if path is None:
        return _default_playbook()
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise PlaybookError(str(path), [("", "yaml", str(err))]) from None
    return parse_playbook(data, str(path))


@lru_cache(maxsize=1)
def _default_playbook() -> Playbook:
    text = resources.files(__package__).joinpath(DEFAULT_PLAYBOOK).read_text(encoding="utf-8")
    return parse_playbook(yaml.safe_load(text), DEFAULT_PLAYBOOK)


def _problems(err: ValidationError, data: dict[str, Any]) -> list[tuple[str, str, str]]:
    actions = data.get("actions")
    raw_actions = actions if isinstance(actions, list) else []
    problems: list[tuple[str, str, str]] = []
    for item in err.errors():
        loc = list(item["loc"])
        message = str(item["msg"]).removeprefix("Value error, ")
        if len(loc) >= 2 and loc[0] == "actions" and isinstance(loc[1], int):
            raw = raw_actions[loc[1]] if loc[1] < len(raw_actions) else None
            action = (
                str(raw["id"])
                if isinstance(raw, dict) and raw.get("id") is not None
                else f"#{loc[1] + 1}"
            )
            # list positions inside a field (trigger.when[0]) add nothing for the reader
            field = ".".join(str(p) for p in loc[2:] if not isinstance(p, int)) or "action"
            problems.append((action, field, message))
        else:
            problems.append(("", ".".join(str(p) for p in loc) or "playbook", message))
    return problems
