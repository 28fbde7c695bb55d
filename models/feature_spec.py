"""The feature spec: which columns a model reads, in which order, and how categories are coded.

Training and serving both turn account rows into the same numeric matrix through this one
object, so a category code or a column order can never drift between them.
"""

from __future__ import annotations

import difflib
import json
import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from kam.models.errors import FeatureRowError
from kam.models.feature_schema import FeatureField, feature_fields

# A row's score is reliable when the row gives at least this share of the model's features.
# Snapshot rows of real accounts give 77% or more (accounts without complaints or deliveries
# leave those out); a row giving less than half is not an account the model has seen, yet
# LightGBM would score it as confidently as a full one.
MIN_KNOWN_SHARE = 0.5


@dataclass(frozen=True)
class FeatureSpec:
    """Ordered feature names, with the category levels of the categorical ones.

    Parameters
    ----------
    names
        Feature columns in model order.
    categories
        For each categorical feature, its known levels; a level's code is its position.
        Unknown levels (and nulls) become missing, which LightGBM routes like any missing value.
    families
        Family of each feature (spend, rhythm, ...), used to group driver contributions.
    """

    names: tuple[str, ...]
    categories: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    families: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_frame(
        cls, frame: pd.DataFrame, names: Iterable[str], families: Mapping[str, str]
    ) -> FeatureSpec:
        """Build the spec from a training frame: object/string/category columns are categorical."""
        names = tuple(names)
        categories: dict[str, tuple[str, ...]] = {}
        for name in names:
            column = frame[name]
            if not (pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)):
                levels = sorted({str(v) for v in column.dropna().unique()})
                categories[name] = tuple(levels)
        return cls(names, categories, {n: families.get(n, "other") for n in names})

    @property
    def categorical_indices(self) -> list[int]:
        return [i for i, n in enumerate(self.names) if n in self.categories]

    def matrix(self, frame: pd.DataFrame) -> np.ndarray:
        """The model matrix (float64, categories as codes, missing as NaN) for ``frame``."""
        missing = [n for n in self.names if n not in frame.columns]
        if missing:
            raise FeatureRowError({n: "missing column" for n in missing})
        out = np.empty((len(frame), len(self.names)), dtype=np.float64)
        for j, name in enumerate(self.names):
            column = frame[name]
            if name in self.categories:
                levels = self.categories[name]
                codes = pd.Categorical(column.astype("string"), categories=list(levels)).codes
                out[:, j] = np.where(codes < 0, np.nan, codes)
            else:
                out[:, j] = pd.to_numeric(column, errors="coerce").to_numpy(
                    dtype=np.float64, na_value=np.nan
                )
        return out

    @cached_property
    def fields(self) -> tuple[FeatureField, ...]:
        """What a caller may send for each input, in model order (kind, unit, range, levels)."""
        return tuple(feature_fields(self))

    @property
    def min_known(self) -> int:
        """Fewest known features for a reliable score (see :data:`MIN_KNOWN_SHARE`)."""
        return max(1, math.ceil(MIN_KNOWN_SHARE * len(self.names)))

    @cached_property
    def _checks(self) -> dict[str, tuple[int, dict[str, int] | None, float, float, bool]]:
        """name -> (column, category codes or None, minimum, maximum, whole numbers only)."""
        out: dict[str, tuple[int, dict[str, int] | None, float, float, bool]] = {}
        for j, f in enumerate(self.fields):
            levels = self.categories.get(f.name)
            codes = None if levels is None else {lvl: i for i, lvl in enumerate(levels)}
            low = -math.inf if f.minimum is None else f.minimum
            high = math.inf if f.maximum is None else f.maximum
            out[f.name] = (j, codes, low, high, f.kind == "count")
        return out

    def check_rows(
        self, records: Sequence[Mapping[str, Any]], *, min_known: int | None = None
    ) -> np.ndarray:
        """Validate feature rows and build their matrix without pandas (posted rows, the pyfunc).

        The one validation of rows that did not come from a snapshot. A row may leave any
        feature out, or give it as None or NaN (not known); what it gives must be a model
        input, a finite number within the feature's sane range (a whole one for counts), or
        for a category one of the levels the model knows, matched exactly (case included).
        With ``min_known``, a row giving fewer known features is refused too (the API instead
        marks such a row's score unreliable, see :meth:`reliable`).

        Parameters
        ----------
        records
            Feature name -> value, one mapping per row.
        min_known
            Fewest known features per row; 0 (the default) accepts empty rows.

        Returns
        -------
        numpy.ndarray
            The model matrix, float64, categories as codes, unknown as NaN.

        Raises
        ------
        FeatureRowError
            Naming every bad field (``rows[i].name`` when there are several rows): unknown
            names (with the nearest known one), non-numbers, values out of range, unknown
            categories; else each row with too few known features (key ``features``).
        """
        errors: dict[str, str] = {}
        checks = self._checks
        out = np.full((len(records), len(self.names)), np.nan, dtype=np.float64)
        needed = min_known or 0
        short: dict[str, str] = {}
        for i, record in enumerate(records):
            prefix = f"rows[{i}]." if len(records) > 1 else ""
            known = 0
            for key, value in record.items():
                check = checks.get(key)
                if check is None:
                    errors[f"{prefix}{key}"] = _unknown_name(key, self.names)
                    continue
                if _is_missing(value):
                    continue
                j, codes, low, high, whole = check
                if codes is not None:
                    code = codes.get(value) if isinstance(value, str) else None
                    if code is None:
                        errors[f"{prefix}{key}"] = _unknown_level(value, codes)
                    else:
                        out[i, j] = code
                        known += 1
                    continue
                number = _number(value)
                if number is None:
                    errors[f"{prefix}{key}"] = f"expected a number, got {_shown(value)}"
                elif not math.isfinite(number):
                    errors[f"{prefix}{key}"] = f"expected a finite number, got {number}"
                elif not low <= number <= high:
                    errors[f"{prefix}{key}"] = (
                        f"{number:g} is outside the sane range {low:g} to {high:g}"
                    )
                elif whole and not number.is_integer():
                    errors[f"{prefix}{key}"] = f"expected a whole number (a count), got {number:g}"
                else:
                    out[i, j] = number
                    known += 1
            if known < needed:
                short[f"{prefix}features"] = (
                    f"only {known} of the model's {len(self.names)} features known; a row needs "
                    f"at least {needed} to be scored"
                )
        if errors:
            raise FeatureRowError(errors)
        if short:
            raise FeatureRowError(short)
        return out

    def reliable(self, x: np.ndarray) -> np.ndarray:
        """Per row of a model matrix: whether it gives at least :attr:`min_known` features."""
        return np.asarray((~np.isnan(x)).sum(axis=1) >= self.min_known, dtype=bool)

    def record_matrix(
        self, records: Sequence[Mapping[str, Any]], *, min_known: int | None = None
    ) -> np.ndarray:
        """The matrix of posted feature rows: :meth:`check_rows`, kept under its former name."""
        return self.check_rows(records, min_known=min_known)

    def check_frame(self, frame: pd.DataFrame, *, min_known: int | None = None) -> np.ndarray:
        """:meth:`check_rows` for a frame of feature rows (columns may be left out, NaN anywhere).

        Raises
        ------
        FeatureRowError
            As :meth:`check_rows`; a column of no feature is named once (not per row).
        """
        unknown = [c for c in frame.columns if c not in self._checks]
        if unknown:
            raise FeatureRowError({str(c): _unknown_name(str(c), self.names) for c in unknown})
        records: list[dict[str, Any]] = [
            {str(k): v for k, v in row.items()} for row in frame.to_dict("records")
        ]
        return self.check_rows(records, min_known=min_known)

    def to_json(self) -> str:
        return json.dumps(
            {
                "names": list(self.names),
                "categories": {k: list(v) for k, v in self.categories.items()},
                "families": dict(self.families),
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str) -> FeatureSpec:
        data = json.loads(text)
        return cls(
            tuple(data["names"]),
            {k: tuple(v) for k, v in data["categories"].items()},
            dict(data.get("families", {})),
        )


def _is_missing(value: Any) -> bool:
    return value is None or value is pd.NA or value is pd.NaT or (
        isinstance(value, float) and math.isnan(value)
    )


def _number(value: Any) -> float | None:
    """``value`` as a float when it is a number (not a bool, not text), else None."""
    if isinstance(value, bool | np.bool_):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, numbers.Real):  # numpy scalars from a frame
        return float(value)
    return None


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _unknown_name(key: str, names: Sequence[str]) -> str:
    near = difflib.get_close_matches(key, names, n=1)
    hint = f"; did you mean {near[0]!r}?" if near else ""
    return f"unknown feature{hint}"


def _unknown_level(value: Any, codes: Mapping[str, int]) -> str:
    levels = list(codes)
    if isinstance(value, str):
        same = [lvl for lvl in levels if lvl.casefold() == value.casefold()]
        if same:
            return f"unknown category {_shown(value)}; categories match case exactly: {same[0]!r}"
        return f"unknown category {_shown(value)}; expected one of {levels}"
    return f"expected a category (text), one of {levels}; got {_shown(value)}"
