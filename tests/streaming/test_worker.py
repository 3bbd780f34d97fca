"""The stream worker against a real broker: consume, dead-letter, commit after acks, stop cleanly."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streaming.worker import Worker, WorkerConfig
from tests.canaries import CANARY_MOBILE, CANARY_NATIONAL, CANARY_RU


def _cdr(i: int, **overrides: object) -> bytes:
    record = {
        "call_id": f"c{i}",
        "operator": "kcell",
        "start_time": "2026-11-20T08:15:30Z",
        "a_number": CANARY_MOBILE,
        "b_number": CANARY_RU,
        "ingress": "mobile",
        **overrides,
    }
    return json.dumps(record).encode()


@pytest.fixture
def worker(kafka_bootstrap: str, unique_topic: Callable[..., str]) -> Iterator[Worker]:
    config = WorkerConfig(
        bootstrap=kafka_bootstrap,
        topic_cdr=unique_topic("cdr", partitions=2),
        topic_dlq=unique_topic("dlq"),
        topic_decisions=unique_topic("decisions"),
        group_id=f"worker-test-{time.monotonic_ns()}",
        metrics_port=0,
        poll_timeout_ms=200,
        gc_freeze=False,  # in-process: leave the test session's collector alone
    )
    w = Worker(config)
    thread = threading.Thread(target=w.run, name="worker-under-test", daemon=True)
    thread.start()
    assert w.wait_ready(30), "worker did not connect to the broker"
    try:
        yield w
    finally:
        w.stop()
        thread.join(10)
        assert not thread.is_alive(), "worker did not stop within 10 s"


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=2) as resp:
        body: bytes = resp.read()
        return body


def test_worker_consumes_dead_letters_and_commits(worker: Worker, kafka_bootstrap: str) -> None:
    cfg = worker.config
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, request_timeout_ms=10_000)
    try:
        for i in range(5):
            producer.send(cfg.topic_cdr, key=CANARY_MOBILE.encode(), value=_cdr(i))
        producer.send(cfg.topic_cdr, key=b"bad-1", value=_cdr(5, a_number=CANARY_NATIONAL))
        producer.send(cfg.topic_cdr, key=b"bad-2", value=b"{not json")
        producer.flush(10)
    finally:
        producer.close(timeout=5)

    deadline = time.monotonic() + 30
    while worker.consumed < 7 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert worker.consumed == 7

    health = json.loads(_get(f"http://127.0.0.1:{worker.metrics_port}/healthz"))
    assert health["status"] == "ok" and health["kafka"] == "connected"
    metrics = _get(f"http://127.0.0.1:{worker.metrics_port}/metrics").decode()
    assert "callscreen_" in metrics

    dlq = KafkaConsumer(
        cfg.topic_dlq,
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=10_000,
        request_timeout_ms=10_000,
    )
    try:
        dead = []
        for msg in dlq:
            dead.append(msg)
            if len(dead) == 2:
                break
    finally:
        dlq.close()
    assert sorted(m.key for m in dead) == [b"bad-1", b"bad-2"]
    for m in dead:
        # Where it came from (topic, partition, offset) and why, whatever the header names.
        values = [v for _, v in m.headers]
        assert cfg.topic_cdr.encode() in values
        assert any(v.startswith(b"cdr/1: ") for v in values)
        assert not any(CANARY_NATIONAL.encode() in v for v in values)  # the reason masks the number
        assert sum(1 for v in values if v.isdigit()) >= 2  # partition and offset
    assert {m.value for m in dead} == {_cdr(5, a_number=CANARY_NATIONAL), b"{not json"}

    # Offsets are committed once the batch's results are acknowledged.
    probe = KafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=cfg.group_id, request_timeout_ms=10_000)
    try:
        parts = [TopicPartition(cfg.topic_cdr, p) for p in (0, 1)]
        # Compared with the count produced: Tansu's in-memory ListOffsets is not reliable.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            committed = sum(probe.committed(tp) or 0 for tp in parts)
            if committed == 7:
                break
            time.sleep(0.2)
        assert committed == 7
    finally:
        probe.close()


def test_worker_stops_promptly(worker: Worker) -> None:
    started = time.monotonic()
    worker.stop()
    while worker.kafka_connected and time.monotonic() - started < 5:
        time.sleep(0.05)
    assert not worker.kafka_connected
    assert time.monotonic() - started < 5
