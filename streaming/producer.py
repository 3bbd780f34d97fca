"""Whole-batch producing through kafka-python's own idempotent producer.

``KafkaProducer.send`` costs about 37 us per message here (per-record future, lock, size
estimate, partitioner call and record encoding, all in Python), more than the worker can spend
on a whole CDR. :class:`BatchProducer` keeps everything that makes delivery safe in
kafka-python's hands and replaces only the per-record work:

* records are partitioned (murmur2 of the key, Kafka's default partitioner) and encoded into v2
  record batches a whole batch per C call (``streaming/_records.pyx``, byte-identical to
  ``kafka.record.default_records.DefaultRecordBatchBuilder``);
* each encoded batch is handed to the producer's ``RecordAccumulator`` as one ``ProducerBatch``,
  so its own ``Sender`` thread drains it, assigns the producer id, epoch and base sequence
  (idempotence) at drain time exactly as for its own batches (``set_producer_state`` below
  writes them and the CRC), sends it with the producer's ``acks`` and request timeout, retries
  retriable errors with the same sequence numbers, treats ``DUPLICATE_SEQUENCE_NUMBER`` as
  success, and fails the batch once ``delivery_timeout_ms`` has passed;
* one future per batch instead of one per record: :meth:`BatchProducer.send_many` returns them
  and :meth:`BatchProducer.wait` waits for all with one deadline. When the broker refuses a
  batch as too large (a topic whose ``max.message.bytes`` is below the batch), kafka-python
  splits it and re-sends the halves, moving only per-record futures to them; the batch's own
  future is completed here once every part is (:func:`_follow_splits`).

This uses kafka-python internals (``_accumulator``, ``_sender``, ``_metadata``,
``_transaction_manager``); the constructor refuses a kafka-python whose internals it does not
know, and ``tests/streaming/test_producer.py`` checks idempotent, acknowledged delivery against
the real broker (including a batch whose response is lost and that is therefore sent twice).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Sequence
from typing import Any, Final

import kafka
from kafka.errors import IllegalStateError, KafkaTimeoutError, UnsupportedVersionError
from kafka.producer.producer_batch import ProducerBatch
from kafka.record.util import calc_crc32c
from kafka.structs import TopicPartition

from streaming import _records

SUPPORTED_KAFKA_PYTHON: Final = ("3.0.",)
"""kafka-python versions whose accumulator and batch interfaces this module was checked against."""

Headers = list[tuple[str, bytes]]


class _PrebuiltRecords:
    """A closed-for-appends v2 record batch, in the interface ``ProducerBatch`` expects of
    kafka-python's ``MemoryRecordsBuilder`` (the subset its accumulator and sender use)."""

    __slots__ = ("_buffer", "_count", "_closed", "_producer_id", "_producer_epoch", "_base_sequence",
                 "_transactional")

    def __init__(self, buffer: bytearray, count: int) -> None:
        self._buffer = buffer
        self._count = count
        self._closed = False
        self._producer_id = -1
        self._producer_epoch = -1
        self._base_sequence = -1
        self._transactional = False

    def append(self, timestamp: Any, key: Any, value: Any, headers: Any = None) -> None:
        return None  # full: kafka-python starts a batch of its own for a record sent with send()

    def set_producer_state(self, producer_id: int, producer_epoch: int, base_sequence: int,
                           is_transactional: bool) -> None:
        if self._closed:
            # As MemoryRecordsBuilder: a retried batch keeps its sequence (else duplicates).
            raise IllegalStateError("Trying to set producer state of an already closed batch.")
        self._producer_id = producer_id
        self._producer_epoch = producer_epoch
        self._base_sequence = base_sequence
        self._transactional = bool(is_transactional)

    @property
    def producer_id(self) -> int:
        return self._producer_id

    @property
    def producer_epoch(self) -> int:
        return self._producer_epoch

    @property
    def base_sequence(self) -> int:
        return self._base_sequence

    def close(self) -> None:
        # Called on drain, and again on every retry: the header is written once.
        if not self._closed:
            _records.set_producer_state(self._buffer, self._producer_id, self._producer_epoch,
                                        self._base_sequence, self._transactional, calc_crc32c)
        self._closed = True

    def buffer(self) -> bytearray:
        if not self._closed:
            raise IllegalStateError("record batch read before it was closed")
        return self._buffer

    def size_in_bytes(self) -> int:
        return len(self._buffer)

    def compression_rate(self) -> float:
        return 1.0

    def is_full(self) -> bool:
        return True

    def next_offset(self) -> int:
        return self._count


class BatchProducer:
    """Produces lists of records through ``producer`` (an idempotent ``KafkaProducer``).

    ``max_batch_bytes`` caps one encoded record batch; keep it at or under the producer's
    ``batch_size`` and the broker's ``message.max.bytes`` (1 MB by default).
    """

    def __init__(self, producer: Any, *, max_batch_bytes: int = 512 * 1024) -> None:
        if not kafka.__version__.startswith(SUPPORTED_KAFKA_PYTHON):
            raise UnsupportedVersionError(
                f"streaming.producer was written against kafka-python {SUPPORTED_KAFKA_PYTHON}, "
                f"found {kafka.__version__}; re-check its use of the accumulator before upgrading")
        if getattr(producer, "_transaction_manager", None) is None:
            raise ValueError("BatchProducer needs an idempotent producer (enable_idempotence=True)")
        self._producer = producer
        self._accumulator = producer._accumulator
        self._metadata = producer._metadata
        self._max_block_ms: int = producer.config["max_block_ms"]
        self._max_batch_bytes = min(max_batch_bytes, producer.config["max_request_size"])
        _follow_splits(self._accumulator)

    def _partition_ids(self, topic: str) -> list[int]:
        """Sorted partition ids of ``topic``, waiting for metadata at most ``max_block_ms``."""
        partitions = self._metadata.partitions_for_topic(topic)
        if partitions is None:
            partitions = self._producer._wait_on_metadata(topic, self._max_block_ms)
        ordered = sorted(partitions)
        if not ordered:
            raise KafkaTimeoutError(f"topic {topic!r} has no partitions")
        return ordered

    def send_many(self, topic: str, keys: Sequence[bytes | None], values: Sequence[bytes],
                  headers: Sequence[Headers | None] | None = None) -> list[Any]:
        """Queue records for ``topic``; returns one future per record batch (``FutureProduceResult``).

        Records with a key go to Kafka's default partition for that key, in the given order per
        partition; records without one to one random partition.
        """
        if not values:
            return []
        ordered = self._partition_ids(topic)
        blobs = None
        if headers is not None:
            blobs = [_records.encode_headers(h) if h else None for h in headers]
        built = _records.build_batches(list(keys), list(values), blobs, len(ordered),
                                       random.randrange(len(ordered)), int(time.time() * 1000),
                                       self._max_batch_bytes)
        accumulator = self._accumulator
        futures = []
        now = time.monotonic()
        for index, buffer, count in built:
            tp = TopicPartition(topic, ordered[index])
            batch = ProducerBatch(tp, _PrebuiltRecords(buffer, count), now=now)
            batch.max_record_size = len(buffer)
            with accumulator._tp_lock(tp):
                if accumulator._closed:
                    raise IllegalStateError("RecordAccumulator is closed")
                accumulator._batches[tp].append(batch)
                accumulator._incomplete.add(batch)
            futures.append(batch.produce_future)
        self._producer._sender.wakeup()
        return futures

    @staticmethod
    def wait(futures: Sequence[Any], timeout_s: float) -> bool:
        """True if every batch was acknowledged within ``timeout_s`` (one deadline for all)."""
        deadline = time.monotonic() + timeout_s
        for future in futures:
            remaining = deadline - time.monotonic()
            if not future.wait(max(0.0, remaining)):
                return False
            # kafka-python completes a batch's future with (base_offset, log_append_time,
            # record_exceptions_fn); a failed or aborted batch carries the exceptions function.
            if not future.succeeded() or future.value[2] is not None:
                return False
        return True

    @staticmethod
    def error(futures: Sequence[Any]) -> BaseException | None:
        """The first delivery error among completed ``futures`` (None if none failed)."""
        for future in futures:
            if future.is_done:
                if future.exception is not None:
                    return future.exception  # type: ignore[no-any-return]
                if future.value[2] is not None:
                    return future.value[2](0)  # type: ignore[no-any-return]
        return None


def _follow_splits(accumulator: Any) -> None:
    """Complete a split batch's own future from its parts' (once per accumulator).

    ``RecordAccumulator.split_and_reenqueue`` rebinds each record's future to the new
    batches and drops the old batch; a batch built here has no per-record futures, so its
    future (the one :meth:`BatchProducer.send_many` returned) would never complete and the
    caller would re-send records already delivered. The new batches are the first ``n`` of
    the partition's queue when the call returns (it puts them there under the partition
    lock, on the sender thread, the only thread that takes from the front).
    """
    if getattr(accumulator, "_callscreen_follows_splits", False):
        return
    split = accumulator.split_and_reenqueue

    def split_and_reenqueue(batch: Any, now: Any = None) -> int:
        n: int = split(batch, now)
        if not batch._record_futures:  # one of ours, or a part of one
            tp = batch.topic_partition
            with accumulator._tp_lock(tp):
                parts = [accumulator._batches[tp][i] for i in range(n)]
            _complete_when_all(batch.produce_future, [part.produce_future for part in parts])
        return n

    accumulator.split_and_reenqueue = split_and_reenqueue
    accumulator._callscreen_follows_splits = True


def _complete_when_all(future: Any, parts: list[Any]) -> None:
    """Succeed ``future`` with the first part's result once every part succeeded (a part's
    record errors carried over); fail it with the first part failure. ``parts`` is never
    empty: kafka-python splits only batches of two or more records."""
    lock = threading.Lock()
    left = [len(parts)]
    results: list[Any] = [None] * len(parts)

    def done(index: int, value: Any) -> None:
        with lock:
            results[index] = value
            left[0] -= 1
            if left[0] or future.is_done:
                return
        errors = next((r[2] for r in results if r[2] is not None), None)
        future.success((results[0][0], results[0][1], errors))

    def failed(error: Any) -> None:
        with lock:
            if future.is_done:
                return
            left[0] = -1  # no success after a failure
        future.failure(error)

    for index, part in enumerate(parts):
        part.add_callback(lambda value, index=index: done(index, value))
        part.add_errback(failed)
