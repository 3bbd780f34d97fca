"""The subscriber-status follower against the real broker and the real Redis."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from kafka import KafkaConsumer, KafkaProducer

from features.contracts import Cdr, Subscriber, encode
from features.definitions import INDEX
from features.redisstore import RedisStore
from streaming.registry_follower import RegistryFollower, RegistryFollowerConfig

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
A, B = "+77011234567", "+77051112233"


def sub(msisdn: str, status: str, owner: str | None = "o1") -> bytes:
    return encode(Subscriber(msisdn=msisdn, operator="kcell", biometric_status=status,  # type: ignore[arg-type]
                             sim_activated_at=T0, owner_ref=owner))


def _dead_letters(bootstrap: str, topic: str, n: int) -> list[Any]:
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=10_000, request_timeout_ms=10_000)
    try:
        dead = []
        for msg in consumer:
            dead.append(msg)
            if len(dead) == n:
                break
        return dead
    finally:
        consumer.close()


def test_follower_applies_replacements_and_tombstones_and_dead_letters_the_rest(
    kafka_bootstrap: str, unique_topic: Callable[..., str], redis_client: redis.Redis
) -> None:
    topic = unique_topic("subscriber-status")
    topic_dlq = unique_topic("subscriber-status-dlq")
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, request_timeout_ms=5000, max_block_ms=5000)
    a, b = A.encode(), B.encode()
    bad: list[tuple[bytes, bytes | None]] = [
        (a, b'{"msisdn":"87019998877"}'),  # breaks the contract
        (a, b"{not json"),
        (a, b"\x00" * 10_000),  # over the size limit: not even parsed
        (b"8701 not a number", None),  # a tombstone whose key is no number
        (b, sub(A, "failed")),  # keyed by another number than its msisdn
        (a, sub(A, "verified").replace(b"2026-01-01T00:00:00Z", b"1969-12-31T23:59:59Z")),  # the registry cannot hold it
    ]
    good = [
        (A, sub(A, "pending")),
        (B, sub(B, "verified")),
        (A, sub(A, "verified", owner="o2")),  # a later record replaces the earlier
        (B, None),  # tombstone: delete
    ]
    # the bad records in between the good ones: the stream goes on after each
    for (key, value), (bkey, bvalue) in zip([*good, (None, None), (None, None)], bad, strict=True):
        if key is not None:
            producer.send(topic, key=key.encode(), value=value)
        producer.send(topic, key=bkey, value=bvalue)
    producer.flush(timeout=10)
    producer.close(timeout=5)

    store = RedisStore(redis_client)
    follower = RegistryFollower(
        RegistryFollowerConfig(kafka_bootstrap, topic=topic, topic_dlq=topic_dlq, group_id=topic, max_batch=3), store
    )
    thread = threading.Thread(target=follower.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and follower.counts.rejected + follower.counts.deleted < len(bad) + 1:
        time.sleep(0.1)
    follower.stop()
    thread.join(timeout=10)

    assert (follower.counts.upserted, follower.counts.deleted, follower.counts.rejected) == (3, 1, len(bad))
    got = store.get_subscriber(A)
    assert got is not None and got.biometric_status == "verified"
    assert store.get_subscriber(B) is None
    # the owner count follows the replacement and the deletion: A alone holds owner o2
    call = Cdr(call_id="c1", operator="kcell", start_time=T0, a_number=A, b_number=B, ingress="mobile")
    x, ctx = store.screen([call])
    assert x[0, INDEX["numbers_per_owner"]] == 1.0 and ctx[0].in_registry

    dead = _dead_letters(kafka_bootstrap, topic_dlq, len(bad))
    assert [(m.key, m.value) for m in dead] == bad  # byte for byte, in order
    offsets = []
    for m in dead:
        h = dict(m.headers)
        assert h["x-origin-topic"] == topic.encode() and h["x-origin-partition"] == b"0"
        offsets.append(int(h["x-origin-offset"]))
        assert b"9998877" not in h["x-error"] and b"8701 not" not in h["x-error"]  # numbers masked
    assert offsets == [1, 3, 5, 7, 8, 9]
    reasons = [dict(m.headers)["x-error"].decode() for m in dead]
    assert "msisdn" in reasons[0] and "JSON" in reasons[1] and "over the" in reasons[2]
    assert "E.164" in reasons[3] and "key" in reasons[4] and "sim_activated_at" in reasons[5]


@dataclass(frozen=True)
class _Rec:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def test_apply_dead_letters_only_the_records_it_cannot_hold_and_keeps_the_order() -> None:
    """Without a broker: in one batch, a record the registry cannot hold (1969) is found among
    good ones, and a later record for a number still replaces the earlier one."""
    from features.memstore import InMemoryStore
    from streaming.registry_follower import apply

    c = "+77017654321"
    old = sub(A, "verified").replace(b"2026-01-01T00:00:00Z", b"1969-12-31T23:59:59Z")
    batch = [_Rec("s", 0, 0, A.encode(), sub(A, "pending")), _Rec("s", 0, 1, A.encode(), old),
             _Rec("s", 0, 2, c.encode(), sub(c, "failed")), _Rec("s", 0, 3, A.encode(), sub(A, "verified")),
             _Rec("s", 0, 4, c.encode(), b'{"msisdn":"+77017654321","operator":"kcell"}')]
    store = InMemoryStore()
    counts, dead = apply(store, batch)
    assert (counts.upserted, counts.deleted, counts.rejected) == (3, 0, 2)
    assert [dict(d.headers)["x-origin-offset"] for d in dead] == [b"1", b"4"]
    assert b"sim_activated_at" in dict(dead[0].headers)["x-error"]
    got_a, got_c = store.get_subscriber(A), store.get_subscriber(c)
    assert got_a is not None and got_a.biometric_status == "verified"
    assert got_c is not None and got_c.biometric_status == "failed"
