"""The subscriber-status follower against the real broker and the real Redis."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable

import redis
from kafka import KafkaProducer

from features.contracts import Cdr, Subscriber, encode
from features.definitions import INDEX
from features.redisstore import RedisStore
from streaming.registry_follower import RegistryFollower, RegistryFollowerConfig

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
A, B = "+77011234567", "+77051112233"


def sub(msisdn: str, status: str, owner: str | None = "o1") -> bytes:
    return encode(Subscriber(msisdn=msisdn, operator="kcell", biometric_status=status,  # type: ignore[arg-type]
                             sim_activated_at=T0, owner_ref=owner))


def test_follower_applies_replacements_and_tombstones(
    kafka_bootstrap: str, unique_topic: Callable[..., str], redis_client: redis.Redis
) -> None:
    topic = unique_topic("subscriber-status")
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, request_timeout_ms=5000, max_block_ms=5000)
    for key, value in (
        (A, sub(A, "pending")),
        (B, sub(B, "verified")),
        (A, sub(A, "verified", owner="o2")),  # a later record replaces the earlier
        (B, None),  # tombstone: delete
        (A, b'{"msisdn":"87011234567"}'),  # invalid: skipped, counted
    ):
        producer.send(topic, key=key.encode(), value=value)
    producer.flush(timeout=10)
    producer.close(timeout=5)

    store = RedisStore(redis_client)
    follower = RegistryFollower(RegistryFollowerConfig(kafka_bootstrap, topic=topic, group_id=topic), store)
    thread = threading.Thread(target=follower.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and follower.counts.rejected + follower.counts.deleted < 2:
        time.sleep(0.1)
    follower.stop()
    thread.join(timeout=10)

    assert (follower.counts.upserted, follower.counts.deleted, follower.counts.rejected) == (3, 1, 1)
    got = store.get_subscriber(A)
    assert got is not None and got.biometric_status == "verified"
    assert store.get_subscriber(B) is None
    # the owner count follows the replacement and the deletion: A alone holds owner o2
    call = Cdr(call_id="c1", operator="kcell", start_time=T0, a_number=A, b_number=B, ingress="mobile")
    x, ctx = store.screen([call])
    assert x[0, INDEX["numbers_per_owner"]] == 1.0 and ctx[0].in_registry
