"""Fitting the defection and value models on pooled out-of-time snapshots.

Model choices (capacity, number of trees, calibration, the interval's conformal margin) are made
on several rolling-origin windows, each fitted on strictly earlier snapshots, because a single
window's season and drift differ from the test's.

``fitting`` fits and refits; ``windows`` makes the validation windows, ``choices`` the choices
on them; ``boosting`` holds the LightGBM pieces and ``options`` the knobs and results.
"""

from kam.training.fit.boosting import capacity_grid
from kam.training.fit.fitting import fit_models, refit
from kam.training.fit.options import (
    EARLY_STOP,
    LABEL_COLUMNS,
    MAX_TREES,
    VALUE_SHAPE,
    FitOptions,
    FitResult,
    FoldReport,
)

__all__ = [
    "EARLY_STOP",
    "LABEL_COLUMNS",
    "MAX_TREES",
    "VALUE_SHAPE",
    "FitOptions",
    "FitResult",
    "FoldReport",
    "capacity_grid",
    "fit_models",
    "refit",
]
