"""The engine: one batch -> features, one predictor call, policy, state update; fail-open on outages."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import pytest

from features.contracts import Cdr
from features.definitions import FEATURE_NAMES, INDEX
from features.errors import StoreUnavailableError
from features.store import CallContext, ListEntry
from models.engine import Engine, decision_id
from models import policy
from models.registry import LoadedModel as Loaded
from models.registry import Thresholds
from tests.models.tiny_model import card, loaded

T0 = dt.datetime(2026, 11, 20, 8, tzinfo=dt.UTC)


class StubStore:
    """A failure-injecting test double of the FeatureStore seam: features are the number's
    earlier applied calls (calls_1h), lists are fixed. Not a model of the real store."""

    def __init__(self) -> None:
        self.applied: dict[tuple[str, str], Cdr] = {}
        self.down = False
        self.calls = 0
        self.lists: dict[str, ListEntry] = {}

    def _rows(self, cdrs: Sequence[Cdr], apply: bool) -> tuple[np.ndarray, list[CallContext]]:
        self.calls += 1
        if self.down:
            raise StoreUnavailableError("stub store is down")
        X = np.full((len(cdrs), len(FEATURE_NAMES)), np.nan)
        ctxs = []
        for i, c in enumerate(cdrs):
            key = (c.operator, c.call_id)
            X[i, INDEX["calls_1h"]] = sum(1 for a in self.applied.values() if a.a_number == c.a_number and a.start_time < c.start_time)
            e = self.lists.get(c.a_number)
            ctxs.append(CallContext(
                in_registry=True, roaming=False,
                allow=e if e and e.list == "allow" else None,
                block=e if e and e.list == "block" else None,
                dno=e if e and e.list == "dno" else None,
                duplicate=key in self.applied,
            ))
            if apply:
                self.applied.setdefault(key, c)
        return X, ctxs

    def screen(self, cdrs: Sequence[Cdr]) -> tuple[np.ndarray, list[CallContext]]:
        return self._rows(cdrs, False)

    def process(self, cdrs: Sequence[Cdr]) -> tuple[np.ndarray, list[CallContext]]:
        return self._rows(cdrs, True)


@pytest.fixture(scope="module")
def model() -> Loaded:
    return loaded("v1", {"tele2": (0.99, 0.999)})


def calls(n: int, a: str = "+77011234567", operator: str = "kcell", b: str = "+77021234567", ingress: str = "mobile", prefix: str = "c") -> list[Cdr]:
    return [Cdr(call_id=f"{prefix}{i}", operator=operator, start_time=T0 + dt.timedelta(seconds=i), a_number=a,
                b_number=b, ingress=ingress, answered=False, duration_s=0.0, ring_s=1.0) for i in range(n)]  # type: ignore[arg-type]


class Clock:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


def test_one_decision_per_call_with_deterministic_ids(model: Loaded) -> None:
    store = StubStore()
    engine = Engine(store, model, clock=Clock())  # type: ignore[arg-type]
    batch = calls(30)
    decisions = engine.process(batch)
    assert store.calls == 1  # one store call per batch
    assert [(d.operator, d.call_id) for d in decisions] == [(c.operator, c.call_id) for c in batch]
    assert [d.decision_id for d in decisions] == [decision_id("kcell", f"c{i}", "v1") for i in range(30)]
    assert decisions[0].decided_at == dt.datetime.fromtimestamp(1_800_000_000.0, dt.UTC)
    # the model learned "more than 20 earlier calls is fraud": early calls pass, late ones are blocked
    assert decisions[0].action == "allow" and decisions[29].action == "block"
    assert decisions[0].reasons == [] and decisions[29].reasons[0].code == "HIGH_CALL_RATE_1H"
    assert all(not d.degraded and d.model_version == "v1" and 0 <= d.score <= 1 for d in decisions)
    # a redelivered batch gets the same ids and applies nothing twice
    again = engine.process(batch)
    assert [d.decision_id for d in again] == [d.decision_id for d in decisions]
    assert len(store.applied) == 30


def test_verdicts_are_the_policys(model: Loaded) -> None:
    """The engine's policy step (decide unrolled, shared verdicts) gives policy.decide's verdict
    for every call: each rule, each model action, per-operator thresholds."""
    store = StubStore()
    store.lists["+77019999999"] = ListEntry("+77019999999", "allow", "ops", "gateway", "kcell", 0)
    batch = (calls(30) + calls(30, operator="tele2", prefix="t") + calls(1, b="112", prefix="e")
             + calls(1, a="+71234567890", prefix="f") + calls(1, ingress="voip", prefix="v")
             + calls(1, a="+77019999999", prefix="x"))
    scores = model.scorer.predict(StubStore().process(batch[:30])[0])
    low, high = float(np.min(scores)), float(np.max(scores))
    assert low < high
    # kcell's calls are allowed or blocked by the model; tele2's thresholds warn on the lowest score
    tuned = Loaded(card("v1", Thresholds(0.5, 0.9, {"tele2": (low, high)})), model.scorer)
    out = Engine(store, tuned).evaluate(batch, apply=True)  # type: ignore[arg-type]
    assert out.contexts is not None
    for c, ctx, s, v in zip(batch, out.contexts, out.scores.tolist(), out.verdicts, strict=True):
        want = policy.decide(c, ctx, s, tuned.card.thresholds.for_operator(c.operator))
        assert (v.action, v.source) == (want.action, want.source)
        if want.source != "model" or want.action == "allow":  # model warn/block get reason codes added
            assert v == want
    by_source = {(v.source, v.action) for v in out.verdicts}
    assert {("model", "allow"), ("model", "warn"), ("model", "block"), ("rule", "allow"), ("rule", "block")} <= by_source


def test_per_operator_thresholds(model: Loaded) -> None:
    store = StubStore()
    engine = Engine(store, model)  # type: ignore[arg-type]
    assert engine.process(calls(30, operator="tele2"))[29].action == "allow"  # block at 0.999 only


def test_rules_win_and_screen_is_read_only(model: Loaded) -> None:
    store = StubStore()
    store.lists["+77019999999"] = ListEntry("+77019999999", "block", "bank", "confirmed", "", 0)
    engine = Engine(store, model)  # type: ignore[arg-type]
    d = engine.screen(calls(1, a="+77019999999"))[0]
    assert (d.action, d.reasons[0].code) == ("block", "BLOCKLISTED")
    d = engine.screen(calls(1, ingress="voip"))[0]
    assert (d.action, d.reasons[0].code) == ("block", "SPOOFED_DOMESTIC_CLI")
    assert store.applied == {}


def test_store_outage_fails_open_then_catches_up(model: Loaded) -> None:
    store = StubStore()
    engine = Engine(store, model, retry_interval_s=60.0)  # type: ignore[arg-type]
    engine.process(calls(5))
    store.down = True
    batch = calls(10, prefix="d")[5:] + calls(1, b="112", prefix="e") + calls(1, a="+71234567890", prefix="f")
    out = engine.process(batch)
    assert all(d.degraded for d in out)
    assert [d.action for d in out] == ["allow"] * 6 + ["block"]  # the emergency call allowed, forged CLI blocked
    assert out[0].reasons[0].code == "DEGRADED_STORE_UNAVAILABLE"
    assert out[5].reasons[0].code == "EMERGENCY_CALLEE"
    # the breaker is open: the next batch does not wait for the store at all
    before = store.calls
    assert all(d.degraded for d in engine.process(calls(3, prefix="g")))
    assert store.calls == before and engine.pending == len(batch) + 3
    # the store returns: queued calls are applied first, so counters equal a recomputation
    store.down = False
    engine._breaker.open_until = 0.0  # the retry interval has passed
    d = engine.process(calls(1, prefix="h"))[0]
    assert not d.degraded and engine.pending == 0
    assert len(store.applied) == 5 + len(batch) + 3 + 1


def test_missing_or_failing_model_allows_but_rules_and_state_still_apply(model: Loaded) -> None:
    store = StubStore()
    store.lists["+77019999999"] = ListEntry("+77019999999", "block", "bank", "confirmed", "", 0)
    engine = Engine(store, None)  # type: ignore[arg-type]
    out = engine.process(calls(25) + calls(1, a="+77019999999", prefix="x"))
    assert all(d.degraded and d.model_version == "none" for d in out)
    assert {d.action for d in out[:25]} == {"allow"} and out[25].action == "block"
    assert out[0].reasons[0].code == "DEGRADED_MODEL_UNAVAILABLE"
    assert len(store.applied) == 26

    class Broken:
        def predict(self, X: np.ndarray) -> np.ndarray:
            raise RuntimeError("kernel fault")

    engine.swap_model(Loaded(card("v2", model.card.thresholds), Broken()))  # type: ignore[arg-type]
    d = engine.process(calls(1, prefix="y"))[0]
    assert (d.action, d.degraded, d.model_version) == ("allow", True, "v2")
    engine.swap_model(model)  # type: ignore[arg-type]
    assert engine.process(calls(1, prefix="z"))[0].model_version == "v1"


def test_deadline_passed_is_degraded(model: Loaded) -> None:
    engine = Engine(StubStore(), model)  # type: ignore[arg-type]
    d = engine.screen(calls(1), deadline=0.0)[0]
    assert (d.action, d.degraded, d.reasons[0].code) == ("allow", True, "DEGRADED_DEADLINE")
