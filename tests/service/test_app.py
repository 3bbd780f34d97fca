"""The API application factory."""

from __future__ import annotations

import gc

from fastapi.testclient import TestClient

from service.app import ServiceConfig, create_app


def test_healthz() -> None:
    with TestClient(create_app(ServiceConfig(gc_freeze=False))) as client:
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_start_up_freezes_what_it_built_unless_told_not_to() -> None:
    """ServiceConfig.gc_freeze: after start-up the objects then alive sit outside the cyclic
    GC (benchmarks/README.md, API: the collector's pauses past the deadline without it)."""
    gc.unfreeze()  # whatever an earlier test in this session froze
    try:
        with TestClient(create_app(ServiceConfig(gc_freeze=False))):
            assert gc.get_freeze_count() == 0
        with TestClient(create_app(ServiceConfig())):
            assert gc.get_freeze_count() > 1000
    finally:
        gc.unfreeze()
