"""Swapping in a freshly loaded model, scores and playbook, and settling the heap after.

A reload comes from ``POST /v1/admin/reload`` or, with several workers, from another worker's
reload (:mod:`kam.serving.api.workers`); either way requests keep being answered from the old
state until the new one is swapped in.
"""

from __future__ import annotations

import gc
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from fastapi import FastAPI

from kam.serving.api.observability import Metrics
from kam.serving.decisions.playbook import PlaybookError
from kam.serving.settings import ServeSettings
from kam.serving.state import ServingState, load_state

logger = logging.getLogger(__name__)


class ReloadError(RuntimeError):
    """A reload failed; the previous state is still served."""


# Every load (the first and each reload) runs on this one thread. glibc gives each thread that
# allocates its own arena (up to 8 per core) and an arena keeps what is freed in it for later
# allocations of that arena: loads made on whichever pool thread was free spread a state's
# worth of freed memory over a new arena each time (a worker grew by about 25 MB per reload for
# the first ten). On one thread, a load reuses what the state before last freed.
_LOADER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kam-load")


def load_on_loader(settings: ServeSettings) -> ServingState:
    """:func:`load_state` on the process's one loading thread (waits for it)."""
    return _LOADER.submit(load_state, settings).result()


def settle_heap() -> float:
    """Collect what is garbage, then exempt every live object from the cyclic collector.

    A loaded worker holds a few hundred thousand long-lived objects (libraries, model,
    scores). The collector's occasional full pass over them took 0.35 s for 100,000 scored
    accounts on 2 cores, stalling every request in the meantime. Frozen (``gc.freeze``), they
    are never scanned again; reference counting still frees them once dropped. Called after
    start-up and after each reload; returns the seconds it took.
    """
    began = time.perf_counter()
    gc.unfreeze()  # what a reload replaced can be collected again
    gc.collect()
    gc.freeze()
    return time.perf_counter() - began


def reload_state(app: FastAPI) -> tuple[str | None, ServingState]:
    """Load model, scores and playbook afresh and swap them in.

    Returns the replaced model's version and the new state: not the old state, which is let
    go (requests still in flight hold it until they finish).

    Raises
    ------
    ReloadError
        When the playbook is invalid, or something the previous state had (the model, the
        scores) could not be loaded; the previous state is kept.
    """
    metrics: Metrics = app.state.metrics
    # one reload at a time; requests keep being answered from the old state meanwhile
    with app.state.reload_lock:
        old: ServingState = app.state.serving
        try:
            new = load_on_loader(app.state.settings)
        except PlaybookError as err:
            metrics.reloads.labels("failed").inc()
            raise ReloadError(f"reload failed, still serving the previous state: {err}") from None
        lost = {k: v for k, v in new.missing.items() if k not in old.missing}
        if lost:
            metrics.reloads.labels("failed").inc()
            reasons = "; ".join(f"{k}: {v}" for k, v in lost.items())
            raise ReloadError(f"reload failed, still serving the previous state: {reasons}")
        app.state.serving = new  # the swap: one reference assignment
        metrics.observe_state(new)
        metrics.reloads.labels("ok").inc()
        previous = old.model.version if old.model else None
        del old
        settled = settle_heap()
    logger.info(
        "reloaded model %s (was %s), %s accounts in %.1f s (heap settled in %.2f s)",
        new.model.version if new.model else None,
        previous,
        len(new.scores) if new.scores else 0,
        new.seconds,
        settled,
    )
    return previous, new
