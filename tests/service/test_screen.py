"""The switch routes' behaviour: emergency numbers always pass, batch order, completed calls applied once."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.service.conftest import cdr, headers


def test_emergency_numbers_always_pass_even_for_a_blocklisted_caller(client: TestClient) -> None:
    caller = "+77011239999"
    r = client.post("/v1/lists/block", json={"number": caller, "reason": "confirmed"}, headers=headers("analyst"))
    assert r.status_code == 200
    blocked = client.post("/v1/screen", json=cdr(a_number=caller), headers=headers("switch")).json()
    assert blocked["action"] == "block" and blocked["reasons"][0]["code"] == "BLOCKLISTED"
    for code in ("101", "102", "103", "104", "112"):
        d = client.post("/v1/screen", json=cdr(a_number=caller, b_number=code), headers=headers("switch")).json()
        assert d["action"] == "allow" and d["reasons"][0]["code"] == "EMERGENCY_CALLEE"


def test_batch_answers_in_input_order(client: TestClient) -> None:
    calls = [cdr(b_number="112" if i % 3 == 0 else "+77071234567") for i in range(50)]
    r = client.post("/v1/screen/batch", json={"calls": calls}, headers=headers("switch"))
    assert r.status_code == 200
    decisions = r.json()["decisions"]
    assert [d["call_id"] for d in decisions] == [c["call_id"] for c in calls]


def test_completed_calls_update_the_state_once(client: TestClient) -> None:
    caller = "+77011238888"
    done = [cdr(a_number=caller, call_id=f"done-{i}", answered=False, duration_s=0.0, ring_s=1.0) for i in range(5)]
    for _ in range(2):  # delivered twice: the same calls
        r = client.post("/v1/cdrs", json={"calls": done}, headers=headers("switch"))
        assert r.status_code == 200 and len(r.json()["decisions"]) == 5
    risk = client.post("/v1/numbers/risk", json={"number": caller}, headers=headers("analyst")).json()
    assert risk["summary"]["calls_24h"] == 5
    assert "+7" not in str(risk["summary"])  # no callee numbers in the summary
