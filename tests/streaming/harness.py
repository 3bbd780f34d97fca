"""Helpers of the worker fault tests: a seeded CDR stream, worker subprocesses, topic readers, and
the recomputation of per-number counters from the CDRs themselves.

Workers run as real processes (``python -m streaming.worker``) so that SIGKILL, SIGSTOP and
SIGTERM are the real thing.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import redis

from features.contracts import Cdr, decode
from features.definitions import DAY_MS, INDEX
from features.redisstore import RedisStore

T0 = dt.datetime(2026, 11, 20, 8, tzinfo=dt.UTC)
REPO = Path(__file__).resolve().parents[2]


def stream(n: int, seed: int, *, numbers: int = 60, start: int = 0) -> list[bytes]:
    """n valid `cdr/1` JSON records, call ids ``c<start>..``, one second apart, among ``numbers`` callers."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(start, start + n):
        rec = {
            "call_id": f"c{i}", "operator": "kcell",
            "start_time": (T0 + dt.timedelta(seconds=i)).isoformat().replace("+00:00", "Z"),
            "a_number": f"+7701{int(rng.integers(0, numbers)):07d}",
            "b_number": f"+7705{int(rng.integers(0, 500)):07d}",
            "ingress": "mobile", "answered": bool(rng.random() < 0.5), "ring_s": 3.0,
        }  # fmt: skip
        rec["duration_s"] = 30.0 if rec["answered"] else 0.0
        out.append(json.dumps(rec).encode())
    return out


def produce(bootstrap: str, topic: str, values: Sequence[bytes]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, request_timeout_ms=10_000,
                             max_block_ms=10_000)
    for v in values:
        producer.send(topic, value=v)
    producer.flush(timeout=30)
    producer.close(timeout=5)


class Tail:
    """Reads a topic from the start and keeps everything it saw (Tansu's ListOffsets is not
    exact, so progress is measured by reading, not by end offsets)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        from kafka import KafkaConsumer

        self.records: list[Any] = []
        self._consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                       enable_auto_commit=False, group_id=None, request_timeout_ms=10_000)

    def count(self) -> int:
        for recs in self._consumer.poll(timeout_ms=200, max_records=10_000).values():
            self.records.extend(recs)
        return len(self.records)

    def keys(self) -> int:
        self.count()
        return len({r.key for r in self.records})

    def close(self) -> None:
        self._consumer.close()


def read_all(bootstrap: str, topic: str, *, expect: int | None = None, timeout_s: float = 20.0) -> list[Any]:
    """Every record of ``topic`` (stops early once ``expect`` records are read)."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, group_id=None, consumer_timeout_ms=3000,
                             request_timeout_ms=10_000)
    out = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            polled = consumer.poll(timeout_ms=500)
            for recs in polled.values():
                out.extend(recs)
            if expect is not None and len(out) >= expect:
                break
            if expect is None and not polled and out:
                break
    finally:
        consumer.close()
    return out


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


@dataclass
class Topics:
    cdr: str
    decisions: str
    dlq: str
    feed: str


class WorkerProcess:
    """One ``python -m streaming.worker`` child in its own session."""

    def __init__(self, bootstrap: str, redis_url: str, topics: Topics, group: str, log: Path,
                 registry_dir: Path, max_batch: int = 200) -> None:
        self.log = log
        self._out = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streaming.worker", "--bootstrap", bootstrap, "--redis-url", redis_url,
             "--group", group, "--topic-cdr", topics.cdr, "--topic-decisions", topics.decisions,
             "--topic-dlq", topics.dlq, "--topic-feed", topics.feed, "--max-batch", str(max_batch),
             "--feed-key", "tests-only-feed-key-0123456789abcdef", "--registry-dir", str(registry_dir),
             "--session-timeout-ms", "3000"],
            cwd=REPO, stdin=subprocess.DEVNULL, stdout=self._out, stderr=subprocess.STDOUT,
            start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._out.close()

    def stop(self, timeout_s: float = 10.0) -> float:
        """SIGTERM and wait; returns how long the exit took (raises if over ``timeout_s``)."""
        t = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                self._out.close()
                raise AssertionError(f"worker did not exit within {timeout_s} s of SIGTERM; see {self.log}") from None
        self._out.close()
        return time.monotonic() - t


def decisions_by_call(records: Sequence[Any]) -> dict[bytes, set[str]]:
    """Key (operator:call_id) -> the set of decision ids seen for it."""
    out: dict[bytes, set[str]] = defaultdict(set)
    for r in records:
        out[r.key].add(json.loads(r.value)["decision_id"])
    return out


def counters(redis_url: str, numbers: Sequence[str], at: dt.datetime) -> dict[str, tuple[float, float]]:
    """(calls_24h, distinct_callees_24h) of each number as the store says, probed at ``at`` (read-only)."""
    store = RedisStore(redis.Redis.from_url(redis_url, socket_timeout=10, socket_connect_timeout=5))
    probes = [Cdr(call_id=f"probe{i}", operator="kcell", start_time=at, a_number=n, b_number="+77059999999",
                  ingress="mobile") for i, n in enumerate(numbers)]  # fmt: skip
    X, _ = store.screen(probes)
    return {n: (float(X[i, INDEX["calls_24h"]]), float(X[i, INDEX["distinct_callees_24h"]]))
            for i, n in enumerate(numbers)}  # fmt: skip


def recompute(values: Sequence[bytes], at: dt.datetime) -> dict[str, tuple[float, float]]:
    """The same counters computed directly from the CDRs (each operator+call_id once)."""
    t = at.timestamp() * 1000
    seen: dict[tuple[str, str], Cdr] = {}
    for v in values:
        c = decode(Cdr, v)
        seen.setdefault((c.operator, c.call_id), c)
    calls: dict[str, int] = defaultdict(int)
    callees: dict[str, set[str]] = defaultdict(set)
    for c in seen.values():
        s = c.start_time.timestamp() * 1000
        if t - DAY_MS <= s < t:
            calls[c.a_number] += 1
            callees[c.a_number].add(c.b_number)
    return {n: (float(calls[n]), float(len(callees[n]))) for n in calls}
