"""``InMemoryStore``: the pure-Python reference implementation of the feature store.

Same semantics as ``RedisStore`` (the contract suite runs against both), kept deliberately
plain: per-number lists sorted by start time, searched with ``bisect``. Used by replay
when no Redis is at hand and as the reference in tests. Not thread-safe.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from features._online import digest6
from features.assembly import RAW, R, assemble, start_ms
from features.contracts import Cdr, Subscriber
from features.definitions import DAY_MS, HISTORY_MS, SHORT_CALL_S, WINDOWS_MS
from features.errors import StoreListKindError
from features.registry_codec import OwnerHasher, pack, to_subscriber, unpack
from features.retention import EVENT_RETAIN_MS, RELATION_RETAIN_MS
from features.store import LIST_KINDS, CallContext, ListEntry, ListKind


@dataclass(slots=True)
class _Event:
    t: int
    key: tuple[str, str]
    b: str
    imei: str | None
    cell: str | None
    answered: bool
    duration: float


@dataclass(slots=True)
class _Timeline:
    """Events of one number sorted by start time (ties in arrival order)."""

    ts: list[int] = field(default_factory=list)
    events: list[_Event] = field(default_factory=list)

    def has(self, key: tuple[str, str], t: int) -> bool:
        lo, hi = bisect.bisect_left(self.ts, t), bisect.bisect_right(self.ts, t)
        return any(e.key == key for e in self.events[lo:hi])

    def window(self, lo: int, hi: int) -> list[_Event]:
        return self.events[bisect.bisect_left(self.ts, lo) : bisect.bisect_left(self.ts, hi)]

    def insert(self, e: _Event, retain: int) -> None:
        i = bisect.bisect_right(self.ts, e.t)
        self.ts.insert(i, e.t)
        self.events.insert(i, e)
        cut = bisect.bisect_left(self.ts, self.ts[-1] - retain)
        if cut:
            del self.ts[:cut], self.events[:cut]


_NEVER = -(2**62)


def _touch(relation: dict[str, tuple[int, int]], member: str, t: int, retain: int, trigger: bool | None = None) -> None:
    """Record a contact at t: keep the latest time and the latest distinct time before it.

    The second time makes ties exact: a call at t asks for a contact in [t - W, t), and
    when the latest contact is itself at t the answer is the one before it.
    Trimming only bounds memory; the retention exceeds every window by the lateness
    allowance, so when it runs changes no result. It runs when a member is added and
    ``trigger`` is None and the size is a multiple of 256 (numbers per IMEI), or
    ``trigger`` is true and the size is 256 or more (contacts: the callee digest ends in a
    zero byte); features/batch.lua applies the same rules.
    """
    added = member not in relation
    last, prev = relation.get(member, (_NEVER, _NEVER))
    if t > last:
        relation[member] = (t, last)
    elif last > t > prev:
        relation[member] = (last, t)
    size = len(relation)
    if added and (size % 256 == 0 if trigger is None else trigger and size >= 256):
        cut = max(v[0] for v in relation.values()) - retain
        for m in [m for m, v in relation.items() if v[0] < cut]:
            del relation[m]


def _before(relation: dict[str, tuple[int, int]] | None, member: str, t: int) -> int:
    """The latest recorded contact strictly before t, or _NEVER."""
    if relation is None:
        return _NEVER
    last, prev = relation.get(member, (_NEVER, _NEVER))
    if last < t:
        return last
    return prev if prev < t else _NEVER


class InMemoryStore:
    """The feature store in process memory."""

    def __init__(self, *, owner_hasher: OwnerHasher | None = None) -> None:
        self._owner_hash = owner_hasher or OwnerHasher()
        self._subs: dict[str, bytes] = {}
        self._owners: dict[bytes, int] = {}
        self._op_codes: dict[str, int] = {}
        self._op_names: dict[int, str] = {}
        self._lists: dict[str, dict[str, ListEntry]] = {k: {} for k in LIST_KINDS}
        self._out: dict[str, _Timeline] = {}
        self._in: dict[str, _Timeline] = {}
        self._contacts: dict[str, dict[str, tuple[int, int]]] = {}
        self._imei: dict[str, dict[str, tuple[int, int]]] = {}

    # --- calls -------------------------------------------------------------------------
    def screen(self, cdrs: Sequence[Cdr]) -> tuple[np.ndarray, list[CallContext]]:
        return self._run(cdrs, apply=False)

    def process(self, cdrs: Sequence[Cdr]) -> tuple[np.ndarray, list[CallContext]]:
        return self._run(cdrs, apply=True)

    def _run(self, cdrs: Sequence[Cdr], *, apply: bool) -> tuple[np.ndarray, list[CallContext]]:
        n = len(cdrs)
        t = start_ms(cdrs)
        raw = np.zeros((n, len(RAW)))
        registry: list[bytes | None] = [None] * n
        owners = [0] * n
        contexts: list[CallContext | None] = [None] * n
        for i in np.argsort(t, kind="stable").tolist():
            c, ti = cdrs[i], int(t[i])
            key = (c.operator, c.call_id)
            out = self._out.get(c.a_number)
            duplicate = out is not None and out.has(key, ti)
            self._aggregate(c, ti, raw[i])
            packed = registry[i] = self._subs.get(c.a_number)
            roaming = False
            if packed is not None:
                u = unpack(packed)
                roaming = u.roaming_country is not None
                if u.owner is not None:
                    owners[i] = self._owners.get(u.owner, 0)
            lists = {k: self._lists[k].get(c.a_number) for k in LIST_KINDS}
            active = {k: e if e is not None and e.active_at(ti) else None for k, e in lists.items()}
            contexts[i] = CallContext(
                in_registry=packed is not None, roaming=roaming,
                allow=active["allow"], block=active["block"], dno=active["dno"], duplicate=duplicate,
            )
            if apply and not duplicate:
                self._apply(c, ti, key)
        return assemble(cdrs, t, raw, registry, owners), [c for c in contexts if c is not None]

    def _aggregate(self, c: Cdr, t: int, row: np.ndarray) -> None:
        out = self._out.get(c.a_number)
        day = out.window(t - DAY_MS, t) if out is not None else []
        for w, width in WINDOWS_MS.items():
            events = [e for e in day if e.t >= t - width]
            row[R[f"calls_{w}"]] = len(events)
            row[R[f"distinct_callees_{w}"]] = len({e.b for e in events})
            if w != "10m":
                answered = [e for e in events if e.answered]
                a: float = len(answered)
                short: float = sum(e.duration < SHORT_CALL_S for e in events)
                dur: float = 0.0
                for e in answered:  # in time order, as features/_online.pyx sums
                    dur += e.duration
                row[R[f"answered_{w}"]] = a
                row[R[f"short_{w}"]] = short
                row[R[f"answered_duration_{w}"]] = dur
        row[R["callee_called_caller_before"]] = _before(self._contacts.get(c.b_number), c.a_number, t) >= t - HISTORY_MS
        row[R["caller_called_callee_before"]] = _before(self._contacts.get(c.a_number), c.b_number, t) >= t - HISTORY_MS
        inbound = self._in.get(c.a_number)
        row[R["inbound_calls_24h"]] = len(inbound.window(t - DAY_MS, t)) if inbound is not None else 0
        if c.a_imei is None:
            row[R["numbers_per_imei_24h"]] = row[R["imeis_per_number_24h"]] = np.nan
        else:
            on_imei = self._imei.get(c.a_imei, {})
            seen = {a for a in on_imei if _before(on_imei, a, t) >= t - DAY_MS}
            row[R["numbers_per_imei_24h"]] = len(seen | {c.a_number})
            row[R["imeis_per_number_24h"]] = len({e.imei for e in day if e.imei is not None} | {c.a_imei})
        if c.a_cell_id is None:
            row[R["distinct_cells_24h"]] = np.nan
        else:
            row[R["distinct_cells_24h"]] = len({e.cell for e in day if e.cell is not None} | {c.a_cell_id})

    def _apply(self, c: Cdr, t: int, key: tuple[str, str]) -> None:
        answered = bool(c.answered)
        duration = c.duration_s if c.duration_s is not None else 0.0
        event = _Event(t, key, c.b_number, c.a_imei, c.a_cell_id, answered, duration)
        self._out.setdefault(c.a_number, _Timeline()).insert(event, EVENT_RETAIN_MS)
        inbound = self._in.setdefault(c.b_number, _Timeline())
        if not inbound.has(key, t):
            inbound.insert(event, EVENT_RETAIN_MS)
        _touch(self._contacts.setdefault(c.a_number, {}), c.b_number, t, RELATION_RETAIN_MS,
               digest6(c.b_number.encode())[5] == 0)
        if c.a_imei is not None:
            _touch(self._imei.setdefault(c.a_imei, {}), c.a_number, t, EVENT_RETAIN_MS)

    # --- registry ----------------------------------------------------------------------
    def _op_code(self, operator: str) -> int:
        code = self._op_codes.get(operator)
        if code is None:
            code = self._op_codes[operator] = len(self._op_codes) + 1
            self._op_names[code] = operator
        return code

    def upsert_subscribers(self, subscribers: Iterable[Subscriber]) -> int:
        n = 0
        for sub in subscribers:
            owner = None if sub.owner_ref is None else self._owner_hash(sub.owner_ref)
            self._drop(sub.msisdn)
            self._subs[sub.msisdn] = pack(sub, self._op_code(sub.operator), owner)
            if owner is not None:
                self._owners[owner] = self._owners.get(owner, 0) + 1
            n += 1
        return n

    def _drop(self, msisdn: str) -> bool:
        old = self._subs.pop(msisdn, None)
        if old is None:
            return False
        owner = unpack(old).owner
        if owner is not None:
            left = self._owners[owner] - 1
            if left > 0:
                self._owners[owner] = left
            else:
                del self._owners[owner]
        return True

    def operator_code(self, operator: str) -> int:
        return self._op_code(operator)

    def upsert_packed(self, records: list[tuple[str, bytes, bytes]]) -> int:
        """Bulk path of ``features.registry_load``: (bucket, field, packed record) triples."""
        for b, f, packed in records:
            msisdn = f"{b}{f[0]:02d}"
            self._drop(msisdn)
            self._subs[msisdn] = packed
            owner = unpack(packed).owner
            if owner is not None:
                self._owners[owner] = self._owners.get(owner, 0) + 1
        return len(records)

    def delete_subscriber(self, msisdn: str) -> bool:
        return self._drop(msisdn)

    def get_subscriber(self, msisdn: str) -> Subscriber | None:
        packed = self._subs.get(msisdn)
        if packed is None:
            return None
        u = unpack(packed)
        return to_subscriber(u, msisdn, self._op_names[u.operator_code])

    # --- lists -------------------------------------------------------------------------
    def add_to_list(self, entry: ListEntry) -> None:
        self._kind(entry.list)[entry.number] = entry

    def remove_from_list(self, kind: ListKind, number: str) -> bool:
        return self._kind(kind).pop(number, None) is not None

    def list_entries(self, kind: ListKind) -> list[ListEntry]:
        entries = self._kind(kind)
        return [entries[n] for n in sorted(entries)]

    def _kind(self, kind: str) -> dict[str, ListEntry]:
        if kind not in self._lists:
            raise StoreListKindError(f"list {kind!r} is not one of {', '.join(LIST_KINDS)}")
        return self._lists[kind]

    # --- admin -------------------------------------------------------------------------
    def reset_number(self, number: str) -> int:
        gone = 0
        for state in (self._out, self._in, self._contacts):
            if state.pop(number, None) is not None:
                gone += 1
        return gone

    def number_summary(self, number: str) -> dict[str, Any]:
        out = self._out.get(number)
        inbound = self._in.get(number)
        contacts = self._contacts.get(number, {})
        last = max(out.ts[-1] if out and out.ts else -1, inbound.ts[-1] if inbound and inbound.ts else -1)
        day = out.window(last - DAY_MS, last + 1) if out is not None else []
        return {
            "as_of_ms": last if last >= 0 else None,
            "calls_24h": len(day),
            "distinct_callees_24h": len({e.b for e in day}),
            "answered_24h": sum(e.answered for e in day),
            "inbound_calls_24h": len(inbound.window(last - DAY_MS, last + 1)) if inbound is not None else 0,
            "contacts_30d": sum(1 for v in contacts.values() if v[0] >= last - HISTORY_MS),
            "in_registry": number in self._subs,
            "lists": sorted(k for k in LIST_KINDS if number in self._lists[k]),
        }

    def ping(self) -> bool:
        return True
