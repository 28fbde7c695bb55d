"""Training settings (labels, population, snapshot spacing) and the one way to a training request.

On top of the registry's settings. Environment variables: ``KAM_HORIZON`` (e.g. ``365d``,
``26w``, ``6mo``), ``KAM_ACTIVITY_WINDOW`` (a period, or ``ever``), ``KAM_DECLINE`` and
``KAM_SNAPSHOT_EVERY`` (a period, or ``auto``). The values are typed: a horizon is a
:class:`~kam.features.periods.Period`, ``ever`` is None, and so is ``auto``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
from pydantic import BeforeValidator, Field, PlainSerializer
from pydantic_settings import NoDecode

from kam.features.periods import Period, format_window, parse_window
from kam.models.settings import RegistrySettings
from kam.training.fit import FitOptions
from kam.training.run import YEAR, TrainRequest

AUTO = "auto"


def parse_spacing(value: Period | str | None) -> Period | None:
    """A snapshot spacing: a period such as ``1mo``, or None for ``auto`` (or None itself)."""
    if value is None or (isinstance(value, str) and value.strip().lower() == AUTO):
        return None
    return Period.parse(value)


def format_spacing(every: Period | None) -> str:
    """The text :func:`parse_spacing` reads back: ``1mo``, or ``auto`` for None."""
    return AUTO if every is None else str(every)


# Read from text (environment, config file, command line) and written back as the same text.
# NoDecode: an environment value is the text itself, not JSON.
PeriodSetting = Annotated[Period, NoDecode, BeforeValidator(Period.parse), PlainSerializer(str)]
WindowSetting = Annotated[
    Period | None, NoDecode, BeforeValidator(parse_window), PlainSerializer(format_window)
]
SpacingSetting = Annotated[
    Period | None, NoDecode, BeforeValidator(parse_spacing), PlainSerializer(format_spacing)
]


class TrainSettings(RegistrySettings):
    """How ``kam train`` and ``kam features`` define labels, population and snapshots."""

    horizon: PeriodSetting = Field(YEAR, description="label horizon, e.g. 365d, 26w, 6mo")
    activity_window: WindowSetting = Field(
        YEAR,
        description="population: accounts with an order in this window before as_of, or 'ever'",
    )
    decline: float = Field(
        0.5, gt=0, le=1, description="defection: value < (1 - decline) x the prior window's"
    )
    snapshot_every: SpacingSetting = Field(
        None,
        description="spacing of training snapshots, e.g. 1w or 1mo; auto: weekly for histories "
        "under two years, monthly otherwise",
    )


def train_request(
    settings: TrainSettings | None = None,
    *,
    data: Path | None = None,
    test_as_of: Any = None,
    register: bool = True,
    features: Sequence[str] | None = None,
    options: FitOptions | None = None,
    **overrides: Any,
) -> TrainRequest:
    """The training run that settings describe: the one recipe for the CLI, notebooks and tests.

    Parameters
    ----------
    settings
        Training settings; read from the environment and config file when None.
    data
        Data directory holding the store (``--data``); the settings' store when None.
    test_as_of
        The backtest's test as_of; the latest fully labelled one when None.
    register
        Register the bundle in the model registry.
    features
        Restrict the models to these features (all available when None).
    options
        Fitting knobs; the defaults when None.
    **overrides
        Settings to replace for this run, e.g. ``horizon="26w"``, ``activity_window="ever"``,
        ``snapshot_every="1w"``, ``decline=1.0``; None keeps the setting. Validated as the
        settings are.

    Returns
    -------
    TrainRequest
    """
    chosen = (settings if settings is not None else TrainSettings()).override(**overrides)
    chosen = chosen.for_data(data)
    return TrainRequest(
        store_url=chosen.store_url_for(),
        tracking_uri=chosen.resolved_tracking_uri,
        experiment=chosen.experiment,
        model_name=chosen.model_name,
        artifact_location=chosen.resolved_artifact_location,
        horizon=chosen.horizon,
        decline=chosen.decline,
        activity_window=chosen.activity_window,
        test_as_of=None if test_as_of is None else pd.Timestamp(test_as_of).normalize(),
        every=chosen.snapshot_every,
        register=register,
        features=None if features is None else tuple(features),
        options=options if options is not None else FitOptions(),
    )
