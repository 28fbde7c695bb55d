"""Training knobs, the label columns and tree budget, and what a fit reports."""

from __future__ import annotations

from dataclasses import dataclass, field

from kam.models.scorer import Scorer

LABEL_COLUMNS = ("label_value", "label_prior_value", "label_defection", "label_observed")
MAX_TREES = 2000
EARLY_STOP = 50
# The value models (point and both quantiles) are not explained per account: one shape that
# held up on the simulated books (2,000 to 20,000 accounts) without a search of its own.
VALUE_SHAPE = "small"


@dataclass(frozen=True)
class FitOptions:
    """Knobs of a training run (defaults suit 150 to 100,000 accounts)."""

    interval_level: float = 0.8
    tweedie_power: float = 1.3
    # Every scored account gets exact SHAP drivers, whose cost grows with the number of trees:
    # at 0.2 the trees number a fifth of those at 0.05 for the same validation loss, within
    # noise (README, "How training works").
    learning_rate: float = 0.2
    seed: int = 0
    # Pooled snapshots of a key-account book are small: one thread is faster than two whose
    # OpenMP barriers spin whenever the other core is busy (~100x slower per tree here).
    num_threads: int = 1
    horizon_days: float = 365.0
    # the value models correct BG/NBD x Gamma-Gamma's expected revenue where it is known
    expected_base: bool = True
    # weights of BG/NBD's log-odds of no order that the defection trees may start from (0: none);
    # the validation windows choose among them by log loss
    offset_weights: tuple[float, ...] = (0.0, 0.5, 1.0)


@dataclass
class FoldReport:
    """What one validation window said about each choice."""

    window: str
    n_train: int
    n_valid: int
    defection_logloss: dict[str, float] = field(default_factory=dict)
    best_iteration: dict[str, int] = field(default_factory=dict)
    value_best_iteration: int = 0
    value_bias_pct: float = float("nan")
    brier: dict[str, float] = field(default_factory=dict)


@dataclass
class FitResult:
    """The fitted scorer and the evidence behind its choices."""

    scorer: Scorer
    feature_names: list[str]
    capacity: str
    calibration: str
    folds: list[FoldReport]
    notes: list[str]
    offset_weight: float = 0.0

    @property
    def config(self) -> str:
        """The chosen defection configuration, as the folds' reports name it."""
        return config_name(self.capacity, self.offset_weight)


def config_name(capacity: str, offset_weight: float) -> str:
    """A defection configuration's name: its tree shape, and its offset weight if any."""
    return capacity if offset_weight == 0 else f"{capacity}, BG/NBD offset x{offset_weight:g}"
