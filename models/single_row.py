"""LightGBM's single-row fast prediction, for scoring posted rows one at a time.

``Booster.predict`` costs about 60-90 microseconds a call whatever the input size: it checks
and converts its input, builds a predictor and parses parameters on every call. LightGBM's C
API has a fast path for exactly one dense row, ``LGBM_BoosterPredictForMatSingleRowFast``,
whose configuration (prediction type, column count, one thread) is prepared once by
``LGBM_BoosterPredictForMatSingleRowFastInit``. The Python package does not wrap it, so this
module calls it through the library handle the package has already loaded.

Those handles are not part of the package's public API. :func:`single_row_predictor` returns
None when they are missing (another LightGBM build or version), and callers then use
``Booster.predict``; the tests hold both equal.
"""

from __future__ import annotations

import ctypes
import threading
from typing import Any, Literal

import lightgbm as lgb
import numpy as np

Kind = Literal["normal", "raw", "contrib"]
# C_API_PREDICT_NORMAL, C_API_PREDICT_RAW_SCORE, C_API_PREDICT_CONTRIB (LightGBM's c_api.h)
_PREDICT_TYPE = {"normal": 0, "raw": 1, "contrib": 3}
_DTYPE_FLOAT64 = 1
_DOUBLE_P = ctypes.POINTER(ctypes.c_double)


def _library() -> Any | None:
    try:
        # private to the package, hence looked up here and guarded
        from lightgbm.basic import _LIB
    except ImportError:
        return None
    needed = (
        "LGBM_BoosterPredictForMatSingleRowFastInit",
        "LGBM_BoosterPredictForMatSingleRowFast",
        "LGBM_FastConfigFree",
        "LGBM_GetLastError",
    )
    return _LIB if all(hasattr(_LIB, name) for name in needed) else None


class SingleRowPredictor:
    """One booster's predictions for one float64 row at a time (one thread).

    Use :func:`single_row_predictor` to make one. Calls are serialised by a lock: the C
    predictor keeps its buffers in the configuration.
    """

    def __init__(self, lib: Any, booster: lgb.Booster, kind: Kind) -> None:
        self._lib = lib
        self._booster = booster  # the configuration points into it: keep it alive
        self.ncol = booster.num_feature()
        self._config = ctypes.c_void_p()
        self._check(
            lib.LGBM_BoosterPredictForMatSingleRowFastInit(
                booster._handle,
                ctypes.c_int(_PREDICT_TYPE[kind]),
                ctypes.c_int(0),
                ctypes.c_int(-1),
                ctypes.c_int(_DTYPE_FLOAT64),
                ctypes.c_int32(self.ncol),
                ctypes.c_char_p(b"num_threads=1"),
                ctypes.byref(self._config),
            )
        )
        width = (self.ncol + 1) * booster.num_model_per_iteration() if kind == "contrib" else 1
        self._out = np.empty(width, dtype=np.float64)
        self._out_p = self._out.ctypes.data_as(_DOUBLE_P)
        self._out_len = ctypes.c_int64()
        self._lock = threading.Lock()

    def _check(self, status: int) -> None:
        if status != 0:
            raise lgb.basic.LightGBMError(self._lib.LGBM_GetLastError().decode("utf-8"))

    def predict(self, row: np.ndarray) -> np.ndarray:
        """Predictions for one row of ``ncol`` values (NaN = missing); a new array."""
        data = np.ascontiguousarray(row, dtype=np.float64)
        if data.shape != (self.ncol,):
            raise ValueError(f"expected one row of {self.ncol} features, got shape {row.shape}")
        with self._lock:
            self._check(
                self._lib.LGBM_BoosterPredictForMatSingleRowFast(
                    self._config,
                    data.ctypes.data_as(ctypes.c_void_p),
                    ctypes.byref(self._out_len),
                    self._out_p,
                )
            )
            return self._out[: self._out_len.value].copy()

    def __del__(self) -> None:
        config = getattr(self, "_config", None)
        if config is not None and config.value:
            self._lib.LGBM_FastConfigFree(config)


def single_row_predictor(booster: lgb.Booster, kind: Kind) -> SingleRowPredictor | None:
    """A fast one-row predictor for ``booster``, or None where this LightGBM has none."""
    lib = _library()
    if lib is None or getattr(booster, "_handle", None) is None:
        return None
    return SingleRowPredictor(lib, booster, kind)
