"""The phrasebook: how each feature is said to a manager, with the account's own figures.

The phrasings live in one catalog, ``serving/decisions/phrases.yaml``, next to the feature catalog
(``features/catalog.py``): for every feature, the defection cause it points to and a few
phrasings chosen by conditions on the account's values. Rendering is vectorised: all accounts
whose driver is the same feature are phrased in one pass over numpy arrays (for one account on
plain floats, see :mod:`kam.serving.decisions.one_row`).

Phrasings are chosen by the condition language of :mod:`kam.serving.decisions.conditions`
(``executive_contact_recency_days >= 60``, ``< 0``, ``missing``), shared with the playbook's
triggers.

Every phrasing is said in English (``text``) and in Chinese (``text_zh``, with the same
placeholders, so both say the same figures); :meth:`Phrasebook.in_language` gives the catalog
in one of :data:`LANGUAGES`. A phrasing without its Chinese text is said in English behind
:data:`UNTRANSLATED`, so a missing translation shows instead of leaving a blank.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

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
from kam.serving.decisions.conditions import Condition
from kam.serving.decisions.formats import FORMATS, Piece
from kam.serving.decisions.vocabulary import (
    EVIDENCE,
    FAMILIES,
    Cause,
    Evidence,
    cause_code,
)

DEFAULT_PHRASES = "phrases.yaml"
# The languages phrases are said in; English is the catalog's own, the others are translations.
LANGUAGES: tuple[str, ...] = ("en", "zh-CN")
# The suffix of a field's translation in the catalog and the playbook: text_zh, title_zh
SUFFIXES: dict[str, str] = {"zh-CN": "_zh"}
# Marks English shown where a translation is missing.
UNTRANSLATED = "[EN] "
# How a driver's parts are joined: "a; b" in English, "甲；乙" in Chinese
SEPARATORS: dict[str, str] = {"en": "; ", "zh-CN": "；"}
_NUMERIC = {f.name for f in CATALOG if f.kind != "category"}


class PhrasebookError(ValueError):
    """The phrase catalog is malformed; the message names the feature and the field."""


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


_PLACEHOLDER = re.compile(r"\{([^{}:]+)(?::([^{}:]+))?(?::([^{}]+))?\}")


@dataclass(frozen=True)
class Phrasing:
    """One way of saying a feature: conditions, the template split into pieces, and the cause
    this reading points to (None: the feature's own cause)."""

    text: str
    conditions: tuple[Condition, ...]
    pieces: tuple[Piece, ...]
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
            say = piece.sayer()
            parts.append([say(v) for v in column.tolist()])
        return ["".join(p) for p in zip(*parts, strict=True)] if parts else [""] * len(rows)


def _compile(feature: str, text: str, language: str = "en") -> tuple[Piece, ...]:
    pieces: list[Piece] = []
    at = 0
    for match in _PLACEHOLDER.finditer(text):
        if match.start() > at:
            pieces.append(Piece(literal=text[at : match.start()]))
        name, fmt, noun = match[1].strip(), (match[2] or "num").strip(), (match[3] or "").strip()
        if name not in _NUMERIC:
            raise PhrasebookError(
                f"feature {feature!r}: field 'say.text': placeholder {{{match[1]}}} is not a "
                "numeric feature of the catalog"
            )
        if fmt not in FORMATS:
            raise PhrasebookError(
                f"feature {feature!r}: field 'say.text': unknown format {fmt!r} in "
                f"{{{match[0][1:-1]}}}; use one of {', '.join(FORMATS)}"
            )
        pieces.append(Piece(feature=name, fmt=fmt, noun=noun, language=language))
        at = match.end()
    if at < len(text):
        pieces.append(Piece(literal=text[at:]))
    return tuple(pieces)


# ------------------------------------------------------------------------------------------------
# The catalog file
# ------------------------------------------------------------------------------------------------
class _VariantModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    when: str | list[str] | None = None
    cause: Cause | Evidence | None = None
    text: str = Field(min_length=1)
    text_zh: str | None = Field(None, min_length=1)


class _EntryModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cause: Cause | Evidence
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
    # a feature's description in Chinese, said when no phrasing applies
    describe_zh: dict[str, str] = Field(default_factory=dict)
    features: dict[str, _EntryModel]

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int | float) else value


@dataclass(frozen=True)
class Phrasebook:
    """The phrase catalog: cause and phrasings per feature.

    Use :func:`load_phrasebook` to read one; :meth:`render` phrases many accounts at once and
    :meth:`cause_codes` says which cause each account's reading of a feature points to. Their
    one-account twins are in :mod:`kam.serving.decisions.one_row`.

    A feature's cause is fixed (``competitor_price``, ...), set by the phrasing that applies
    (e.g. complaints mostly about quality point to unmet needs), or ``evidence``: a symptom
    such as falling spend or sour contact sentiment takes the cause of the account's strongest
    root-cause evidence, and its ``otherwise`` cause when there is none.
    """

    version: str
    causes: Mapping[str, str]
    otherwise: Mapping[str, str]
    phrasings: Mapping[str, tuple[Phrasing, ...]]
    language: str = "en"
    # a feature's description in this language (English: the feature catalog's)
    descriptions: Mapping[str, str] = field(default_factory=dict)
    # the same catalog in the other languages, by language tag
    translations: Mapping[str, Phrasebook] = field(default_factory=dict)

    @property
    def separator(self) -> str:
        """How this language joins the parts of a driver's phrase."""
        return SEPARATORS[self.language]

    def in_language(self, language: str) -> Phrasebook:
        """The catalog said in ``language`` (one of :data:`LANGUAGES`): same conditions and
        causes, each phrasing's text in that language."""
        if language == self.language:
            return self
        if language not in self.translations:
            raise PhrasebookError(f"no phrases in {language!r}; languages: {', '.join(LANGUAGES)}")
        return self.translations[language]

    def cause(self, feature: str) -> str:
        """The cause ``feature`` points to by default (``evidence`` for a symptom)."""
        return self.causes[feature]

    def follows_evidence(self, feature: str) -> bool:
        """True when ``feature`` is a symptom whose cause comes from the other evidence."""
        return self.causes.get(feature) == EVIDENCE

    def choose(
        self, feature: str, values: Mapping[str, np.ndarray], rows: np.ndarray | None = None
    ) -> np.ndarray:
        """Which phrasing of ``feature`` each account is said with.

        Parameters
        ----------
        feature
            Catalog feature.
        values
            Feature name -> float array over all accounts (NaN = no value).
        rows
            Positions of the accounts; all when None.

        Returns
        -------
        numpy.ndarray
            Per row, the index of the first phrasing whose conditions hold and whose
            placeholders all have values; -1 for the generic description.
        """
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
                out[at] = _generic(feature, values, rows[at], self)
            else:
                out[at] = phrasings[k].render(values, rows[at])
        return out

    def cause_codes(self, feature: str, values: Mapping[str, np.ndarray], n: int) -> np.ndarray:
        """Cause of ``feature`` for each account, as a code of the vocabulary's causes.

        Parameters
        ----------
        feature
            Catalog feature.
        values
            Feature name -> float array over the accounts (NaN = no value).
        n
            Number of accounts.

        Returns
        -------
        numpy.ndarray
            Integer codes (indices into :data:`kam.serving.decisions.vocabulary.CAUSES`);
            ``EVIDENCE_CODE`` where the cause follows the evidence.
        """
        out = np.full(n, cause_code(self.causes.get(feature, "relationship")), dtype=np.int64)
        phrasings = self.phrasings.get(feature, ())
        if n and any(p.cause for p in phrasings):
            chosen = self.choose(feature, values)
            for k, phrasing in enumerate(phrasings):
                if phrasing.cause:
                    out[chosen == k] = cause_code(phrasing.cause)
        return out


def _generic(
    feature: str, values: Mapping[str, np.ndarray], rows: np.ndarray, book: Phrasebook
) -> list[str]:
    """The catalog's description of ``feature`` at ``rows``: what a feature without a phrasing
    that applies is said as."""
    column = values.get(feature)
    if column is None:
        return [describe(feature, None, book)] * len(rows)
    return [describe(feature, v, book) for v in np.asarray(column, dtype=float)[rows].tolist()]


def describe(feature: str, value: float | None, book: Phrasebook | None = None) -> str:
    """The catalog's description of ``feature``, with the value when there is one.

    Parameters
    ----------
    feature
        Catalog feature.
    value
        The account's value; None or NaN when it has none.
    book
        The catalog whose language it is said in; English when None.

    Returns
    -------
    str
        E.g. ``"days since the last order: 45"`` (``"距上次下单天数：45"``).
    """
    colon = ": "
    description = by_name(feature).description
    if book is not None and book.language != "en":
        colon = "："
        description = book.descriptions.get(feature) or UNTRANSLATED + description
    if value is None or math.isnan(value):
        return description
    return f"{description}{colon}{_plain(value)}"


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
    unknown = sorted(set(model.family_causes) - set(FAMILIES))
    if unknown:
        raise PhrasebookError(f"phrase catalog {source}: unknown families {unknown}")
    causes: dict[str, str] = {
        f.name: model.family_causes[f.family] for f in CATALOG if f.family in model.family_causes
    }
    phrasings: dict[str, tuple[Phrasing, ...]] = {}
    phrasings_zh: dict[str, tuple[Phrasing, ...]] = {}
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
        translated = []
        for variant in entry.say:
            whens = [variant.when] if isinstance(variant.when, str) else (variant.when or [])
            try:
                conditions = tuple(Condition.parse(w, feature) for w in whens)
            except ValueError as err:
                raise PhrasebookError(
                    f"phrase catalog {source}: feature {feature!r}: field 'say.when': {err}"
                ) from None
            english = Phrasing(
                variant.text, conditions, _compile(feature, variant.text), variant.cause
            )
            compiled.append(english)
            translated.append(_translated(feature, english, variant.text_zh, source))
        phrasings[feature] = tuple(compiled)
        phrasings_zh[feature] = tuple(translated)
    unknown = sorted(set(model.describe_zh) - _NUMERIC)
    if unknown:
        raise PhrasebookError(
            f"phrase catalog {source}: field 'describe_zh': {unknown} are not numeric features "
            "of the feature catalog"
        )
    chinese = Phrasebook(
        model.version, causes, otherwise, phrasings_zh, "zh-CN", dict(model.describe_zh)
    )
    return Phrasebook(
        model.version, causes, otherwise, phrasings, translations={"zh-CN": chinese}
    )


def _translated(feature: str, english: Phrasing, text: str | None, source: str) -> Phrasing:
    """The Chinese twin of a phrasing: the same conditions, cause and placeholders."""
    if text is None:
        # said in English, marked, with the English figures' pieces
        pieces = (Piece(literal=UNTRANSLATED), *english.pieces)
        return Phrasing(UNTRANSLATED + english.text, english.conditions, pieces, english.cause)
    pieces = _compile(feature, text, "zh-CN")
    said = {(p.feature, p.fmt) for p in pieces if p.feature}
    wanted = {(p.feature, p.fmt) for p in english.pieces if p.feature}
    if said != wanted:
        raise PhrasebookError(
            f"phrase catalog {source}: feature {feature!r}: field 'say.text_zh': "
            f"{text!r} must have the placeholders of {english.text!r}, so both say the same "
            "figures"
        )
    return Phrasing(text, english.conditions, pieces, english.cause)


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
