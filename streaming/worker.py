"""The stream worker: consumes `cdr/1` records from Kafka and writes its results back.

One loop, in the order that makes a crash safe (quix-streams ``app.py``):

    poll a batch -> process it -> produce the results -> wait for their acks -> commit offsets

so a record is either processed and committed, or seen again after a restart; never lost.
For now ``process`` validates each CDR and sends the malformed ones to the dead-letter topic
(with topic, partition, offset and the reason); the screening engine plugs in there.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

from features.contracts import Cdr, decode
from features.errors import ContractError

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
    group_id: str = "callscreen-worker"
    """Consumer group; the partitions of `topic_cdr` are shared among its members."""
    metrics_host: str = "127.0.0.1"
    """Address of the /healthz and /metrics endpoint."""
    metrics_port: int = 9108
    """Port of the /healthz and /metrics endpoint (0: any free port, see ``Worker.metrics_port``)."""
    poll_timeout_ms: int = 500
    """Longest wait of one poll; bounds how fast a stop request is noticed."""
    max_batch: int = 500
    """Most records handled per loop iteration."""
    request_timeout_ms: int = 10_000
    """Timeout of every Kafka request (fetch, produce, commit)."""
    session_timeout_ms: int = 6_000
    """Group session timeout: a dead worker's partitions move to the others after this."""


@dataclass(frozen=True)
class Outgoing:
    """One record to produce before the batch's offsets may be committed."""

    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]] = field(default_factory=list)


class Worker:
    """Consumes the CDR topic in group ``callscreen-worker``; see the module docstring for the loop."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.registry = CollectorRegistry()
        self.records = Counter(
            "callscreen_worker_records",
            "CDRs consumed, by outcome (valid, invalid).",
            ["outcome"],
            registry=self.registry,
        )
        self.batches = Counter(
            "callscreen_worker_batches", "Batches committed.", registry=self.registry
        )
        self.consumed = 0
        self.kafka_connected = False
        self._stop = threading.Event()
        self._http: ThreadingHTTPServer | None = None

    # -- the loop -------------------------------------------------------------------------

    def process(self, records: Sequence[Any]) -> list[Outgoing]:
        """Turn one polled batch into the records to produce (here: dead letters only)."""
        out: list[Outgoing] = []
        for rec in records:
            try:
                decode(Cdr, rec.value)
            except ContractError as exc:
                # The message masks numbers; the raw record goes only to the DLQ topic.
                log.warning(
                    "invalid CDR at %s[%d]@%d sent to %s: %s",
                    rec.topic, rec.partition, rec.offset, self.config.topic_dlq, exc,
                )  # fmt: skip
                self.records.labels("invalid").inc()
                out.append(
                    Outgoing(
                        self.config.topic_dlq,
                        rec.key,
                        rec.value,
                        [
                            ("topic", rec.topic.encode()),
                            ("partition", str(rec.partition).encode()),
                            ("offset", str(rec.offset).encode()),
                            ("reason", str(exc).encode()),
                        ],
                    )
                )
            else:
                self.records.labels("valid").inc()
        self.consumed += len(records)
        return out

    def run(self) -> None:
        """Serve /healthz and /metrics, then consume until :meth:`stop` (or SIGTERM/SIGINT)."""
        from kafka import KafkaConsumer, KafkaProducer
        from kafka.errors import KafkaError, KafkaTimeoutError

        self._serve_http()
        consumer = producer = None
        try:
            while not self._stop.is_set():
                try:
                    consumer = KafkaConsumer(
                        self.config.topic_cdr,
                        bootstrap_servers=self.config.bootstrap,
                        group_id=self.config.group_id,
                        enable_auto_commit=False,
                        auto_offset_reset="earliest",
                        session_timeout_ms=self.config.session_timeout_ms,
                        heartbeat_interval_ms=self.config.session_timeout_ms // 3,
                        request_timeout_ms=self.config.request_timeout_ms,
                        bootstrap_timeout_ms=self.config.request_timeout_ms,
                        max_poll_records=self.config.max_batch,
                    )
                    producer = KafkaProducer(
                        bootstrap_servers=self.config.bootstrap,
                        acks="all",
                        linger_ms=5,
                        request_timeout_ms=self.config.request_timeout_ms,
                        delivery_timeout_ms=self.config.request_timeout_ms * 3,
                        max_block_ms=self.config.request_timeout_ms,
                        bootstrap_timeout_ms=self.config.request_timeout_ms,
                    )
                    break
                except KafkaError as exc:
                    log.error("Kafka at %s not reachable (%s); retrying in 2 s", self.config.bootstrap, exc)
                    for client in (consumer, producer):
                        if client is not None:
                            client.close()
                    consumer = producer = None
                    self._stop.wait(2.0)
            if consumer is None or producer is None:
                return
            self.kafka_connected = True
            log.info("worker consuming %s in group %s", self.config.topic_cdr, self.config.group_id)
            while not self._stop.is_set():
                polled = consumer.poll(timeout_ms=self.config.poll_timeout_ms, max_records=self.config.max_batch)
                batch = [rec for recs in polled.values() for rec in recs]
                if not batch:
                    continue
                outgoing = self.process(batch)
                futures = [
                    producer.send(o.topic, key=o.key, value=o.value, headers=o.headers) for o in outgoing
                ]
                try:
                    producer.flush(timeout=self.config.request_timeout_ms / 1000)
                except KafkaTimeoutError:
                    pass  # the futures below tell which results are missing
                failed = [f for f in futures if not f.succeeded()]
                if failed:
                    # Not committed: rewind to the batch start so these records are processed again.
                    log.error("%d of %d results not acknowledged; re-reading the batch", len(failed), len(futures))
                    for tp, recs in polled.items():
                        consumer.seek(tp, recs[0].offset)
                    continue
                consumer.commit()
                self.batches.inc()
        finally:
            self.kafka_connected = False
            if consumer is not None:
                consumer.close(autocommit=False, timeout_ms=2000)
            if producer is not None:
                producer.close(timeout=2)
            self._close_http()
            log.info("worker stopped after %d records", self.consumed)

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
        return {"status": "ok", "kafka": "connected" if self.kafka_connected else "connecting", "consumed": self.consumed}

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

