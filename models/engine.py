"""The screening engine: one code path for the worker, the HTTP API and replay.

For a batch of CDRs it

1. reads the calls' features and list memberships from the feature store in one call
   (one Redis round trip for the whole batch in ``RedisStore``) and, for completed calls,
   applies them to the state in the same call (idempotent by operator + call_id);
2. scores the whole feature matrix in one predictor call;
3. applies the policy (:mod:`models.policy`) row by row;
4. asks the predictor for contributions only for the rows the *model* warned or blocked,
   and turns them into reason codes.

Failure is fail-open (a screening outage must never drop a country's calls): when the
store raises :class:`features.errors.StoreUnavailableError`, the model is missing or fails,
or the deadline is passed, every call is allowed with ``degraded=True`` unless a stateless
rule decides. After a store failure a circuit breaker skips the store for
``retry_interval_s`` so that a hung Redis costs one timeout, not one per batch.

Completed calls decided while the store was down were not applied to the state. They wait
in a bounded queue and are applied (idempotently, oldest first, before newer calls) as
soon as the store answers again, so per-number counters converge to what they would have
been without the outage. Calls beyond ``pending_limit`` are dropped and counted in
``pending_dropped``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from features.contracts import Cdr, Decision, Reason
from features.definitions import FEATURE_NAMES, MISSING_REASON_CODES, REASON_CODES
from features.errors import StoreUnavailableError
from models import policy
from models.policy import Verdict
from models.reasons import top_reasons

if TYPE_CHECKING:
    from features.store import CallContext, FeatureStore
    from models.registry import LoadedModel

log = logging.getLogger(__name__)

NO_MODEL_VERSION = "none"
_N_FEATURES = len(FEATURE_NAMES)
_MODEL_VERDICTS: dict[str, Verdict] = {a: Verdict(a, (), "model") for a in ("allow", "warn", "block")}


def decision_id(operator: str, call_id: str, model_version: str) -> str:
    """Deterministic id of a call's decision: a consumer deduplicates redeliveries by it.

    >>> decision_id("kcell", "c1", "v1") == decision_id("kcell", "c1", "v1")
    True
    """
    return hashlib.sha256(f"{operator}:{call_id}:{model_version}".encode()).hexdigest()[:32]


@dataclass(slots=True)
class StageTimes:
    """Cumulative seconds spent in each stage (for metrics and the benchmark)."""

    store: float = 0.0
    score: float = 0.0
    policy: float = 0.0
    reasons: float = 0.0
    calls: int = 0

    def as_dict(self) -> dict[str, float]:
        return {"store": self.store, "score": self.score, "policy": self.policy, "reasons": self.reasons}


@dataclass(slots=True)
class Outcome:
    """Everything the engine computed for a batch (the worker's feed needs more than decisions)."""

    decisions: list[Decision]
    verdicts: list[Verdict]
    scores: np.ndarray
    features: np.ndarray | None
    contexts: list[CallContext] | None
    degraded: bool
    shadow_scores: np.ndarray | None = None


@dataclass(slots=True)
class _Breaker:
    retry_interval_s: float
    open_until: float = 0.0
    failures: int = 0

    def allows(self, now: float) -> bool:
        return now >= self.open_until

    def failed(self, now: float) -> None:
        self.failures += 1
        self.open_until = now + self.retry_interval_s

    def succeeded(self) -> None:
        self.open_until = 0.0


@dataclass(slots=True)
class _Pending:
    limit: int
    cdrs: deque[Cdr] = field(default_factory=deque)
    dropped: int = 0

    def add(self, cdrs: Sequence[Cdr]) -> None:
        room = self.limit - len(self.cdrs)
        if room < len(cdrs):
            self.dropped += len(cdrs) - max(room, 0)
            cdrs = cdrs[: max(room, 0)]
        self.cdrs.extend(cdrs)


class Engine:
    """Features -> score -> policy -> (state update), batch at a time; see the module docstring."""

    def __init__(
        self,
        store: FeatureStore,
        model: LoadedModel | None,
        *,
        clock: Callable[[], float] = time.time,
        shadow: LoadedModel | None = None,
        retry_interval_s: float = 1.0,
        pending_limit: int = 200_000,
        top_reasons: int = 3,
    ) -> None:
        self.store = store
        self._model = model
        self._shadow = shadow
        self._models_of = self  # the engine whose model and shadow this one serves (a sibling's parent)
        self.clock = clock
        self.top_reasons = top_reasons
        self.times = StageTimes()
        self._breaker = _Breaker(retry_interval_s)
        self._pending = _Pending(pending_limit)
        self._lock = threading.Lock()  # one batch at a time touches the breaker and queue

    # -- model -----------------------------------------------------------------------------

    @property
    def model(self) -> LoadedModel | None:
        return self._models_of._model

    @property
    def shadow(self) -> LoadedModel | None:
        """The challenger scored alongside (never returned), or None."""
        return self._models_of._shadow

    @shadow.setter
    def shadow(self, model: LoadedModel | None) -> None:
        self._models_of._shadow = model

    @property
    def model_version(self) -> str:
        model = self.model
        return model.card.version if model is not None else NO_MODEL_VERSION

    def sibling(self) -> Engine | None:
        """An engine like this one (clock, settings) over its own connection to the same store, for
        another thread; None when the store offers none (then share this one).

        It serves this engine's model and shadow: a swap on either is seen by both. Each has its
        own breaker and queue of pending writes; their store calls run concurrently (Redis still
        runs each script atomically)."""
        make = getattr(self.store, "sibling", None)
        if make is None:
            return None
        sibling = Engine(make(), None, clock=self.clock, retry_interval_s=self._breaker.retry_interval_s,
                         pending_limit=self._pending.limit, top_reasons=self.top_reasons)
        sibling._models_of = self._models_of
        return sibling

    def swap_model(self, model: LoadedModel | None) -> None:
        """Atomic hot swap: each batch reads the model reference once, so it uses one model."""
        self._models_of._model = model

    # -- degraded-mode state -------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Completed calls decided while the store was down, not yet applied to it."""
        return len(self._pending.cdrs)

    @property
    def pending_dropped(self) -> int:
        return self._pending.dropped

    @property
    def store_available(self) -> bool:
        return self._breaker.open_until == 0.0

    def flush_pending(self) -> int:
        """Apply queued calls to the store now; return how many were applied (0 if still down)."""
        with self._lock:
            return self._drain(time.monotonic())

    def _drain(self, now: float) -> int:
        applied = 0
        while self._pending.cdrs:
            chunk = [self._pending.cdrs[i] for i in range(min(2000, len(self._pending.cdrs)))]
            try:
                self.store.process(chunk)
            except Exception:  # noqa: BLE001 - still down (or failing): keep the queue, retry later
                self._breaker.failed(now)
                return applied
            for _ in chunk:
                self._pending.cdrs.popleft()
            applied += len(chunk)
        if applied:
            log.info("applied %d calls queued during a store outage", applied)
        return applied

    # -- the two entry points ------------------------------------------------------------------

    def screen(self, cdrs: Sequence[Cdr], *, deadline: float | None = None) -> list[Decision]:
        """Calls at setup: read-only. ``deadline`` is a ``time.monotonic()`` instant."""
        return self.evaluate(cdrs, apply=False, deadline=deadline).decisions

    def process(self, cdrs: Sequence[Cdr]) -> list[Decision]:
        """Completed calls: decide each as of its start, and apply them to the state."""
        return self.evaluate(cdrs, apply=True).decisions

    def evaluate(self, cdrs: Sequence[Cdr], *, apply: bool, deadline: float | None = None,
                 model: LoadedModel | None | Literal["current"] = "current") -> Outcome:
        """Run one batch through the engine; ``apply`` selects ``store.process`` over ``store.screen``.

        ``model`` overrides the engine's own for this batch (the worker passes the one it read
        when it handed the batch to its lanes, so the parts of one batch share one model)."""
        if not cdrs:
            return Outcome([], [], np.zeros(0), None, None, False)
        if isinstance(model, str):  # "current"
            model = self.model  # read once: a concurrent swap_model does not split the batch
        version = model.card.version if model is not None else NO_MODEL_VERSION
        t0 = time.perf_counter()
        features, contexts, degraded_code = self._read_state(cdrs, apply)
        t1 = time.perf_counter()
        self.times.store += t1 - t0
        if degraded_code is None and deadline is not None and time.monotonic() > deadline:
            degraded_code = policy.DEGRADED_DEADLINE
        scores = np.zeros(len(cdrs))
        shadow_scores = None
        if features is not None:
            if model is None:
                degraded_code = degraded_code or policy.DEGRADED_MODEL_UNAVAILABLE
            else:
                try:
                    scores = np.asarray(model.scorer.predict(features), dtype=np.float64)
                except Exception:  # any predictor failure must fail open, never drop the batch
                    log.exception("model %s failed to score a batch of %d; failing open", version, len(cdrs))
                    degraded_code = degraded_code or policy.DEGRADED_MODEL_UNAVAILABLE
            shadow = self.shadow
            if shadow is not None:
                try:
                    shadow_scores = np.asarray(shadow.scorer.predict(features), dtype=np.float64)
                except Exception:
                    log.exception("shadow model failed; ignoring")
        t2 = time.perf_counter()
        self.times.score += t2 - t1
        verdicts = self._verdicts(cdrs, contexts, scores, model, degraded_code)
        t3 = time.perf_counter()
        self.times.policy += t3 - t2
        if model is not None and features is not None and degraded_code is None:
            verdicts = self._explain(verdicts, features, model)
        t4 = time.perf_counter()
        self.times.reasons += t4 - t3
        decided_at = dt.datetime.fromtimestamp(self.clock(), dt.UTC)
        degraded = degraded_code is not None
        decisions = [
            Decision(
                call_id=c.call_id,
                operator=c.operator,
                action=v.action,
                score=s,
                reasons=list(v.reasons),
                model_version=version,
                degraded=degraded,
                decided_at=decided_at,
                decision_id=decision_id(c.operator, c.call_id, version),
            )
            for c, v, s in zip(cdrs, verdicts, _clipped(scores), strict=True)
        ]
        self.times.policy += time.perf_counter() - t4
        self.times.calls += len(cdrs)
        return Outcome(decisions, verdicts, scores, features, contexts, degraded, shadow_scores)

    # -- stages --------------------------------------------------------------------------------

    def _read_state(
        self, cdrs: Sequence[Cdr], apply: bool
    ) -> tuple[np.ndarray | None, list[CallContext] | None, str | None]:
        with self._lock:
            now = time.monotonic()
            if not self._breaker.allows(now):
                if apply:
                    self._pending.add(cdrs)
                return None, None, policy.DEGRADED_STORE_UNAVAILABLE
            if apply and self._pending.cdrs:
                self._drain(now)
                if self._pending.cdrs:  # still down
                    self._pending.add(cdrs)
                    return None, None, policy.DEGRADED_STORE_UNAVAILABLE
            try:
                features, contexts = self.store.process(cdrs) if apply else self.store.screen(cdrs)
            except Exception as exc:  # noqa: BLE001 - any store failure fails open (e.g. Redis BUSY)
                if not isinstance(exc, StoreUnavailableError):
                    log.exception("feature store failed unexpectedly; failing open")
                log.warning("feature store unavailable (%s); failing open for %.1f s", exc, self._breaker.retry_interval_s)
                self._breaker.failed(time.monotonic())
                if apply:
                    self._pending.add(cdrs)
                return None, None, policy.DEGRADED_STORE_UNAVAILABLE
            self._breaker.succeeded()
        return features, contexts, None

    def _verdicts(
        self,
        cdrs: Sequence[Cdr],
        contexts: list[CallContext] | None,
        scores: np.ndarray,
        model: LoadedModel | None,
        degraded_code: str | None,
    ) -> list[Verdict]:
        if degraded_code is not None or contexts is None or model is None:
            code = degraded_code or policy.DEGRADED_MODEL_UNAVAILABLE
            if contexts is None:
                return [policy.degraded(c, code) for c in cdrs]
            # State is known but the model is not: the stateful rules still apply.
            out = []
            for c, ctx in zip(cdrs, contexts, strict=True):
                v = policy.state_rule(c, ctx)
                out.append(Verdict(v.action, (*v.reasons, Reason(code=code)), "rule") if v else policy.degraded(c, code))
            return out
        # policy.decide, unrolled: the rules, else the model's action as one of three shared
        # (immutable) verdicts, so the common case creates no object (a batch pays this per call).
        thresholds = model.card.thresholds
        cache: dict[str, tuple[float, float]] = {}
        state_rule, threshold_action = policy.state_rule, policy.threshold_action
        out = []
        for c, ctx, s in zip(cdrs, contexts, scores.tolist(), strict=True):
            v = state_rule(c, ctx)
            if v is None:
                t = cache.get(c.operator)
                if t is None:
                    t = cache[c.operator] = thresholds.for_operator(c.operator)
                v = _MODEL_VERDICTS[threshold_action(s, *t)]
            out.append(v)
        return out

    def _explain(self, verdicts: list[Verdict], features: np.ndarray, model: LoadedModel) -> list[Verdict]:
        for i, v in enumerate(verdicts):
            if v.source == "model" and v.action != "allow":
                try:
                    contrib = model.scorer.contributions(features[i])
                    found = top_reasons(
                        contrib, FEATURE_NAMES, features[i], REASON_CODES,
                        limit=self.top_reasons, missing_codes=MISSING_REASON_CODES,
                    )
                except Exception:  # reasons are an explanation, never a reason to fail the call
                    log.exception("reason codes failed for one row; decision kept without them")
                    continue
                verdicts[i] = Verdict(v.action, tuple(found), v.source)
        return verdicts


def _clipped(scores: np.ndarray) -> list[float]:
    """Scores as the decision reports them: in [0, 1], NaN as 0.

    >>> _clipped(np.array([-0.5, 0.25, 1.5, np.nan]))
    [0.0, 0.25, 1.0, 0.0]
    """
    # Plain Python: numpy's clip/nan_to_num cost ~15 us of fixed overhead per call, more
    # than this loop for any batch a request brings.
    return [min(s, 1.0) if s >= 0.0 else 0.0 for s in scores.tolist()]


def row_features(outcome: Outcome, i: int) -> dict[str, Any]:
    """Row ``i`` of a batch's features by name (for feed evidence and debugging)."""
    if outcome.features is None:
        return {}
    return dict(zip(FEATURE_NAMES, outcome.features[i].tolist(), strict=True))
