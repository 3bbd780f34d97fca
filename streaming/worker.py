"""The stream worker: consumes `cdr/1` records from Kafka, decides each call, writes the results back.

One loop, in the order that makes a crash safe (quix-streams ``app.py``):

    poll a batch -> decode (bad records -> DLQ) -> engine.process (features, score, policy,
    state update) -> produce decisions, feed events, dead letters -> wait for their acks
    -> commit the batch's offsets

so a record is either processed and committed, or seen again after a restart; never lost.
The engine runs one batch ahead on engine lanes (threads; a batch is split between them by
record key, so a caller's records stay in order in one lane, and with Redis each lane has its
own engine and store connection): while they work on batch N+1 (mostly waiting on Redis), the
main thread polls and decodes batch N+2, encodes batch N's decisions and feed events, produces
them, waits for their acks and commits batch N (store waits release the GIL, so the threads'
Python work overlaps them). Offsets are still committed in order, only after their batch's
outputs are acknowledged.
Kafka records are encoded and decoded a whole batch per C call inside kafka-python's own
idempotent producer and fetcher (``streaming/producer.py``, ``streaming/fetch.py``).
Delivery is at-least-once; what makes it effectively-once for consumers is that

* the state update is idempotent by operator + call_id (the store remembers applied calls),
  so a re-read batch changes no counter;
* every decision carries a deterministic ``decision_id`` (sha256 of operator, call_id and
  model version) and the key ``operator:call_id``, so a consumer deduplicates redeliveries.

While the store is down, completed calls are decided (degraded) and their state writes wait
in the engine's memory; offsets are not committed until that queue has drained, so a worker
killed during a store outage is replaced by one that re-reads those records (their decisions
have the same ids) instead of losing their state updates.
If any output is not acknowledged within the request timeout the offsets are not
committed and the consumer seeks back to the batch start. A rebalance that revokes a
partition mid-batch makes the commit fail; the new owner re-reads those records.
SIGTERM/SIGINT finish the current batch, commit it and exit (well inside 10 s).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Literal

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from features.contracts import Cdr
from features.errors import ContractError
from features.pseudonym import KeyedHasher
from models.engine import Engine, Outcome
from models.feed import FeedTracker
from streaming import dlq
from streaming.metrics import WorkerMetrics

if TYPE_CHECKING:
    from models.registry import LoadedModel
    from streaming.producer import BatchProducer

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class WorkerConfig:
    """What the worker process needs; built by ``deploy`` from the settings object."""

    bootstrap: str
    """Kafka bootstrap servers, host:port[,host:port...]."""
    topic_cdr: str = "cdr"
    """Topic of incoming `cdr/1` records."""
    topic_dlq: str = "cdr.dlq"
    """Dead-letter topic for records that fail validation."""
    topic_decisions: str = "decisions"
    """Topic of outgoing `decision/1` records."""
    topic_feed: str = "fraud-feed"
    """Topic of outgoing `feed/1` number-level events."""
    group_id: str = "callscreen-worker"
    """Consumer group; the partitions of `topic_cdr` are shared among its members."""
    metrics_host: str = "127.0.0.1"
    """Address of the /healthz and /metrics endpoint."""
    metrics_port: int = 9108
    """Port of the /healthz and /metrics endpoint (0: any free port, see ``Worker.metrics_port``)."""
    poll_timeout_ms: int = 200
    """Longest wait of one poll; bounds how fast a stop request is noticed."""
    max_batch: int = 2000
    """Most records handled per loop iteration (one store call, one predictor call)."""
    request_timeout_ms: int = 5_000
    """Timeout of every Kafka request (fetch, produce, commit)."""
    session_timeout_ms: int = 6_000
    """Group session timeout: a dead worker's partitions move to the others after this."""
    redis_url: str | None = None
    """Feature store. None: an in-process store (development only: state dies with the process)."""
    redis_timeout_s: float = 0.5
    """Socket timeout of every Redis call; past it the batch fails open (degraded allows)."""
    store_retry_s: float = 1.0
    """After a store failure, fail open without trying the store for this long."""
    registry_dir: Path | None = None
    """Model registry folder. None or no model: every call is allowed, degraded."""
    model_ref: str = "champion"
    """Model version or alias to load; an alias is re-read every ``model_poll_s`` (hot swap)."""
    model_poll_s: float = 30.0
    """How often to look for a new model behind ``model_ref``."""
    feed_hash_key: bytes | None = None
    """HMAC key of the bank feed; None with ``feed_clear_numbers`` False disables the feed."""
    feed_clear_numbers: bool = False
    """Write clear numbers to the feed (only for consumers entitled to them)."""
    engine_lanes: int = 2
    """Engine threads. A polled batch is split by record key (the caller's number, so each
    caller's records stay in order in one lane) and the parts are evaluated concurrently. With
    Redis each lane has an engine and a store connection of its own (``Engine.sibling``), so one
    lane's store call overlaps the other's; an in-process store is shared, one call at a time."""
    gc_freeze: bool = True
    """Before consuming, move every object alive after start-up (modules, model, clients) out of
    the cyclic GC's reach (``gc.freeze``): the per-batch garbage is then collected without
    rescanning them (measured: see benchmarks/README.md, Worker throughput)."""


@dataclass(frozen=True)
class Outgoing:
    """One record to produce (a dead letter, or any record as :meth:`Outputs.records` lists it)."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)


@dataclass(slots=True)
class Outputs:
    """What one batch produces, kept as parallel lists per topic (produced a topic per call)."""

    topic_decisions: str
    topic_feed: str
    decision_keys: list[bytes] = field(default_factory=list)
    decision_values: list[bytes] = field(default_factory=list)
    feed_keys: list[bytes] = field(default_factory=list)
    feed_values: list[bytes] = field(default_factory=list)
    dead: list[Outgoing] = field(default_factory=list)
    """Dead letters, with their headers."""

    def records(self) -> list[Outgoing]:
        """Every record, one object each (for tests and inspection; the loop does not build these)."""
        return (list(self.dead)
                + [Outgoing(self.topic_decisions, k, v) for k, v in zip(self.decision_keys, self.decision_values, strict=True)]
                + [Outgoing(self.topic_feed, k, v) for k, v in zip(self.feed_keys, self.feed_values, strict=True)])

    def __len__(self) -> int:
        return len(self.dead) + len(self.decision_values) + len(self.feed_values)


@dataclass(frozen=True)
class _Processed:
    """A batch whose outputs are computed but not yet produced and committed."""

    outgoing: Outputs
    polled: dict[Any, list[Any]]
    polled_at: float


@dataclass(frozen=True)
class Decoded:
    """A polled batch after decoding: the valid CDRs, and the dead letters of the others."""

    cdrs: list[Cdr]
    dead: list[Outgoing]
    records: int


@dataclass(frozen=True)
class _Running:
    """A batch handed to the engine lanes (one part per lane that has records)."""

    futures: list[Future[Outcome]]
    decoded: list[Decoded]
    polled: dict[Any, list[Any]]
    polled_at: float

    def outcomes(self) -> list[Outcome]:
        return [f.result() for f in self.futures]


class Worker:
    """Consumes the CDR topic in group ``config.group_id``; see the module docstring for the loop."""

    def __init__(self, config: WorkerConfig, *, engine: Engine | None = None) -> None:
        self.config = config
        self.registry = CollectorRegistry()
        self.metrics = WorkerMetrics(self.registry)
        self.engine = engine
        self.lane_engines: list[Engine] = []
        """The engine of each lane (``run`` makes them: the main one, then its siblings)."""
        self.feed = self._feed_tracker(config)
        self.consumed = 0
        self.kafka_connected = False
        self.stage = {"poll": 0.0, "decode": 0.0, "engine": 0.0, "encode": 0.0, "produce": 0.0, "commit": 0.0}
        self._encoder = msgspec.json.Encoder()
        self._stage_lock = threading.Lock()
        self._stop = threading.Event()
        self._http: ThreadingHTTPServer | None = None
        self._model_checked = 0.0

    @staticmethod
    def _feed_tracker(config: WorkerConfig) -> FeedTracker | None:
        if config.feed_clear_numbers:
            return FeedTracker(None, clear_numbers=True)
        if config.feed_hash_key:
            return FeedTracker(KeyedHasher(config.feed_hash_key, "feed"))
        return None

    # -- wiring -------------------------------------------------------------------------------

    def _build_engine(self) -> Engine:
        store: Any
        if self.config.redis_url:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            from features.redisstore import RedisStore

            client = redis.Redis.from_url(
                self.config.redis_url,
                socket_timeout=self.config.redis_timeout_s,
                socket_connect_timeout=self.config.redis_timeout_s,
                # No client-side retries: one timeout, then the engine's circuit breaker decides.
                retry=Retry(NoBackoff(), 0),
            )
            store = RedisStore(client)
        else:
            from features.memstore import InMemoryStore

            log.warning("no Redis configured: in-process feature store, state is lost on exit")
            store = InMemoryStore()
        return Engine(store, self._load_model(), retry_interval_s=self.config.store_retry_s)

    def _load_model(self) -> LoadedModel | None:
        if self.config.registry_dir is None:
            log.error("no model registry configured: every call is allowed, degraded")
            return None
        try:
            from models.registry import Registry

            model = Registry(self.config.registry_dir).load(self.config.model_ref)
        except Exception as exc:  # no model must not stop the stream: fail open, keep polling
            log.error("model %r not loadable from %s (%s): allowing calls, degraded",
                      self.config.model_ref, self.config.registry_dir, exc)
            return None
        log.info("model %s loaded (%s)", model.card.version, self.config.model_ref)
        return model

    def _maybe_swap_model(self, engine: Engine) -> None:
        now = time.monotonic()
        if now - self._model_checked < self.config.model_poll_s or self.config.registry_dir is None:
            return
        self._model_checked = now
        try:
            from models.registry import Registry

            registry = Registry(self.config.registry_dir)
            version = registry.alias(self.config.model_ref) or self.config.model_ref
            if version != engine.model_version:
                engine.swap_model(registry.load(version))
                log.info("model hot-swapped to %s", version)
        except Exception as exc:  # keep the current model
            log.error("model reload failed (%s); keeping %s", exc, engine.model_version)

    # -- one batch ----------------------------------------------------------------------------

    def process(self, records: Sequence[Any]) -> Outputs:
        """Turn one polled batch into the records to produce (decisions, feed events, dead letters).

        The loop runs the three steps on several threads: :meth:`decode` and :meth:`outputs` on
        the main thread, :meth:`evaluate` (mostly waiting on the store) on the engine lanes.
        """
        decoded = self.decode(records)
        return self.outputs(decoded, self.evaluate(decoded))

    def decode(self, records: Sequence[Any]) -> Decoded:
        """Decode and validate a polled batch; a record that fails becomes a dead letter."""
        cfg = self.config
        t0 = time.perf_counter()
        cdrs: list[Cdr] = []
        dead: list[Outgoing] = []
        parse = dlq.parse
        append = cdrs.append
        for rec in records:
            try:
                append(parse(rec.value))
            except ContractError as exc:
                # The message masks numbers; the raw record goes only to the DLQ topic.
                log.warning("invalid CDR at %s[%d]@%d sent to %s: %s",
                            rec.topic, rec.partition, rec.offset, cfg.topic_dlq, exc)
                value, hdrs = dlq.letter(rec.value, str(exc), rec.topic, rec.partition, rec.offset)
                dead.append(Outgoing(cfg.topic_dlq, rec.key, value, hdrs))
        self.stage["decode"] += time.perf_counter() - t0
        return Decoded(cdrs, dead, len(records))

    def evaluate(self, decoded: Decoded, lane: int = 0, model: LoadedModel | None | Literal["current"] = "current"
                 ) -> Outcome:
        """The engine on one decoded batch: state, features, score, policy, state update.

        ``model``: the one the loop read when it handed the batch to the lanes (all parts of a
        batch use it, even if the main engine's model is swapped meanwhile); by default the
        main engine's current one."""
        main = self.engine
        if main is None:
            raise RuntimeError("Worker.evaluate needs an engine: pass one or call run()")
        engine = self.lane_engines[lane] if lane < len(self.lane_engines) else main  # siblings serve main's models
        t1 = time.perf_counter()
        outcome = engine.evaluate(decoded.cdrs, apply=True, model=model)
        with self._stage_lock:  # lanes run concurrently
            self.stage["engine"] += time.perf_counter() - t1
        return outcome

    def outputs(self, decoded: Decoded, outcome: Outcome) -> Outputs:
        """Encode the decisions and feed events of an evaluated batch, and count them."""
        cfg = self.config
        t2 = time.perf_counter()
        out = Outputs(cfg.topic_decisions, cfg.topic_feed, dead=decoded.dead)
        cdrs = decoded.cdrs
        decisions = outcome.decisions
        encode = self._encoder.encode
        out.decision_keys = [f"{d.operator}:{d.call_id}".encode() for d in decisions]
        out.decision_values = list(map(encode, decisions))
        counts = Counter([(d.action, d.operator) for d in decisions])
        feed = self.feed
        metrics = self.metrics
        if feed is not None:
            features = outcome.features
            for i, decision in enumerate(decisions):
                if decision.action != "allow" or decision.reasons:
                    entry = feed.observe(cdrs[i], decision, features[i] if features is not None else None)
                    if entry is not None:
                        out.feed_keys.append(entry.number.encode())
                        out.feed_values.append(encode(entry))
            if out.feed_values:
                metrics.feed.inc(len(out.feed_values))
        for (action, operator), n in counts.items():
            metrics.decisions.labels(action, metrics.operator_label(operator)).inc(n)
        n_bad = len(decoded.dead)
        metrics.records.labels("valid").inc(len(cdrs))
        if n_bad:
            metrics.records.labels("invalid").inc(n_bad)
            metrics.dlq.inc(n_bad)
        if outcome.degraded:
            metrics.degraded.inc(len(cdrs))
        if self.engine is not None:
            metrics.pending.set(self.pending)
        self.stage["encode"] += time.perf_counter() - t2
        self.consumed += decoded.records
        return out

    @property
    def pending(self) -> int:
        """Completed calls decided while the store was down whose state writes still wait (all lanes)."""
        return sum(e.pending for e in self.engines())

    def engines(self) -> list[Engine]:
        """Each distinct engine once, the main one first (lanes without a sibling share it)."""
        if self.lane_engines:
            return list(dict.fromkeys(self.lane_engines))
        return [] if self.engine is None else [self.engine]

    # -- the loop -----------------------------------------------------------------------------

    def run(self) -> None:
        """Serve /healthz and /metrics, then consume until :meth:`stop` (or SIGTERM/SIGINT)."""
        from kafka import KafkaConsumer, KafkaProducer
        from kafka.errors import KafkaError

        from streaming import fetch
        from streaming.partitioner import KeyHashPartitioner
        from streaming.producer import BatchProducer

        if self.engine is None:
            self.engine = self._build_engine()
            self._model_checked = time.monotonic()
        self._serve_http()
        consumer = producer = None
        batches: Any = None
        cfg = self.config
        try:
            while not self._stop.is_set():
                try:
                    consumer = KafkaConsumer(
                        cfg.topic_cdr,
                        bootstrap_servers=cfg.bootstrap,
                        group_id=cfg.group_id,
                        enable_auto_commit=False,
                        auto_offset_reset="earliest",
                        session_timeout_ms=cfg.session_timeout_ms,
                        heartbeat_interval_ms=max(500, cfg.session_timeout_ms // 6),
                        request_timeout_ms=cfg.request_timeout_ms + 1000,
                        bootstrap_timeout_ms=cfg.request_timeout_ms,
                        max_poll_records=cfg.max_batch,
                        fetch_max_bytes=16 * 1024 * 1024,
                        max_partition_fetch_bytes=4 * 1024 * 1024,
                    )
                    fetch.install(consumer)  # whole-batch record decoding (streaming/fetch.py)
                    producer = KafkaProducer(
                        bootstrap_servers=cfg.bootstrap,
                        enable_idempotence=True,
                        acks="all",
                        linger_ms=5,
                        batch_size=1024 * 1024,
                        max_request_size=8 * 1024 * 1024,
                        request_timeout_ms=cfg.request_timeout_ms,
                        delivery_timeout_ms=cfg.request_timeout_ms * 3,
                        max_block_ms=cfg.request_timeout_ms,
                        bootstrap_timeout_ms=cfg.request_timeout_ms,
                        partitioner=KeyHashPartitioner(),
                    )
                    batches = BatchProducer(producer, max_batch_bytes=512 * 1024)
                    break
                except KafkaError as exc:
                    log.error("Kafka at %s not reachable (%s); retrying in 2 s", cfg.bootstrap, exc)
                    for client in (consumer, producer):
                        if client is not None:
                            client.close()
                    consumer = producer = None
                    self._stop.wait(2.0)
            if consumer is None or producer is None or batches is None:
                return
            self.kafka_connected = True
            if cfg.gc_freeze:
                gc.collect()
                gc.freeze()
            log.info("worker consuming %s in group %s", cfg.topic_cdr, cfg.group_id)
            ready: _Processed | None = None
            running: _Running | None = None
            with ExitStack() as stack:
                lanes = [stack.enter_context(ThreadPoolExecutor(1, thread_name_prefix=f"worker-engine-{i}"))
                         for i in range(max(1, cfg.engine_lanes))]
                engine = self.engine
                self.lane_engines = [engine] + [engine.sibling() or engine for _ in lanes[1:]]
                while not self._stop.is_set():
                    ready, running = self._step(consumer, batches, lanes, ready, running)
                # Stopping: deliver what is in flight, in order; a failed delivery stops the
                # chain so that no later offset is committed past an unacknowledged record.
                ok = self._deliver(consumer, batches, ready) if ready is not None else True
                if ok and running is not None:
                    self._deliver(consumer, batches,
                                  _Processed(self._merged_outputs(running), running.polled, running.polled_at))
        finally:
            self.kafka_connected = False
            if consumer is not None:
                consumer.close(autocommit=False, timeout_ms=2000)
            if producer is not None:
                producer.close(timeout=2)
            self._close_http()
            log.info("worker stopped after %d records", self.consumed)

    def _merged_outputs(self, running: _Running) -> Outputs:
        """The outputs of every lane of one batch, as one."""
        merged: Outputs | None = None
        for decoded, outcome in zip(running.decoded, running.outcomes(), strict=True):
            out = self.outputs(decoded, outcome)
            if merged is None:
                merged = out
            else:
                merged.dead += out.dead
                merged.decision_keys += out.decision_keys
                merged.decision_values += out.decision_values
                merged.feed_keys += out.feed_keys
                merged.feed_values += out.feed_values
        return merged if merged is not None else Outputs(self.config.topic_decisions, self.config.topic_feed)

    def _step(self, consumer: Any, producer: BatchProducer, lanes: list[ThreadPoolExecutor],
              ready: _Processed | None, running: _Running | None) -> tuple[_Processed | None, _Running | None]:
        """One loop turn, three batches in flight: poll and decode batch N+2 and deliver batch N
        (produce, wait for acks, commit) while the engine lanes work on batch N+1 (mostly
        waiting on Redis). Returns (N+1's outputs, N+2 running) for the next turn.
        """
        cfg = self.config
        engine = self.engine
        if engine is None:
            raise RuntimeError("Worker._step needs an engine: run() builds it")
        t0 = time.perf_counter()
        polled = consumer.poll(timeout_ms=cfg.poll_timeout_ms, max_records=cfg.max_batch)
        self.stage["poll"] += time.perf_counter() - t0
        n_lanes = len(lanes)
        parts: list[list[Any]] = [[] for _ in lanes]
        if n_lanes == 1:
            for recs in polled.values():
                parts[0] += recs
        else:
            # by key (the caller's number; the partition for a record without one): a caller's
            # records always go to one lane, in order; the lanes get about equal shares
            for tp, recs in polled.items():
                for rec in recs:
                    key = rec.key
                    parts[(hash(key) if key is not None else tp.partition) % n_lanes].append(rec)
        decoded = [(i, self.decode(recs)) for i, recs in enumerate(parts) if recs]
        self._maybe_swap_model(engine)  # takes effect from the next batch a lane starts
        # Queued behind batch N+1 in each lane (FIFO per lane keeps each caller in order), so
        # a lane starts N+2 the moment it finishes N+1 instead of waiting for this turn's end.
        model = engine.model  # one model for every part of this batch
        next_running = (_Running([lanes[i].submit(self.evaluate, d, i, model) for i, d in decoded],
                                 [d for _, d in decoded],
                                 polled, t0)
                        if decoded else None)
        delivered = self._deliver(consumer, producer, ready) if ready is not None else True
        if not delivered:
            # Batch N was not acknowledged: let the lanes finish, rewind every partition to its
            # oldest record not committed (batch N's start, else N+1's, else N+2's) and drop the
            # later batches' outputs. All are processed again: idempotent state, same decision ids.
            for pending in (running, next_running):
                if pending is not None:
                    for future in pending.futures:
                        future.exception()
            starts = {tp: recs[0].offset for tp, recs in polled.items()}
            if running is not None:
                starts.update({tp: recs[0].offset for tp, recs in running.polled.items()})
            if ready is not None:
                starts.update({tp: recs[0].offset for tp, recs in ready.polled.items()})
            for tp, offset in starts.items():
                consumer.seek(tp, offset)
            return None, None
        # Batch N+1's outputs are encoded here, while the engine lanes work on N+2.
        next_ready = (_Processed(self._merged_outputs(running), running.polled, running.polled_at)
                      if running is not None else None)
        if next_ready is None and next_running is None and self.pending:
            for e in self.engines():
                e.flush_pending()  # idle, and the store may be back: catch up
            self.metrics.pending.set(self.pending)
        return next_ready, next_running

    def _deliver(self, consumer: Any, producer: BatchProducer, ready: _Processed) -> bool:
        """Produce one processed batch, wait for the acks, commit its offsets; False if not acknowledged."""
        from kafka.errors import CommitFailedError, KafkaError
        from kafka.structs import OffsetAndMetadata

        cfg = self.config
        t2 = time.perf_counter()
        out = ready.outgoing
        futures: list[Any] = []
        try:
            if out.dead:
                futures += producer.send_many(cfg.topic_dlq, [o.key for o in out.dead], [o.value for o in out.dead],
                                              [o.headers for o in out.dead])
            futures += producer.send_many(cfg.topic_decisions, out.decision_keys, out.decision_values)
            futures += producer.send_many(cfg.topic_feed, out.feed_keys, out.feed_values)
            ok = producer.wait(futures, cfg.request_timeout_ms / 1000)
        except KafkaError as exc:  # metadata not available within max_block_ms, producer closed
            log.error("outputs of a batch not queued (%s)", exc)
            ok = False
        t3 = time.perf_counter()
        self.stage["produce"] += t3 - t2
        if not ok:
            log.error("outputs of a batch of %d records not acknowledged; re-reading it",
                      sum(len(r) for r in ready.polled.values()))
            return False
        if self.pending:
            # Completed calls of this (or an earlier) batch are decided but their state writes
            # wait in memory for the store to come back. Committing now would lose them if this
            # process died before the store returned; holding the offsets means a restarted
            # worker re-reads them (idempotent state, same decision ids). The first commit after
            # the queue drains covers every held batch.
            self.metrics.commits_held.inc()
            self.metrics.batches.inc()
            return True
        # Only partitions still assigned: a rebalance during the last poll may have moved some
        # to another worker, which re-reads them from its committed offset (same decision ids).
        assigned = consumer.assignment()
        offsets = {tp: OffsetAndMetadata(recs[-1].offset + 1, "", -1)
                   for tp, recs in ready.polled.items() if tp in assigned}
        try:
            if offsets:
                consumer.commit(offsets, timeout_ms=cfg.request_timeout_ms)
        except (CommitFailedError, KafkaError) as exc:
            # A rebalance took partitions away (their new owner re-reads them) or the broker
            # is unreachable (the next commit covers these offsets too): nothing is lost.
            log.warning("offset commit failed (%s); records may be processed again", exc)
        t4 = time.perf_counter()
        self.stage["commit"] += t4 - t3
        self.metrics.batches.inc()
        self.metrics.batch_seconds.observe(t4 - ready.polled_at)
        for tp, recs in ready.polled.items():
            high = consumer.highwater(tp)
            if high is not None:
                self.metrics.lag.labels(str(tp.partition)).set(max(0, high - recs[-1].offset - 1))
        return True

    def stop(self) -> None:
        """Ask the loop to finish its current batch and return (within one poll timeout)."""
        self._stop.set()

    def run_until_signalled(self) -> None:
        """:meth:`run` in the foreground, stopping cleanly on SIGTERM or SIGINT."""

        def handler(signum: int, frame: FrameType | None) -> None:
            log.info("worker received signal %d; stopping", signum)
            self.stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)
        self.run()

    # -- health and metrics ---------------------------------------------------------------

    @property
    def metrics_port(self) -> int:
        """The port actually bound (differs from the config when it asked for 0)."""
        return self._http.server_address[1] if self._http else self.config.metrics_port

    def wait_ready(self, timeout: float = 30.0) -> bool:
        """Block until the loop is consuming (for tests and embedding)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self._stop.is_set():
            if self.kafka_connected:
                return True
            time.sleep(0.05)
        return self.kafka_connected

    def _health(self) -> dict[str, object]:
        engine = self.engine
        return {
            "status": "ok",
            "kafka": "connected" if self.kafka_connected else "connecting",
            "consumed": self.consumed,
            "model": engine.model_version if engine else None,
            "store": ("up" if all(e.store_available for e in self.engines()) else "down") if engine else None,
            "pending_store_writes": self.pending,
        }

    def _serve_http(self) -> None:
        worker = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/healthz":
                    self._send(200, "application/json", json.dumps(worker._health()).encode())
                elif self.path == "/metrics":
                    self._send(200, CONTENT_TYPE_LATEST, generate_latest(worker.registry))
                else:
                    self._send(404, "application/json", b'{"detail":"Not Found"}')

            def _send(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
                log.debug("metrics http: " + format, *args)

        self._http = ThreadingHTTPServer((self.config.metrics_host, self.config.metrics_port), Handler)
        self._http.daemon_threads = True
        threading.Thread(target=self._http.serve_forever, name="worker-http", daemon=True).start()
        log.info("worker health on http://%s:%d/healthz", self.config.metrics_host, self.metrics_port)

    def _close_http(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m streaming.worker``: the worker with explicit arguments (tests, benchmarks).

    The production entry point is ``callscreen worker``, which reads the settings object.
    """
    p = argparse.ArgumentParser(prog="python -m streaming.worker")
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--redis-url")
    p.add_argument("--registry-dir", type=Path)
    p.add_argument("--model", default="champion")
    p.add_argument("--group", default="callscreen-worker")
    p.add_argument("--topic-cdr", default="cdr")
    p.add_argument("--topic-decisions", default="decisions")
    p.add_argument("--topic-dlq", default="cdr.dlq")
    p.add_argument("--topic-feed", default="fraud-feed")
    p.add_argument("--metrics-port", type=int, default=0)
    p.add_argument("--max-batch", type=int, default=2000)
    p.add_argument("--session-timeout-ms", type=int, default=6000)
    p.add_argument("--feed-key", help="feed HMAC key (development/test only; production uses the settings)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)  # its INFO lines drown the worker's
    config = WorkerConfig(
        bootstrap=args.bootstrap,
        redis_url=args.redis_url,
        registry_dir=args.registry_dir,
        model_ref=args.model,
        group_id=args.group,
        topic_cdr=args.topic_cdr,
        topic_decisions=args.topic_decisions,
        topic_dlq=args.topic_dlq,
        topic_feed=args.topic_feed,
        metrics_port=args.metrics_port,
        max_batch=args.max_batch,
        session_timeout_ms=args.session_timeout_ms,
        feed_hash_key=args.feed_key.encode() if args.feed_key else None,
    )
    Worker(config).run_until_signalled()
    return 0


if __name__ == "__main__":
    sys.exit(main())
