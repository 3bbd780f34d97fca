"""The engine lane: one thread that runs the synchronous engine, and an outer deadline around it.

Why a thread and not a call inside the event loop: the engine is synchronous (Redis Lua
round trip, Cython scorer), and a paused Redis would stall the loop, and with it every
other request, until the client's socket timeout fired; a client timeout alone did not
bound latency in a prototype here. Here the loop only waits on a future under
``asyncio.wait_for(remaining deadline)``, so an answer is always sent by the deadline.

Why it is still fast: requests that arrive while the lane is busy are merged into one
``engine.screen`` call (one Redis round trip, one vectorised predict for all of them), so
the thread hop is paid per batch, not per call.

While the lane is stuck (the running engine call is past its own calls' deadline, as with
a paused Redis), new calls are answered ``allow``/degraded at once instead of queueing behind
it; as soon as the engine call returns (the store's breaker then skips Redis until its next
probe), calls flow again. A single slow call does not black out the lane: only the calls
queued behind it miss their deadline.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from features.contracts import Cdr, Decision

log = logging.getLogger(__name__)

Kind = Literal["screen", "process"]
MAX_MERGE: Final = 1024
"""Most calls merged into one engine call; a /screen/batch request of up to 1,000 is never split."""


Runner = Callable[[Kind, list[Cdr], float], list[Decision]]
"""``runner(kind, cdrs, deadline)``: run the engine on ``cdrs``; ``deadline`` is a ``time.monotonic()`` instant."""


class LaneOverloadedError(Exception):
    """Work could not be handed to the engine in time (deadline passed, or the lane is stuck)."""


@dataclass(slots=True)
class _Item:
    kind: Kind
    cdrs: Sequence[Cdr]
    future: asyncio.Future[list[Decision] | BaseException]
    loop: asyncio.AbstractEventLoop
    deadline: float


class Lane:
    """Hands engine calls to one worker thread; answers by a deadline or raises LaneOverloadedError."""

    def __init__(self, runner: Runner, *, threaded: bool = True) -> None:
        self._runner = runner
        self._busy_until: float | None = None
        self.threaded = threaded
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._pending: list[_Item] = []
        self._flush_scheduled = False

    def start(self) -> None:
        if self.threaded and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="engine-lane", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    async def call(self, kind: Kind, cdrs: Sequence[Cdr], timeout_s: float) -> list[Decision]:
        """Run ``engine.<kind>(cdrs)`` in the lane; raise LaneOverloadedError past ``timeout_s`` or while the lane is stuck."""
        if self.stuck:
            raise LaneOverloadedError("engine lane stuck")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        item = _Item(kind, cdrs, future, loop, time.monotonic() + timeout_s)
        if self.threaded:
            self._queue.put(item)
        else:
            self._pending.append(item)
            if not self._flush_scheduled:
                # After the other ready handlers of this loop turn: their calls merge in.
                self._flush_scheduled = True
                loop.call_soon(self._flush)
        # A timer that resolves the future with a sentinel: cheaper than asyncio.wait_for
        # (no wrapper task, no cancellation) and it fires on the loop whatever the lane does.
        timer = loop.call_later(timeout_s, _expire, future)
        try:
            result = await future
        finally:
            timer.cancel()
        if result is _EXPIRED:
            raise LaneOverloadedError(f"no engine answer within {timeout_s * 1000:.1f} ms")
        if isinstance(result, BaseException):
            raise result
        decisions: list[Decision] = result
        return decisions

    @property
    def stuck(self) -> bool:
        """True while the running engine call is past the deadline of the calls it serves."""
        until = self._busy_until
        return until is not None and time.monotonic() > until

    # -- inline mode: merged calls run in the event loop ---------------------------------

    def _flush(self) -> None:
        self._flush_scheduled = False
        items, self._pending = self._pending, []
        start = 0
        while start < len(items):
            kind = items[start].kind
            end = start
            size = 0
            while end < len(items) and items[end].kind == kind and size + len(items[end].cdrs) <= MAX_MERGE:
                size += len(items[end].cdrs)
                end += 1
            end = max(end, start + 1)
            group = items[start:end]
            start = end
            results = self._results(kind, group)
            _deliver(group, results)

    # -- the worker thread -------------------------------------------------------------

    def _run(self) -> None:
        pending: _Item | None = None
        while True:
            first = pending if pending is not None else self._queue.get()
            pending = None
            if first is None:
                return
            batch = [first]
            size = len(first.cdrs)
            # Merge what is already waiting, same kind only (process order matters).
            while size < MAX_MERGE:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None or nxt.kind != first.kind or size + len(nxt.cdrs) > MAX_MERGE:
                    pending = nxt
                    if nxt is None:
                        self._queue.put(None)
                        pending = None
                    break
                batch.append(nxt)
                size += len(nxt.cdrs)
            now = time.monotonic()
            live = [it for it in batch if it.deadline > now and not it.future.done()]
            if live:
                self._serve(first.kind, live)

    def _serve(self, kind: Kind, items: list[_Item]) -> None:
        results = self._results(kind, items)
        loop = items[0].loop
        try:
            loop.call_soon_threadsafe(_deliver, items, results)
        except RuntimeError:  # loop closed during shutdown
            pass

    def _results(self, kind: Kind, items: list[_Item]) -> list[Any]:
        cdrs: list[Cdr] = []
        for it in items:
            cdrs.extend(it.cdrs)
        results: list[Any]
        deadline = min(it.deadline for it in items)
        self._busy_until = deadline
        try:
            decisions = self._runner(kind, cdrs, deadline)
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
            self._busy_until = None
        return results


_EXPIRED: Final = object()


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_result(_EXPIRED)


def _deliver(items: list[_Item], results: list[Any]) -> None:
    for it, res in zip(items, results, strict=True):
        if not it.future.done():
            it.future.set_result(res)
