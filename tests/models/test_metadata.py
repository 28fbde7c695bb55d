"""The training metadata record: written as the bundle's JSON, read back from any bundle so far."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from kam.features.periods import Period
from kam.models.metadata import AsOfRange, FitChoices, TrainingMetadata
from kam.models.scorer import Scorer
from tests.world import World

DAY = pd.Timestamp

# meta.json of a bundle as training wrote it before the record existed (no activity_window key)
WRITTEN_BEFORE: dict[str, Any] = {
    "capacity": "small",
    "calibration": "isotonic",
    "defection_trees": 147,
    "value_trees": 210,
    "interval_level": 0.8,
    "model_name": "kam-key-accounts",
    "horizon": "26w",
    "decline": 1.0,
    "population": "order in last 180d",
    "test_as_of": "2024-12-31",
    "evaluation": "out-of-time",
    "train_as_of": ["2021-12-31", "2025-06-30"],
    "backtest_train_as_of": ["2021-12-31", "2024-06-30"],
    "snapshot_every": "1mo",
    "data_end": "2025-12-31",
    "interval_margin": [0.1, 0.2],
    "offset_feature": "revenue_365d",
}

FULL = TrainingMetadata(
    model_name="kam-key-accounts",
    horizon=Period.parse("26w"),
    decline=1.0,
    activity_window=Period.parse("180d"),
    snapshot_every=Period.parse("1mo"),
    train_as_of=AsOfRange(DAY("2021-12-31"), DAY("2025-06-30")),
    backtest_train_as_of=AsOfRange(DAY("2021-12-31"), DAY("2024-06-30")),
    test_as_of=DAY("2024-12-31"),
    data_end=DAY("2025-12-31"),
    evaluation="out-of-time",
    fit=FitChoices("small", "isotonic", 147, 210, 0.8),
)


def test_a_bundle_written_before_the_record_reads_into_it() -> None:
    assert TrainingMetadata.from_meta(WRITTEN_BEFORE) == FULL


def test_the_record_survives_the_bundles_json() -> None:
    written = json.loads(json.dumps(FULL.to_meta()))
    assert TrainingMetadata.from_meta(written) == FULL
    # the shape readers of earlier bundles know, plus the window itself
    assert {k: written[k] for k in WRITTEN_BEFORE if k in written} == {
        k: v for k, v in WRITTEN_BEFORE.items() if k in written
    }
    assert written["activity_window"] == "180d"


@pytest.mark.parametrize(
    ("meta", "window", "population"),
    [
        ({"population": "ever"}, None, "ever"),
        ({"population": "order in last 365d"}, "365d", "order in last 365d"),
        ({"activity_window": "ever", "population": "order in last 90d"}, None, "ever"),
        ({"activity_window": "2y"}, "2y", "order in last 2y"),
        ({}, "365d", "order in last 365d"),
    ],
    ids=["ever", "text", "window-first", "window-only", "none-recorded"],
)
def test_the_population(meta: dict, window: str | None, population: str) -> None:
    read = TrainingMetadata.from_meta(meta)
    assert (None if read.activity_window is None else str(read.activity_window)) == window
    assert read.population == population
    assert TrainingMetadata.from_meta(read.to_meta()) == read


def test_a_bundle_that_records_nothing_gets_the_training_defaults() -> None:
    read = TrainingMetadata.from_meta({"interval_margin": 0.3})
    assert read == TrainingMetadata()
    assert (str(read.horizon), read.decline, read.population) == (
        "365d", 0.5, "order in last 365d"
    )
    assert read.fit is None and read.train_as_of is None and read.evaluation is None


def test_one_label_window_records_no_backtest() -> None:
    meta = {**WRITTEN_BEFORE, "backtest_train_as_of": None, "evaluation": "account-grouped folds"}
    read = TrainingMetadata.from_meta(meta)
    assert read.backtest_train_as_of is None
    assert read.evaluation == "account-grouped folds"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("horizon", "soon"),
        ("population", "recent buyers"),
        ("activity_window", "lately"),
        ("decline", 1.5),
        ("decline", "half"),
        ("train_as_of", "2024-12-31"),
        ("test_as_of", "not a day"),
        ("evaluation", "random split"),
        ("defection_trees", "many"),
    ],
)
def test_an_unreadable_field_is_named(key: str, value: Any) -> None:
    with pytest.raises(ValueError, match="training metadata") as raised:
        TrainingMetadata.from_meta({**WRITTEN_BEFORE, key: value})
    assert key in str(raised.value) or repr(value) in str(raised.value)


def test_a_fit_missing_its_choices_is_named() -> None:
    with pytest.raises(ValueError, match="value_trees, interval_level"):
        FitChoices.from_meta({"capacity": "small", "calibration": "none", "defection_trees": 9})


def test_a_saved_scorer_keeps_its_metadata(small_world: World, tmp_path: Path) -> None:
    model = small_world.model()
    copy = Scorer.load_dir(Path(model.scorer.save(tmp_path / "scorer")["meta"]).parent)
    assert TrainingMetadata.from_meta(copy.meta) == model.metadata
    assert model.metadata == small_world.outcome.metadata
    assert model.metadata.fit is not None
