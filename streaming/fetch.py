"""Consumed record batches decoded a whole batch per C call, inside kafka-python's fetcher.

kafka-python's fetcher decodes every record in Python (varints, a ``DefaultRecord``, a
``ConsumerRecord``, through two generators): about 12-16 us per record here. :func:`install`
gives one consumer a ``PartitionRecords`` that decodes uncompressed v2 batches with
``streaming._records.decode_batch`` instead, and hands back the same ``ConsumerRecord`` tuples
(same fields, same values). Everything else stays kafka-python's: fetch sessions, positions,
the CRC check (``check_crcs``, CRC-32C of the whole batch), offsets to skip below the fetch
offset, control batches (skipped), and the position after the last batch. Compressed and legacy
batches go through kafka-python's own decoder record by record; ``read_committed`` consumers
and consumers with deserializers are left alone entirely.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import kafka
from kafka import errors as Errors
from kafka.consumer.fetcher import ConsumerRecord, Fetcher
from kafka.protocol.consumer.offsets import IsolationLevel

from streaming import _records
from streaming.producer import SUPPORTED_KAFKA_PYTHON

_Base: Any = Fetcher.PartitionRecords


class BatchPartitionRecords(_Base):  # type: ignore[misc]  # kafka-python ships no types
    """``Fetcher.PartitionRecords`` with whole-batch decoding (see the module docstring)."""

    def __init__(self, fetch_offset: int, tp: Any, records: Any, key_deserializer: Any = None,
                 value_deserializer: Any = None, check_crcs: bool = True,
                 isolation_level: Any = IsolationLevel.READ_UNCOMMITTED, aborted_transactions: Any = None,
                 metric_aggregator: Any = None, on_drain: Any = lambda x: None) -> None:
        super().__init__(fetch_offset, tp, records, key_deserializer=key_deserializer,
                         value_deserializer=value_deserializer, check_crcs=check_crcs,
                         isolation_level=isolation_level, aborted_transactions=aborted_transactions,
                         metric_aggregator=metric_aggregator, on_drain=on_drain)
        self._fast = (key_deserializer is None and value_deserializer is None
                      and isolation_level == IsolationLevel.READ_UNCOMMITTED)
        self._memory_records = records
        self._pending: list[Any] = []
        self._taken = 0
        self._last_batch: Any = None
        # A corrupt batch stays in the way: kafka-python's record generator is dead after it
        # raises, but next_batch() here has already moved past the batch, so a later take
        # would skip it silently. Every later take raises the same error instead.
        self._corrupt: Exception | None = None

    def take(self, n: int | None = None) -> list[Any]:
        if not self._fast:
            return super().take(n)  # type: ignore[no-any-return]
        if self._corrupt is not None:
            raise self._corrupt
        self._maybe_raise_next_inline_exception()
        out: list[Any] = []
        want = n if n is not None else -1
        try:
            while want < 0 or len(out) < want:
                if self._taken >= len(self._pending):
                    if self.record_iterator is None or not self._fill():
                        break
                    continue
                end = len(self._pending) if want < 0 else min(len(self._pending), self._taken + want - len(out))
                chunk = self._pending[self._taken:end]
                self._taken = end
                out.extend(chunk)
                self.next_fetch_offset = chunk[-1].offset + 1
        except Exception as exc:
            if isinstance(exc, Errors.CorruptRecordError):
                self._corrupt = exc
            if not out:
                raise
            self._next_inline_exception = exc  # raised by the next take, as kafka-python does
        return out

    def _fill(self) -> bool:
        """Decode the next batch into ``_pending``; False (and drained) after the last one."""
        self._pending = []
        self._taken = 0
        tp = self.topic_partition
        records = self._memory_records
        while not self._pending:
            batch = records.next_batch()
            if batch is None:
                last = self._last_batch
                if last is not None and last.magic == 2:
                    # v2 keeps the last offset of a batch even if compaction removed its record.
                    self.next_fetch_offset = last.next_offset
                self.drain()
                return False
            self._last_batch = batch
            if self.check_crcs and not batch.validate_crc():
                raise Errors.CorruptRecordError(
                    f"Record batch for partition {tp} at offset {batch.base_offset} failed crc check")
            if batch.magic == 2:
                self.leader_epoch = batch.leader_epoch
                if batch.is_control_batch:
                    self.next_fetch_offset = batch.next_offset
                    continue
                if batch.compression_type == 0:
                    try:
                        decoded = _records.decode_batch(batch._buffer, tp.topic, tp.partition, ConsumerRecord,
                                                        self.fetch_offset)
                    except ValueError as exc:
                        raise Errors.CorruptRecordError(
                            f"Found invalid record structure at {tp} offset {batch.base_offset}: {exc}") from exc
                    self.records_read += len(decoded)
                    self.bytes_read += batch.size_in_bytes
                    self._pending = decoded
                    if not decoded:
                        self.next_fetch_offset = batch.next_offset
                    continue
            self._pending = list(self._slow(batch))
        return True

    def _slow(self, batch: Any) -> Iterator[Any]:
        """kafka-python's own per-record path (compressed or legacy batches)."""
        tp = self.topic_partition
        for record in batch:
            if self.check_crcs and not record.validate_crc():
                raise Errors.CorruptRecordError(
                    f"Record for partition {tp} at offset {record.offset} failed crc check")
            if record.offset < self.fetch_offset:
                continue
            key, value, headers = record.key, record.value, record.headers
            header_size = sum(len(k.encode("utf-8")) + (len(v) if v is not None else 0)
                              for k, v in headers) if headers else -1
            self.records_read += 1
            self.bytes_read += record.size_in_bytes
            yield ConsumerRecord(
                tp.topic, tp.partition, self.leader_epoch, record.offset, record.timestamp,
                record.timestamp_type, key, value, headers, record.checksum,
                len(key) if key is not None else -1, len(value) if value is not None else -1, header_size)


def install(consumer: Any) -> None:
    """Make ``consumer`` (a ``KafkaConsumer``) decode its fetched batches with :class:`BatchPartitionRecords`."""
    if not kafka.__version__.startswith(SUPPORTED_KAFKA_PYTHON):
        raise Errors.UnsupportedVersionError(
            f"streaming.fetch was written against kafka-python {SUPPORTED_KAFKA_PYTHON}, found {kafka.__version__}")
    fetcher = consumer._fetcher
    if not isinstance(fetcher, Fetcher):
        raise TypeError("consumer has no kafka-python Fetcher")
    fetcher.PartitionRecords = BatchPartitionRecords
