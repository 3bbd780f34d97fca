"""Prometheus metrics of the worker, on its own registry (served at /metrics).

==================================================  =========  =====================================
metric                                              type       labels
==================================================  =========  =====================================
``callscreen_worker_records_total``                 counter    outcome = valid | invalid
``callscreen_worker_batches_total``                 counter
``callscreen_worker_batch_seconds``                 histogram  (poll-to-commit latency of a batch)
``callscreen_worker_stage_seconds_total``           counter    stage = decode | store | score | ...
``callscreen_worker_decisions_total``               counter    action, operator
``callscreen_worker_degraded_total``                counter    (decisions with degraded=true)
``callscreen_worker_dlq_total``                     counter    (records sent to the DLQ)
``callscreen_worker_feed_total``                    counter    (feed/1 events emitted)
``callscreen_worker_lag``                           gauge      partition (high watermark - position)
``callscreen_worker_pending_store_writes``          gauge      (calls waiting for the store to return)
==================================================  =========  =====================================
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from models.labels import OperatorLabels


class WorkerMetrics:
    """The worker's metric objects, registered on ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.records = Counter("callscreen_worker_records", "CDRs consumed, by outcome (valid, invalid).",
                               ["outcome"], registry=registry)
        self.batches = Counter("callscreen_worker_batches", "Batches committed.", registry=registry)
        self.batch_seconds = Histogram(
            "callscreen_worker_batch_seconds", "Poll-to-commit latency of one batch.", registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
        )
        self.stage_seconds = Counter("callscreen_worker_stage_seconds", "Seconds spent per stage.",
                                     ["stage"], registry=registry)
        self.decisions = Counter("callscreen_worker_decisions", "Decisions produced, by action and operator.",
                                 ["action", "operator"], registry=registry)
        self.degraded = Counter("callscreen_worker_degraded", "Decisions made in degraded (fail-open) mode.",
                                registry=registry)
        self.dlq = Counter("callscreen_worker_dlq", "Records sent to the dead-letter topic.", registry=registry)
        self.feed = Counter("callscreen_worker_feed", "feed/1 events emitted.", registry=registry)
        self.lag = Gauge("callscreen_worker_lag", "Records behind the high watermark, per partition.",
                         ["partition"], registry=registry)
        self.pending = Gauge("callscreen_worker_pending_store_writes",
                             "Completed calls decided during a store outage, waiting to be applied.",
                             registry=registry)
        self.commits_held = Counter("callscreen_worker_commits_held",
                                    "Batches whose offsets were not committed because store writes were still queued.",
                                    registry=registry)
        self.operator_label = OperatorLabels()  # the decisions' operator label, capped (models/labels.py)
