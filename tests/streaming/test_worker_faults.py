"""Fault tests of the worker against the real broker and the real Redis (see the issue's "done when").

Each test produces a seeded CDR stream, runs real worker processes (so SIGKILL, SIGSTOP and
SIGTERM are real) and checks that every CDR got exactly one deduplicated decision and that
the store's per-number counters equal a direct recomputation from the CDRs.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from deploy import binaries, topics
from tests.models.tiny_model import register
from tests.streaming.harness import (
    T0,
    Tail,
    Topics,
    WorkerProcess,
    counters,
    decisions_by_call,
    produce,
    read_all,
    recompute,
    stream,
    wait_for,
)

AFTER = T0 + dt.timedelta(hours=3)  # probe time: after every call of the streams below


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start worker processes; any still running at the end of the test is killed."""
    started: list[WorkerProcess] = []
    register(tmp_path / "models")

    def make(bootstrap: str, redis_url: str, t: Topics, group: str) -> WorkerProcess:
        w = WorkerProcess(bootstrap, redis_url, t, group, tmp_path / f"worker{len(started)}.log", tmp_path / "models")
        started.append(w)
        return w

    yield make
    for w in started:
        if w.alive():
            w.kill()
        elif not w._out.closed:
            w._out.close()


def make_topics(unique_topic: Callable[..., str], partitions: int = 3) -> Topics:
    return Topics(unique_topic("cdr", partitions), unique_topic("dec", partitions),
                  unique_topic("dlq", 1), unique_topic("feed", 1))


def assert_exactly_once(bootstrap: str, t: Topics, values: list[bytes], redis_url: str) -> None:
    decided = decisions_by_call(read_all(bootstrap, t.decisions, timeout_s=30))
    expected = {f"kcell:{json.loads(v)['call_id']}".encode() for v in values}
    assert set(decided) == expected, f"{len(expected - set(decided))} CDRs without a decision"
    assert all(len(ids) == 1 for ids in decided.values())  # redeliveries carry the same decision id
    numbers = sorted({json.loads(v)["a_number"] for v in values})
    assert counters(redis_url, numbers, AFTER) == recompute(values, AFTER)


def test_sigkill_three_times_then_replay_from_start_changes_nothing(
    kafka_bootstrap: str, unique_topic: Callable[..., str], redis_url: str, spawn: Callable[..., WorkerProcess]
) -> None:
    t = make_topics(unique_topic)
    values = stream(6000, seed=1)
    produce(kafka_bootstrap, t.cdr, values)
    group = f"g-{uuid.uuid4().hex[:8]}"
    tail = Tail(kafka_bootstrap, t.decisions)
    try:
        for kill_at in (800, 2500, 4200):
            w = spawn(kafka_bootstrap, redis_url, t, group)
            wait_for(lambda: tail.count() >= kill_at, 40, f"{kill_at} decisions")
            w.kill()
        assert tail.keys() < 6000, "the kills happened mid-stream"
        w = spawn(kafka_bootstrap, redis_url, t, group)
        wait_for(lambda: tail.keys() >= 6000, 40, "every CDR decided")
        assert w.stop() < 10.0  # SIGTERM: finish the batch, commit, exit
        assert_exactly_once(kafka_bootstrap, t, values, redis_url)
        before = counters(redis_url, sorted({json.loads(v)["a_number"] for v in values}), AFTER)

        # Replaying the same topic from the start (a new consumer group) changes no counter.
        first = tail.count()
        w = spawn(kafka_bootstrap, redis_url, t, f"g-{uuid.uuid4().hex[:8]}")
        wait_for(lambda: tail.count() >= first + 6000, 40, "the replay")
        assert w.stop() < 10.0
    finally:
        tail.close()
    assert counters(redis_url, sorted(before), AFTER) == before
    assert_exactly_once(kafka_bootstrap, t, values, redis_url)


def test_malformed_records_go_to_the_dlq_and_the_worker_never_restarts(
    kafka_bootstrap: str, unique_topic: Callable[..., str], redis_url: str, spawn: Callable[..., WorkerProcess]
) -> None:
    t = make_topics(unique_topic)
    good = stream(2000, seed=2)
    rec = json.loads(good[0])
    bad = [
        b"{not json",
        json.dumps({**rec, "call_id": "x1", "a_number": "87011234567"}).encode(),  # national form
        json.dumps({**rec, "call_id": "x2", "b_number": "+7701\u0661234567"}).encode(),  # non-ASCII digit
        json.dumps({**rec, "call_id": "y" * 65}).encode(),  # oversized field
        json.dumps({**rec, "call_id": "x3", "a_cell_id": "c" * 9000}).encode(),  # oversized record
        json.dumps({**rec, "call_id": "x4\u0000"}).encode(),  # NUL character in a field
        b'{"call_id":"x5\x00","operator":"kcell"}',  # raw NUL byte
        json.dumps({**rec, "call_id": "x6", "ingress": "satellite"}).encode(),
        json.dumps({**rec, "call_id": "x7", "start_time": "2026-11-20 08:00"}).encode(),  # no offset
        b"",
    ]
    bad += [json.dumps({**rec, "call_id": f"z{i}", "duration_s": -1}).encode() for i in range(10)]
    values = list(good)
    for i, b in enumerate(bad):  # 1 % of the stream, spread through it
        values.insert(100 * i + 50, b)
    produce(kafka_bootstrap, t.cdr, values)
    w = spawn(kafka_bootstrap, redis_url, t, f"g-{uuid.uuid4().hex[:8]}")
    pid = w.proc.pid
    tail = Tail(kafka_bootstrap, t.decisions)
    try:
        wait_for(lambda: tail.count() >= len(good), 40, "every valid CDR decided")
    finally:
        tail.close()
    assert w.alive() and w.proc.pid == pid  # never restarted
    assert w.stop() < 10.0
    dead = read_all(kafka_bootstrap, t.dlq, expect=len(bad))
    assert sorted(r.value for r in dead) == sorted(bad)
    for r in dead:
        h = dict(r.headers)
        assert h["x-origin-topic"] == t.cdr.encode() and h["x-error"]
        assert int(h["x-origin-offset"]) >= 0 and int(h["x-origin-partition"]) in range(3)
        assert b"87011234567" not in h["x-error"]  # numbers are masked in the error
    assert_exactly_once(kafka_bootstrap, t, good, redis_url)
    # the model blocked the busiest callers; each such number reached the feed once per day, pseudonymised
    feed = [json.loads(r.value) for r in read_all(kafka_bootstrap, t.feed)]
    assert feed and all(len(e["number"]) == 64 and e["status"] == "suspected" for e in feed)
    assert len({(e["number"], e["confidence"] >= 90) for e in feed}) == len(feed)


def test_two_then_three_workers_one_killed(
    kafka_bootstrap: str, unique_topic: Callable[..., str], redis_url: str, spawn: Callable[..., WorkerProcess]
) -> None:
    t = make_topics(unique_topic, partitions=6)
    group = f"g-{uuid.uuid4().hex[:8]}"
    values = stream(6000, seed=3)
    workers = [spawn(kafka_bootstrap, redis_url, t, group) for _ in range(2)]
    tail = Tail(kafka_bootstrap, t.decisions)
    try:
        produce(kafka_bootstrap, t.cdr, values[:2000])
        wait_for(lambda: tail.count() >= 1000, 40, "two workers deciding")
        workers.append(spawn(kafka_bootstrap, redis_url, t, group))
        produce(kafka_bootstrap, t.cdr, values[2000:4000])
        time.sleep(3)  # let the third worker join the group
        workers[0].kill()
        produce(kafka_bootstrap, t.cdr, values[4000:])
        wait_for(lambda: tail.keys() >= 6000, 60, "every CDR decided after the kill")
    finally:
        tail.close()
    for w in workers[1:]:
        assert w.stop() < 10.0
    assert_exactly_once(kafka_bootstrap, t, values, redis_url)


def test_broker_paused_for_10_s_loses_nothing(
    redis_url: str, tmp_path: Path, spawn: Callable[..., WorkerProcess]
) -> None:
    from kafka import KafkaConsumer, TopicPartition

    broker = binaries.start_tansu(tmp_path / "logs")
    try:
        bootstrap = broker.url
        t = Topics("cdr", "decisions", "cdr.dlq", "fraud-feed")
        topics.ensure_topics(bootstrap, [t.cdr, t.decisions, t.dlq, t.feed], partitions=3)
        values = stream(4000, seed=4)
        produce(bootstrap, t.cdr, values[:2000])
        group = "g-pause"
        w = spawn(bootstrap, redis_url, t, group)
        tail = Tail(bootstrap, t.decisions)
        try:
            wait_for(lambda: tail.count() >= 500, 40, "decisions before the pause")
            os.kill(broker.pid, signal.SIGSTOP)
            time.sleep(10)
            os.kill(broker.pid, signal.SIGCONT)
            produce(bootstrap, t.cdr, values[2000:])
            wait_for(lambda: tail.keys() >= 4000, 60, "every CDR decided after the pause")
        finally:
            tail.close()
        assert w.alive()
        # lag drains: the group's committed offsets reach the last CDR of every partition
        cdrs = read_all(bootstrap, t.cdr, expect=4000)
        ends = {p: 1 + max(r.offset for r in cdrs if r.partition == p) for p in {r.partition for r in cdrs}}
        probe = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
        try:
            wait_for(lambda: all(probe.committed(TopicPartition(t.cdr, p)) == end for p, end in ends.items()),
                     20, "lag to drain")
        finally:
            probe.close()
        assert w.stop() < 10.0
        assert_exactly_once(bootstrap, t, values, redis_url)
    finally:
        binaries.stop(broker.pid, broker.create_time)


def test_redis_paused_for_10_s_fails_open_then_converges(
    kafka_bootstrap: str, unique_topic: Callable[..., str], tmp_path: Path, spawn: Callable[..., WorkerProcess]
) -> None:
    server = binaries.start_redis(tmp_path / "redis", tmp_path / "logs")
    try:
        t = make_topics(unique_topic)
        values = stream(3000, seed=5)
        produce(kafka_bootstrap, t.cdr, values[:1000])
        w = spawn(kafka_bootstrap, server.url, t, f"g-{uuid.uuid4().hex[:8]}")
        tail = Tail(kafka_bootstrap, t.decisions)
        try:
            wait_for(lambda: tail.count() >= 1000, 40, "decisions before the pause")
            paused = time.monotonic()
            os.kill(server.pid, signal.SIGSTOP)
            try:
                produce(kafka_bootstrap, t.cdr, values[1000:2000])
                # decisions keep flowing while Redis is paused
                wait_for(lambda: tail.count() >= 2000, 8, "degraded decisions during the pause")
                time.sleep(max(0.0, 10 - (time.monotonic() - paused)))
            finally:
                os.kill(server.pid, signal.SIGCONT)
            produce(kafka_bootstrap, t.cdr, values[2000:])
            wait_for(lambda: tail.count() >= 3000, 40, "decisions after the pause")
            time.sleep(2)  # queued calls are applied on the next batch or idle poll
        finally:
            tail.close()
        assert w.stop() < 10.0
        records = [json.loads(r.value) for r in read_all(kafka_bootstrap, t.decisions, expect=3000)]
        degraded = [d for d in records if d["degraded"] and d["reasons"][-1]["code"] == "DEGRADED_STORE_UNAVAILABLE"]
        assert len(degraded) >= 500 and all(d["action"] == "allow" for d in degraded)
        before = [d for d in records if int(d["call_id"][1:]) < 1000]  # decided before the pause
        assert all(not d["degraded"] and d["model_version"] == "tiny-1" for d in before)
        assert_exactly_once(kafka_bootstrap, t, values, server.url)
    finally:
        binaries.stop(server.pid, server.create_time)


def test_worker_killed_during_a_redis_outage_loses_no_state_update(
    kafka_bootstrap: str, unique_topic: Callable[..., str], tmp_path: Path, spawn: Callable[..., WorkerProcess]
) -> None:
    # Calls decided while Redis is down wait in the worker's memory to be applied; their
    # offsets must not be committed until then, so a worker killed meanwhile is replaced by
    # one that re-reads them and the counters still equal a recomputation.
    server = binaries.start_redis(tmp_path / "redis", tmp_path / "logs")
    try:
        t = make_topics(unique_topic)
        values = stream(2000, seed=7)
        produce(kafka_bootstrap, t.cdr, values[:1000])
        group = f"g-{uuid.uuid4().hex[:8]}"
        w = spawn(kafka_bootstrap, server.url, t, group)
        tail = Tail(kafka_bootstrap, t.decisions)
        try:
            wait_for(lambda: tail.count() >= 1000, 40, "decisions before the outage")
            os.kill(server.pid, signal.SIGSTOP)
            try:
                produce(kafka_bootstrap, t.cdr, values[1000:])
                wait_for(lambda: tail.count() >= 2000, 15, "degraded decisions during the outage")
                w.kill()
            finally:
                os.kill(server.pid, signal.SIGCONT)
            w = spawn(kafka_bootstrap, server.url, t, group)
            numbers = sorted({json.loads(v)["a_number"] for v in values})
            expected = recompute(values, AFTER)
            wait_for(lambda: counters(server.url, numbers, AFTER) == expected, 40, "the re-read calls applied")
        finally:
            tail.close()
        assert w.stop() < 10.0
        assert_exactly_once(kafka_bootstrap, t, values, server.url)
    finally:
        binaries.stop(server.pid, server.create_time)
