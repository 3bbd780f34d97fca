"""The whole-batch producer and fetcher (streaming/producer.py, streaming/fetch.py, _records.pyx)
against the real broker: what they write is what kafka-python writes and reads, delivery is
acknowledged (acks=all) and idempotent (a batch sent twice is stored once), and waiting is bounded.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka import KafkaConsumer, KafkaProducer
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import CorruptRecordError, KafkaConnectionError, MessageSizeTooLargeError
from kafka.record.memory_records import MemoryRecords
from kafka.structs import TopicPartition
from kafka.partitioner.default import murmur2
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from kafka.record.util import calc_crc32c

from deploy import binaries, topics
from streaming import _records, fetch
from streaming.producer import BatchProducer


def _producer(bootstrap: str, **overrides: Any) -> KafkaProducer:
    config: dict[str, Any] = {"bootstrap_servers": bootstrap, "enable_idempotence": True, "acks": "all",
                              "request_timeout_ms": 5_000, "delivery_timeout_ms": 15_000, "max_block_ms": 5_000,
                              "retry_backoff_ms": 50}
    config.update(overrides)
    return KafkaProducer(**config)


def _read(bootstrap: str, topic: str, expect: int, *, fast: bool = False, timeout_s: float = 20) -> list[Any]:
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, group_id=None, request_timeout_ms=10_000)
    if fast:
        fetch.install(consumer)
    out: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < expect and time.monotonic() < deadline:
            for recs in consumer.poll(timeout_ms=200, max_records=1000).values():
                out.extend(recs)
        # and nothing more arrives (a duplicate would)
        settle = time.monotonic() + 1.0
        while time.monotonic() < settle:
            for recs in consumer.poll(timeout_ms=200).values():
                out.extend(recs)
    finally:
        consumer.close()
    return out


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[binaries.Started]:
    """A Tansu of this test only (it gets paused)."""
    started = binaries.start_tansu(tmp_path / "logs")
    try:
        yield started
    finally:
        try:
            os.kill(started.pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
        binaries.stop(started.pid, started.create_time)


# -- the encoding ---------------------------------------------------------------------------

_record = st.tuples(st.one_of(st.none(), st.binary(max_size=40)), st.binary(max_size=300),
                    st.one_of(st.none(), st.lists(st.tuples(st.text(max_size=8), st.one_of(st.none(), st.binary(max_size=20))),
                                                  max_size=3)))


@settings(max_examples=150, deadline=None)
@given(st.lists(_record, min_size=1, max_size=60), st.integers(min_value=1, max_value=5),
       st.integers(min_value=100, max_value=4000))
def test_batches_are_byte_identical_to_kafka_python_and_decode_back(
        records: list[tuple[bytes | None, bytes, list[tuple[str, bytes | None]] | None]], n_partitions: int,
        max_bytes: int) -> None:
    keys = [k for k, _, _ in records]
    values = [v for _, v, _ in records]
    blobs = [_records.encode_headers(h) if h else None for _, _, h in records]
    ts = 1_763_625_600_123
    built = _records.build_batches(keys, values, blobs, n_partitions, n_partitions - 1, ts, max_bytes)
    expected: dict[int, list[int]] = {}
    for i, k in enumerate(keys):
        p = n_partitions - 1 if k is None else (murmur2(k) & 0x7FFFFFFF) % n_partitions
        expected.setdefault(p, []).append(i)
    seen: dict[int, list[int]] = {}
    for p, buffer, count in built:
        assert len(buffer) <= max_bytes or count == 1
        idx = expected[p][len(seen.get(p, [])): len(seen.get(p, [])) + count]
        seen.setdefault(p, []).extend(idx)
        ref = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=False, producer_id=4242,
                                        producer_epoch=7, base_sequence=99, batch_size=10**9)
        for delta, i in enumerate(idx):
            ref.append(delta, ts, keys[i], values[i], records[i][2] or [])
        _records.set_producer_state(buffer, 4242, 7, 99, False, calc_crc32c)
        assert bytes(buffer) == bytes(ref.build())
        ours = _records.decode_batch(buffer, "t", p, ConsumerRecord, 0)
        theirs = list(DefaultRecordBatch(bytes(buffer)))
        assert [(r.offset, r.timestamp, r.key, r.value, r.headers) for r in ours] == \
            [(r.offset, r.timestamp, r.key, r.value, r.headers) for r in theirs]
    assert seen == expected


def test_malformed_batches_are_refused() -> None:
    (_, buffer, _), = _records.build_batches([b"k"], [b"v" * 10], None, 1, 0, 0, 1 << 20)
    with pytest.raises(ValueError):
        _records.decode_batch(buffer[:-3], "t", 0, ConsumerRecord, 0)
    with pytest.raises(ValueError):
        _records.decode_batch(buffer + b"\x00", "t", 0, ConsumerRecord, 0)


def test_a_header_key_that_is_not_text_is_refused_by_name() -> None:
    with pytest.raises(TypeError, match="header key b'x-origin' is bytes; expected str"):
        _records.encode_headers([(b"x-origin", b"1")])


# -- through the broker ---------------------------------------------------------------------

def test_round_trip_partitions_order_headers(kafka_bootstrap: str, unique_topic: Callable[..., str]) -> None:
    topic = unique_topic("bp", partitions=3)
    rng = random.Random(5)
    n = 3000
    keys = [None if i % 97 == 0 else f"kcell:c{i}".encode() for i in range(n)]
    values = [f"value-{i}-".encode() + bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 200))) for i in range(n)]
    headers: list[list[tuple[str, bytes]] | None] = [[("x-origin-offset", str(i).encode())] if i % 50 == 0 else None
                                                     for i in range(n)]
    producer = _producer(kafka_bootstrap)
    try:
        batches = BatchProducer(producer, max_batch_bytes=64 * 1024)
        futures = batches.send_many(topic, keys, values, headers)
        assert len(futures) > 3  # several batches per partition at 64 KiB
        assert batches.wait(futures, 20)
        assert batches.error(futures) is None
    finally:
        producer.close(timeout=5)
    for fast in (False, True):
        got = _read(kafka_bootstrap, topic, n, fast=fast)
        assert all(type(r) is ConsumerRecord for r in got)
        assert sorted(r.value for r in got) == sorted(values)  # each exactly once
        by_value = {v: i for i, v in enumerate(values)}
        for r in got:
            i = by_value[r.value]
            assert r.key == keys[i]
            assert r.headers == (headers[i] or [])
            if keys[i] is not None:
                assert r.partition == (murmur2(keys[i]) & 0x7FFFFFFF) % 3
        for p in range(3):
            order = [by_value[r.value] for r in sorted((r for r in got if r.partition == p), key=lambda r: r.offset)]
            assert order == sorted(order)  # input order kept per partition


def test_fetcher_matches_kafka_python_on_records_it_wrote(kafka_bootstrap: str,
                                                          unique_topic: Callable[..., str]) -> None:
    """Including gzip batches (decoded by kafka-python's path) and partial takes (max_records)."""
    topic = unique_topic("fx", partitions=2)
    for compression in (None, "gzip"):
        producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, compression_type=compression, linger_ms=5)
        for i in range(700):
            producer.send(topic, key=None if i % 3 else f"k{i}".encode(), value=f"v{i}".encode() * (i % 7),
                          headers=[("h", b"x")] if i % 5 == 0 else [])
        producer.flush(10)
        producer.close(timeout=5)

    def read(fast: bool) -> list[Any]:
        consumer = KafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest",
                                 enable_auto_commit=False, group_id=None, request_timeout_ms=10_000)
        if fast:
            fetch.install(consumer)
        out: list[Any] = []
        deadline = time.monotonic() + 20
        try:
            while len(out) < 1400 and time.monotonic() < deadline:
                for recs in consumer.poll(timeout_ms=200, max_records=37).values():
                    out.extend(recs)
        finally:
            consumer.close()
        return sorted(out, key=lambda r: (r.partition, r.offset))

    stock, ours = read(False), read(True)
    assert len(stock) == 1400
    assert ours == stock


def test_a_corrupt_batch_is_never_skipped_by_the_fast_fetcher() -> None:
    """Three batches, the middle one's CRC broken: the records before it come out, then every
    later take raises CorruptRecordError (the batch after it must not come out: it did, once a
    caller took again after the error)."""
    buffer = bytearray()
    for b in range(3):
        builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=False, producer_id=-1,
                                            producer_epoch=-1, base_sequence=-1, batch_size=10**6)
        for i in range(4):
            builder.append(i, 1_700_000_000_000, None, f"b{b}r{i}".encode(), [])
        batch = builder.build()
        batch[0:8] = (4 * b).to_bytes(8, "big")  # base offset (not in the CRC)
        if b == 1:
            batch[-1] ^= 0xFF  # a record byte: the CRC-32C no longer matches
        buffer += batch
    records = fetch.BatchPartitionRecords(0, TopicPartition("t", 0), MemoryRecords(bytes(buffer)))
    first = records.take(100)
    assert [r.value for r in first] == [f"b0r{i}".encode() for i in range(4)]
    for _ in range(3):
        with pytest.raises(CorruptRecordError, match="crc"):
            records.take(100)


def test_a_batch_sent_twice_is_stored_once(kafka_bootstrap: str, unique_topic: Callable[..., str]) -> None:
    """The first produce response is dropped as if the connection broke after the broker wrote the
    batch: kafka-python retries it with the same producer id, epoch and sequence, and the broker
    must recognise the duplicate. Every record is then read back exactly once."""
    topic = unique_topic("idem", partitions=1)
    producer = _producer(kafka_bootstrap)
    sender = producer._sender
    calls: list[int] = []
    original = sender._handle_produce_response

    def lose_first_response(node_id: int, send_time: float, batches: list[Any], response: Any) -> None:
        calls.append(len(batches))
        if len(calls) == 1:
            assert all(b.producer_id >= 0 and b.base_sequence >= 0 for b in batches)
            sender._failed_produce(batches, node_id, KafkaConnectionError("response lost (test)"))
            return
        original(node_id, send_time, batches, response)

    sender._handle_produce_response = lose_first_response
    try:
        batches = BatchProducer(producer)
        values = [f"once-{i}".encode() for i in range(500)]
        futures = batches.send_many(topic, [f"k{i}".encode() for i in range(500)], values)
        assert batches.wait(futures, 20)
        assert len(calls) >= 2  # it really was sent again
    finally:
        producer.close(timeout=5)
    got = _read(kafka_bootstrap, topic, 500)
    assert sorted(r.value for r in got) == sorted(values)


def test_a_batch_the_broker_refuses_as_too_large_is_split_and_acknowledged(
        kafka_bootstrap: str, unique_topic: Callable[..., str]) -> None:
    """A topic whose max.message.bytes is below the batch: the broker answers MESSAGE_TOO_LARGE
    and kafka-python splits the batch in halves until the parts fit. Tansu does not enforce
    max.message.bytes, so the refusal is made here, in place of sending any batch over 6 kB
    (as the broker would, before storing it). The future send_many returned must still
    complete (it did not: the worker would re-send what was delivered), and every record is
    stored exactly once."""
    topic = unique_topic("split", partitions=1)
    producer = _producer(kafka_bootstrap)
    sender = producer._sender
    limit = 6_000  # under kafka-python's own 16 kB parts, so they are split again
    refused: list[int] = []
    original = sender._create_produce_requests

    def refuse_large(collated: dict[int, list[Any]]) -> Any:
        kept: dict[int, list[Any]] = {}
        for node, batches in collated.items():
            for b in batches:
                if b.records.size_in_bytes() > limit:
                    refused.append(b.record_count)
                    sender._complete_batch_with_exception(b, MessageSizeTooLargeError("over 6 kB (test)"))
                else:
                    kept.setdefault(node, []).append(b)
        return original(kept)

    sender._create_produce_requests = refuse_large
    try:
        batches = BatchProducer(producer, max_batch_bytes=200_000)
        values = [f"split-{i}-".encode() + b"x" * 80 for i in range(3000)]
        futures = batches.send_many(topic, [f"k{i}".encode() for i in range(3000)], values)
        assert len(futures) == 2  # 3000 x ~100 B in batches of 200 kB
        assert batches.wait(futures, 20)
        assert batches.error(futures) is None
        # ours (about 1,900 and 1,100 records), then kafka-python's parts of them, again and again
        assert refused[0] > 1000 and len(refused) > 10 and min(refused) < 100
    finally:
        producer.close(timeout=5)
    got = _read(kafka_bootstrap, topic, 3000)
    assert [r.value for r in sorted(got, key=lambda r: r.offset)] == values


def test_waiting_is_bounded_and_delivery_resumes(private_broker: binaries.Started) -> None:
    bootstrap = private_broker.url
    topics.ensure_topics(bootstrap, ["paused"], partitions=2)
    producer = _producer(bootstrap)
    try:
        batches = BatchProducer(producer)
        assert batches.wait(batches.send_many("paused", [b"a"], [b"warm-up"]), 10)
        os.kill(private_broker.pid, signal.SIGSTOP)
        try:
            values = [f"p{i}".encode() for i in range(200)]
            futures = batches.send_many("paused", [f"k{i}".encode() for i in range(200)], values)
            started = time.monotonic()
            assert not batches.wait(futures, 1.5)  # not acknowledged: the worker will not commit
            assert time.monotonic() - started < 3
        finally:
            os.kill(private_broker.pid, signal.SIGCONT)
        # The same batches are still in kafka-python's hands and are delivered after the pause.
        assert batches.wait(futures, 14)
    finally:
        producer.close(timeout=5)
    got = _read(bootstrap, "paused", 201)
    assert sorted(r.value for r in got) == sorted([b"warm-up", *values])


def test_refuses_a_producer_without_idempotence(kafka_bootstrap: str) -> None:
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=False, acks=1)
    try:
        with pytest.raises(ValueError, match="idempotent"):
            BatchProducer(producer)
    finally:
        producer.close(timeout=5)
