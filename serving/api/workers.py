"""Several uvicorn worker processes behind one port: shared settings, reloads and metrics.

Scoring a posted row is Python work that holds its process's GIL, so one process uses one core;
``KAM_WORKERS=2`` runs two. Each worker loads the model and scores itself. What must stay
common goes through a folder made for the server's lifetime:

- the settings, as JSON in :data:`SETTINGS_ENV` (command-line overrides included);
- reloads: the worker that answers ``POST /v1/admin/reload`` writes a new token to the signal
  file named by :data:`SIGNAL_ENV`; every other worker polls it every :data:`POLL_SECONDS` and
  reloads when it changes;
- Prometheus metrics: ``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess mode), so
  ``/metrics`` adds up every worker whichever one answers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

SETTINGS_ENV = "KAM_SERVE_SETTINGS_JSON"
SIGNAL_ENV = "KAM_RELOAD_SIGNAL"
METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"
POLL_SECONDS = 1.0


def signal_path() -> Path | None:
    """The reload signal file shared by this server's workers (None with one worker)."""
    value = os.environ.get(SIGNAL_ENV)
    return Path(value) if value else None


def read_token(path: Path) -> str | None:
    """The last reload token written, None before any."""
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def announce_reload(path: Path) -> str:
    """Tell the other workers to reload: write a new token (atomically); returns it."""
    token = uuid.uuid4().hex
    partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    partial.write_text(token, encoding="utf-8")
    partial.replace(path)
    return token


async def follow_reloads(
    path: Path,
    seen: Callable[[], str | None],
    reload: Callable[[str], None],
    interval: float = POLL_SECONDS,
) -> None:
    """Poll the signal file; call ``reload(token)`` (in a thread) for each token not yet seen.

    ``seen`` returns the token this worker last acted on (or wrote itself). Runs until
    cancelled; a failed reload is logged and the worker keeps its state.
    """
    while True:
        await asyncio.sleep(interval)
        token = read_token(path)
        if token is None or token == seen():
            continue
        try:
            await asyncio.to_thread(reload, token)
        except Exception:  # the worker keeps serving its previous state
            logger.exception("worker %s could not follow the reload %s", os.getpid(), token)
