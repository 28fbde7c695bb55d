"""Dynamic batching of posted rows: rows waiting while a batch runs are scored together."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from kam.serving.scoring.microbatch import RowBatcher


class Recorder:
    """A score function that records its batches; ``during_first`` runs inside the first one."""

    def __init__(self, during_first: Any = None) -> None:
        self.batches: list[tuple[Any, list[float]]] = []
        self.during_first = during_first

    def __call__(self, context: Any, x: np.ndarray) -> list[dict[str, Any]]:
        if self.during_first is not None:
            hook, self.during_first = self.during_first, None
            hook()
        self.batches.append((context, x[:, 0].tolist()))
        if context == "BAD":
            raise ValueError("model exploded")
        return [{"context": context, "double": 2 * float(v)} for v in x[:, 0]]


def _submit_all(batcher: RowBatcher, rows: list[tuple[str, float]]) -> list[Any]:
    """Submit rows (group, value) in one go, as requests read together; results or errors."""

    async def main() -> list[Any]:
        tasks = [
            asyncio.create_task(batcher.submit(group, group.upper(), np.array([value])))
            for group, value in rows
        ]
        return await asyncio.gather(*tasks, return_exceptions=True)

    return asyncio.run(main())


def test_a_lone_row_is_scored_at_once() -> None:
    recorder = Recorder()
    batcher = RowBatcher(recorder)

    async def main() -> dict[str, Any]:
        return await batcher.submit("g", "ctx", np.array([3.0]))

    assert asyncio.run(main()) == {"context": "ctx", "double": 6.0}
    assert recorder.batches == [("ctx", [3.0])]


def test_rows_posted_together_are_scored_as_one_batch() -> None:
    recorder = Recorder()
    sizes: list[float] = []
    batcher = RowBatcher(recorder, observe=sizes.append)
    results = _submit_all(batcher, [("g", float(v)) for v in range(6)])
    assert [r["double"] for r in results] == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    assert recorder.batches == [("G", [0.0, 1.0, 2.0, 3.0, 4.0, 5.0])]
    assert sizes == [6]


def test_rows_posted_during_a_batch_go_together_into_the_next() -> None:
    later: list[asyncio.Task[dict[str, Any]]] = []
    batcher: RowBatcher

    def arrive() -> None:  # five requests come in while the first batch is being scored
        later.extend(
            asyncio.get_running_loop().create_task(
                batcher.submit("g", "G", np.array([float(v)]))
            )
            for v in range(1, 6)
        )

    recorder = Recorder(during_first=arrive)
    sizes: list[float] = []
    batcher = RowBatcher(recorder, observe=sizes.append)

    async def main() -> list[dict[str, Any]]:
        first = await batcher.submit("g", "G", np.array([0.0]))
        while len(later) < 5:
            await asyncio.sleep(0)
        return [first, *await asyncio.gather(*later)]

    results = asyncio.run(main())
    assert [r["double"] for r in results] == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    assert [rows for _, rows in recorder.batches] == [[0.0], [1.0, 2.0, 3.0, 4.0, 5.0]]
    assert sizes == [1, 5]
    assert (batcher.batches, batcher.rows) == (2, 6)


def test_groups_are_never_mixed_and_batches_are_bounded() -> None:
    recorder = Recorder()
    batcher = RowBatcher(recorder, max_rows=3)
    groups = ["a", "b", "a", "b", "a", "a"]
    results = _submit_all(batcher, [(g, float(v)) for v, g in enumerate(groups)])
    assert [r["context"] for r in results] == ["A", "B", "A", "B", "A", "A"]
    assert [r["double"] for r in results] == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    # the first three rows (a, b, a), then the last three (b, a, a), each split by group
    assert recorder.batches == [
        ("A", [0.0, 2.0]), ("B", [1.0]), ("B", [3.0]), ("A", [4.0, 5.0])
    ]


def test_a_failing_batch_fails_its_rows_only() -> None:
    batcher = RowBatcher(Recorder())
    first, bad, good = _submit_all(batcher, [("ok", 1.0), ("bad", 2.0), ("ok", 3.0)])
    assert first["double"] == 2.0
    assert isinstance(bad, ValueError) and str(bad) == "model exploded"
    assert good["double"] == 6.0
    # the service keeps scoring after a failed batch
    assert asyncio.run(batcher.submit("ok", "OK", np.array([4.0])))["double"] == 8.0


@pytest.mark.parametrize("max_rows", [0, -1])
def test_batch_bound_must_be_positive(max_rows: int) -> None:
    with pytest.raises(ValueError, match="max_rows"):
        RowBatcher(Recorder(), max_rows=max_rows)
