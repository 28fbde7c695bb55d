"""Validation windows: rolling-origin, or account-grouped folds when the history is short."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from kam.training.splits import SplitPlan


def _validation_windows(
    plan: SplitPlan,
    rows: Callable[[tuple[pd.Timestamp, ...]], pd.DataFrame],
    final_train: pd.DataFrame,
    seed: int,
    notes: list[str],
) -> list[tuple[str, pd.DataFrame, pd.DataFrame]]:
    """Rolling-origin windows; account-grouped folds when the history is too short for them."""
    windows = []
    for fold in plan.folds:
        train, valid = rows(fold.train_as_of), rows((fold.validation_as_of,))
        if len(train) and len(valid) and valid["label_defection"].nunique() == 2:
            windows.append((f"as_of {fold.validation_as_of.date()}", train, valid))
    if windows:
        notes.append(f"choices made on {len(windows)} rolling-origin validation windows")
        return windows
    # Too little history for a later window with its own earlier training snapshots (e.g. one
    # year of data and a 26-week horizon): hold out accounts instead.
    from sklearn.model_selection import GroupKFold

    # Each fold is validated on its held-out accounts at the latest as_of only: the trees,
    # calibration and interval margins then answer for the season and the population's age the
    # model will score, not for the mix of every as_of (an "ever" population ages with as_of).
    latest = final_train["as_of"].max()
    notes.append(
        "history too short for rolling-origin windows: choices made on 3 account-grouped folds "
        f"of the training snapshots, each validated on its accounts at {latest.date()}"
    )
    splitter = GroupKFold(n_splits=3, shuffle=True, random_state=seed)
    groups = final_train["account_id"].to_numpy()
    at_latest = (final_train["as_of"] == latest).to_numpy()
    for k, (tr, va) in enumerate(splitter.split(final_train, groups=groups)):
        valid = final_train.iloc[va[at_latest[va]]]
        windows.append((f"account fold {k + 1}", final_train.iloc[tr], valid))
    return windows
