"""Prometheus metrics of the API: latency per route, decisions by action and operator, degraded answers.

Labels are route templates, actions, operators and reason codes: never a phone number.
Each app gets its own registry, so tests can build many apps in one process.

The three families on every request's path (latency, decisions, degraded answers) are
plain counters read by a collector at scrape time: they are written only on the event
loop's thread, so they need no lock, and an observation costs well under a microsecond
instead of the several of a ``prometheus_client`` child (a lock and a bucket walk per
call). They are exposed exactly as the ``prometheus_client`` types would be (without the
optional ``_created`` series). The rare ones (shadow, model swaps, auth failures) stay
``prometheus_client`` objects.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from features.contracts import Decision
from models.labels import MAX_OPERATOR_LABELS, OTHER_OPERATOR, OperatorLabels

__all__ = ["MAX_OPERATOR_LABELS", "OTHER_OPERATOR", "ApiMetrics"]

# Buckets around the 20 ms deadline: the interesting part is 0.5-30 ms.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.03, 0.05, 0.1, 0.25, 1.0)


class _Series:
    __slots__ = ("counts", "sum")

    def __init__(self, n: int) -> None:
        self.counts = [0] * n
        self.sum = 0.0


class ApiMetrics:
    """The collectors of one app."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._bounds = LATENCY_BUCKETS
        self._latency: dict[tuple[str, str, str], _Series] = {}
        self._decisions: dict[tuple[str, str], int] = {}
        self._operator_label = OperatorLabels()  # capped, as the worker's (models/labels.py)
        self._degraded: dict[str, int] = {}
        self._engine: dict[tuple[str, str], list[int]] = {}
        self.registry.register(_Collector(self))
        self.shadow = Counter(
            "callscreen_api_shadow_decisions_total",
            "Decisions the shadow (challenger) model would have taken; never returned.",
            ["action"],
            registry=self.registry,
        )
        self.model_swaps = Counter(
            "callscreen_api_model_swaps_total",
            "Model loads attempted by the API, by outcome (loaded or refused).",
            ["outcome"],
            registry=self.registry,
        )
        self.model_info = Gauge(
            "callscreen_api_model_info",
            "1 for the model version being served.",
            ["version"],
            registry=self.registry,
        )
        self.auth_failures = Counter(
            "callscreen_api_auth_failures_total",
            "Requests refused by authentication or authorisation, by status.",
            ["status"],
            registry=self.registry,
        )

    def count(self, decisions: Iterable[Decision]) -> None:
        """Count decisions returned to switches (on the event loop's thread)."""
        counts = self._decisions
        label = self._operator_label
        for d in decisions:
            key = (d.action, label(d.operator))
            counts[key] = counts.get(key, 0) + 1
            if d.degraded:
                code = next((r.code for r in d.reasons if r.code.startswith("DEGRADED")), "DEGRADED")
                self._degraded[code] = self._degraded.get(code, 0) + 1

    def observe_latency(self, route: str, method: str, status: str, seconds: float) -> None:
        """One request's latency, by route template (on the event loop's thread)."""
        key = (route, method, status)
        series = self._latency.get(key)
        if series is None:
            series = self._latency[key] = _Series(len(self._bounds) + 1)
        series.counts[bisect.bisect_left(self._bounds, seconds)] += 1
        series.sum += seconds

    def engine_call(self, lane: str, kind: str, calls: int) -> None:
        """One engine call of ``calls`` merged calls (on the thread of ``lane``, its only writer)."""
        counts = self._engine.get((lane, kind))
        if counts is None:
            counts = self._engine[(lane, kind)] = [0, 0]
        counts[0] += 1
        counts[1] += calls

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def families(self) -> Iterator[Metric]:
        """The per-request families, as prometheus_client's Histogram and Counter expose them."""
        latency = HistogramMetricFamily(
            "callscreen_api_request_seconds",
            "Time from request start to response, by route template, method and status.",
            labels=["route", "method", "status"],
        )
        bounds = [floatToGoString(b) for b in self._bounds] + ["+Inf"]  # type: ignore[no-untyped-call]
        for key, series in list(self._latency.items()):
            counts = list(series.counts)
            cumulative, total = [], 0
            for bound, n in zip(bounds, counts, strict=True):
                total += n
                cumulative.append((bound, float(total)))
            latency.add_metric(list(key), cumulative, series.sum)
        yield latency
        decisions = CounterMetricFamily(
            "callscreen_api_decisions", "Decisions returned to switches, by action and operator.",
            labels=["action", "operator"],
        )
        for (action, operator), n in list(self._decisions.items()):
            decisions.add_metric([action, operator], float(n))
        yield decisions
        degraded = CounterMetricFamily(
            "callscreen_api_degraded", "Decisions answered in fail-open mode, by reason code.", labels=["reason"]
        )
        for code, n in list(self._degraded.items()):
            degraded.add_metric([code], float(n))
        yield degraded
        batches = CounterMetricFamily(
            "callscreen_api_engine_batches", "Engine calls made by the lanes (requests merged into one), by lane and kind.",
            labels=["lane", "kind"],
        )
        merged = CounterMetricFamily(
            "callscreen_api_engine_calls", "Calls decided by those engine calls, by lane and kind.", labels=["lane", "kind"]
        )
        for (lane, kind), (n, calls) in list(self._engine.items()):
            batches.add_metric([lane, kind], float(n))
            merged.add_metric([lane, kind], float(calls))
        yield batches
        yield merged


class _Collector(Collector):
    def __init__(self, metrics: ApiMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return self._metrics.families()
