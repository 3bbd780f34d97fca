"""Auth and limits: the whole role x endpoint matrix, 401/403/429/413/422."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.auth import ApiKey, digest
from tests.service.conftest import KEYS, cdr, headers

SUB = {"msisdn": "+77011234567", "operator": "kcell", "biometric_status": "verified",
       "sim_activated_at": "2021-06-15T09:30:00Z"}

# (method, path, json body, roles allowed)
ENDPOINTS: list[tuple[str, str, Any, set[str]]] = [
    ("POST", "/v1/screen", cdr(), {"switch", "admin"}),
    ("POST", "/v1/screen/batch", {"calls": [cdr()]}, {"switch", "admin"}),
    ("POST", "/v1/cdrs", {"calls": [cdr(answered=True, duration_s=3.0, ring_s=1.0)]}, {"switch", "admin"}),
    ("POST", "/v1/subscribers", SUB, {"switch", "admin"}),
    ("POST", "/v1/subscribers/bulk", None, {"switch", "admin"}),
    ("POST", "/v1/subscribers/lookup", {"msisdn": "+77011234567"}, {"switch", "analyst", "admin"}),
    ("POST", "/v1/subscribers/delete", {"msisdn": "+77011234599"}, {"switch", "admin"}),
    ("GET", "/v1/lists/block", None, {"analyst", "bank", "admin"}),
    ("POST", "/v1/lists/block", {"number": "+77011230000", "reason": "test"}, {"analyst", "admin"}),
    ("POST", "/v1/lists/block/remove", {"number": "+77011230000"}, {"analyst", "admin"}),
    ("POST", "/v1/numbers/risk", {"number": "+77011234567"}, {"analyst", "bank", "admin"}),
    ("GET", "/v1/models", None, {"data_scientist", "analyst", "admin"}),
    ("GET", "/v1/models/champion", None, {"data_scientist", "analyst", "admin"}),
    ("POST", "/v1/models/promote", {"version": "nope"}, {"data_scientist", "admin"}),
    ("POST", "/v1/models/rollback", {}, {"data_scientist", "admin"}),
    ("GET", "/v1/version", None, {"switch", "analyst", "bank", "data_scientist", "admin"}),
]


def _send(client: TestClient, method: str, path: str, body: Any, hdrs: dict[str, str]) -> Any:
    if path.endswith("/bulk"):
        import json

        return client.post(path, content=(json.dumps(SUB) + "\n").encode(),
                           headers={**hdrs, "content-type": "application/x-ndjson"})
    return client.request(method, path, json=body, headers=hdrs)


def test_every_route_is_in_the_matrix(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    secured = {(m.upper(), p) for p, item in schema["paths"].items() for m in item if p.startswith("/v1")}
    covered = {(m, p.replace("/block", "/{list_name}").replace("/champion", "/{ref}")) for m, p, _, _ in ENDPOINTS}
    assert secured == covered


@pytest.mark.parametrize("role", sorted(KEYS))
def test_role_endpoint_matrix(client: TestClient, role: str) -> None:
    for method, path, body, allowed in ENDPOINTS:
        r = _send(client, method, path, body, headers(role))
        if role in allowed:
            assert r.status_code not in (401, 403), (role, path, r.status_code, r.text)
        else:
            assert r.status_code == 403, (role, path, r.status_code, r.text)
            assert "may not call this endpoint" in r.json()["detail"]


@pytest.mark.parametrize("hdrs", [{}, {"X-API-Key": "not-a-key"}, {"X-API-Key": ""}])
def test_without_a_valid_key_every_v1_route_is_401(client: TestClient, hdrs: dict[str, str]) -> None:
    for method, path, body, _ in ENDPOINTS:
        r = _send(client, method, path, body, hdrs)
        assert r.status_code == 401, (path, r.status_code)
        assert r.headers["www-authenticate"] == "ApiKey"


def test_ops_routes_need_no_key(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/metrics").status_code == 200
    assert client.get("/readyz").status_code == 503  # no model yet


def test_switch_key_is_scoped_to_its_operator(client: TestClient) -> None:
    r = client.post("/v1/screen", json=cdr(operator="beeline"), headers=headers("switch"))
    assert r.status_code == 403 and "scoped to operator 'kcell'" in r.json()["detail"]
    r = client.post("/v1/screen/batch", json={"calls": [cdr(), cdr(operator="beeline")]}, headers=headers("switch"))
    assert r.status_code == 403
    r = client.post("/v1/subscribers", json={**SUB, "operator": "beeline"}, headers=headers("switch"))
    assert r.status_code == 403
    assert client.post("/v1/screen", json=cdr(operator="beeline"), headers=headers("admin")).status_code == 200


def test_rate_limit_answers_429_with_retry_after(make_app: Callable[..., FastAPI]) -> None:
    slow = ApiKey(name="slow", role="switch", sha256=digest("slow-key"), operator="kcell", rate_per_s=2.0)
    with TestClient(make_app(keys=(slow,))) as c:
        codes = [c.post("/v1/screen", json=cdr(), headers={"X-API-Key": "slow-key"}) for _ in range(4)]
    assert [r.status_code for r in codes[:2]] == [200, 200]
    limited = [r for r in codes if r.status_code == 429]
    assert limited and int(limited[0].headers["retry-after"]) >= 1
    assert "rate limit" in limited[0].json()["detail"]


def test_body_too_large_is_413(client: TestClient) -> None:
    big = cdr(a_cell_id="x" * 64)
    body = b'{"pad":"' + b"x" * 20_000 + b'",' + str(big).encode()[1:]
    r = client.post("/v1/screen", content=body, headers={**headers("switch"), "content-type": "application/json"})
    assert r.status_code == 413 and "limit" in r.json()["detail"]
    r = client.post("/v1/screen/batch", json={"calls": [cdr()] * 1001}, headers=headers("switch"))
    assert r.status_code in (413, 422)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/screen", cdr(a_number="87011234567"), "a_number"),
        ("/v1/screen", cdr(ingress="sip"), "ingress"),
        ("/v1/screen", {k: v for k, v in cdr().items() if k != "start_time"}, "start_time"),
        ("/v1/screen/batch", {"calls": [cdr(), cdr(b_number="x")]}, "calls[1].b_number"),
        ("/v1/screen/batch", {"calls": []}, "calls"),
        ("/v1/numbers/risk", {"number": "+7 701 123"}, "number"),
        ("/v1/lists/block", {"number": "+77011234567"}, "reason"),
    ],
)
def test_validation_is_422_naming_the_field(client: TestClient, path: str, body: Any, field: str) -> None:
    role = "switch" if "screen" in path else "analyst"
    r = client.post(path, json=body, headers=headers(role))
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field
    assert field.split(".")[-1].split("[")[0] in r.json()["detail"]
    assert "87011234567" not in r.text  # numbers are masked in error messages


def test_unknown_list_is_422(client: TestClient) -> None:
    r = client.get("/v1/lists/grey", headers=headers("analyst"))
    assert r.status_code == 422 and r.json()["field"] == "list_name"
