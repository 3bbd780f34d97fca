"""Prometheus metrics of the API: latency per route, decisions by action and operator, degraded answers.

Labels are route templates, actions, operators and reason codes: never a phone number.
Each app gets its own registry, so tests can build many apps in one process.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from features.contracts import Decision

# Buckets around the 20 ms deadline: the interesting part is 0.5-30 ms.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.03, 0.05, 0.1, 0.25, 1.0)


class ApiMetrics:
    """The collectors of one app."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "callscreen_api_request_seconds",
            "Time from request start to response, by route template, method and status.",
            ["route", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.decisions = Counter(
            "callscreen_api_decisions_total",
            "Decisions returned to switches, by action and operator.",
            ["action", "operator"],
            registry=self.registry,
        )
        self.degraded = Counter(
            "callscreen_api_degraded_total",
            "Decisions answered in fail-open mode, by reason code.",
            ["reason"],
            registry=self.registry,
        )
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
        # labels() hashes and locks on every call; the hot path keeps the children it made.
        self._decision_children: dict[tuple[str, str], Any] = {}
        self._latency_children: dict[tuple[str, str, str], Any] = {}
        self.auth_failures = Counter(
            "callscreen_api_auth_failures_total",
            "Requests refused by authentication or authorisation, by status.",
            ["status"],
            registry=self.registry,
        )

    def count(self, decisions: Iterable[Decision]) -> None:
        children = self._decision_children
        for d in decisions:
            child = children.get((d.action, d.operator))
            if child is None:
                child = children[(d.action, d.operator)] = self.decisions.labels(d.action, d.operator)
            child.inc()
            if d.degraded:
                code = next((r.code for r in d.reasons if r.code.startswith("DEGRADED")), "DEGRADED")
                self.degraded.labels(code).inc()

    def observe_latency(self, route: str, method: str, status: str, seconds: float) -> None:
        key = (route, method, status)
        child = self._latency_children.get(key)
        if child is None:
            child = self._latency_children[key] = self.latency.labels(route, method, status)
        child.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
