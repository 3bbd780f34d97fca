"""feed/1 events from decisions: who is reported, pseudonymised, once per number, day and level."""

from __future__ import annotations

import datetime as dt

import pytest

from features.contracts import Cdr, Decision, FeedEntry, Reason, decode, encode
from features.definitions import FEATURE_NAMES, INDEX
from features.pseudonym import KeyedHasher
from models.feed import FeedTracker, typology_of

T0 = dt.datetime(2026, 11, 20, 8, tzinfo=dt.UTC)
HASHER = KeyedHasher(b"tests-only-feed-key-0123456789abcdef", "feed")


def cdr(i: int = 0, a: str = "+77011234567", day: int = 0) -> Cdr:
    return Cdr(call_id=f"c{i}", operator="kcell", start_time=T0 + dt.timedelta(days=day, seconds=i),
               a_number=a, b_number="+77021234567", ingress="mobile")


def decision(action: str, codes: list[str], score: float = 0.95, degraded: bool = False) -> Decision:
    return Decision(call_id="c", operator="kcell", action=action, score=score,  # type: ignore[arg-type]
                    reasons=[Reason(code=c) for c in codes], model_version="v1", degraded=degraded, decided_at=T0)


@pytest.mark.parametrize(("d", "expected"), [
    (decision("block", ["SPOOFED_DOMESTIC_CLI"]), ("spoofing", "rule")),
    (decision("block", ["BLOCKLISTED"]), ("other", "rule")),
    (decision("warn", ["SHORT_CALLS_1H", "NEW_SIM"]), ("wangiri", "model")),
    (decision("block", ["MANY_SIMS_PER_DEVICE"]), ("simbox", "model")),
    (decision("allow", ["ALLOWLISTED"]), None),
    (decision("allow", ["EMERGENCY_CALLEE"]), None),
    (decision("allow", ["DEGRADED_STORE_UNAVAILABLE"], degraded=True), None),
    (decision("allow", []), None),
])
def test_typology(d: Decision, expected: tuple[str, str] | None) -> None:
    assert typology_of(d) == expected


def test_once_per_number_day_and_level_pseudonymised() -> None:
    feed = FeedTracker(HASHER)
    x = [float("nan")] * len(FEATURE_NAMES)
    x[INDEX["calls_24h"]], x[INDEX["distinct_callees_24h"]] = 41.0, 37.0
    first = feed.observe(cdr(0), decision("warn", ["HIGH_CALL_RATE_1H"], 0.6), x)
    assert first is not None
    assert first.number == HASHER.digest("+77011234567") and first.typology == "robocall"
    assert (first.confidence, first.source, first.status) == (60, "model", "suspected")
    assert (first.evidence.calls, first.evidence.distinct_callees) == (42, 38)
    assert decode(FeedEntry, encode(first)) == first  # a valid feed/1 record
    assert feed.observe(cdr(1), decision("warn", ["HIGH_CALL_RATE_1H"], 0.7), x) is None  # same day, same level
    second = feed.observe(cdr(2), decision("block", ["HIGH_CALL_RATE_1H"], 0.95), x)  # escalation
    assert second is not None and second.seq > first.seq
    assert feed.observe(cdr(3), decision("block", ["BLOCKLISTED"]), x) is None
    assert feed.observe(cdr(4, day=1), decision("block", ["BLOCKLISTED"]), None) is not None  # next day
    assert feed.observe(cdr(5, a="+77019999999"), decision("allow", []), x) is None


def test_clear_numbers_only_when_asked() -> None:
    e = FeedTracker(None, clear_numbers=True).observe(cdr(), decision("block", ["INVALID_CLI"]), None)
    assert e is not None and e.number == "+77011234567"
    with pytest.raises(ValueError, match="KeyedHasher"):
        FeedTracker(None)
    with pytest.raises(ValueError, match="purpose 'feed'"):
        FeedTracker(KeyedHasher(b"k" * 32, "log"))
