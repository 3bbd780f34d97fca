"""The switch routes answered ahead of FastAPI (service/hotpath.py) answer exactly as the FastAPI routes do."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.auth import ApiKey, dev_keys, digest
from service.hotpath import HotRoutes
from tests.service.conftest import cdr, headers

SLOW = ApiKey(name="slow", role="switch", sha256=digest("slow-key"), operator="kcell", rate_per_s=1.0)
FIXED = {"start_time": "2026-11-20T08:15:30Z", "a_number": "+77011234567", "b_number": "+77071234567"}

# (path, body bytes, headers): valid, and every way the routes refuse a request.
CASES: list[tuple[str, bytes, dict[str, str]]] = [
    ("/v1/screen", json.dumps(cdr(call_id="h1", **FIXED)).encode(), headers("switch")),
    ("/v1/screen", json.dumps(cdr(call_id="h2", **{**FIXED, "b_number": "112"})).encode(), headers("switch")),
    ("/v1/screen", json.dumps(cdr(call_id="h3", **FIXED)).encode(), {}),
    ("/v1/screen", json.dumps(cdr(call_id="h4", **FIXED)).encode(), {"X-API-Key": "nope"}),
    ("/v1/screen", json.dumps(cdr(call_id="h5", **FIXED)).encode(), headers("analyst")),
    ("/v1/screen", json.dumps(cdr(call_id="h6", operator="beeline", **FIXED)).encode(), headers("switch")),
    ("/v1/screen", json.dumps(cdr(call_id="h7", **{**FIXED, "a_number": "87011234567"})).encode(), headers("switch")),
    ("/v1/screen", b"not json", headers("switch")),
    ("/v1/screen", b'{"pad":"' + b"x" * 20_000 + b'"}', headers("switch")),
    ("/v1/screen/batch", json.dumps({"calls": [cdr(call_id=f"b{i}", **FIXED) for i in range(3)]}).encode(),
     headers("switch")),
    ("/v1/screen/batch", json.dumps({"calls": [cdr(call_id="b9", **{**FIXED, "b_number": "x"})]}).encode(),
     headers("switch")),
    ("/v1/screen/batch", b'{"calls": []}', headers("switch")),
    ("/v1/cdrs", json.dumps({"calls": [cdr(call_id="d1", answered=True, duration_s=3.0, ring_s=1.0, **FIXED)]}).encode(),
     headers("switch")),
    ("/v1/screen", json.dumps(cdr(call_id="s1", **FIXED)).encode(), {"X-API-Key": "slow-key"}),
    ("/v1/screen", json.dumps(cdr(call_id="s2", **FIXED)).encode(), {"X-API-Key": "slow-key"}),  # 429
]
_VARYING = ("decided_at",)  # the only field that differs between two runs of the same call


def _answers(make_app: Callable[..., FastAPI], *, hot: bool) -> list[tuple[int, dict[str, str], Any]]:
    app = make_app(keys=(*dev_keys(), SLOW), deadline_ms=5000.0)  # a cold first call must not hit the deadline
    assert isinstance(app.hot, HotRoutes)  # type: ignore[attr-defined]
    if not hot:
        app.hot = None  # type: ignore[attr-defined]
    out = []
    with TestClient(app) as client:
        for path, body, hdrs in CASES:
            r = client.post(path, content=body, headers={**hdrs, "content-type": "application/json"})
            kept = {k: r.headers[k] for k in ("content-type", "www-authenticate", "retry-after") if k in r.headers}
            out.append((r.status_code, kept, _stable(r.json())))
    return out


def _stable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in _VARYING}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    if isinstance(value, str):  # a 429's wait in ms depends on when the request came
        return re.sub(r"retry after [0-9.]+ s", "retry after N s", value)
    return value


@pytest.fixture
def both(make_app: Callable[..., FastAPI], redis_url: str) -> Iterator[tuple[list[Any], list[Any]]]:
    hot = _answers(make_app, hot=True)
    import redis

    redis.Redis.from_url(redis_url).flushdb()  # the /v1/cdrs case applied a call: start the second run clean
    yield hot, _answers(make_app, hot=False)


def test_hot_routes_answer_like_the_fastapi_routes(both: tuple[list[Any], list[Any]]) -> None:
    hot, plain = both
    statuses = [s for s, _, _ in hot]
    assert statuses == [200, 200, 401, 401, 403, 403, 422, 422, 413, 200, 422, 422, 200, 200, 429], statuses
    for case, a, b in zip(CASES, hot, plain, strict=True):
        assert a == b, case[0]


def test_other_methods_and_paths_go_to_fastapi(client: TestClient) -> None:
    assert client.get("/v1/screen", headers=headers("switch")).status_code == 405
    assert client.post("/v1/screen/other", json={}, headers=headers("switch")).status_code == 404


def test_chunked_body_over_the_limit_is_413(client: TestClient) -> None:
    chunks = (b"x" * 4096 for _ in range(5))  # no content-length: read up to the limit, then refused
    r = client.post("/v1/screen", content=chunks, headers={**headers("switch"), "content-type": "application/json"})
    assert r.status_code == 413 and "limit" in r.json()["detail"]


def test_hot_routes_are_timed_by_route_template(client: TestClient) -> None:
    client.post("/v1/screen", json=cdr(), headers=headers("switch"))
    client.post("/v1/screen", json=cdr(), headers={"X-API-Key": "nope"})
    text = client.get("/metrics").text
    assert 'callscreen_api_request_seconds_count{method="POST",route="/v1/screen",status="200"} 1.0' in text
    assert 'callscreen_api_request_seconds_count{method="POST",route="/v1/screen",status="401"} 1.0' in text
