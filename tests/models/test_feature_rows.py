"""Validating feature rows that did not come from a snapshot (posted rows, the pyfunc's frames):
one function, :meth:`FeatureSpec.check_rows`, and its frame twin :meth:`check_frame`."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from kam.features.catalog import CATALOG
from kam.models.errors import FeatureRowError
from kam.models.feature_schema import feature_fields, row_json_schema
from kam.models.feature_spec import MIN_KNOWN_SHARE, FeatureSpec

NAMES = ("revenue_365d", "recency_days", "order_days_90d", "spend_percentile", "region")
SPEC = FeatureSpec(
    NAMES,
    {"region": ("East", "North")},
    {"revenue_365d": "spend", "recency_days": "rhythm", "order_days_90d": "spend",
     "spend_percentile": "account", "region": "account"},
)


def test_a_sparse_frame_with_nan_anywhere_is_accepted() -> None:
    frame = pd.DataFrame(
        {
            "revenue_365d": [1000.0, np.nan],
            "region": ["North", np.nan],
            "order_days_90d": pd.array([3, None], dtype="Int64"),
        }
    )
    x = SPEC.check_frame(frame)
    assert x.shape == (2, len(NAMES))
    assert x[0].tolist()[0] == 1000.0 and x[0, 4] == 1.0 and x[0, 2] == 3.0
    assert np.isnan(x[1]).all()  # NaN, pd.NA and None are all "not known"
    assert SPEC.reliable(x).tolist() == [True, False]


@pytest.mark.parametrize(
    ("row", "name", "message"),
    [
        ({"regoin": "North"}, "regoin", "unknown feature; did you mean 'region'?"),
        ({"region": "north"}, "region", "categories match case exactly: 'North'"),
        ({"region": "Mars"}, "region", "expected one of ['East', 'North']"),
        ({"region": 3}, "region", "expected a category (text)"),
        ({"revenue_365d": 1e300}, "revenue_365d", "outside the sane range"),
        ({"revenue_365d": math.inf}, "revenue_365d", "expected a finite number"),
        ({"recency_days": -1}, "recency_days", "outside the sane range 0 to 36500"),
        ({"spend_percentile": 1.5}, "spend_percentile", "outside the sane range 0 to 1"),
        ({"order_days_90d": 2.5}, "order_days_90d", "expected a whole number"),
        ({"order_days_90d": True}, "order_days_90d", "expected a number, got True"),
        ({"recency_days": "soon"}, "recency_days", "expected a number, got 'soon'"),
    ],
)
def test_each_bad_field_is_named(row: dict, name: str, message: str) -> None:
    with pytest.raises(FeatureRowError) as caught:
        SPEC.check_rows([row])
    assert list(caught.value.errors) == [name]
    assert message in caught.value.errors[name]


def test_several_rows_name_the_row_and_a_frame_names_unknown_columns_once() -> None:
    with pytest.raises(FeatureRowError) as caught:
        SPEC.check_rows([{"recency_days": 5}, {"recency_days": -5}])
    assert list(caught.value.errors) == ["rows[1].recency_days"]
    with pytest.raises(FeatureRowError) as caught:
        SPEC.check_frame(pd.DataFrame({"colour": [1, 2, 3], "recency_days": [1, 2, 3]}))
    assert list(caught.value.errors) == ["colour"]


def test_the_known_minimum_is_half_the_features_and_can_be_required() -> None:
    assert SPEC.min_known == math.ceil(MIN_KNOWN_SHARE * len(NAMES)) == 3
    assert SPEC.check_rows([{}]).shape == (1, len(NAMES))  # accepted, unreliable
    with pytest.raises(FeatureRowError) as caught:
        SPEC.check_rows([{"recency_days": 5}], min_known=SPEC.min_known)
    assert "only 1 of the model's 5 features known" in caught.value.errors["features"]


def test_every_catalog_feature_has_a_kind_a_unit_and_a_range() -> None:
    fields = feature_fields()
    assert [f.name for f in fields] == [f.name for f in CATALOG]
    for f in fields:
        if f.kind == "category":
            assert f.unit is None and f.minimum is None
        else:
            assert f.unit and f.minimum is not None and f.maximum is not None, f.name
            assert f.minimum < f.maximum, f.name
    schema = row_json_schema(SPEC)
    assert list(schema["properties"]) == list(NAMES)
    assert schema["properties"]["region"]["anyOf"][0]["enum"] == ["East", "North"]
    assert schema["additionalProperties"] is False
