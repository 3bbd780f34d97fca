"""Keeps the subscriber registry current from the ``subscriber-status`` topic.

Each record's key is the ``msisdn``; its value is a ``subscriber/1`` record (insert or
replace: a later record replaces the earlier) or empty, a tombstone, which deletes the
number. Records are applied in partition order, a batch at a time, with the bulk loader's
code (``features.registry_load``: the same checks, packing and ``registry.lua``). The
offsets are committed only after the store has the batch and the dead letters are
acknowledged, so a record is applied at least once; applying one again is harmless (same
record, same state).

A record that cannot be applied goes to the dead-letter topic (``subscriber-status.dlq``)
byte for byte, with the reason (numbers masked) and its origin topic, partition and offset
in headers (``streaming.dlq``), and the stream goes on: invalid JSON, a value breaking the
contract or over ``dlq.MAX_RECORD_BYTES``, a tombstone whose key is not an E.164 number, a
record whose key is not its ``msisdn`` (it would be ordered with another number's updates),
or a record the registry cannot hold (a date outside 1970-2106, a 256th operator).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from features.contracts import Subscriber, decode
from features.errors import (
    ContractError,
    NumberFormatError,
    StoreRecordError,
    StoreUnavailableError,
)
from features.numbering import canonical
from features.registry_codec import OwnerHasher
from features.registry_load import Packer, RecordCheckError, Unchecked
from streaming import dlq

log = logging.getLogger(__name__)
_DECODER = msgspec.json.Decoder(Unchecked)


class RegistrySink(Protocol):
    def operator_code(self, operator: str) -> int: ...
    def upsert_packed(self, records: list[tuple[str, bytes, bytes]]) -> int: ...
    def delete_subscriber(self, msisdn: str) -> bool: ...


class Record(Protocol):
    """What is read of a consumed Kafka record (``kafka.consumer.fetcher.ConsumerRecord``)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


@dataclass(frozen=True)
class DeadLetter:
    """One record for the dead-letter topic."""

    key: bytes | None
    value: bytes | None
    headers: dlq.Headers
    origin: tuple[str, int, int]
    """Topic, partition, offset of the record."""


@dataclass
class FollowerCounts:
    upserted: int = 0
    deleted: int = 0
    rejected: int = 0


@dataclass(frozen=True)
class RegistryFollowerConfig:
    bootstrap: str
    """Kafka bootstrap servers, host:port[,host:port...]."""
    topic: str = "subscriber-status"
    """Topic of `subscriber/1` updates keyed by msisdn; an empty value deletes the number."""
    topic_dlq: str = "subscriber-status.dlq"
    """Dead-letter topic: records that cannot be applied, with the reason and origin in headers."""
    group_id: str = "callscreen-registry"
    """Consumer group."""
    poll_timeout_ms: int = 200
    """Longest wait of one poll; bounds how fast a stop request is noticed."""
    max_batch: int = 5000
    """Most records applied per store call."""
    request_timeout_ms: int = 5_000
    """Timeout of every Kafka request (fetch, commit, produce) and of a dead letter's ack."""
    session_timeout_ms: int = 6_000
    """Group session timeout: a dead follower's partitions move to another after this."""


class _Batch:
    """Consecutive upserts of one batch, applied together when a tombstone or the end comes."""

    def __init__(self, store: RegistrySink, packer: Packer, counts: FollowerCounts,
                 dead: list[DeadLetter]) -> None:
        self._store, self._packer, self._counts, self._dead = store, packer, counts, dead
        self._records: list[Unchecked] = []
        self._origin: list[Record] = []

    def add(self, sub: Unchecked, rec: Record) -> None:
        self._records.append(sub)
        self._origin.append(rec)

    def flush(self) -> None:
        records, origin = self._records, self._origin
        self._records, self._origin = [], []
        while records:
            try:
                packed = self._packer.pack(records)
            except RecordCheckError as exc:  # the contract says why
                self._reject(origin[exc.index], _contract_reason(origin[exc.index].value or b""))
                records, origin = records[exc.index + 1 :], origin[exc.index + 1 :]
                continue
            except StoreRecordError as exc:
                if len(records) == 1:
                    self._reject(origin[0], str(exc))
                    return
                for r, o in zip(records, origin, strict=True):  # which one the registry cannot hold (rare)
                    self.add(r, o)
                    self.flush()
                return
            self._counts.upserted += self._store.upsert_packed(packed.triples())
            return

    def _reject(self, rec: Record, reason: str) -> None:
        _reject(rec, reason, self._counts, self._dead)


def _reject(rec: Record, reason: str, counts: FollowerCounts, dead: list[DeadLetter]) -> None:
    counts.rejected += 1
    log.warning("subscriber-status record at %s[%d]@%d sent to the dead-letter topic: %s",
                rec.topic, rec.partition, rec.offset, reason)
    value, hdrs = dlq.letter(rec.value, reason, rec.topic, rec.partition, rec.offset)
    dead.append(DeadLetter(rec.key, value, hdrs, (rec.topic, rec.partition, rec.offset)))


def _contract_reason(value: bytes) -> str:
    try:
        decode(Subscriber, value)
    except ContractError as exc:
        return str(exc)
    return "subscriber/1: record refused by the registry checks"  # pragma: no cover - checks match the contract


def apply(store: RegistrySink, records: Iterable[Record], packer: Packer | None = None
          ) -> tuple[FollowerCounts, list[DeadLetter]]:
    """Apply records in order; consecutive upserts go to the store together. Returns the
    counts and the dead letters to produce (the rejected records, with their reasons)."""
    counts = FollowerCounts()
    dead: list[DeadLetter] = []
    batch = _Batch(store, packer or Packer(store.operator_code, OwnerHasher()), counts, dead)
    for rec in records:
        value = rec.value
        try:
            if value is None or value == b"":
                number = canonical((rec.key or b"").decode("utf-8", "replace"))
                batch.flush()
                counts.deleted += store.delete_subscriber(number)
                continue
            if len(value) > dlq.MAX_RECORD_BYTES:
                raise ContractError(
                    f"subscriber/1: record is {len(value)} bytes, over the {dlq.MAX_RECORD_BYTES}-byte limit; "
                    "fix: send one subscriber/1 record per message", record="subscriber/1", field=None)
            try:
                sub = _DECODER.decode(value)
            except (msgspec.DecodeError, msgspec.ValidationError):
                raise ContractError(_contract_reason(value), record="subscriber/1", field=None) from None
            if rec.key is not None and rec.key != sub.msisdn.encode():
                raise ContractError("subscriber/1: the record's key is not its msisdn; fix: key each record by "
                                    "its msisdn, so that a number's updates stay in order", record="subscriber/1",
                                    field="msisdn")
            batch.add(sub, rec)
        except (ContractError, NumberFormatError) as exc:
            _reject(rec, str(exc), counts, dead)
    batch.flush()
    dead.sort(key=lambda d: d.origin)  # in the order they were read
    return counts, dead


@dataclass
class RegistryFollower:
    """Consume ``config.topic`` into ``store`` until :meth:`stop`."""

    config: RegistryFollowerConfig
    store: RegistrySink
    counts: FollowerCounts = field(default_factory=FollowerCounts)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._packer = Packer(self.store.operator_code, OwnerHasher())

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        from kafka import KafkaConsumer, KafkaProducer

        cfg = self.config
        consumer = KafkaConsumer(
            cfg.topic,
            bootstrap_servers=cfg.bootstrap,
            group_id=cfg.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            request_timeout_ms=cfg.request_timeout_ms + 1000,
            session_timeout_ms=cfg.session_timeout_ms,
            heartbeat_interval_ms=max(500, cfg.session_timeout_ms // 6),
            max_poll_records=cfg.max_batch,
        )
        producer = KafkaProducer(
            bootstrap_servers=cfg.bootstrap,
            enable_idempotence=True,
            acks="all",
            request_timeout_ms=cfg.request_timeout_ms,
            delivery_timeout_ms=cfg.request_timeout_ms * 3,
            max_block_ms=cfg.request_timeout_ms,
        )
        try:
            while not self._stop.is_set():
                self._step(consumer, producer)
        finally:
            producer.close(timeout=2)
            consumer.close(autocommit=False, timeout_ms=2000)

    def _step(self, consumer: Any, producer: Any) -> None:
        from kafka.errors import KafkaError

        polled = consumer.poll(timeout_ms=self.config.poll_timeout_ms, max_records=self.config.max_batch)
        if not polled:
            return
        batch = [r for recs in polled.values() for r in recs]
        try:
            got, dead = apply(self.store, batch, self._packer)
            if dead:
                futures = [producer.send(self.config.topic_dlq, key=d.key, value=d.value, headers=d.headers)
                           for d in dead]
                producer.flush(timeout=self.config.request_timeout_ms / 1000)
                for f in futures:
                    f.get(timeout=0)  # raises the send's error
        except (StoreUnavailableError, KafkaError) as exc:
            # not committed: seek back so the batch is applied (again: harmless) once it can be
            log.error("batch not applied or its dead letters not acknowledged (%s); retrying it in 1 s", exc)
            for tp, recs in polled.items():
                consumer.seek(tp, recs[0].offset)
            self._stop.wait(1.0)
            return
        consumer.commit()
        self.counts.upserted += got.upserted
        self.counts.deleted += got.deleted
        self.counts.rejected += got.rejected
