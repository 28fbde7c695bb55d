"""`POST /v1/admin/reload`: load the current champion and the latest scores (admin keys only)."""

from __future__ import annotations

from fastapi import Depends, HTTPException, Request

from kam.serving.api.deps import require_admin, v1_router
from kam.serving.api.reload import ReloadError, reload_state
from kam.serving.api.schemas import Problem, ReloadResult
from kam.serving.api.workers import announce_reload, signal_path

router = v1_router()


@router.post(
    "/admin/reload",
    response_model=ReloadResult,
    dependencies=[Depends(require_admin)],
    responses={403: {"model": Problem, "description": "not an admin key"}},
    tags=["admin"],
)
def reload(request: Request) -> ReloadResult:
    """Load the current champion and the latest scores, then swap them in at once.

    With several workers (``KAM_WORKERS``), this one reloads now and the others within a
    second or so.
    """
    app = request.app
    try:
        previous_version, new = reload_state(app)
    except ReloadError as err:
        raise HTTPException(503, str(err)) from None
    signal = signal_path()
    if signal is not None:
        app.state.reload_token = announce_reload(signal)
    return ReloadResult(
        model_version=new.model.version if new.model else None,
        previous_model_version=previous_version,
        scores_accounts=len(new.scores) if new.scores else 0,
        scores_as_of=new.scores.as_of if new.scores else None,
        seconds=round(new.seconds, 3),
        missing=dict(new.missing),
    )
