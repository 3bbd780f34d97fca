"""Number-level `feed/1` events (status ``suspected``) from the engine's per-call decisions.

A number enters the feed when one of its calls is warned or blocked by the model, or when a
rule that accuses the caller fires (blocklist, do-not-originate, spoofed CLI, invalid or
unallocated CLI). To keep the feed from flooding, a number is reported at most once per
UTC day and level (a later ``block`` after a ``warn`` the same day is reported again,
because it raises the confidence). The dedup memory is per process and bounded; after a
restart a number may be reported once more that day, which a cursor consumer tolerates
(same number, same status).

Numbers are pseudonymised with the feed :class:`~features.pseudonym.KeyedHasher` (the key
the bank holds) unless the tracker is built with ``clear_numbers=True``. Evidence carries
counts only, never callee numbers.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Final, Literal

from features.contracts import Cdr, Decision, Evidence, FeedEntry
from features.definitions import INDEX
from features.pseudonym import KeyedHasher
from models import policy

Typology = Literal["spoofing", "vishing", "simbox", "wangiri", "robocall", "irsf", "other"]

# Rules that say something about the caller (the callee and allow-list rules do not).
ACCUSING_RULES: Final[dict[str, Typology]] = {
    policy.BLOCKLISTED: "other",
    policy.DO_NOT_ORIGINATE: "spoofing",
    policy.SPOOFED_DOMESTIC_CLI: "spoofing",
    policy.INVALID_CLI: "spoofing",
    policy.UNALLOCATED_CLI: "spoofing",
}
# The model's leading reason code hints at the typology.
_MODEL_TYPOLOGY: Final[tuple[tuple[str, Typology], ...]] = (
    ("DOMESTIC_CLI_FOREIGN_TRUNK", "spoofing"),
    ("SUSPICIOUS_INGRESS", "spoofing"),
    ("MANY_SIMS_PER_DEVICE", "simbox"),
    ("MANY_DEVICES_PER_NUMBER", "simbox"),
    ("STATIC_OR_MOVING_CELL", "simbox"),
    ("SHORT_CALLS", "wangiri"),
    ("ANSWER_PATTERN", "wangiri"),
    ("HIGH_CALL_RATE", "robocall"),
    ("HIGH_DISTINCT_CALLEES", "robocall"),
    ("NEW_SIM", "vishing"),
    ("UNVERIFIED_BIOMETRICS", "vishing"),
    ("RECENTLY_VERIFIED", "vishing"),
)
VALID_FOR: Final = dt.timedelta(days=7)
_RULE_CONFIDENCE: Final = 90


def typology_of(decision: Decision) -> tuple[Typology, Literal["model", "rule"]] | None:
    """The typology and source a decision implies for its caller, or None when it accuses nobody."""
    for reason in decision.reasons:
        if reason.code in ACCUSING_RULES:
            return ACCUSING_RULES[reason.code], "rule"
    if decision.action == "allow" or decision.degraded:
        return None
    for reason in decision.reasons:
        for prefix, typology in _MODEL_TYPOLOGY:
            if reason.code.startswith(prefix):
                return typology, "model"
    return "other", "model"


class FeedTracker:
    """Turns decisions into deduplicated `feed/1` entries; see the module docstring."""

    def __init__(
        self,
        hasher: KeyedHasher | None,
        *,
        clear_numbers: bool = False,
        memory: int = 1_000_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if hasher is None and not clear_numbers:
            raise ValueError("FeedTracker needs the feed KeyedHasher unless clear_numbers=True")
        if hasher is not None and hasher.purpose != "feed":
            raise ValueError(f"FeedTracker needs a hasher of purpose 'feed', got {hasher.purpose!r}")
        self._hasher = hasher
        self._clear = clear_numbers
        self._memory = memory
        self._seen: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._clock = clock
        self._last_seq = 0

    def _next_seq(self) -> int:
        # Microseconds since the epoch, forced strictly increasing: unique across restarts
        # of one producer without a shared counter.
        self._last_seq = max(self._last_seq + 1, int(self._clock() * 1_000_000))
        return self._last_seq

    def observe(self, cdr: Cdr, decision: Decision, features: Sequence[float] | None) -> FeedEntry | None:
        """The feed entry this decision triggers, or None (nothing to report, or already reported today)."""
        found = typology_of(decision)
        if found is None:
            return None
        typology, source = found
        level = 2 if decision.action == "block" else 1
        day = cdr.start_time.astimezone(dt.UTC).date().isoformat()
        key = (cdr.a_number, day)
        if self._seen.get(key, 0) >= level:
            return None
        self._seen[key] = level
        self._seen.move_to_end(key)
        while len(self._seen) > self._memory:
            self._seen.popitem(last=False)
        confidence = _RULE_CONFIDENCE if source == "rule" else int(round(decision.score * 100))
        calls = distinct = 0
        if features is not None:
            calls = _count(features[INDEX["calls_24h"]]) + 1  # the window excludes this call
            distinct = _count(features[INDEX["distinct_callees_24h"]]) + 1
        number = cdr.a_number if self._clear or self._hasher is None else self._hasher.digest(cdr.a_number)
        return FeedEntry(
            seq=self._next_seq(),
            number=number,
            status="suspected",
            typology=typology,
            confidence=max(0, min(100, confidence)),
            first_seen=cdr.start_time,
            last_seen=cdr.start_time,
            valid_until=cdr.start_time + VALID_FOR,
            source=source,
            evidence=Evidence(calls=calls, distinct_callees=distinct, operators=1),
        )


def _count(value: float) -> int:
    return int(value) if value == value and value >= 0 else 0  # NaN -> 0
