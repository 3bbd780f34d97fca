"""Engine lanes: a batch split by caller, each lane with its own engine and Redis connection."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

import redis
from kafka import KafkaProducer

from features.memstore import InMemoryStore
from features.redisstore import RedisStore
from models.engine import Engine
from streaming.dlq import parse
from streaming.worker import Worker, WorkerConfig
from tests.models.tiny_model import loaded


def _cdr(i: int, caller: str) -> dict[str, object]:
    return {
        "call_id": f"l{i}",
        "operator": "kcell",
        "start_time": f"2026-11-20T08:{i // 60:02d}:{i % 60:02d}Z",
        "a_number": caller,
        "b_number": "+77071234567",
        "ingress": "mobile",
        "answered": True,
        "duration_s": 5.0,
        "ring_s": 1.0,
    }


def test_a_sibling_engine_has_its_own_store_connection_and_the_same_answers(redis_url: str) -> None:
    main = Engine(RedisStore(redis.Redis.from_url(redis_url, socket_timeout=2.0)), loaded("tiny-1"))
    sibling = main.sibling()
    assert sibling is not None and sibling is not main
    assert sibling.store is not main.store and sibling.model is main.model
    history = [parse(json.dumps(_cdr(i, "+77011230001")).encode()) for i in range(30)]
    main.process(history[:15])
    sibling.process(history[15:])  # the two engines write one state
    probe = [parse(json.dumps(_cdr(40, "+77011230001")).encode())]
    a, b = main.evaluate(probe, apply=False), sibling.evaluate(probe, apply=False)
    assert [(d.action, d.score) for d in a.decisions] == [(d.action, d.score) for d in b.decisions]
    assert a.decisions[0].action != "allow"  # 30 calls in the hour before: the tiny model flags it
    assert Engine(InMemoryStore(), None).sibling() is None  # an in-process store is shared instead


def test_the_worker_splits_batches_by_caller_over_two_engines(
    kafka_bootstrap: str, unique_topic: Callable[..., str], redis_url: str
) -> None:
    config = WorkerConfig(
        bootstrap=kafka_bootstrap,
        topic_cdr=unique_topic("cdr", partitions=3),
        topic_dlq=unique_topic("dlq"),
        topic_decisions=unique_topic("decisions"),
        group_id=f"lanes-test-{time.monotonic_ns()}",
        metrics_port=0,
        poll_timeout_ms=200,
        redis_url=redis_url,
        gc_freeze=False,
        engine_lanes=2,
    )
    callers = [f"+770112300{k:02d}" for k in range(40)]
    per_caller = {c: 0 for c in callers}
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, request_timeout_ms=10_000)
    try:
        for i in range(600):
            caller = callers[(i * 7) % len(callers)]
            per_caller[caller] += 1
            producer.send(config.topic_cdr, key=caller.encode(), value=json.dumps(_cdr(i, caller)).encode())
        producer.flush(10)
    finally:
        producer.close(timeout=5)

    worker = Worker(config)
    thread = threading.Thread(target=worker.run, name="worker-under-test", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while worker.consumed < 600 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert worker.consumed == 600
        engines = worker.engines()
        assert len(engines) == 2 and engines[0].store is not engines[1].store
        # both lanes took a share of the calls (split by caller, about evenly: 40 callers)
        assert all(e.times.calls >= 100 for e in engines), [e.times.calls for e in engines]
    finally:
        worker.stop()
        thread.join(10)
    assert not thread.is_alive()
    store = RedisStore(redis.Redis.from_url(redis_url, socket_timeout=2.0))
    counted = {c: store.number_summary(c)["calls_24h"] for c in callers}
    assert counted == per_caller


def test_every_part_of_a_batch_uses_the_model_read_when_it_was_handed_over(redis_url: str) -> None:
    from streaming.worker import Decoded

    main = Engine(RedisStore(redis.Redis.from_url(redis_url, socket_timeout=2.0)), loaded("v1"))
    sibling = main.sibling()
    assert sibling is not None
    worker = Worker(WorkerConfig(bootstrap="127.0.0.1:1", gc_freeze=False), engine=main)
    worker.lane_engines = [main, sibling]
    handed_over_with = main.model
    main.swap_model(loaded("v2"))  # a promotion lands while the batch is in the lanes
    parts = [Decoded([parse(json.dumps(_cdr(i, f"+7701123000{lane}")).encode())], [], 1) for i, lane in ((1, 0), (2, 1))]
    versions = {d.model_version for lane, part in enumerate(parts)
                for d in worker.evaluate(part, lane, handed_over_with).decisions}
    assert versions == {"v1"}
    assert {d.model_version for d in worker.evaluate(parts[1], 1).decisions} == {"v2"}  # default: the current one
