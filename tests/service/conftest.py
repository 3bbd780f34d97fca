"""Fixtures of the API tests: an app over a real Redis feature store, with the development keys."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.app import ServiceConfig, create_app
from service.auth import dev_keys

KEYS = {
    "switch": "dev-switch-kcell",
    "analyst": "dev-analyst",
    "bank": "dev-bank",
    "data_scientist": "dev-ds",
    "admin": "dev-admin",
}
_ids = itertools.count()


def cdr(**overrides: Any) -> dict[str, Any]:
    """A valid cdr/1 at setup time, kcell, a fresh call_id."""
    base: dict[str, Any] = {
        "call_id": f"t-{next(_ids)}",
        "operator": "kcell",
        "start_time": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
        "a_number": "+77011234567",
        "b_number": "+77071234567",
        "ingress": "mobile",
    }
    base.update(overrides)
    return base


def headers(role: str) -> dict[str, str]:
    return {"X-API-Key": KEYS[role]}


@pytest.fixture
def store(redis_url: str) -> Iterator[Any]:
    from features.redisstore import RedisStore

    client = redis.Redis.from_url(redis_url, socket_timeout=1.0, socket_connect_timeout=1.0)
    try:
        yield RedisStore(client)
    finally:
        client.close()


@pytest.fixture
def make_app(store: Any) -> Callable[..., FastAPI]:
    def make(**config: Any) -> FastAPI:
        config.setdefault("keys", tuple(dev_keys()))
        config.setdefault("gc_freeze", False)  # in-process: leave the test session's collector alone
        registry = config.pop("registry", None)
        return create_app(ServiceConfig(**config), store=store, registry=registry)

    return make


@pytest.fixture
def client(make_app: Callable[..., FastAPI]) -> Iterator[TestClient]:
    with TestClient(make_app()) as c:
        yield c
