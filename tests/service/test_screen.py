"""The switch routes' behaviour: emergency numbers always pass, batch order, completed calls applied once,
big batches on the bulk lanes."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

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


def test_big_batches_run_on_the_bulk_lanes_with_the_main_engines_model(store: Any) -> None:
    from models.engine import Engine
    from service.app import ServiceConfig, create_app
    from service.auth import dev_keys
    from service.runtime import BULK_MIN
    from tests.models.tiny_model import loaded

    config = ServiceConfig(keys=tuple(dev_keys()), deadline_ms=5000.0, gc_freeze=False)
    busy = "+77011230001"  # 30 calls in the last hour: the tiny model flags it (warn or block)
    start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)  # before the screened calls (same ms: not counted)
    history = [cdr(a_number=busy, call_id=f"h{i}", answered=True, duration_s=5.0, ring_s=1.0,
                   start_time=(start + dt.timedelta(seconds=i)).isoformat().replace("+00:00", "Z")) for i in range(30)]
    calls = [cdr(a_number=busy if i % 2 else "+77011230002") for i in range(BULK_MIN + 20)]
    answers = []
    for bulk_lanes in (0, 2):
        app = create_app(config, store=store, engine=Engine(store, loaded("tiny-1")), bulk_lanes=bulk_lanes)
        with TestClient(app) as client:
            applied = client.post("/v1/cdrs", json={"calls": history}, headers=headers("switch"))
            assert applied.status_code == 200
            assert not any(d["degraded"] for d in applied.json()["decisions"]), applied.json()["decisions"][0]
            risk = client.post("/v1/numbers/risk", json={"number": busy}, headers=headers("analyst")).json()
            assert risk["summary"]["calls_24h"] == 30, risk
            r = client.post("/v1/screen/batch", json={"calls": calls}, headers=headers("switch"))
            assert r.status_code == 200
            answers.append([(d["call_id"], d["action"], d["score"], d["model_version"], d["degraded"])
                            for d in r.json()["decisions"]])
            metrics = client.get("/metrics").text
    main_lane, bulk_lanes = answers
    assert bulk_lanes == main_lane
    assert {a for _, a, _, _, _ in bulk_lanes} >= {"allow"} and len({a for _, a, _, _, _ in bulk_lanes}) > 1, bulk_lanes[:3]
    assert not any(degraded for *_, degraded in bulk_lanes)
    assert re.search(r'callscreen_api_engine_calls_total\{kind="screen",lane="bulk-[01]"\} %d\.0' % len(calls), metrics)
