"""The engine lane: one thread that runs the synchronous engine, and an outer deadline around it.

Why a thread and not a call inside the event loop: the engine is synchronous (Redis Lua
round trip, Cython scorer), and a paused Redis would stall the loop, and with it every
other request, until the client's socket timeout fired; a client timeout alone did not
bound latency in a prototype here. Here the loop only hands work over and arms a deadline
on its own clock, so an answer is always given by the deadline.

Why it is still fast: requests that arrive while the lane is busy are merged into one
``engine.screen`` call (one Redis round trip, one vectorised predict for all of them), so
the thread hop is paid per batch, not per call. The loop side batches too: the calls
submitted during one turn of the event loop go to the thread as one hand-off (one queue
put, one wake-up), and the deadlines of all waiting calls share one timer of the loop (a
heap), instead of a timer handle per call.

While the lane is stuck (the running engine call is past its own calls' deadline, as with
a paused Redis), new calls are answered ``allow``/degraded at once instead of queueing behind
it; as soon as the engine call returns (the store's breaker then skips Redis until its next
probe), calls flow again. A single slow call does not black out the lane: only the calls
queued behind it miss their deadline.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Final, Literal

from features.contracts import Cdr, Decision

log = logging.getLogger(__name__)

Kind = Literal["screen", "process"]
MAX_MERGE: Final = 1024
"""Most calls merged into one engine call; a /screen/batch request of up to 1,000 is never split."""
TIMER_SLACK_S: Final = 0.001
"""The loop's timers have millisecond resolution: a deadline this close counts as reached."""

Runner = Callable[[Kind, list[Cdr], float], list[Decision]]
"""``runner(kind, cdrs, deadline)``: run the engine on ``cdrs``; ``deadline`` is a ``time.monotonic()`` instant."""
Result = list[Decision] | BaseException
Done = Callable[[Result], None]
"""Called once, on the submitting loop, with the decisions or the exception that stands for them."""


class LaneOverloadedError(Exception):
    """Work could not be handed to the engine in time (deadline passed, or the lane is stuck)."""


class _Item:
    __slots__ = ("cdrs", "deadline", "done", "finished", "kind", "loop")

    def __init__(self, kind: Kind, cdrs: Sequence[Cdr], done: Done, loop: asyncio.AbstractEventLoop,
                 deadline: float) -> None:
        self.kind = kind
        self.cdrs = cdrs
        self.done = done
        self.loop = loop
        self.deadline = deadline
        self.finished = False  # written on the loop only; the lane thread just reads it

    def finish(self, result: Result) -> None:
        """Hand ``result`` over (on the item's loop), once; later results are dropped."""
        if self.finished:
            return
        self.finished = True
        try:
            self.done(result)
        except Exception:  # one failing callback must not keep the others of its batch waiting
            log.exception("lane: a completion callback failed")


class _Deadlines:
    """The deadlines of one loop's waiting calls: a heap and the one timer armed for its earliest."""

    __slots__ = ("heap", "loop", "seq", "timer", "timer_at")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.heap: list[tuple[float, int, _Item]] = []
        self.seq = itertools.count()
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0

    def add(self, item: _Item) -> None:
        heapq.heappush(self.heap, (item.deadline, next(self.seq), item))
        if self.timer is None or item.deadline < self.timer_at:
            self._arm(item.deadline)

    def _arm(self, at: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer_at = at
        self.timer = self.loop.call_later(max(0.0, at - time.monotonic()), self._fire)

    def _fire(self) -> None:
        self.timer = None
        heap = self.heap
        now = time.monotonic() + TIMER_SLACK_S
        while heap and (heap[0][2].finished or heap[0][0] <= now):
            _, _, item = heapq.heappop(heap)
            if not item.finished:
                item.finish(LaneOverloadedError(f"no engine answer within the deadline ({len(item.cdrs)} calls)"))
        if heap:
            self._arm(heap[0][0])


class Lane:
    """Hands engine calls to one worker thread; answers by a deadline, failing with LaneOverloadedError."""

    def __init__(self, runner: Runner | Sequence[Runner], *, threaded: bool = True, name: str = "engine-lane") -> None:
        # One thread per runner, all taking work from one queue: a thread that is waiting
        # on Redis leaves the next batch to another (each runner has its own connection).
        self._runners = [runner] if callable(runner) else list(runner)
        self._busy: list[float | None] = [None] * len(self._runners)
        self.threaded = threaded
        self.name = name
        self._queue: queue.SimpleQueue[list[_Item] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        # Per loop (one in a server; tests may run several in turn): calls not yet handed
        # over, and the deadlines of those not yet answered.
        self._outbox: dict[asyncio.AbstractEventLoop, list[_Item]] = {}
        self._deadlines: dict[asyncio.AbstractEventLoop, _Deadlines] = {}

    def start(self) -> None:
        if self.threaded and not self._threads:
            for i in range(len(self._runners)):
                thread = threading.Thread(target=self._run, args=(i,), name=f"{self.name}-{i}", daemon=True)
                thread.start()
                self._threads.append(thread)

    def stop(self, timeout: float = 2.0) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []

    def submit(self, kind: Kind, cdrs: Sequence[Cdr], timeout_s: float, done: Done) -> None:
        """Run ``engine.<kind>(cdrs)`` in the lane; ``done`` gets the decisions, or LaneOverloadedError
        by ``timeout_s`` (at once while the lane is stuck), or the engine's exception. Call on a loop."""
        loop = asyncio.get_running_loop()
        item = _Item(kind, cdrs, done, loop, time.monotonic() + timeout_s)
        if self.stuck:
            item.finish(LaneOverloadedError("engine lane stuck"))
            return
        deadlines = self._deadlines.get(loop)
        if deadlines is None or deadlines.loop.is_closed():
            self._forget_closed_loops()
            deadlines = self._deadlines[loop] = _Deadlines(loop)
        deadlines.add(item)
        outbox = self._outbox.get(loop)
        if outbox is None:
            # The first call of this loop turn: the others submitted in the same turn join it,
            # then all go over at once (to the thread, or to the engine in the loop when inline).
            self._outbox[loop] = [item]
            loop.call_soon(self._hand_off, loop)
        else:
            outbox.append(item)

    async def call(self, kind: Kind, cdrs: Sequence[Cdr], timeout_s: float) -> list[Decision]:
        """:meth:`submit`, awaited: the decisions, or raise LaneOverloadedError (or the engine's exception)."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()

        def done(result: Result) -> None:
            if not future.done():  # the waiting task may have been cancelled
                future.set_result(result)

        self.submit(kind, cdrs, timeout_s, done)
        result = await future
        if isinstance(result, BaseException):
            raise result
        return result

    @property
    def stuck(self) -> bool:
        """True while every thread's running engine call is past the deadline of the calls it serves."""
        now = time.monotonic()
        return all(until is not None and now > until for until in self._busy)

    def _forget_closed_loops(self) -> None:
        for loop in [lp for lp in self._deadlines if lp.is_closed()]:
            del self._deadlines[loop]
            self._outbox.pop(loop, None)

    def _hand_off(self, loop: asyncio.AbstractEventLoop) -> None:
        items = self._outbox.pop(loop, None)
        if not items:
            return
        if self.threaded:
            self._queue.put(items)
            return
        # Inline: the merged calls run here, in the event loop.
        for kind, group in _groups(items):
            now = time.monotonic()
            live = [it for it in group if it.deadline > now and not it.finished]
            if live:
                _deliver(live, self._results(0, kind, live))

    # -- the worker thread -------------------------------------------------------------

    def _run(self, index: int) -> None:
        if len(self._runners) > 1:
            self._run_shared(index)
            return
        carry: list[_Item] = []
        stopping = False
        while True:
            if not carry:
                if stopping:
                    return
                got = self._queue.get()
                if got is None:
                    return
                carry = got
            # Whatever else was handed over meanwhile merges in.
            while not stopping:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                else:
                    carry.extend(more)
            (kind, group), carry = _first_group(carry)
            now = time.monotonic()
            live = [it for it in group if it.deadline > now and not it.finished]
            if live:
                self._serve(index, kind, live)

    def _run_shared(self, index: int) -> None:
        """One of several threads on one queue: take one merge group and hand the rest straight
        back, so an idle thread serves it instead of it waiting behind this one's engine call.
        (Only screening, which changes no state, is run on such lanes: order does not matter.)"""
        while True:
            got = self._queue.get()
            if got is None:
                return
            (kind, group), rest = _first_group(got)
            if rest:
                self._queue.put(rest)
            now = time.monotonic()
            live = [it for it in group if it.deadline > now and not it.finished]
            if live:
                self._serve(index, kind, live)

    def _serve(self, index: int, kind: Kind, items: list[_Item]) -> None:
        results = self._results(index, kind, items)
        loop = items[0].loop
        if all(it.loop is loop for it in items):
            _post(loop, items, results)
            return
        by_loop: dict[asyncio.AbstractEventLoop, tuple[list[_Item], list[Result]]] = {}
        for it, res in zip(items, results, strict=True):
            its, ress = by_loop.setdefault(it.loop, ([], []))
            its.append(it)
            ress.append(res)
        for lp, (its, ress) in by_loop.items():
            _post(lp, its, ress)

    def _results(self, index: int, kind: Kind, items: list[_Item]) -> list[Result]:
        cdrs: list[Cdr] = []
        for it in items:
            cdrs.extend(it.cdrs)
        results: list[Result]
        deadline = min(it.deadline for it in items)
        self._busy[index] = deadline
        try:
            decisions = self._runners[index](kind, cdrs, deadline)
            results = []
            start = 0
            for it in items:
                results.append(decisions[start : start + len(it.cdrs)])
                start += len(it.cdrs)
        except BaseException as exc:  # handed to the waiting request, which fails open
            if not isinstance(exc, LaneOverloadedError):
                log.warning("engine %s failed: %s", kind, type(exc).__name__)
            results = [exc] * len(items)
        finally:
            self._busy[index] = None
        return results


def _first_group(items: list[_Item]) -> tuple[tuple[Kind, list[_Item]], list[_Item]]:
    """The leading run of one kind, up to MAX_MERGE calls (at least one item), and the rest, in order."""
    kind = items[0].kind
    size = len(items[0].cdrs)
    end = 1
    while end < len(items) and items[end].kind == kind and size + len(items[end].cdrs) <= MAX_MERGE:
        size += len(items[end].cdrs)
        end += 1
    return (kind, items[:end]), items[end:]


def _groups(items: list[_Item]) -> list[tuple[Kind, list[_Item]]]:
    out = []
    while items:
        group, items = _first_group(items)
        out.append(group)
    return out


def _post(loop: asyncio.AbstractEventLoop, items: list[_Item], results: list[Result]) -> None:
    try:
        loop.call_soon_threadsafe(_deliver, items, results)
    except RuntimeError:  # loop closed during shutdown
        pass


def _deliver(items: list[_Item], results: list[Any]) -> None:
    for it, res in zip(items, results, strict=True):
        it.finish(res)
