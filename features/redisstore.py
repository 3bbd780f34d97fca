"""``RedisStore``: the feature store in Redis, one round trip per batch of calls.

The client packs each call into one string (its fixed-width event record, caller, IMEI,
callee), sends the batch as ``EVALSHA`` calls of up to ``SCRIPT_CALLS`` calls each in one
round trip, and reads back one string of doubles (``numpy.frombuffer``), each caller's
packed history of own calls (one bulk string per caller and script), the registry records
and list hits. The caller's own-call windows (counts, distinct callees, shares, durations,
IMEIs, cells: full 24 h) are computed here, in ``features/_online.pyx``, from that history
plus the calls the script applied before each call; Redis does the rest (dedup, inbound
counts, relations, registry, lists) with a few commands per call and no per-event loop.
The script (``features/batch.lua``) reads and applies its calls in start-time order atomically; a
batch interrupted by a Redis outage is applied up to some script boundary, and its retry
is exact because applying a call twice changes nothing. The key layout is specified in the
README ("Feature store key layout").
"""

from __future__ import annotations

import functools
import hashlib
import struct
from collections.abc import Iterable, Sequence
from importlib import resources
from typing import Any, Final

import msgspec
import numpy as np
import redis
from redis.exceptions import BusyLoadingError, NoScriptError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from features._online import COLUMNS, RECORD, raw_aggregates
from features.assembly import RAW, assemble, start_ms
from features.contracts import Cdr, Subscriber
from features.definitions import DAY_MS, HISTORY_MS, HOUR_MS, SHORT_CALL_S, WINDOWS_MS
from features.errors import StoreListKindError, StoreRecordError, StoreUnavailableError
from features.registry_codec import OwnerHasher, bucket, pack, to_subscriber, unpack
from features.retention import (
    EVENT_RETAIN_MS,
    EVENT_TTL_MS,
    RELATION_RETAIN_MS,
    RELATION_TTL_MS,
)
from features.store import LIST_KINDS, CallContext, ListEntry, ListKind

_MIN10_MS: Final = WINDOWS_MS["10m"]
if COLUMNS != RAW:  # pragma: no cover - guards a RAW change without a kernel change
    raise ImportError("features/_online.pyx computes other columns than features.assembly.RAW; rebuild it")
_UNAVAILABLE: Final = (RedisConnectionError, RedisTimeoutError, BusyLoadingError)
_ENTRY_DECODER: Final = msgspec.json.Decoder(ListEntry)
_PACK_RECORD: Final = struct.Struct(">6s6sBd6s6s6s").pack  # the 39-byte event record (batch.lua, _online.pyx)
_ZERO6: Final = bytes(6)
_INBOUND: Final = 12  # bytes per cs:in: record: u48 start ms, call key digest
_LEN: Final = [bytes((k,)) for k in range(256)]
# CallContext is frozen, so calls on no list share one of these eight instances.
_PLAIN: Final = {
    (held, roaming, dup): CallContext(held, roaming, None, None, None, dup)
    for held in (False, True) for roaming in (False, True) for dup in (False, True)
}
SCRIPT_CALLS: Final = 100
"""Calls per batch script: each script blocks Redis while it runs (~1-5 ms for 100 calls),
so a worker batch of thousands is split into several scripts sent in one round trip,
letting the API's screening calls run in between."""
UPSERT_CHUNK: Final = 1000  # records per script call: ~1-3 ms of Redis time, short enough not to stall screening


def _h6(value: str) -> bytes:
    """48-bit digest of call keys, IMEIs and cells *inside* one number's state (never as a key
    name): collisions there are ~n^2/2^49, negligible for the hundreds of values one key holds."""
    return hashlib.blake2b(value.encode(), digest_size=6).digest()


@functools.lru_cache(maxsize=1 << 16)
def _h6_cached(value: str) -> bytes:
    """``_h6`` for IMEIs and cells, which repeat from call to call (call keys never do)."""
    return _h6(value)


def _script(name: str) -> str:
    return resources.files("features").joinpath(name).read_text(encoding="utf-8")


class RedisStore:
    """The feature store in Redis. ``client`` needs explicit socket timeouts (the caller's
    choice); every Redis failure surfaces as ``StoreUnavailableError``."""

    def __init__(
        self, client: redis.Redis, prefix: str = "cs:", *, owner_hasher: OwnerHasher | None = None
    ) -> None:
        self._r = client
        self._p = prefix
        self._pb = prefix.encode()
        self._owner_hash = owner_hasher or OwnerHasher()
        self._batch = _script("batch.lua")
        self._registry = _script("registry.lua")
        self._lists = _script("lists.lua")
        self._indexed = False
        self._sha: dict[str, str] = {}
        self._op_codes: dict[str, int] = {}
        self._head = [self._pb, b"", str(EVENT_RETAIN_MS).encode(), str(RELATION_RETAIN_MS).encode(),
                      str(EVENT_TTL_MS).encode(), str(RELATION_TTL_MS).encode()]

    # --- plumbing ----------------------------------------------------------------------
    def _eval(self, source: str, args: Sequence[Any]) -> Any:
        try:
            sha = self._sha.get(source)
            if sha is None:
                sha = self._sha[source] = self._r.script_load(source)
            try:
                return self._r.evalsha(sha, 0, *args)
            except NoScriptError:  # the server restarted or flushed its script cache
                self._sha[source] = self._r.script_load(source)
                return self._r.evalsha(self._sha[source], 0, *args)
        except _UNAVAILABLE as exc:
            raise StoreUnavailableError(f"feature store: Redis unavailable ({type(exc).__name__})") from exc

    def _eval_many(self, source: str, arg_lists: Sequence[Sequence[Any]]) -> list[Any]:
        """Several script calls in one round trip (a pipeline, not a transaction: other
        clients' commands may run between the scripts, which is the point)."""
        if len(arg_lists) == 1:  # one script (the API's one-call screening): no pipeline object
            return [self._eval(source, arg_lists[0])]
        try:
            for attempt in (0, 1):
                sha = self._sha.get(source)
                if sha is None:
                    sha = self._sha[source] = self._r.script_load(source)
                pipe = self._r.pipeline(transaction=False)
                for args in arg_lists:
                    pipe.evalsha(sha, 0, *args)
                try:
                    return list(pipe.execute())
                except NoScriptError:  # flushed script cache: reload; re-running is idempotent
                    if attempt:
                        raise
                    del self._sha[source]
            raise AssertionError("unreachable")  # pragma: no cover
        except _UNAVAILABLE as exc:
            raise StoreUnavailableError(f"feature store: Redis unavailable ({type(exc).__name__})") from exc

    def _call(self, method: str, *args: Any) -> Any:
        try:
            return getattr(self._r, method)(*args)
        except _UNAVAILABLE as exc:
            raise StoreUnavailableError(f"feature store: Redis unavailable ({type(exc).__name__})") from exc

    # --- calls -------------------------------------------------------------------------
    def screen(self, cdrs: Sequence[Cdr]) -> tuple[np.ndarray, list[CallContext]]:
        return self._run(cdrs, apply=False)

    def process(self, cdrs: Sequence[Cdr]) -> tuple[np.ndarray, list[CallContext]]:
        return self._run(cdrs, apply=True)

    def _run(self, cdrs: Sequence[Cdr], *, apply: bool) -> tuple[np.ndarray, list[CallContext]]:
        n = len(cdrs)
        t = start_ms(cdrs)
        if n == 0:
            return assemble(cdrs, t, np.zeros((0, len(RAW))), [], []), []
        if int(t.min()) < 0 or int(t.max()) >= 1 << 48:
            raise StoreRecordError("cdr: start_time must lie between 1970 and the year 10000 (48-bit milliseconds)")
        if not self._indexed:  # lists written before the list index existed: build it once
            self._eval(self._lists, [self._pb, b"index"])
            self._indexed = True
        order = np.argsort(t, kind="stable")
        head = self._head.copy()
        head[1] = b"1" if apply else b"0"
        args: list[bytes] = []
        records: list[bytes] = []
        group = np.empty(n, np.int64)  # index of the caller's history among all scripts' histories
        callers: dict[bytes, int] = {}
        base = 0
        ts = t.tolist()
        positions = order.tolist()
        for pos, i in enumerate(positions):
            if pos % SCRIPT_CALLS == 0:  # each script returns the histories of its own callers
                base += len(callers)
                callers = {}
            c = cdrs[i]
            a = c.a_number.encode()
            g = callers.get(a)
            if g is None:
                g = callers[a] = len(callers)
            group[pos] = base + g
            flags = 1 if c.answered else 0
            imei = cell = _ZERO6
            raw_imei = b""
            if c.a_imei is not None:
                flags |= 2
                raw_imei = c.a_imei.encode()
                imei = _h6_cached(c.a_imei)
            if c.a_cell_id is not None:
                flags |= 4
                cell = _h6_cached(c.a_cell_id)
            record = _PACK_RECORD(
                ts[i].to_bytes(6, "big"), _h6(c.operator + "\x00" + c.call_id), flags,
                0.0 if c.duration_s is None else c.duration_s, imei, cell, _h6_cached(c.b_number),
            )
            records.append(record)
            args.append(b"".join((record, _LEN[len(a)], a, _LEN[len(raw_imei)], raw_imei, c.b_number.encode())))
        replies = self._eval_many(
            self._batch, [head + args[k : k + SCRIPT_CALLS] for k in range(0, n, SCRIPT_CALLS)]
        )
        histories = [h for r in replies for h in r[1]]
        if len(histories) != base + len(callers):
            raise StoreRecordError(
                f"feature store: the batch script returned {len(histories)} caller histories for "
                f"{base + len(callers)} callers; fix: make features/batch.lua and RedisStore the same version"
            )
        offsets = np.zeros(len(histories) + 1, np.int64)
        np.cumsum([len(h) for h in histories], out=offsets[1:])
        raw, duplicate, owners = raw_aggregates(
            b"".join(records), group, b"".join(r[0] for r in replies), b"".join(histories), offsets, order,
            DAY_MS, HOUR_MS, _MIN10_MS, SHORT_CALL_S,
        )
        reg_sorted = [x for r in replies for x in r[2]]
        list_hits = [(k * SCRIPT_CALLS + int(r[3][j]), r[3][j + 1], r[3][j + 2])
                     for k, r in enumerate(replies) for j in range(0, len(r[3]), 3)]
        registry: list[bytes | None] = [None] * n
        for pos, i in enumerate(positions):
            registry[i] = reg_sorted[pos] or None
        hits: dict[int, dict[str, ListEntry]] = {}
        for pos, kind, entry in list_hits:
            i = positions[pos - 1]
            hits.setdefault(i, {})[kind.decode()] = _ENTRY_DECODER.decode(entry)
        contexts = []
        dup = duplicate.tolist()
        for i in range(n):
            packed = registry[i]
            held = packed is not None
            roaming = held and bool(packed[0] & 32)  # type: ignore[index]
            found = hits.get(i)
            if found is None:  # the common case: a shared immutable context
                contexts.append(_PLAIN[held, roaming, dup[i]])
                continue
            ti = int(t[i])
            active = {k: e if e.active_at(ti) else None for k, e in found.items()}
            contexts.append(CallContext(
                in_registry=held, roaming=roaming,
                allow=active.get("allow"), block=active.get("block"), dno=active.get("dno"),
                duplicate=dup[i],
            ))
        return assemble(cdrs, t, raw, registry, owners.tolist()), contexts

    # --- registry ----------------------------------------------------------------------
    def _op_code(self, operator: str) -> int:
        code = self._op_codes.get(operator)
        if code is None:
            script = (
                "local c = redis.call('HGET', KEYS[1], ARGV[1]) if c then return tonumber(c) end "
                "c = redis.call('HINCRBY', KEYS[3], 'next', 1) "
                "redis.call('HSET', KEYS[1], ARGV[1], c) redis.call('HSET', KEYS[2], c, ARGV[1]) return c"
            )
            try:
                code = int(self._r.eval(script, 3, self._p + "opcode", self._p + "opname", self._p + "opseq",
                                        operator))
            except _UNAVAILABLE as exc:
                raise StoreUnavailableError(f"feature store: Redis unavailable ({type(exc).__name__})") from exc
            self._op_codes[operator] = code
        return code

    def upsert_subscribers(self, subscribers: Iterable[Subscriber]) -> int:
        records = []
        for sub in subscribers:
            owner = None if sub.owner_ref is None else self._owner_hash(sub.owner_ref)
            b, f = bucket(sub.msisdn)
            records.append((b, f, pack(sub, self._op_code(sub.operator), owner)))
        return self.upsert_packed(records)

    def upsert_packed(self, records: Sequence[tuple[str, bytes, bytes]]) -> int:
        """Bulk path for loaders: (bucket, field, packed record) triples, already validated.

        Records are grouped by bucket (a stable sort: a later record for a number still wins)
        so that one HMGET and one HSET serve a whole bucket; callers that pass large, sorted
        chunks get the most out of it."""
        ordered = sorted(records, key=lambda r: r[0])
        total = 0
        k = 0
        while k < len(ordered):
            args: list[bytes | str] = [self._pb, b"u"]
            end = min(k + UPSERT_CHUNK, len(ordered))
            while k < end:
                b = ordered[k][0]
                j = k
                while j < len(ordered) and ordered[j][0] == b:
                    j += 1
                args += (b, str(j - k))
                for _, f, v in ordered[k:j]:
                    args += (f, v)
                k = j
            total += int(self._eval(self._registry, args))
        return total

    def operator_code(self, operator: str) -> int:
        return self._op_code(operator)

    def delete_subscriber(self, msisdn: str) -> bool:
        b, f = bucket(msisdn)
        return bool(self._eval(self._registry, [self._pb, b"d", b, b"1", f]))

    def get_subscriber(self, msisdn: str) -> Subscriber | None:
        b, f = bucket(msisdn)
        packed = self._call("hget", self._p + "sub:" + b, f)
        if packed is None:
            return None
        u = unpack(packed)
        name = self._call("hget", self._p + "opname", u.operator_code)
        if name is None:
            raise StoreRecordError(f"operator code {u.operator_code} has no name; fix: reload the registry")
        return to_subscriber(u, msisdn, name.decode())

    # --- lists -------------------------------------------------------------------------
    def _list_key(self, kind: str) -> str:
        if kind not in LIST_KINDS:
            raise StoreListKindError(f"list {kind!r} is not one of {', '.join(LIST_KINDS)}")
        return self._p + "list:" + kind

    def add_to_list(self, entry: ListEntry) -> None:
        self._list_key(entry.list)
        self._eval(self._lists, [self._pb, b"add", entry.list, entry.number, msgspec.json.encode(entry)])

    def remove_from_list(self, kind: ListKind, number: str) -> bool:
        self._list_key(kind)
        return bool(self._eval(self._lists, [self._pb, b"del", kind, number]))

    def list_entries(self, kind: ListKind) -> list[ListEntry]:
        raw = self._call("hgetall", self._list_key(kind))
        return sorted((_ENTRY_DECODER.decode(v) for v in raw.values()), key=lambda e: e.number)

    # --- admin -------------------------------------------------------------------------
    def reset_number(self, number: str) -> int:
        return int(self._call("delete", *(self._p + k + number for k in ("out:", "in:", "c:"))))

    def number_summary(self, number: str) -> dict[str, Any]:
        p = self._p
        try:
            pipe = self._r.pipeline(transaction=False)
            pipe.get(p + "out:" + number)
            pipe.get(p + "in:" + number)
            pipe.hgetall(p + "c:" + number)
            pipe.hexists(p + "sub:" + bucket(number)[0], bucket(number)[1])
            for kind in LIST_KINDS:
                pipe.hexists(p + "list:" + kind, number)
            out, received, contacts, held, *listed = pipe.execute()
        except _UNAVAILABLE as exc:
            raise StoreUnavailableError(f"feature store: Redis unavailable ({type(exc).__name__})") from exc
        out, received = out or b"", received or b""
        own = [out[k : k + RECORD] for k in range(0, len(out), RECORD)]
        inbound = [int.from_bytes(received[k : k + 6], "big") for k in range(0, len(received), _INBOUND)]
        last = max([int.from_bytes(r[:6], "big") for r in own[-1:]] + inbound[-1:], default=-1)
        day = [r for r in own if last - DAY_MS <= int.from_bytes(r[:6], "big") <= last]
        return {
            "as_of_ms": last if last >= 0 else None,
            "calls_24h": len(day),
            "distinct_callees_24h": len({r[33:39] for r in day}),
            "answered_24h": sum(r[12] & 1 for r in day),
            "inbound_calls_24h": sum(1 for x in inbound if last - DAY_MS <= x <= last),
            "contacts_30d": sum(1 for v in contacts.values() if int.from_bytes(v[:6], "big") >= last - HISTORY_MS),
            "in_registry": bool(held),
            "lists": sorted(k for k, hit in zip(LIST_KINDS, listed, strict=True) if hit),
        }

    def ping(self) -> bool:
        try:
            return bool(self._r.ping())
        except _UNAVAILABLE:
            return False
