"""The feature spec: which columns a model reads, in which order, and how categories are coded.

Training and serving both turn account rows into the same numeric matrix through this one
object, so a category code or a column order can never drift between them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from kam.models.errors import FeatureRowError


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

    def record_matrix(self, records: list[Mapping[str, Any]]) -> np.ndarray:
        """Validate posted feature rows and build their matrix without pandas (the online path).

        Raises
        ------
        FeatureRowError
            Naming every bad field: unknown names, non-numeric values, unknown categories.
        """
        errors: dict[str, str] = {}
        out = np.full((len(records), len(self.names)), np.nan, dtype=np.float64)
        index = {n: j for j, n in enumerate(self.names)}
        codes = {n: {lvl: i for i, lvl in enumerate(lv)} for n, lv in self.categories.items()}
        for i, record in enumerate(records):
            prefix = f"rows[{i}]." if len(records) > 1 else ""
            for key, value in record.items():
                j = index.get(key)
                if j is None:
                    errors[f"{prefix}{key}"] = "unknown feature"
                    continue
                if value is None:
                    continue
                if key in codes:
                    code = codes[key].get(str(value))
                    if code is None:
                        errors[f"{prefix}{key}"] = (
                            f"unknown category {value!r}; expected one of {list(codes[key])}"
                        )
                    else:
                        out[i, j] = code
                    continue
                if isinstance(value, bool) or not isinstance(value, int | float):
                    errors[f"{prefix}{key}"] = f"expected a number, got {value!r}"
                    continue
                if math.isinf(value):
                    errors[f"{prefix}{key}"] = "expected a finite number"
                    continue
                out[i, j] = float(value)
        if errors:
            raise FeatureRowError(errors)
        return out

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
