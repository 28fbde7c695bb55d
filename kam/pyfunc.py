"""The registered model as the product: MLflow pyfunc scoring that returns the score record.

``mlflow.pyfunc.load_model("models:/kam-key-accounts@champion").predict(rows)`` gives, for each
feature row, what ``kam score`` gives for an account: defection probability, value and its
interval, value at stake and at risk, tier, relationship stage, drivers and actions (JSON text,
as in the store's ``scores`` table and ``kam score --out``), one column per field of
:data:`kam.serving.record.RECORD`, rows in the input's order.

Rows are validated as the API validates posted rows, by the same function
(:meth:`kam.models.feature_spec.FeatureSpec.record_matrix`): any feature may be missing or
NaN, a category outside the model's levels is refused naming the field. The rules are those of
a posted row (:mod:`kam.serving.scoring.online`): without the store there is no account
history, so cool-downs are not applied and the value at stake is the row's ``revenue_365d``.
Tiers come from value cut-offs fixed when the bundle was logged: the Pareto tiers of the
deployed model's predicted value over the run's test snapshot (the latest fully labelled book),
so a row's tier does not depend on the other rows of the call.

The class lives here, above serving, because the record's drivers and actions are serving's
rules and the models layer must not import serving; training logs it without importing it,
being handed the class (``TrainRequest.bundle``) by the command line and :mod:`kam.project`.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModelContext
from mlflow.types import ColSpec, Schema, TensorSpec

from kam.models.bundle import RUNTIME, ScoringBundle
from kam.models.errors import FeatureRowError
from kam.models.registry import LoadedModel
from kam.models.scorer import Scorer
from kam.serving.decisions.playbook import Playbook
from kam.serving.decisions.stages import DEFAULT_TIER_THRESHOLDS, assign_tiers, tier_cutoffs
from kam.serving.record import DAY, INTEGER, MOMENT, NUMBER, RECORD
from kam.serving.scoring.online import score_matrix

#: input columns that are not features: echoed into the record
ECHOED = ("account_id", "as_of")
# kinds of the record's fields in MLflow's schema; lists travel as JSON text
_SCHEMA_TYPES = {id(NUMBER): "double", id(INTEGER): "long", id(DAY): "datetime",
                 id(MOMENT): "datetime"}
_ROOT = Path(__file__).resolve().parent


def _package_dir(name: str) -> Path:
    # kam/<name> is a link to the top-level folder in a checkout, a folder in an installed wheel
    return (_ROOT / name).resolve()


class ProductBundle(ScoringBundle):
    """Pyfunc wrapper returning the score record (see the module's docstring)."""

    runtime: ClassVar[tuple[str, ...]] = (
        *RUNTIME, "duckdb", "ibis-framework", "sqlglot", "pydantic", "PyYAML",
    )
    tier_cutoffs: tuple[float, float] | None = None

    @classmethod
    def code(cls) -> dict[str, Path]:
        serving = _package_dir("serving")
        return {
            "features": _package_dir("features"),
            "models": _package_dir("models"),
            # serving's scoring rules, without the HTTP service and the page
            **{f"serving/{p}": serving / p
               for p in ("__init__.py", "record.py", "store.py", "snapshot.py",
                         "decision_tables.py", "i18n", "decisions", "scoring")},
            "pyfunc.py": Path(__file__).resolve(),
        }

    def configure(self, config: Mapping[str, Any]) -> None:
        cut = config.get("tier_cutoffs")
        self.tier_cutoffs = None if cut is None else (float(cut[0]), float(cut[1]))

    def prepare(self, scorer: Scorer, book: pd.DataFrame) -> dict[str, Any]:
        super().prepare(scorer, book)
        value = scorer.predict_frame(book)["value"].to_numpy()
        self.tier_cutoffs = tier_cutoffs(value, assign_tiers(value, DEFAULT_TIER_THRESHOLDS))
        return {"tier_cutoffs": list(self.tier_cutoffs), "tier_rows": len(book)}

    def example(self, sample: pd.DataFrame) -> pd.DataFrame:
        numeric = [n for n in sample.columns if n not in self.scorer.spec.categories]
        return sample.astype(dict.fromkeys(numeric, "float64"))

    def signature(self, sample: pd.DataFrame) -> ModelSignature:
        """Every feature optional (double, or string for a category), plus the echoed columns;
        the output is the score record."""
        spec = self.scorer.spec
        inputs: list[ColSpec | TensorSpec] = [
            ColSpec("string", "account_id", required=False),
            ColSpec("datetime", "as_of", required=False),
        ]
        inputs += [
            ColSpec("string" if name in spec.categories else "double", name, required=False)
            for name in spec.names
        ]
        outputs: list[ColSpec | TensorSpec] = [
            ColSpec(_SCHEMA_TYPES.get(id(f.kind), "string"), f.name, required=not f.nullable)
            for f in RECORD
        ]
        return ModelSignature(Schema(inputs), Schema(outputs))

    def predict(
        self, context: PythonModelContext | None, model_input: pd.DataFrame, params: Any = None
    ) -> pd.DataFrame:
        model = LoadedModel(self.scorer, "pyfunc", None, None, None, None, {})
        return score_rows(model, model_input, tier_cutoffs=self.tier_cutoffs)


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or value is pd.NaT or (
        isinstance(value, float) and math.isnan(value)
    )


def _days(frame: pd.DataFrame) -> pd.Series:
    if "as_of" not in frame.columns:
        return pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns]")
    try:
        return pd.to_datetime(frame["as_of"]).dt.normalize()
    except (ValueError, TypeError) as err:
        raise FeatureRowError({"as_of": f"expected dates, {err}"}) from err


def score_rows(
    model: LoadedModel,
    rows: pd.DataFrame,
    *,
    tier_cutoffs: tuple[float, float] | None = None,
    playbook: Playbook | None = None,
    scored_at: datetime | None = None,
) -> pd.DataFrame:
    """Score feature rows into score records, without the store.

    Parameters
    ----------
    model
        The loaded scoring bundle.
    rows
        Feature columns (any may be missing; NaN or None is a missing value), and optionally
        ``account_id`` and ``as_of`` (the date the features were taken at, from which the
        actions' due dates count; today where missing).
    tier_cutoffs
        Smallest predicted values of tiers A and B; without them the row's ``spend_tier``.
    playbook
        The shipped playbook when None.
    scored_at
        Time stamp of the records (now, UTC, when None).

    Returns
    -------
    pandas.DataFrame
        One row per input row, in its order, with the record's columns (``RECORD.names``);
        ``rank`` orders the rows of this call by value at risk.

    Raises
    ------
    kam.models.errors.FeatureRowError
        Naming every bad field: unknown feature, non-numeric value, unknown category.
    """
    rows = rows.reset_index(drop=True)
    days = _days(rows)
    features = rows.drop(columns=[c for c in ECHOED if c in rows.columns])
    records: list[Mapping[str, Any]] = [
        {str(k): v for k, v in row.items() if not _missing(v)}
        for row in features.to_dict("records")
    ]
    x = model.scorer.spec.record_matrix(records)
    scored: list[dict[str, Any]] = [{} for _ in records]
    today = pd.Timestamp.now().normalize()
    for day, at in pd.Series(np.arange(len(rows))).groupby(days.fillna(today)).groups.items():
        picked = np.asarray(at, dtype=int)
        for i, out in zip(
            picked,
            score_matrix(model, x[picked], playbook=playbook, as_of=day, tier_cutoffs=tier_cutoffs),
            strict=True,
        ):
            scored[i] = out
    frame = pd.DataFrame(scored, index=rows.index)
    for name in ("drivers", "actions"):
        frame[name] = [json.dumps(items, default=_text, ensure_ascii=False)
                       for items in frame.get(name, [])]
    ids = rows["account_id"] if "account_id" in rows.columns else pd.Series(None, index=rows.index)
    frame["account_id"] = ids.astype(object).where(ids.notna(), None)
    frame["as_of"] = days
    for column in RECORD.master_columns:
        source = rows.get(column)
        frame[column] = None if source is None else source.astype(object).where(source.notna())
    at_risk = np.nan_to_num(frame.get("value_at_risk", pd.Series(dtype=float)).to_numpy(float))
    order = np.lexsort((frame["account_id"].fillna("").astype(str).to_numpy(), -at_risk))
    rank = np.empty(len(frame), dtype=np.int64)
    rank[order] = np.arange(1, len(frame) + 1)
    frame["rank"] = rank
    if "first_action_due" in frame.columns:
        frame["first_action_due"] = pd.to_datetime(frame["first_action_due"])
    stamp = pd.Timestamp(scored_at if scored_at is not None else datetime.now(UTC))
    frame["scored_at"] = stamp.tz_convert("UTC").tz_localize(None) if stamp.tzinfo else stamp
    return frame.reindex(columns=list(RECORD.names))


def _text(value: Any) -> str:
    """JSON for the dates inside drivers and actions, as the scores table writes them."""
    if isinstance(value, dt.date):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
