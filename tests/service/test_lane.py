"""The engine lane (service/lane.py): merging, order, deadlines on the loop's clock, a stuck lane."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from features.contracts import Cdr, Decision, convert
from service.lane import Kind, Lane, LaneOverloadedError
from tests.service.conftest import cdr


def _cdrs(n: int, prefix: str) -> list[Cdr]:
    return [convert(Cdr, cdr(call_id=f"{prefix}{i}")) for i in range(n)]


class _Runner:
    """Records each engine call; answers each call with a decision-like marker (its call_id)."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.calls: list[tuple[Kind, list[str]]] = []
        self.delay_s = delay_s
        self.release = threading.Event()
        self.release.set()

    def __call__(self, kind: Kind, cdrs: list[Cdr], deadline: float) -> list[Decision]:
        self.calls.append((kind, [c.call_id for c in cdrs]))
        self.release.wait(10)
        time.sleep(self.delay_s)
        return [c.call_id for c in cdrs]  # type: ignore[misc]  # markers stand for decisions here


@pytest.fixture
def runner() -> _Runner:
    return _Runner()


@pytest.fixture
def lane(runner: _Runner) -> Iterator[Lane]:
    lane = Lane(runner)
    lane.start()
    yield lane
    runner.release.set()
    lane.stop()


def test_calls_of_one_loop_turn_are_one_engine_call_in_order(lane: Lane, runner: _Runner) -> None:
    async def main() -> list[Any]:
        return await asyncio.gather(*(lane.call("screen", _cdrs(2, f"r{i}-"), 5.0) for i in range(5)))

    answers = asyncio.run(main())
    assert answers == [[f"r{i}-0", f"r{i}-1"] for i in range(5)]
    assert runner.calls == [("screen", [f"r{i}-{j}" for i in range(5) for j in range(2)])]


def test_kinds_are_never_merged_and_keep_their_order(lane: Lane, runner: _Runner) -> None:
    async def main() -> None:
        await asyncio.gather(lane.call("process", _cdrs(1, "p"), 5.0), lane.call("screen", _cdrs(1, "s"), 5.0),
                             lane.call("process", _cdrs(1, "q"), 5.0))

    asyncio.run(main())
    assert runner.calls == [("process", ["p0"]), ("screen", ["s0"]), ("process", ["q0"])]


def test_at_most_max_merge_calls_per_engine_call(lane: Lane, runner: _Runner) -> None:
    async def main() -> None:
        await asyncio.gather(*(lane.call("screen", _cdrs(400, f"b{i}-"), 5.0) for i in range(4)))

    asyncio.run(main())
    assert [len(ids) for _, ids in runner.calls] == [800, 800]


def test_the_deadline_answers_while_the_engine_is_held_and_the_lane_is_then_stuck(
    lane: Lane, runner: _Runner
) -> None:
    runner.release.clear()  # the engine call hangs (as with a paused Redis)

    async def main() -> tuple[float, bool, float]:
        t0 = time.monotonic()
        with pytest.raises(LaneOverloadedError):
            await lane.call("screen", _cdrs(1, "h"), 0.05)
        waited = time.monotonic() - t0
        stuck = lane.stuck
        t1 = time.monotonic()
        with pytest.raises(LaneOverloadedError, match="stuck"):
            await lane.call("screen", _cdrs(1, "i"), 5.0)
        return waited, stuck, time.monotonic() - t1

    waited, stuck, refused_in = asyncio.run(main())
    assert 0.045 <= waited < 0.5
    assert stuck and refused_in < 0.01
    runner.release.set()
    deadline = time.monotonic() + 5
    while lane.stuck and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not lane.stuck

    async def after() -> Any:
        return await lane.call("screen", _cdrs(1, "j"), 5.0)

    assert asyncio.run(after()) == ["j0"]


def test_short_deadlines_expire_on_time_behind_a_long_one(lane: Lane, runner: _Runner) -> None:
    runner.release.clear()

    async def main() -> list[float]:
        async def timed(timeout: float) -> float:
            t0 = time.monotonic()
            with pytest.raises(LaneOverloadedError):
                await lane.call("screen", _cdrs(1, f"t{timeout}"), timeout)
            return time.monotonic() - t0

        return await asyncio.gather(timed(0.5), timed(0.03), timed(0.06))

    long_, short, mid = asyncio.run(main())
    runner.release.set()
    assert 0.025 <= short < 0.2 and 0.055 <= mid < 0.25 and 0.49 <= long_ < 1.5


def test_inline_lane_runs_in_the_loop(runner: _Runner) -> None:
    lane = Lane(runner, threaded=False)

    async def main() -> tuple[list[Any], int]:
        answers = await asyncio.gather(*(lane.call("screen", _cdrs(1, f"n{i}-"), 5.0) for i in range(3)))
        return list(answers), threading.get_ident()

    answers, _ = asyncio.run(main())
    assert answers == [["n0-0"], ["n1-0"], ["n2-0"]]
    assert runner.calls == [("screen", ["n0-0", "n1-0", "n2-0"])]


def test_one_lane_serves_loops_in_turn(lane: Lane) -> None:
    for i in range(3):  # as a test client does: a new event loop per request
        assert asyncio.run(lane.call("screen", _cdrs(1, f"L{i}-"), 5.0)) == [f"L{i}-0"]


def test_an_engine_exception_reaches_the_caller(runner: _Runner) -> None:
    def failing(kind: Kind, cdrs: list[Cdr], deadline: float) -> list[Decision]:
        raise ValueError("engine bug")

    lane = Lane(failing)
    lane.start()
    try:
        with pytest.raises(ValueError, match="engine bug"):
            asyncio.run(lane.call("screen", _cdrs(1, "x"), 5.0))
    finally:
        lane.stop()


def test_several_runners_share_the_backlog_instead_of_one_thread_hoarding_it() -> None:
    first, second = _Runner(), _Runner()
    first.release.clear()
    second.release.clear()
    lane = Lane([first, second], name="bulk-test")
    lane.start()
    try:
        async def main() -> list[Any]:
            # one loop turn, two requests too big to merge (600 + 600 > MAX_MERGE)
            return await asyncio.gather(lane.call("screen", _cdrs(600, "a"), 5.0),
                                        lane.call("screen", _cdrs(600, "b"), 5.0))

        def release_when_both_started() -> None:
            deadline = time.monotonic() + 5
            while (not first.calls or not second.calls) and time.monotonic() < deadline:
                time.sleep(0.005)
            both.append(bool(first.calls and second.calls))
            first.release.set()
            second.release.set()

        both: list[bool] = []
        watcher = threading.Thread(target=release_when_both_started)
        watcher.start()
        answers = asyncio.run(main())
        watcher.join()
    finally:
        first.release.set()
        second.release.set()
        lane.stop()
    assert both == [True]  # each runner was inside an engine call while the other still was
    assert sorted(len(ids) for _, ids in first.calls + second.calls) == [600, 600]
    assert [len(a) for a in answers] == [600, 600]
