"""The phrasebook: how each feature is said to a manager, with the account's own figures.

The phrasings live in one catalog, ``serving/decisions/phrases.yaml``, next to the feature catalog
(``features/catalog.py``): for every feature, the defection cause it points to and a few
phrasings chosen by conditions on the account's values. Rendering is vectorised: all accounts
whose driver is the same feature are phrased in one pass over numpy arrays.

The small condition language (``executive_contact_recency_days >= 60``, ``< 0``, ``missing``)
is shared with the playbook's triggers.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from kam.features.catalog import CATALOG, by_name

# The defection causes a driver points to: the three root causes of DOMAIN §2 and the
# relationship aggravators (single-threaded, no senior contact, turnover).
CAUSES: tuple[str, ...] = (
    "competitor_price",
    "unmet_needs",
    "unresolved_complaints",
    "relationship",
)
Cause = Literal["competitor_price", "unmet_needs", "unresolved_complaints", "relationship"]
# The three root causes; "evidence" features (symptoms) take the cause the root evidence shows.
ROOT_CAUSES: tuple[str, ...] = CAUSES[:3]
EVIDENCE = "evidence"
EVIDENCE_CODE = -2

DEFAULT_PHRASES = "phrases.yaml"
_FAMILIES = {f.family for f in CATALOG}
_NUMERIC = {f.name for f in CATALOG if f.kind != "category"}


class PhrasebookError(ValueError):
    """The phrase catalog is malformed; the message names the feature and the field."""


# ------------------------------------------------------------------------------------------------
# Conditions
# ------------------------------------------------------------------------------------------------
# each comparison on arrays (numpy) and on one value (plain Python, much cheaper there)
_ArrayOp = Callable[[np.ndarray, float], np.ndarray]
_OPS: dict[str, tuple[_ArrayOp, Callable[[float, float], bool]]] = {
    ">=": (np.greater_equal, operator.ge),
    "<=": (np.less_equal, operator.le),
    "==": (np.equal, operator.eq),
    "!=": (np.not_equal, operator.ne),
    ">": (np.greater, operator.gt),
    "<": (np.less, operator.lt),
}
_CONDITION = re.compile(
    r"^\s*(?:(?P<feature>[a-z_][a-z0-9_]*)\s+)?"
    r"(?:(?P<missing>missing)|(?P<op>>=|<=|==|!=|>|<)\s*(?P<value>[-+]?\d+(?:\.\d+)?))\s*$"
)


@dataclass(frozen=True)
class Condition:
    """``feature op value`` (or ``feature missing``) on an account's feature values.

    A comparison is false where the value is missing, so a condition never fires on a feature
    the account has no data for; ``missing`` is true exactly there.
    """

    feature: str
    op: str
    value: float = math.nan

    @classmethod
    def parse(cls, text: str, default_feature: str | None = None) -> Condition:
        """Read ``"executive_contact_recency_days >= 60"``, ``"< 0"`` or ``"missing"``.

        Parameters
        ----------
        text
            The condition.
        default_feature
            Feature a condition without a feature name applies to.

        Raises
        ------
        ValueError
            When the text is not a condition or names no feature and has no default; the
            message shows the accepted forms.
        """
        match = _CONDITION.match(str(text))
        if not match:
            raise ValueError(
                f"cannot read condition {text!r}: write '<feature> <op> <number>' "
                f"(op one of {', '.join(_OPS)}) or '<feature> missing'"
            )
        feature = match["feature"] or default_feature
        if feature is None:
            raise ValueError(f"condition {text!r} names no feature")
        if feature not in _NUMERIC:
            raise ValueError(f"condition {text!r}: {feature!r} is not a numeric catalog feature")
        if match["missing"]:
            return cls(feature, "missing")
        return cls(feature, match["op"], float(match["value"]))

    def holds(self, values: Mapping[str, np.ndarray], n: int) -> np.ndarray:
        """Boolean array: where the condition holds (false where the feature is absent)."""
        column = values.get(self.feature)
        if column is None:
            # the feature is not in this data at all (e.g. transactions only): never "missing"
            # in the sense of an event that did not happen, and no comparison can hold
            return np.zeros(n, dtype=bool)
        column = np.asarray(column, dtype=float)
        if self.op == "missing":
            return np.isnan(column)
        if self.op == "!=":  # the one comparison that is true on NaN
            return (column != self.value) & ~np.isnan(column)
        return _OPS[self.op][0](column, self.value)

    def holds_one(self, row: Mapping[str, float]) -> bool:
        """:meth:`holds` for one account: ``row`` maps feature names to floats (NaN = none)."""
        v = row.get(self.feature)
        if v is None:
            return False
        if self.op == "missing":
            return math.isnan(v)
        # Python's comparisons are false on NaN, as numpy's are; "!=" is the exception
        return _OPS[self.op][1](v, self.value) and not (self.op == "!=" and math.isnan(v))

    def __str__(self) -> str:
        if self.op == "missing":
            return f"{self.feature} missing"
        return f"{self.feature} {self.op} {self.value:g}"


class _Rows(Mapping[str, np.ndarray]):
    """A view of feature columns at some rows, sliced only for the features actually read."""

    def __init__(self, values: Mapping[str, np.ndarray], rows: np.ndarray) -> None:
        self._values, self._rows = values, rows
        self._cache: dict[str, np.ndarray] = {}

    def __getitem__(self, name: str) -> np.ndarray:
        column = self._cache.get(name)
        if column is None:
            column = self._cache[name] = np.asarray(self._values[name], dtype=float)[self._rows]
        return column

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


# ------------------------------------------------------------------------------------------------
# Formats
# ------------------------------------------------------------------------------------------------
def _whole(v: float) -> str:
    return f"{round(v):,d}"


def _money(v: float) -> str:
    a = abs(v)
    sign = "-" if v < 0 else ""
    if a >= 1e6:
        return f"{sign}{a / 1e6:.1f}m"
    if a >= 1e4:
        return f"{sign}{a / 1e3:.0f}k"
    if a >= 1e3:
        return f"{sign}{a / 1e3:.1f}k"
    return f"{sign}{a:.0f}"


def _points(v: float) -> str:
    a = abs(v) * 100
    return f"{a:.0f}" if a >= 1 else f"{a:.1f}"


def _change(v: float) -> str:
    # symmetric change s = (now - before) / (|now| + |before|); plain change = 2s / (1 - s)
    if v >= 1:
        return "from nothing"
    plain = abs(2 * v / (1 - v)) * 100
    return f"{plain:,.0f}%"


_FORMATS: dict[str, Callable[[float], str]] = {
    "days": _whole,
    "count": _whole,
    "pct": lambda v: f"{v * 100:.0f}%",
    "points": _points,
    "change": _change,
    "money": _money,
    "ratio": lambda v: f"{v:.1f}",
    "num": lambda v: f"{v:.1f}",
    "signed": lambda v: f"{v:+.2f}",
    "abs": lambda v: f"{abs(v):.2f}",
    "years": lambda v: f"{v / 365.25:.1f}",
    "months12": lambda v: f"{round(v * 12):d}",
}
FORMATS: tuple[str, ...] = tuple(_FORMATS)
_PLACEHOLDER = re.compile(r"\{([^{}:]+)(?::([^{}:]+))?(?::([^{}]+))?\}")


def _noun(count: str, noun: str) -> str:
    singular, _, plural = noun.partition("|")
    return f"{count} {singular if count == '1' else (plural or singular + 's')}"


@dataclass(frozen=True)
class _Piece:
    """A literal text piece, or a placeholder (feature, format, noun)."""

    literal: str = ""
    feature: str | None = None
    fmt: str = ""
    noun: str = ""

    def say(self, value: float) -> str:
        """The placeholder filled with ``value``."""
        text = _FORMATS[self.fmt](value)
        return _noun(text, self.noun) if self.noun else text


@dataclass(frozen=True)
class Phrasing:
    """One way of saying a feature: conditions, the template split into pieces, and the cause
    this reading points to (None: the feature's own cause)."""

    text: str
    conditions: tuple[Condition, ...]
    pieces: tuple[_Piece, ...]
    cause: str | None = None
    uses: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # the features the placeholders read, looked up on every render
        used = tuple(dict.fromkeys(p.feature for p in self.pieces if p.feature))
        object.__setattr__(self, "uses", used)

    def render(self, values: Mapping[str, np.ndarray], rows: np.ndarray) -> list[str]:
        """The phrase for each of ``rows`` (all placeholders have values there)."""
        parts: list[Sequence[str]] = []
        for piece in self.pieces:
            if piece.feature is None:
                parts.append([piece.literal] * len(rows))
                continue
            column = np.asarray(values[piece.feature], dtype=float)[rows]
            parts.append([piece.say(v) for v in column.tolist()])
        return ["".join(p) for p in zip(*parts, strict=True)] if parts else [""] * len(rows)

    def render_one(self, row: Mapping[str, float]) -> str:
        """:meth:`render` for one account (``row``: feature name -> float)."""
        return "".join(
            piece.literal if piece.feature is None else piece.say(row[piece.feature])
            for piece in self.pieces
        )


def _compile(feature: str, text: str) -> tuple[_Piece, ...]:
    pieces: list[_Piece] = []
    at = 0
    for match in _PLACEHOLDER.finditer(text):
        if match.start() > at:
            pieces.append(_Piece(literal=text[at : match.start()]))
        name, fmt, noun = match[1].strip(), (match[2] or "num").strip(), (match[3] or "").strip()
        if name not in _NUMERIC:
            raise PhrasebookError(
                f"feature {feature!r}: field 'say.text': placeholder {{{match[1]}}} is not a "
                "numeric feature of the catalog"
            )
        if fmt not in _FORMATS:
            raise PhrasebookError(
                f"feature {feature!r}: field 'say.text': unknown format {fmt!r} in "
                f"{{{match[0][1:-1]}}}; use one of {', '.join(FORMATS)}"
            )
        pieces.append(_Piece(feature=name, fmt=fmt, noun=noun))
        at = match.end()
    if at < len(text):
        pieces.append(_Piece(literal=text[at:]))
    return tuple(pieces)


# ------------------------------------------------------------------------------------------------
# The catalog file
# ------------------------------------------------------------------------------------------------
class _VariantModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    when: str | list[str] | None = None
    cause: Cause | Literal["evidence"] | None = None
    text: str = Field(min_length=1)


class _EntryModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cause: Cause | Literal["evidence"]
    otherwise: Cause | None = None
    say: list[_VariantModel] = Field(min_length=1)

    @model_validator(mode="after")
    def _evidence_needs_otherwise(self) -> _EntryModel:
        uses = self.cause == EVIDENCE or any(v.cause == EVIDENCE for v in self.say)
        if uses and self.otherwise is None:
            raise ValueError("cause 'evidence' needs an 'otherwise' cause")
        return self


class _FileModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str
    family_causes: dict[str, Cause] = Field(default_factory=dict)
    features: dict[str, _EntryModel]

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int | float) else value


@dataclass(frozen=True)
class Phrasebook:
    """The phrase catalog: cause and phrasings per feature.

    Use :func:`load_phrasebook` to read one; :meth:`render` phrases many accounts at once and
    :meth:`cause_codes` says which cause each account's reading of a feature points to.

    A feature's cause is fixed (``competitor_price``, ...), set by the phrasing that applies
    (e.g. complaints mostly about quality point to unmet needs), or ``evidence``: a symptom
    such as falling spend or sour contact sentiment takes the cause of the account's strongest
    root-cause evidence, and its ``otherwise`` cause when there is none.
    """

    version: str
    causes: Mapping[str, str]
    otherwise: Mapping[str, str]
    phrasings: Mapping[str, tuple[Phrasing, ...]]

    def cause(self, feature: str) -> str:
        """The cause ``feature`` points to by default (``evidence`` for a symptom)."""
        return self.causes[feature]

    def follows_evidence(self, feature: str) -> bool:
        """True when ``feature`` is a symptom whose cause comes from the other evidence."""
        return self.causes.get(feature) == EVIDENCE

    def choose(
        self, feature: str, values: Mapping[str, np.ndarray], rows: np.ndarray | None = None
    ) -> np.ndarray:
        """Index of the phrasing used for each of ``rows`` (-1: the generic description)."""
        if rows is None:
            subset: Mapping[str, np.ndarray] = values
            size = len(next(iter(values.values()))) if values else 0
        else:
            rows = np.asarray(rows, dtype=np.int64)
            subset = _Rows(values, rows)
            size = len(rows)
        chosen = np.full(size, -1, dtype=np.int64)
        todo = np.ones(size, dtype=bool)
        for k, phrasing in enumerate(self.phrasings.get(feature, ())):
            if any(name not in values for name in phrasing.uses):
                continue
            ok = todo.copy()
            for condition in phrasing.conditions:
                ok &= condition.holds(subset, size)
            for name in phrasing.uses:
                ok &= ~np.isnan(subset[name])
            chosen[ok] = k
            todo &= ~ok
            if not todo.any():
                break
        return chosen

    def render(
        self,
        feature: str,
        values: Mapping[str, np.ndarray],
        rows: np.ndarray | None = None,
    ) -> np.ndarray:
        """Phrase ``feature`` for the accounts at ``rows`` with their own figures.

        Parameters
        ----------
        feature
            Catalog feature to phrase.
        values
            Feature name -> float array over all accounts (NaN = no value); features not in the
            data may be absent.
        rows
            Positions of the accounts to phrase; all when None.

        Returns
        -------
        numpy.ndarray
            Object array of phrases, one per row: the first phrasing whose conditions hold and
            whose placeholders all have values; otherwise the catalog description with the
            value ("days since the last order: 45").
        """
        n = len(next(iter(values.values()))) if values else 0
        rows = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)
        chosen = self.choose(feature, values, rows)
        out = np.empty(len(rows), dtype=object)
        phrasings = self.phrasings.get(feature, ())
        for k in np.unique(chosen):
            at = chosen == k
            if k < 0:
                out[at] = _generic(feature, values, rows[at])
            else:
                out[at] = phrasings[k].render(values, rows[at])
        return out

    def cause_codes(self, feature: str, values: Mapping[str, np.ndarray], n: int) -> np.ndarray:
        """Cause of ``feature`` for each account, as an index into :data:`CAUSES`.

        Returns
        -------
        numpy.ndarray
            Integer codes; :data:`EVIDENCE_CODE` where the cause follows the evidence.
        """
        base = self.causes.get(feature, "relationship")
        code = EVIDENCE_CODE if base == EVIDENCE else CAUSES.index(base)
        out = np.full(n, code, dtype=np.int64)
        phrasings = self.phrasings.get(feature, ())
        if n and any(p.cause for p in phrasings):
            chosen = self.choose(feature, values)
            for k, phrasing in enumerate(phrasings):
                if phrasing.cause:
                    out[chosen == k] = (
                        EVIDENCE_CODE if phrasing.cause == EVIDENCE
                        else CAUSES.index(phrasing.cause)
                    )
        return out

    # One account at a time: the same rules on a row of floats, without array overhead (the
    # service scores posted rows one by one; tests hold these equal to the methods above).
    def choose_one(self, feature: str, row: Mapping[str, float]) -> int:
        """:meth:`choose` for one account (``row``: feature name -> float, NaN = no value)."""
        for k, phrasing in enumerate(self.phrasings.get(feature, ())):
            if any(name not in row for name in phrasing.uses):
                continue
            if all(c.holds_one(row) for c in phrasing.conditions) and not any(
                math.isnan(row[name]) for name in phrasing.uses
            ):
                return k
        return -1

    def render_one(self, feature: str, row: Mapping[str, float]) -> str:
        """:meth:`render` for one account."""
        k = self.choose_one(feature, row)
        if k >= 0:
            return self.phrasings[feature][k].render_one(row)
        return _generic_one(feature, row.get(feature))

    def cause_code_one(self, feature: str, row: Mapping[str, float]) -> int:
        """:meth:`cause_codes` for one account."""
        phrasings = self.phrasings.get(feature, ())
        if any(p.cause for p in phrasings):
            k = self.choose_one(feature, row)
            cause = phrasings[k].cause if k >= 0 else None
            if cause:
                return EVIDENCE_CODE if cause == EVIDENCE else CAUSES.index(cause)
        base = self.causes.get(feature, "relationship")
        return EVIDENCE_CODE if base == EVIDENCE else CAUSES.index(base)


def _generic(feature: str, values: Mapping[str, np.ndarray], rows: np.ndarray) -> list[str]:
    column = values.get(feature)
    if column is None:
        return [_generic_one(feature, None)] * len(rows)
    return [_generic_one(feature, v) for v in np.asarray(column, dtype=float)[rows].tolist()]


def _generic_one(feature: str, value: float | None) -> str:
    """The catalog's description of ``feature``, with the value when there is one."""
    description = by_name(feature).description
    return description if value is None or math.isnan(value) else f"{description}: {_plain(value)}"


def _plain(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"


def _build(data: Any, source: str) -> Phrasebook:
    if not isinstance(data, dict):
        raise PhrasebookError(f"phrase catalog {source}: expected a mapping at the top")
    try:
        model = _FileModel.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        # drop the union-member tags pydantic adds to the location (literal[...], str, ...)
        loc = [str(p) for p in first["loc"] if re.fullmatch(r"\w+", str(p))]
        if len(loc) >= 3 and loc[-1] in {"str", "list"}:
            loc = loc[:-1]
        where = (
            f"feature {loc[1]!r}: field {'.'.join(loc[2:]) or 'entry'!r}"
            if len(loc) >= 2 and loc[0] == "features"
            else f"field {'.'.join(loc)!r}"
        )
        message = str(first["msg"]).removeprefix("Value error, ")
        raise PhrasebookError(f"phrase catalog {source}: {where}: {message}") from None
    unknown = sorted(set(model.family_causes) - _FAMILIES)
    if unknown:
        raise PhrasebookError(f"phrase catalog {source}: unknown families {unknown}")
    causes: dict[str, str] = {
        f.name: model.family_causes[f.family] for f in CATALOG if f.family in model.family_causes
    }
    phrasings: dict[str, tuple[Phrasing, ...]] = {}
    otherwise: dict[str, str] = {}
    for feature, entry in model.features.items():
        if feature not in _NUMERIC:
            raise PhrasebookError(
                f"phrase catalog {source}: feature {feature!r} is not a numeric feature of the "
                "feature catalog"
            )
        causes[feature] = entry.cause
        if entry.otherwise is not None:
            otherwise[feature] = entry.otherwise
        compiled = []
        for variant in entry.say:
            whens = [variant.when] if isinstance(variant.when, str) else (variant.when or [])
            try:
                conditions = tuple(Condition.parse(w, feature) for w in whens)
            except ValueError as err:
                raise PhrasebookError(
                    f"phrase catalog {source}: feature {feature!r}: field 'say.when': {err}"
                ) from None
            compiled.append(
                Phrasing(
                    variant.text, conditions, _compile(feature, variant.text), variant.cause
                )
            )
        phrasings[feature] = tuple(compiled)
    return Phrasebook(model.version, causes, otherwise, phrasings)


def load_phrasebook(path: Path | str | None = None) -> Phrasebook:
    """Read and validate a phrase catalog (the one shipped with the package when None).

    Raises
    ------
    PhrasebookError
        When the file is malformed, naming the feature and the field.
    """
    if path is None:
        return _default_phrasebook()
    path = Path(path)
    return _build(yaml.safe_load(path.read_text(encoding="utf-8")), str(path))


@lru_cache(maxsize=1)
def _default_phrasebook() -> Phrasebook:
    text = resources.files(__package__).joinpath(DEFAULT_PHRASES).read_text(encoding="utf-8")
    return _build(yaml.safe_load(text), DEFAULT_PHRASES)
