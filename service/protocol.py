"""uvicorn's httptools protocol, with the switch's routes answered in the protocol itself.

    uvicorn.Config(app, loop="uvloop", http=SwitchProtocol, ...)   # as deploy/api.py serves

Why: on this stack, of the CPU a plain ASGI callable spends on a small request, about half
goes to uvicorn writing the response head and body in two ``write`` calls (two loopback
TCP sends, two wake-ups of the client), and most of the rest to the ASGI machinery around
it (scope dict, request-response cycle, a task per request, message dicts, header checks).
An echo answered here, in one write, cost 38-44 us of server CPU per request against
87-93 us for the same echo as an ASGI app, measured side by side (16 connections, loopback,
load average ~7). The switch's routes are on a call-setup timer and share the process's
one GIL with the engine, so this is throughput and latency for every call.

What is answered here: ``POST`` of an HTTP/1.1 request to exactly one of
``service.hotpath.ROUTES`` with a ``Content-Length`` within the route's limit, no
``Transfer-Encoding``, no ``Expect``, no upgrade, and no earlier request of the connection
still unanswered (pipelining), on a server without ``root_path`` or ``limit_concurrency``.
It runs the same code as the ASGI hot path and the FastAPI routes: ``Runtime.admit``
(key, role, rate limit), the route's ``prepare`` (decode, operator scope), the engine by
``Runtime.submit`` (fail-open by the deadline), ``handlers.error_answer`` for every refusal,
the same headers (uvicorn's ``date``/``server``, ``content-type``, ``content-length``, and
``www-authenticate`` / ``retry-after`` where they apply) and the latency histogram.
Everything else, including a body over the limit, goes through uvicorn's own cycle to the
app as usual (``service/hotpath.py``, then FastAPI), so the answers are the same.

While a request is answered here, an object standing in for uvicorn's request-response
cycle is the connection's ``cycle``: uvicorn's own bookkeeping (a pipelined request waits
for it, a lost connection marks it, a graceful shutdown closes the connection after its
answer) works unchanged, and the answer ends with uvicorn's ``on_response_complete``
(keep-alive timer, next pipelined request).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import Any, Final

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from features.contracts import Decision
from service.auth import HEADER
from service.handlers import error_answer
from service.hotpath import ROUTES, HotRoutes, Route

__all__ = ["SwitchProtocol"]

log = logging.getLogger(__name__)

_BY_URL: Final[dict[bytes, Route]] = {path.encode(): route for path, route in ROUTES.items()}
_KEY: Final = HEADER.encode()
_REFUSE: Final = frozenset({b"transfer-encoding", b"expect", b"upgrade"})
_CONTENT: Final = b"content-type: application/json\r\ncontent-length: "


class _NoEvent:
    __slots__ = ()

    def set(self) -> None:  # uvicorn's connection_lost wakes the cycle's reader: there is none
        pass


_NO_EVENT: Final = _NoEvent()


class _Request:
    """A switch request being answered in the protocol; the connection's ``cycle`` meanwhile."""

    __slots__ = ("chunks", "disconnected", "keep_alive", "key", "response_complete", "route", "t0")
    message_event: Final = _NO_EVENT

    def __init__(self, route: Route, key: bytes | None, keep_alive: bool, t0: float) -> None:
        self.route = route
        self.key = key
        self.keep_alive = keep_alive  # uvicorn's shutdown() clears it: close after the answer
        self.t0 = t0
        self.chunks: list[bytes] = []
        self.response_complete = False
        self.disconnected = False


class SwitchProtocol(HttpToolsProtocol):
    """See the module docstring."""

    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._service = _service_app(self.app) if not self.root_path and self.limit_concurrency is None else None
        self._reading: _Request | None = None

    # -- parser callbacks ------------------------------------------------------------------

    def on_headers_complete(self) -> None:
        service = self._service
        route = _BY_URL.get(self.url) if service is not None and service.hot is not None else None
        if route is not None:
            request = self._switch_request(route)
            if request is not None:
                self._reading = request
                self.cycle = request  # type: ignore[assignment]  # duck-typed: see _Request
                return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        request = self._reading
        if request is None:
            super().on_body(body)
        else:
            request.chunks.append(body)

    def on_message_complete(self) -> None:
        request = self._reading
        if request is None:
            super().on_message_complete()
            return
        self._reading = None
        try:
            self._dispatch(request)
        except Exception as exc:  # noqa: BLE001 - the answer the ASGI path would give (500)
            log.exception("switch route failed")
            self._answer(request, *error_answer(exc, "POST", request.route.path))

    # -- the switch routes -----------------------------------------------------------------

    def _switch_request(self, route: Route) -> _Request | None:
        """The request to answer here, or None for uvicorn's own path (see the module docstring)."""
        parser = self.parser
        existing = self.cycle
        if (parser.get_method() != b"POST" or parser.get_http_version() != "1.1" or parser.should_upgrade()
                or (existing is not None and not existing.response_complete)):
            return None
        key: bytes | None = None
        length: bytes | None = None
        for name, value in self.headers:
            if name == _KEY:
                key = value
            elif name == b"content-length":
                length = value
            elif name in _REFUSE:
                return None
        if length is None or not length.isdigit() or int(length) > route.limit:
            return None
        return _Request(route, key, bool(parser.should_keep_alive()), time.monotonic())

    def _dispatch(self, request: _Request) -> None:
        service = self._service
        hot = service.hot if service is not None else None
        if hot is None:  # switched off since the headers came: answer as the app would
            raise RuntimeError("the switch routes were switched off during a request")
        rt = hot.runtime
        route = request.route
        chunks = request.chunks
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        try:
            key = rt.admit(request.key.decode("latin-1") if request.key is not None else None, route.roles)
            work = route.prepare(rt, key, body, request.t0)
        except Exception as exc:  # noqa: BLE001 - every refusal gets the answer FastAPI's handlers give
            self._answer(request, *error_answer(exc, "POST", route.path))
            return
        rt.submit(work.kind, work.cdrs, work.timeout_s, functools.partial(self._decided, request, work.encode))

    def _decided(self, request: _Request, encode: Any, decisions: list[Decision]) -> None:
        try:
            answer: bytes = encode(decisions)
        except Exception as exc:  # noqa: BLE001
            log.exception("switch route failed to encode its answer")
            self._answer(request, *error_answer(exc, "POST", request.route.path))
            return
        self._answer(request, 200, None, answer)

    def _answer(self, request: _Request, status: int, extra: dict[str, str] | None, body: bytes) -> None:
        """Write the whole response at once, then let uvicorn go on with the connection."""
        service = self._service
        observe = service.hot.runtime.metrics.observe_latency if service is not None and service.hot else None
        route = request.route.path
        if request.response_complete:
            return
        request.response_complete = True
        transport = self.transport
        if request.disconnected or transport.is_closing():
            if observe is not None:
                observe(route, "POST", "499", time.monotonic() - request.t0)
            return
        parts = [STATUS_LINE[status], _default_headers(self.server_state), _CONTENT, str(len(body)).encode(), b"\r\n"]
        if extra:
            for name, value in extra.items():
                parts += (name.lower().encode(), b": ", value.encode("latin-1"), b"\r\n")
        if not request.keep_alive:
            parts.append(b"connection: close\r\n")
        parts += (b"\r\n", body)
        transport.write(b"".join(parts))
        if observe is not None:
            observe(route, "POST", str(status), time.monotonic() - request.t0)
        if not request.keep_alive:
            transport.close()
        self.on_response_complete()


def _service_app(app: Any) -> Any:
    """The app holding the switch routes (``.hot``), under uvicorn's middleware wrappers; or None."""
    for _ in range(8):
        if app is None:
            return None
        if isinstance(getattr(app, "hot", None), HotRoutes):
            return app
        app = getattr(app, "app", None)
    return None


_head_cache: list[Any] = [None, b""]


def _default_headers(state: ServerState) -> bytes:
    """uvicorn's default headers (``date``, ``server``) as bytes; uvicorn replaces the list once a second."""
    headers = state.default_headers
    if _head_cache[0] is not headers:
        _head_cache[1] = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
        _head_cache[0] = headers
    block: bytes = _head_cache[1]
    return block
