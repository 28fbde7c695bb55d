"""Dynamic batching of posted feature rows: rows that arrive together are scored together.

Scoring one row is mostly fixed cost: a LightGBM call per model, drivers, phrasing and the
playbook are vectorised over rows, so one row costs nearly what thirty do. While a batch is
being scored, newly posted rows wait; the next batch takes all of them (up to ``max_rows``).
An idle service therefore adds no delay (a lone row is scored at once), and a busy one scores
larger batches instead of queueing requests one by one: throughput grows with load.

Batches are scored on the event loop itself. Not in a worker thread: most of a batch's time is
Python (drivers, phrasing, actions) that holds the GIL anyway, and handing each batch to a
thread and back cost about 3 ms of GIL hand-over per request, more than a one-row batch takes.
Nor in a child process: the round trip and the pickling ate what the second core gave (both
measured on 2 cores with uvicorn). Batches stay small so that other requests wait little.

Rows are grouped by what their scores depend on besides the features (the model, the playbook,
the tier cut-offs and the as_of date), so a reload mid-batch never mixes two models.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ScoreBatch = Callable[[Any, np.ndarray], list[dict[str, Any]]]
"""(group context, rows x features matrix) -> one result per row."""


@dataclass
class _Pending:
    group: Hashable
    context: Any
    row: np.ndarray
    future: asyncio.Future[dict[str, Any]]


@dataclass
class RowBatcher:
    """Collects rows posted concurrently and scores them in batches.

    Parameters
    ----------
    score
        Scores a batch of one group: called with the group's context and the stacked rows, on
        the event loop; returns one result per row, in order.
    max_rows
        Largest batch; more waiting rows go to the following batch.
    observe
        Called with the size of each batch scored (e.g. a Prometheus histogram's ``observe``).
    """

    score: ScoreBatch
    max_rows: int = 32
    observe: Callable[[float], None] | None = None
    _pending: list[_Pending] = field(default_factory=list)
    _worker: asyncio.Task[None] | None = None
    batches: int = 0
    rows: int = 0

    def __post_init__(self) -> None:
        if self.max_rows < 1:
            raise ValueError(f"max_rows must be at least 1, got {self.max_rows}")

    async def submit(self, group: Hashable, context: Any, row: np.ndarray) -> dict[str, Any]:
        """Score ``row`` (one validated feature vector) with the others of its group.

        Raises whatever ``score`` raised for the batch the row was in.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._pending.append(_Pending(group, context, row, future))
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        await asyncio.sleep(0)  # let requests already being read reach submit() first
        while self._pending:
            batch, self._pending = self._pending[: self.max_rows], self._pending[self.max_rows :]
            groups: dict[Hashable, list[_Pending]] = {}
            for item in batch:
                groups.setdefault(item.group, []).append(item)
            for items in groups.values():
                self._score_group(items)
            await asyncio.sleep(0)  # answer this batch's callers before the next batch

    def _score_group(self, items: list[_Pending]) -> None:
        live = [item for item in items if not item.future.done()]  # callers gone: skip
        if not live:
            return
        matrix = np.vstack([item.row for item in live])
        try:
            results = self.score(live[0].context, matrix)
        except Exception as err:
            for item in live:
                if not item.future.done():
                    item.future.set_exception(err)
            return
        self.batches += 1
        self.rows += len(live)
        if self.observe is not None:
            self.observe(len(live))
        for item, result in zip(live, results, strict=True):
            if not item.future.done():
                item.future.set_result(result)
