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

    notes.append(
        "history too short for rolling-origin windows: choices made on 3 account-grouped folds "
        "of the training snapshots"
    )
    splitter = GroupKFold(n_splits=3, shuffle=True, random_state=seed)
    groups = final_train["account_id"].to_numpy()
    for k, (tr, va) in enumerate(splitter.split(final_train, groups=groups)):
        windows.append((f"account fold {k + 1}", final_train.iloc[tr], final_train.iloc[va]))
    return windows
