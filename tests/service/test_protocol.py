"""The switch routes answered inside the HTTP protocol (service/protocol.py) answer exactly as the
ASGI routes do, over real sockets; whatever the protocol does not take goes to the app unchanged."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import uvicorn
from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from deploy import binaries
from models.engine import Engine
from service.auth import dev_keys
from service.hotpath import HotRoutes, Route
from service.protocol import SwitchProtocol
from tests.models.tiny_model import loaded
from tests.service.conftest import cdr, headers
from tests.service.test_hotpath import CASES, SLOW, _stable


class _CountingRoutes(HotRoutes):
    """The ASGI hot path, counting the requests that reached it (i.e. that the protocol passed on)."""

    __slots__ = ("served",)

    def __init__(self, hot: HotRoutes) -> None:
        super().__init__(hot.runtime)
        self.served = 0

    async def serve(self, route: Route, scope: Scope, receive: Receive, send: Send) -> None:
        self.served += 1
        await super().serve(route, scope, receive, send)


@pytest.fixture
def make_server(make_app: Callable[..., FastAPI], store: Any) -> Iterator[Callable[..., tuple[int, _CountingRoutes]]]:
    """``make(http)``: an app with the tiny model served by uvicorn in a thread; (port, its counting hot routes)."""
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def make(http: Any, **config: Any) -> tuple[int, _CountingRoutes]:
        config.setdefault("keys", (*dev_keys(), SLOW))
        config.setdefault("deadline_ms", 5000.0)  # a cold first call must not hit the deadline
        config.setdefault("gc_freeze", False)  # in-process: leave the test session's collector alone
        from service.app import ServiceConfig, create_app

        app = create_app(ServiceConfig(**config), store=store, engine=Engine(store, loaded("tiny-1")))
        counting = _CountingRoutes(app.hot)  # type: ignore[attr-defined]
        app.hot = counting  # type: ignore[attr-defined]
        port = binaries.free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, loop="uvloop", http=http,
                                               log_level="warning", access_log=False))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append((server, thread))
        deadline = time.monotonic() + 20
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        return port, counting

    yield make
    for server, thread in servers:
        server.should_exit = True
        thread.join(10)


def _request(path: str, body: bytes, hdrs: dict[str, str], *, extra: str = "") -> bytes:
    head = "".join(f"{k}: {v}\r\n" for k, v in {**hdrs, "content-type": "application/json"}.items())
    return f"POST {path} HTTP/1.1\r\nhost: t\r\n{head}content-length: {len(body)}\r\n{extra}\r\n".encode() + body


class _Conn:
    """A raw HTTP/1.1 connection: send bytes, read whole responses (content-length framed)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def response(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        hdrs = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(hdrs["content-length"])
        while len(self.buf) < length:
            self._fill()
        body, self.buf = self.buf[:length], self.buf[length:]
        return status, hdrs, body

    def closed_by_server(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except TimeoutError:
            return False

    def _fill(self) -> None:
        got = self.sock.recv(65536)
        if not got:
            raise ConnectionError("closed by the server")
        self.buf += got

    def close(self) -> None:
        self.sock.close()


def _answers(port: int) -> list[tuple[int, dict[str, str], Any]]:
    out = []
    conn = _Conn(port)
    try:
        for path, body, hdrs in CASES:
            conn.send(_request(path, body, hdrs))
            status, got, data = conn.response()
            kept = {k: got[k] for k in ("content-type", "www-authenticate", "retry-after") if k in got}
            out.append((status, kept, _stable(json.loads(data))))
    finally:
        conn.close()
    return out


def test_protocol_answers_like_the_asgi_routes(make_server: Callable[..., tuple[int, _CountingRoutes]],
                                               redis_url: str) -> None:
    port, counting = make_server(SwitchProtocol)
    in_protocol = _answers(port)
    # Only the body over the limit (413) went on to the app; the rest were answered in the protocol.
    assert counting.served == 1
    redis.Redis.from_url(redis_url).flushdb()  # the /v1/cdrs case applied a call: start the second run clean
    port, counting = make_server("httptools")
    in_asgi = _answers(port)
    assert counting.served == len(CASES)
    assert [s for s, _, _ in in_protocol] == [200, 200, 401, 401, 403, 403, 422, 422, 413, 200, 422, 422, 200, 200, 429]
    for case, a, b in zip(CASES, in_protocol, in_asgi, strict=True):
        assert a == b, case[0]


def test_protocol_response_carries_uvicorns_headers(make_server: Callable[..., tuple[int, _CountingRoutes]]) -> None:
    port, _ = make_server(SwitchProtocol)
    conn = _Conn(port)
    conn.send(_request("/v1/screen", json.dumps(cdr(call_id="hd1")).encode(), headers("switch")))
    status, hdrs, body = conn.response()
    conn.close()
    assert status == 200 and json.loads(body)["call_id"] == "hd1"
    assert hdrs["server"] == "uvicorn" and hdrs["date"].endswith("GMT")
    assert hdrs["content-type"] == "application/json" and int(hdrs["content-length"]) == len(body)


def test_pipelined_requests_are_answered_in_order(make_server: Callable[..., tuple[int, _CountingRoutes]]) -> None:
    port, counting = make_server(SwitchProtocol)
    conn = _Conn(port)
    one = _request("/v1/screen", json.dumps(cdr(call_id="p1")).encode(), headers("switch"))
    two = _request("/v1/screen", json.dumps(cdr(call_id="p2")).encode(), headers("switch"))
    conn.send(one + b"GET /healthz HTTP/1.1\r\nhost: t\r\n\r\n" + two)
    first, health, second = conn.response(), conn.response(), conn.response()
    conn.close()
    assert (first[0], json.loads(first[2])["call_id"]) == (200, "p1")
    assert (health[0], json.loads(health[2])) == (200, {"status": "ok"})
    assert (second[0], json.loads(second[2])["call_id"]) == (200, "p2")
    # the second switch request waited behind the first (pipelined): uvicorn queued it for the app
    assert counting.served == 1  # the first one answered in the protocol, the second by the app


def test_a_body_in_many_segments_is_read_whole(make_server: Callable[..., tuple[int, _CountingRoutes]]) -> None:
    port, counting = make_server(SwitchProtocol)
    calls = [cdr(call_id=f"seg{i}") for i in range(300)]
    raw = _request("/v1/screen/batch", json.dumps({"calls": calls}).encode(), headers("switch"))
    conn = _Conn(port)
    for i in range(0, len(raw), 7001):
        conn.send(raw[i : i + 7001])
        time.sleep(0.001)
    status, _, body = conn.response()
    conn.close()
    assert status == 200 and [d["call_id"] for d in json.loads(body)["decisions"]] == [c["call_id"] for c in calls]
    assert counting.served == 0


def test_what_the_protocol_does_not_take_goes_to_the_app(make_server: Callable[..., tuple[int, _CountingRoutes]]) -> None:
    port, counting = make_server(SwitchProtocol)
    body = json.dumps(cdr(call_id="e1")).encode()
    conn = _Conn(port)
    # Expect: 100-continue: uvicorn's cycle answers the 100 and the app the request
    conn.send(_request("/v1/screen", body, headers("switch"), extra="expect: 100-continue\r\n")[: -len(body)])
    assert conn.sock.recv(64).startswith(b"HTTP/1.1 100")
    conn.send(body)
    status, _, data = conn.response()
    assert status == 200 and json.loads(data)["call_id"] == "e1"
    # a chunked body
    head = "".join(f"{k}: {v}\r\n" for k, v in headers("switch").items())
    chunked = json.dumps(cdr(call_id="c1")).encode()
    conn.send(f"POST /v1/screen HTTP/1.1\r\nhost: t\r\n{head}transfer-encoding: chunked\r\n\r\n".encode()
              + b"%x\r\n%s\r\n0\r\n\r\n" % (len(chunked), chunked))
    status, _, data = conn.response()
    assert status == 200 and json.loads(data)["call_id"] == "c1"
    # another method, a query string
    conn.send(b"GET /v1/screen HTTP/1.1\r\nhost: t\r\n\r\n")
    assert conn.response()[0] == 405
    conn.send(_request("/v1/screen?x=1", json.dumps(cdr(call_id="q1")).encode(), headers("switch")))
    status, _, data = conn.response()
    assert status == 200 and json.loads(data)["call_id"] == "q1"
    conn.close()
    assert counting.served == 3  # expect, chunked, query string; the GET went to FastAPI (405)


def test_connection_close_is_honoured(make_server: Callable[..., tuple[int, _CountingRoutes]]) -> None:
    port, counting = make_server(SwitchProtocol)
    conn = _Conn(port)
    conn.send(_request("/v1/screen", json.dumps(cdr(call_id="x1")).encode(), headers("switch"),
                       extra="connection: close\r\n"))
    status, hdrs, data = conn.response()
    assert status == 200 and json.loads(data)["call_id"] == "x1"
    assert hdrs.get("connection") == "close"
    assert conn.closed_by_server()
    conn.close()
    assert counting.served == 0


def test_a_client_gone_before_its_answer_leaves_the_server_serving(
    make_server: Callable[..., tuple[int, _CountingRoutes]],
) -> None:
    port, _ = make_server(SwitchProtocol)
    for i in range(20):
        with contextlib.closing(socket.create_connection(("127.0.0.1", port), timeout=5)) as sock:
            sock.sendall(_request("/v1/screen", json.dumps(cdr(call_id=f"g{i}")).encode(), headers("switch")))
    conn = _Conn(port)
    conn.send(_request("/v1/screen", json.dumps(cdr(call_id="after")).encode(), headers("switch")))
    status, _, data = conn.response()
    conn.close()
    assert status == 200 and json.loads(data)["call_id"] == "after"
