"""Everything one API process holds: keys, limits, metrics, the store, the engine and its lane.

Routes reach it as ``request.app.state.runtime``. It is built once by ``create_app`` from
objects that ``deploy`` constructs (store, registry), so nothing here reads the environment.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from features.contracts import Cdr, Decision
from models import policy
from models.engine import NO_MODEL_VERSION, Engine, decision_id
from service.auth import HEADER, ApiKey, KeyRing, authorize
from service.errors import ApiKeyInvalidError, ApiKeyMissingError, RoleForbiddenError, StoreMissingError
from service.lane import Kind, Lane, LaneOverloadedError
from service.limits import RateLimitConfig, RateLimiter
from service.metrics import ApiMetrics

if TYPE_CHECKING:
    from features.store import FeatureStore
    from service.watcher import ModelWatcher

log = logging.getLogger(__name__)

BULK_MIN = 100
"""Screening requests of at least this many calls go to the bulk lanes when there are any."""


@dataclass(frozen=True, kw_only=True)
class ServiceConfig:
    """What the API process needs; built by ``deploy`` from the settings object."""

    redis_url: str | None = None
    """Redis URL of the feature store (informational; deploy builds the store)."""
    deadline_ms: float = 20.0
    """Overall deadline of one screening request; past it the call is allowed, degraded."""
    batch_ms_per_call: float = 0.5
    """Extra deadline per call of a batch request (1,000 calls: 20 + 500 ms; the engine measured
    ~0.19 ms per call in batches of 1,000 on the loaded benchmark machine)."""
    process_timeout_s: float = 5.0
    """Deadline of a /v1/cdrs request (completed calls; not on a switch's call-setup timer)."""
    breaker_cooldown_s: float = 0.25
    """After a store failure the engine skips Redis for this long, then probes again."""
    version: str = "0.1.0"
    """Version reported by the API's OpenAPI document and /v1/version."""
    keys: tuple[ApiKey, ...] = ()
    """API keys (hashed). Empty: every authenticated route answers 401."""
    rate_limits: RateLimitConfig = field(default_factory=RateLimitConfig)
    """Per-role rate limits."""
    shadow: bool = False
    """Score the registry's `challenger` alongside the champion; its decisions are logged and counted, never returned."""
    lane_threaded: bool = True
    """Run the engine in its own thread (the loop never waits on Redis) or inline in the event loop."""
    watch_interval_s: float = 1.0
    """How often the registry's aliases file is checked for a new champion."""
    gc_freeze: bool = True
    """Once start-up is done (the first model loaded), move every object then alive (modules,
    FastAPI's routes, the model, clients) out of the cyclic GC's reach (``gc.freeze``), as the
    worker does: a request's garbage is then collected without rescanning them."""


class Runtime:
    """The process's objects; see the module docstring."""

    def __init__(
        self,
        config: ServiceConfig,
        *,
        store: FeatureStore | None,
        engine: Engine | None,
        registry: Any | None,
        bulk_lanes: int = 0,
    ) -> None:
        self.config = config
        self.keys = KeyRing(config.keys)
        self.limiter = RateLimiter()
        self.metrics = ApiMetrics()
        self.store = store
        self.engine = engine
        self.registry = registry
        self.lane = Lane(functools.partial(self._run, "main", None), threaded=config.lane_threaded)
        # Big screening requests run on lanes of their own, each with a sibling of the engine
        # (its own store connection, the same models), so that one's Redis round trip overlaps
        # another's compute; see BULK_MIN. None for a store without connections (in-process).
        self.bulk: Lane | None = None
        siblings = [engine.sibling() for _ in range(bulk_lanes)] if engine is not None and config.lane_threaded else []
        bulk = [e for e in siblings if e is not None]
        if bulk:
            self.bulk = Lane([functools.partial(self._run, f"bulk-{i}", e) for i, e in enumerate(bulk)],
                             name="bulk-lane")
        self.deadline_s = config.deadline_ms / 1000.0
        self.started = time.monotonic()
        self.watcher: ModelWatcher | None = None

    # -- auth -------------------------------------------------------------------------------

    def guard(self, request: Request, roles: frozenset[str]) -> ApiKey:
        """Authenticate, authorise and rate-limit one request; raise the matching error."""
        return self.admit(request.headers.get(HEADER), roles)

    def admit(self, presented: str | None, roles: frozenset[str]) -> ApiKey:
        """:meth:`guard` given the presented ``X-API-Key`` value (the hot routes read it from the ASGI scope)."""
        try:
            key = self.keys.authenticate(presented)
            authorize(key, roles)
        except RoleForbiddenError:
            self.metrics.auth_failures.labels("403").inc()
            raise
        except (ApiKeyMissingError, ApiKeyInvalidError):
            self.metrics.auth_failures.labels("401").inc()
            raise
        limits = self.config.rate_limits
        rate = key.rate_per_s or limits.per_role.get(key.role, 10.0)
        self.limiter.take(key.name, rate=rate, burst_s=limits.burst_s)
        return key

    def need_store(self) -> FeatureStore:
        if self.store is None:
            raise StoreMissingError("this API process runs without a feature store; configure CALLSCREEN_REDIS_URL")
        return self.store

    # -- decisions --------------------------------------------------------------------------

    @property
    def model_version(self) -> str:
        return self.engine.model_version if self.engine is not None else NO_MODEL_VERSION

    async def decide(self, kind: Kind, cdrs: Sequence[Cdr], timeout_s: float) -> list[Decision]:
        """Decisions for ``cdrs`` within ``timeout_s``; fail open (allow, degraded) past it or on any failure."""
        future: asyncio.Future[list[Decision]] = asyncio.get_running_loop().create_future()

        def done(decisions: list[Decision]) -> None:
            if not future.done():  # the waiting task may have been cancelled
                future.set_result(decisions)

        self.submit(kind, cdrs, timeout_s, done)
        return await future

    def submit(self, kind: Kind, cdrs: Sequence[Cdr], timeout_s: float, done: Callable[[list[Decision]], None]) -> None:
        """:meth:`decide` for callers without a task (``service/protocol.py``): ``done(decisions)`` is
        called once, on this loop, within ``timeout_s`` (at once when the lane is stuck)."""

        def finish(result: list[Decision] | BaseException) -> None:
            if isinstance(result, LaneOverloadedError):
                decisions = self.fallback(cdrs, policy.DEGRADED_DEADLINE)
            elif isinstance(result, BaseException):  # an engine bug must not turn into a 5xx at a switch
                log.error("engine failed; failing open", exc_info=result)
                decisions = self.fallback(cdrs, policy.DEGRADED_MODEL_UNAVAILABLE)
            else:
                decisions = result
            self.metrics.count(decisions)
            done(decisions)

        bulk = self.bulk
        lane = bulk if bulk is not None and kind == "screen" and len(cdrs) >= BULK_MIN else self.lane
        lane.submit(kind, cdrs, timeout_s, finish)

    def fallback(self, cdrs: Sequence[Cdr], code: str) -> list[Decision]:
        """The fail-open answer: a stateless rule if one decides (emergency numbers pass), else allow."""
        version = self.model_version
        now = dt.datetime.now(dt.UTC)
        out = []
        for c in cdrs:
            v = policy.degraded(c, code)
            out.append(
                Decision(
                    call_id=c.call_id,
                    operator=c.operator,
                    action=v.action,
                    score=0.0,
                    reasons=list(v.reasons),
                    model_version=version,
                    degraded=True,
                    decided_at=now,
                    decision_id=decision_id(c.operator, c.call_id, version),
                )
            )
        return out

    def _run(self, lane: str, replica: Engine | None, kind: Kind, cdrs: list[Cdr], deadline: float) -> list[Decision]:
        """In a lane thread: one engine call for the merged requests (on a bulk lane, by a sibling
        of the main engine: the same models)."""
        self.metrics.engine_call(lane, kind, len(cdrs))
        engine = replica or self.engine
        if engine is None:
            return self.fallback(cdrs, policy.DEGRADED_MODEL_UNAVAILABLE)
        if kind == "process":
            return engine.process(cdrs)
        outcome = engine.evaluate(cdrs, apply=False, deadline=deadline)
        if outcome.shadow_scores is not None and engine.shadow is not None:
            self._count_shadow(cdrs, outcome.shadow_scores.tolist(), engine)
        return outcome.decisions

    def _count_shadow(self, cdrs: Sequence[Cdr], scores: list[float], engine: Engine) -> None:
        shadow = engine.shadow
        if shadow is None:
            return
        thresholds = shadow.card.thresholds
        for c, s in zip(cdrs, scores, strict=True):
            action = policy.threshold_action(s, *thresholds.for_operator(c.operator))
            self.metrics.shadow.labels(action).inc()
            if action != "allow":
                log.info(
                    "shadow %s would %s call %s/%s (score %.3f)", shadow.card.version, action, c.operator, c.call_id, s
                )
