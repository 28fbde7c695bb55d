"""Dynamic batching of posted rows: rows waiting while a batch runs are scored together."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np
import pytest

from serving.microbatch import RowBatcher


class Recorder:
    """A score function that records its batches and can hold the first one until released."""

    def __init__(self, hold_first: bool = False) -> None:
        self.batches: list[tuple[Any, list[float]]] = []
        self.release = threading.Event()
        self.started = threading.Event()
        if not hold_first:
            self.release.set()

    def __call__(self, context: Any, x: np.ndarray) -> list[dict[str, Any]]:
        self.started.set()
        self.release.wait(timeout=10)
        self.batches.append((context, x[:, 0].tolist()))
        if context == "bad":
            raise ValueError("model exploded")
        return [{"context": context, "double": 2 * float(v)} for v in x[:, 0]]


async def _wait_until(flag: threading.Event) -> None:
    while not flag.is_set():
        await asyncio.sleep(0.001)


def test_a_lone_row_is_scored_at_once() -> None:
    recorder = Recorder()
    batcher = RowBatcher(recorder)

    async def main() -> dict[str, Any]:
        return await batcher.submit("g", "ctx", np.array([3.0]))

    assert asyncio.run(main()) == {"context": "ctx", "double": 6.0}
    assert recorder.batches == [("ctx", [3.0])]


def test_rows_posted_during_a_batch_go_together_into_the_next() -> None:
    recorder = Recorder(hold_first=True)
    sizes: list[float] = []
    batcher = RowBatcher(recorder, observe=sizes.append)

    async def main() -> list[dict[str, Any]]:
        first = asyncio.create_task(batcher.submit("g", "ctx", np.array([0.0])))
        await _wait_until(recorder.started)  # the first batch is running, holding one row
        rest = [
            asyncio.create_task(batcher.submit("g", "ctx", np.array([float(v)])))
            for v in range(1, 6)
        ]
        await asyncio.sleep(0.01)
        recorder.release.set()
        return await asyncio.gather(first, *rest)

    results = asyncio.run(main())
    assert [r["double"] for r in results] == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    assert [rows for _, rows in recorder.batches] == [[0.0], [1.0, 2.0, 3.0, 4.0, 5.0]]
    assert sizes == [1, 5]
    assert (batcher.batches, batcher.rows) == (2, 6)


def test_groups_are_never_mixed_and_batches_are_bounded() -> None:
    recorder = Recorder(hold_first=True)
    batcher = RowBatcher(recorder, max_rows=3)

    async def main() -> list[dict[str, Any]]:
        first = asyncio.create_task(batcher.submit("a", "A", np.array([0.0])))
        await _wait_until(recorder.started)
        waiting = [
            asyncio.create_task(batcher.submit(group, group.upper(), np.array([float(v)])))
            for v, group in enumerate(["a", "b", "a", "b", "a"], start=1)
        ]
        await asyncio.sleep(0.01)
        recorder.release.set()
        return await asyncio.gather(first, *waiting)

    results = asyncio.run(main())
    assert [r["context"] for r in results] == ["A", "A", "B", "A", "B", "A"]
    assert [r["double"] for r in results] == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    # the five waiting rows: the first three (a, b, a), then the last two (b, a), by group
    assert recorder.batches[1:] == [("A", [1.0, 3.0]), ("B", [2.0]), ("B", [4.0]), ("A", [5.0])]
    assert all(len(rows) <= 3 for _, rows in recorder.batches)


def test_a_failing_batch_fails_its_rows_only() -> None:
    recorder = Recorder(hold_first=True)
    batcher = RowBatcher(recorder)

    async def main() -> list[Any]:
        first = asyncio.create_task(batcher.submit("ok", "ok", np.array([1.0])))
        await _wait_until(recorder.started)
        bad = asyncio.create_task(batcher.submit("bad", "bad", np.array([2.0])))
        good = asyncio.create_task(batcher.submit("ok", "ok", np.array([3.0])))
        await asyncio.sleep(0.01)
        recorder.release.set()
        return await asyncio.gather(first, bad, good, return_exceptions=True)

    first, bad, good = asyncio.run(main())
    assert first["double"] == 2.0
    assert isinstance(bad, ValueError) and str(bad) == "model exploded"
    assert good["double"] == 6.0
    # the service keeps scoring after a failed batch
    assert asyncio.run(batcher.submit("ok", "ok", np.array([4.0])))["double"] == 8.0


@pytest.mark.parametrize("max_rows", [0, -1])
def test_batch_bound_must_be_positive(max_rows: int) -> None:
    with pytest.raises(ValueError, match="max_rows"):
        RowBatcher(Recorder(), max_rows=max_rows)
