"""The switch's routes served straight from ASGI, in front of FastAPI's middleware and router.

Why: on this stack a bare FastAPI endpoint that only parses and echoes a body costs about
130 us of CPU per request, a plain ASGI callable doing the same about 30 us (measured
with wrk on loopback, ``benchmarks/README.md``, API). The switch routes are the only
ones on a call-setup timer, and the engine shares the process's one GIL with the HTTP
work, so that difference is throughput and latency for every call.

What stays the same: the routes are declared in ``service/routes/screen.py`` (OpenAPI,
the role matrix) and the work is the same functions (``prepare_one``, ``prepare_many``,
``prepare_report``); keys, roles, operator scope, rate limits, body limits, error bodies
(``handlers.error_answer``) and the latency histogram are the ones every other route uses.
Only the dispatch differs: ``POST`` to one of these exact paths is answered here; any
other method or path goes on to FastAPI (405, redirects, 404 as usual). Under uvicorn with
``service.protocol.SwitchProtocol`` (how ``deploy`` serves) the common case of these
requests is answered one step earlier still, in the HTTP protocol; this ASGI path serves
the rest (chunked bodies, ``Expect: 100-continue``, other ASGI servers, the test client).
"""

from __future__ import annotations

import time
from typing import Final, NamedTuple

from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from service.access import SCREENING
from service.auth import HEADER
from service.errors import BodyTooLargeError
from service.handlers import error_answer
from service.limits import BODY_LIMITS
from service.routes import screen
from service.runtime import Runtime


class Route(NamedTuple):
    path: str
    prepare: screen.Prepare
    limit: int
    """Most body bytes accepted (413 past it)."""
    roles: frozenset[str]


ROUTES: Final[dict[str, Route]] = {
    r.path: r
    for r in (
        Route("/v1/screen", screen.prepare_one, BODY_LIMITS["small"], SCREENING),
        Route("/v1/screen/batch", screen.prepare_many, BODY_LIMITS["batch"], SCREENING),
        Route("/v1/cdrs", screen.prepare_report, BODY_LIMITS["batch"], SCREENING),
    )
}
_KEY: Final = HEADER.encode()
_JSON_HEADERS: Final = [(b"content-type", b"application/json")]


class HotRoutes:
    """Answers ``POST`` to :data:`ROUTES` for one runtime; see the module docstring."""

    __slots__ = ("_observe", "_rt")

    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime
        self._observe = runtime.metrics.observe_latency

    @property
    def runtime(self) -> Runtime:
        return self._rt

    def match(self, scope: Scope) -> Route | None:
        if scope["type"] != "http" or scope["method"] != "POST":
            return None
        return ROUTES.get(scope["path"])

    async def serve(self, route: Route, scope: Scope, receive: Receive, send: Send) -> None:
        t0 = time.monotonic()
        presented: bytes | None = None
        declared: bytes | None = None
        for name, value in scope["headers"]:
            if name == _KEY:
                presented = value
            elif name == b"content-length":
                declared = value
        status = 200
        extra: dict[str, str] = {}
        try:
            key = self._rt.admit(presented.decode("latin-1") if presented is not None else None, route.roles)
            body = await _read(receive, declared, route.limit)
            answer = await screen.run(route.prepare, self._rt, key, body, t0)
        except ClientDisconnect:
            self._observe(scope["path"], "POST", "499", time.monotonic() - t0)
            return
        except Exception as exc:  # noqa: BLE001 - every failure gets the answer FastAPI's handlers give
            status, extra, answer = error_answer(exc, "POST", scope["path"])
        headers = [*_JSON_HEADERS, (b"content-length", str(len(answer)).encode())]
        headers.extend((k.lower().encode(), v.encode()) for k, v in extra.items())
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": answer})
        self._observe(scope["path"], "POST", str(status), time.monotonic() - t0)


async def _read(receive: Receive, declared: bytes | None, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes (before reading them when the length is declared)."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLargeError(f"body of {declared.decode()} bytes exceeds this route's limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError(f"body exceeds this route's limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
