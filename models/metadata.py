"""What training tells serving about a model: one typed record, written and read here only.

A training run records how its labels were defined (horizon, decline, population), which
snapshots it used (as_of ranges, spacing), how its evidence was obtained and what its fit chose.
Serving needs the label definition to build features for the same population, the API and the
page show the rest. The record travels inside the bundle as plain JSON (the scorer's
``meta.json``) in the shape every bundle so far has used, plus an ``activity_window`` key::

    {"model_name": "kam-key-accounts", "horizon": "365d", "decline": 0.5,
     "population": "order in last 365d", "activity_window": "365d", "snapshot_every": "1mo",
     "train_as_of": ["2021-12-31", "2024-12-31"], "backtest_train_as_of": [...] or null,
     "test_as_of": "2024-12-31", "data_end": "2025-12-31", "evaluation": "out-of-time",
     "capacity": "small", "calibration": "isotonic", "defection_trees": 147,
     "value_trees": 210, "interval_level": 0.8}

Bundles written before ``activity_window`` was recorded carry the population as text only;
keys a bundle lacks take the defaults training has always used (365d, decline 0.5, 365d).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, get_args

import pandas as pd

from kam.features.periods import EVER, Period, format_window, parse_window

Evaluation = Literal["out-of-time", "account-grouped folds"]
OUT_OF_TIME: Evaluation = "out-of-time"
ACCOUNT_FOLDS: Evaluation = "account-grouped folds"
YEAR = Period(365, "day")
POPULATION_PREFIX = "order in last "
FIT_KEYS = ("capacity", "calibration", "defection_trees", "value_trees", "interval_level")


class AsOfRange(NamedTuple):
    """The first and last as_of of a series of snapshots."""

    first: pd.Timestamp
    last: pd.Timestamp

    @classmethod
    def of(cls, dates: Sequence[Any]) -> AsOfRange:
        """The range spanned by ``dates`` (in order, as a plan lists them)."""
        if not len(dates):
            raise ValueError("an as_of range needs at least one date")
        return cls(_day(dates[0], "as_of"), _day(dates[-1], "as_of"))

    def to_json(self) -> list[str]:
        return [_text(self.first), _text(self.last)]


@dataclass(frozen=True)
class FitChoices:
    """What fitting chose on the validation windows, and the interval it was asked for.

    ``refit`` reuses these, so the fit records them itself; the run adds the rest of
    :class:`TrainingMetadata` around them.
    """

    capacity: str
    calibration: str
    defection_trees: int
    value_trees: int
    interval_level: float

    def to_meta(self) -> dict[str, Any]:
        """The JSON fields of the bundle's metadata."""
        return {
            "capacity": self.capacity,
            "calibration": self.calibration,
            "defection_trees": int(self.defection_trees),
            "value_trees": int(self.value_trees),
            "interval_level": float(self.interval_level),
        }

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> FitChoices:
        """Read the choices back; raises ValueError naming the fields a bundle lacks."""
        missing = [key for key in FIT_KEYS if meta.get(key) is None]
        if missing:
            raise ValueError(f"model metadata lacks the fit's {', '.join(missing)}")
        return cls(
            capacity=str(meta["capacity"]),
            calibration=str(meta["calibration"]),
            defection_trees=_number(meta, "defection_trees", int),
            value_trees=_number(meta, "value_trees", int),
            interval_level=_number(meta, "interval_level", float),
        )


@dataclass(frozen=True)
class TrainingMetadata:
    """How a model was trained: its labels, population, snapshots, evidence and choices.

    Parameters
    ----------
    model_name
        Registered model name the run used.
    horizon
        Label window after as_of.
    decline
        Defection: value in the horizon below ``(1 - decline)`` times the revenue before.
    activity_window
        Population: accounts with an order in this window before as_of; None for every
        account with an order on or before it (``ever``).
    snapshot_every
        Spacing of the training snapshots (None where a bundle did not record it).
    train_as_of
        First and last as_of the deployed model was fitted on.
    backtest_train_as_of
        First and last training as_of of the backtest behind the metrics; None when the
        history held one label window and the evidence came from account folds.
    test_as_of
        The as_of the metrics were measured at.
    data_end
        The end of the data at training.
    evaluation
        How the metrics were obtained: out-of-time, or account-grouped folds.
    fit
        The fit's choices (tree shape, calibration, numbers of trees, interval level).
    """

    model_name: str | None = None
    horizon: Period = YEAR
    decline: float = 0.5
    activity_window: Period | None = YEAR
    snapshot_every: Period | None = None
    train_as_of: AsOfRange | None = None
    backtest_train_as_of: AsOfRange | None = None
    test_as_of: pd.Timestamp | None = None
    data_end: pd.Timestamp | None = None
    evaluation: Evaluation | None = None
    fit: FitChoices | None = None

    def __post_init__(self) -> None:
        # days, as the bundle records them, so a record equals itself read back
        for name in ("test_as_of", "data_end"):
            object.__setattr__(self, name, _maybe_day(getattr(self, name), name))
        if not 0 < self.decline <= 1:
            raise ValueError(f"decline must be in (0, 1], got {self.decline}")
        if self.evaluation is not None and self.evaluation not in get_args(Evaluation):
            raise ValueError(
                f"evaluation must be one of {', '.join(get_args(Evaluation))}, "
                f"got {self.evaluation!r}"
            )

    @property
    def population(self) -> str:
        """The population in words: ``order in last 365d`` or ``ever``."""
        if self.activity_window is None:
            return EVER
        return f"{POPULATION_PREFIX}{self.activity_window}"

    def to_meta(self) -> dict[str, Any]:
        """The JSON fields of the bundle's metadata (see the module's docstring)."""
        return {
            "model_name": self.model_name,
            "horizon": str(self.horizon),
            "decline": float(self.decline),
            "population": self.population,
            "activity_window": format_window(self.activity_window),
            "snapshot_every": None if self.snapshot_every is None else str(self.snapshot_every),
            "train_as_of": None if self.train_as_of is None else self.train_as_of.to_json(),
            "backtest_train_as_of": None
            if self.backtest_train_as_of is None
            else self.backtest_train_as_of.to_json(),
            "test_as_of": _maybe_text(self.test_as_of),
            "data_end": _maybe_text(self.data_end),
            "evaluation": self.evaluation,
            **({} if self.fit is None else self.fit.to_meta()),
        }

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> TrainingMetadata:
        """Read the record from a bundle's metadata, current or older.

        Raises
        ------
        ValueError
            When a field is present but cannot be read; the message names it.
        """
        try:
            return cls(
                model_name=None if meta.get("model_name") is None else str(meta["model_name"]),
                horizon=Period.parse(meta.get("horizon") or YEAR),
                decline=_number(meta, "decline", float, 0.5),
                activity_window=_activity_window(meta),
                snapshot_every=None
                if meta.get("snapshot_every") is None
                else Period.parse(meta["snapshot_every"]),
                train_as_of=_range(meta, "train_as_of"),
                backtest_train_as_of=_range(meta, "backtest_train_as_of"),
                test_as_of=_maybe_day(meta.get("test_as_of"), "test_as_of"),
                data_end=_maybe_day(meta.get("data_end"), "data_end"),
                evaluation=meta.get("evaluation"),
                fit=FitChoices.from_meta(meta) if any(k in meta for k in FIT_KEYS) else None,
            )
        except ValueError as err:
            raise ValueError(f"cannot read the model's training metadata: {err}") from err


def _activity_window(meta: Mapping[str, Any]) -> Period | None:
    if "activity_window" in meta:
        return parse_window(meta["activity_window"])
    population = meta.get("population")
    if population is None:
        return YEAR
    text = str(population).strip()
    if text.lower() == EVER:
        return None
    if not text.startswith(POPULATION_PREFIX):
        raise ValueError(
            f"population {population!r} is neither 'ever' nor '{POPULATION_PREFIX}<period>'"
        )
    return Period.parse(text.removeprefix(POPULATION_PREFIX))


def _range(meta: Mapping[str, Any], key: str) -> AsOfRange | None:
    value = meta.get(key)
    if value is None:
        return None
    if isinstance(value, str) or len(value) != 2:
        raise ValueError(f"{key} must be [first, last], got {value!r}")
    return AsOfRange(_day(value[0], key), _day(value[1], key))


def _maybe_day(value: Any, key: str) -> pd.Timestamp | None:
    return None if value is None else _day(value, key)


def _day(value: Any, key: str) -> pd.Timestamp:
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{key} is not a date: {value!r}") from err
    if pd.isna(stamp):
        raise ValueError(f"{key} is not a date: {value!r}")
    return stamp.normalize()


def _maybe_text(day: pd.Timestamp | None) -> str | None:
    return None if day is None else _text(day)


def _text(day: pd.Timestamp) -> str:
    return str(day.date())


def _number(meta: Mapping[str, Any], key: str, kind: type, default: Any = None) -> Any:
    value = meta.get(key)
    if value is None:
        return default
    try:
        return kind(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{key} is not a number: {value!r}") from err
