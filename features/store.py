"""The online feature store: one protocol, two implementations, one contract test suite.

``InMemoryStore`` (``features/memstore.py``) is the pure-Python reference, used by replay
without Redis; ``RedisStore`` (``features/redisstore.py``) keeps the same state in Redis
with one Lua script call per batch. Both compute the features of
``features.definitions`` exactly as the offline builder does (point-in-time).

Semantics shared by both (the contract suite in ``tests/features/test_store_contract.py``
holds them to it):

* ``process(cdrs)`` handles completed calls in start-time order (ties keep input order);
  each call gets its features as of its own ``start_time`` (earlier calls of the same
  batch included, calls with the same start time excluded), then is applied to the state.
* A call is identified by ``operator`` + ``call_id``. Applying it again changes nothing
  and its context says ``duplicate=True``.
* ``screen(cdrs)`` computes the same features for calls at setup and changes nothing.
* List entries are looked up for the call's ``a_number``; an entry whose ``expires_at`` is
  at or before the call's ``start_time`` is absent (event time, so replays are exact).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol, runtime_checkable

import numpy as np

from features.contracts import Cdr, Subscriber

ListKind = Literal["block", "allow", "dno"]
LIST_KINDS: Final[tuple[ListKind, ...]] = ("block", "allow", "dno")


@dataclass(frozen=True, slots=True)
class ListEntry:
    """One number on the blocklist, the allow-list or the do-not-originate list.

    ``block``: confirmed fraud numbers (``source`` says who confirmed). ``allow``: operator
    service numbers, bank OTP senders, licensed gateways (``owner`` says whose).
    ``dno``: inbound-only numbers such as bank hotlines; a call presenting one is spoofed.
    Times are epoch milliseconds; ``expires_at=None`` never expires.
    """

    number: str
    list: ListKind
    source: str
    reason: str
    owner: str
    added_at: int
    expires_at: int | None = None

    def active_at(self, t_ms: int) -> bool:
        """True unless the entry has expired at ``t_ms``.

        >>> ListEntry("+77011234567", "block", "bank", "x", "", 0, 10).active_at(10)
        False
        """
        return self.expires_at is None or self.expires_at > t_ms


@dataclass(frozen=True, slots=True)
class CallContext:
    """What the policy needs beside the features, read in the same round trip."""

    in_registry: bool
    roaming: bool
    allow: ListEntry | None
    block: ListEntry | None
    dno: ListEntry | None
    duplicate: bool


@runtime_checkable
class FeatureStore(Protocol):
    """The seam between the engine and the state. Matrices are float64, C-contiguous,
    shape ``(len(cdrs), len(FEATURE_NAMES))``, NaN for missing, rows in input order."""

    def screen(self, cdrs: Sequence[Cdr]) -> tuple[np.ndarray, list[CallContext]]:
        """Features of calls at setup time; read-only."""
        ...

    def process(self, cdrs: Sequence[Cdr]) -> tuple[np.ndarray, list[CallContext]]:
        """Features of completed calls as of their start, then apply them (idempotent)."""
        ...

    def upsert_subscribers(self, subscribers: Iterable[Subscriber]) -> int:
        """Insert or replace registry records (a later record replaces the earlier)."""
        ...

    def delete_subscriber(self, msisdn: str) -> bool:
        """Remove a number from the registry; False if it was not held."""
        ...

    def get_subscriber(self, msisdn: str) -> Subscriber | None:
        """The registry record as stored (``owner_ref`` comes back as its keyed digest)."""
        ...

    def add_to_list(self, entry: ListEntry) -> None:
        """Add or replace an entry; applies to the next call."""
        ...

    def remove_from_list(self, kind: ListKind, number: str) -> bool:
        """Remove an entry; False if absent."""
        ...

    def list_entries(self, kind: ListKind) -> list[ListEntry]:
        """All entries of one list, expired ones included, sorted by number."""
        ...

    def reset_number(self, number: str) -> int:
        """Forget the per-number state of ``number``; returns how many structures went."""
        ...

    def number_summary(self, number: str) -> dict[str, Any]:
        """Feature-like summary of one number's state for analysts (no raw callee numbers)."""
        ...

    def ping(self) -> bool:
        """True when the store answers."""
        ...
