"""Keeps the subscriber registry current from the ``subscriber-status`` topic.

Each record's key is the ``msisdn``; its value is a ``subscriber/1`` record (insert or
replace: a later record replaces the earlier) or empty, a tombstone, which deletes the
number. Records are applied in partition order, a batch at a time, and the offsets are
committed only after the store has them, so a record is applied at least once; applying
one again is harmless (same record, same state). A record that fails validation is
skipped and counted (its error names the field; the number is masked), never retried.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from features.contracts import Subscriber, decode
from features.errors import ContractError, NumberFormatError, StoreUnavailableError
from features.numbering import canonical

log = logging.getLogger(__name__)


class RegistrySink(Protocol):
    def upsert_subscribers(self, subscribers: Iterable[Subscriber]) -> int: ...
    def delete_subscriber(self, msisdn: str) -> bool: ...


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
    group_id: str = "callscreen-registry"
    """Consumer group."""
    poll_timeout_ms: int = 200
    """Longest wait of one poll; bounds how fast a stop request is noticed."""
    max_batch: int = 5000
    """Most records applied per store call."""
    request_timeout_ms: int = 5_000
    """Timeout of every Kafka request (fetch, commit)."""
    session_timeout_ms: int = 6_000
    """Group session timeout: a dead follower's partitions move to another after this."""


def apply(store: RegistrySink, records: Iterable[tuple[bytes | None, bytes | None]]) -> FollowerCounts:
    """Apply (key, value) pairs in order; consecutive upserts go to the store together."""
    counts = FollowerCounts()
    pending: list[Subscriber] = []
    for key, value in records:
        try:
            if value is None or value == b"":
                number = canonical((key or b"").decode("utf-8", "replace"))
                counts.upserted += store.upsert_subscribers(pending)
                pending = []
                counts.deleted += store.delete_subscriber(number)
            else:
                pending.append(decode(Subscriber, value))
        except (ContractError, NumberFormatError) as exc:
            counts.rejected += 1
            log.warning("subscriber-status record rejected: %s", exc)
    counts.upserted += store.upsert_subscribers(pending)
    return counts


@dataclass
class RegistryFollower:
    """Consume ``config.topic`` into ``store`` until :meth:`stop`."""

    config: RegistryFollowerConfig
    store: RegistrySink
    counts: FollowerCounts = field(default_factory=FollowerCounts)
    _stop: threading.Event = field(default_factory=threading.Event)

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        from kafka import KafkaConsumer

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
        try:
            while not self._stop.is_set():
                self._step(consumer)
        finally:
            consumer.close(autocommit=False, timeout_ms=2000)

    def _step(self, consumer: Any) -> None:
        polled = consumer.poll(timeout_ms=self.config.poll_timeout_ms, max_records=self.config.max_batch)
        if not polled:
            return
        batch = [(r.key, r.value) for recs in polled.values() for r in recs]
        try:
            got = apply(self.store, batch)
        except StoreUnavailableError as exc:
            # not committed: seek back so the batch is applied once the store is back
            log.error("feature store unavailable (%s); retrying the batch in 1 s", exc)
            for tp, recs in polled.items():
                consumer.seek(tp, recs[0].offset)
            self._stop.wait(1.0)
            return
        consumer.commit()
        self.counts.upserted += got.upserted
        self.counts.deleted += got.deleted
        self.counts.rejected += got.rejected
