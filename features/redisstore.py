"""``RedisStore``: the feature store in Redis, one round trip per batch of calls.

The client packs each call into five script arguments (its fixed-width event record,
caller, IMEI, callee, the caller's digest), sends the batch as ``EVALSHA`` calls of up to
``SCRIPT_CALLS`` calls each in one round trip, and reads back per call one integer of bits
(reciprocity, duplicate, what was applied), per caller its packed strings of own and received
calls, registry record and owner count, per IMEI its packed numbers, and list hits. Every
window (own calls, inbound calls, numbers per IMEI: full 24 h) and the feature rows are
computed here, in ``features/_online.pyx``; Redis does the rest (dedup, relations, appending
to the strings, registry, lists) with a few commands per call and no per-event loop.

The script (``features/batch.lua``) reads and applies its calls in start-time order
atomically; a batch interrupted by a Redis outage is applied up to some script boundary, and
its retry is exact because applying a call twice changes nothing. The key layout is specified
in the README ("Feature store key layout").

The batch script goes over a connection of the store's own, made and connected by the
client's pool (so it has the client's address, credentials, database and socket timeouts);
its RESP is written by ``_online.Batch`` and the replies are parsed by ``hiredis`` on that
connection's socket. redis-py's command path cost ~50-100 us of client CPU per command here,
which was most of a one-call screening. Everything else (registry, lists, admin) uses the
client as given.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterable, Sequence
from importlib import resources
from typing import Any, Final

import hiredis
import msgspec
import numpy as np
import redis
from redis.exceptions import BusyLoadingError, NoScriptError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from features._online import COLUMNS, RECORD, Batch
from features.assembly import RAW, classify_cached
from features.contracts import Cdr, Subscriber
from features.definitions import DAY_MS, FEATURE_NAMES, HISTORY_MS, INGRESS_CODES
from features.errors import StoreListKindError, StoreRecordError, StoreUnavailableError
from features.registry_codec import OwnerHasher, bucket, epoch_ms, pack, to_subscriber, unpack
from features.retention import (
    EVENT_RETAIN_MS,
    EVENT_TTL_MS,
    RELATION_RETAIN_MS,
    RELATION_TTL_MS,
)
from features.store import LIST_KINDS, CallContext, ListEntry, ListKind

if COLUMNS != RAW:  # pragma: no cover - guards a RAW change without a kernel change
    raise ImportError("features/_online.pyx computes other columns than features.assembly.RAW; rebuild it")
_UNAVAILABLE: Final = (RedisConnectionError, RedisTimeoutError, BusyLoadingError)
_ENTRY_DECODER: Final = msgspec.json.Decoder(ListEntry)
_INBOUND: Final = 12  # bytes per cs:in: record: u48 start ms, call key digest
_N_FEATURES: Final = len(FEATURE_NAMES)
# CallContext is frozen, so calls on no list share one of these, indexed by the kernel's
# key 4 * in_registry + 2 * roaming + duplicate.
_PLAIN: Final = tuple(
    CallContext(bool(k & 4), bool(k & 2), None, None, None, bool(k & 1)) for k in range(8)
)
SCRIPT_CALLS: Final = 100
"""Calls per batch script: each script blocks Redis while it runs (~1-3 ms for 100 calls),
so a worker batch of thousands is split into several scripts sent in one round trip,
letting the API's screening calls run in between."""
UPSERT_CHUNK: Final = 1000  # records per script call: ~1-3 ms of Redis time, short enough not to stall screening
_FIXED_ARGS: Final = 3 + 6  # EVALSHA, digest, key count; prefix, mode, 2 retentions, 2 TTLs


def _reply_error(message: str) -> Exception:
    """The redis-py exception of an error reply (as its parser maps them)."""
    if message.startswith("NOSCRIPT"):
        return NoScriptError(message)
    if message.startswith("LOADING"):
        return BusyLoadingError(message)
    return ResponseError(message)


def _resp_bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


def _script(name: str) -> str:
    return resources.files("features").joinpath(name).read_text(encoding="utf-8")


class RedisStore:
    """The feature store in Redis. ``client`` needs explicit socket timeouts (the caller's
    choice); every Redis failure surfaces as ``StoreUnavailableError``. Thread-safe (the
    batch script's connection is used by one call at a time)."""

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
        # the batch script's RESP before its calls, read-only (False) and applying (True)
        sha = hashlib.sha1(self._batch.encode()).hexdigest().encode()
        head = [self._pb, b"", str(EVENT_RETAIN_MS).encode(), str(RELATION_RETAIN_MS).encode(),
                str(EVENT_TTL_MS).encode(), str(RELATION_TTL_MS).encode()]
        self._prologue = {
            apply: b"".join(_resp_bulk(v) for v in [b"EVALSHA", sha, b"0", *head[:1], mode, *head[2:]])
            for apply, mode in ((False, b"0"), (True, b"1"))
        }
        self._lane: Any = None  # the batch script's connection (redis.connection.Connection)
        self._lane_pid = 0
        self._lane_sock: Any = None  # its socket when self._reader was made
        self._reader = hiredis.Reader()
        self._buf = bytearray(1 << 16)
        self._lane_lock = threading.Lock()

    def sibling(self) -> RedisStore:
        """A store over the same client (pool, settings) with a batch-script connection of its own,
        so that another thread's batches run alongside this one's."""
        return RedisStore(self._r, self._p, owner_hasher=self._owner_hash)

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

    def _call(self, method: str, *args: Any) -> Any:
        try:
            return getattr(self._r, method)(*args)
        except _UNAVAILABLE as exc:
            raise StoreUnavailableError(f"feature store: Redis unavailable ({type(exc).__name__})") from exc

    def _scripts(self, payload: bytes, count: int) -> list[Any]:
        """Send ``count`` pipelined batch-script calls (RESP in ``payload``) and read their replies.

        Not a transaction: other clients' commands may run between the scripts, which is the
        point. A flushed script cache (NOSCRIPT) loads the script and sends the calls again
        (re-running is idempotent); a connection or timeout error closes the connection, is
        retried as the client's ``retry`` says (none, for the worker's and the API's clients)
        and surfaces as ``StoreUnavailableError``."""
        try:
            with self._lane_lock:
                retry = self._r.get_retry()
                for attempt in (0, 1):
                    try:
                        if retry is None:
                            return self._exchange(payload, count)
                        return retry.call_with_retry(lambda: self._exchange(payload, count), self._lane_failed)
                    except NoScriptError:
                        if attempt:
                            raise
                        self._r.script_load(self._batch)
                raise AssertionError("unreachable")  # pragma: no cover
        except _UNAVAILABLE as exc:
            raise StoreUnavailableError(f"feature store: Redis unavailable ({type(exc).__name__})") from exc

    def _exchange(self, payload: bytes, count: int) -> list[Any]:
        conn = self._lane
        if conn is None or self._lane_pid != os.getpid():  # first use, or a forked child
            conn = self._lane = self._r.connection_pool.make_connection()
            self._lane_pid = os.getpid()
        sock: Any = getattr(conn, "_sock", False)
        if sock is False:  # pragma: no cover - a redis-py without Connection._sock: its own (slower) calls
            return self._exchange_redispy(conn, payload, count)
        if sock is None:
            conn.connect()  # redis-py's handshake: credentials, database, client name, timeouts
            sock = conn._sock
        if sock is not self._lane_sock:
            self._lane_sock, self._reader = sock, hiredis.Reader()
        reader, buf = self._reader, self._buf
        replies: list[Any] = []
        try:
            sock.sendall(payload)
            while len(replies) < count:
                reply = reader.gets()
                if reply is False:
                    got = sock.recv_into(buf)
                    if not got:
                        raise OSError("connection closed by the server")
                    reader.feed(buf, 0, got)  # type: ignore[arg-type]  # any buffer; the stub says bytes
                else:
                    replies.append(reply)
        except TimeoutError as exc:  # socket.timeout
            conn.disconnect()
            raise RedisTimeoutError(f"feature store: timeout talking to Redis ({exc})") from exc
        except OSError as exc:
            conn.disconnect()
            raise RedisConnectionError(f"feature store: Redis connection error ({exc})") from exc
        except BaseException:
            conn.disconnect()
            raise
        for reply in replies:  # error replies, after all were read: the connection stays in step
            if isinstance(reply, hiredis.ReplyError):
                raise _reply_error(str(reply))
        return replies

    @staticmethod
    def _exchange_redispy(conn: Any, payload: bytes, count: int) -> list[Any]:  # pragma: no cover
        conn.send_packed_command([payload], check_health=False)
        replies: list[Any] = []
        error: ResponseError | None = None
        for _ in range(count):
            try:
                replies.append(conn.read_response())
            except ResponseError as exc:
                error = error or exc
                replies.append(None)
        if error is not None:
            raise error
        return replies

    def _lane_failed(self, _error: Exception) -> None:
        if self._lane is not None:
            self._lane.disconnect()

    # --- calls -------------------------------------------------------------------------
    def screen(self, cdrs: Sequence[Cdr]) -> tuple[np.ndarray, list[CallContext]]:
        return self._run(cdrs, apply=False)

    def process(self, cdrs: Sequence[Cdr]) -> tuple[np.ndarray, list[CallContext]]:
        return self._run(cdrs, apply=True)

    def _run(self, cdrs: Sequence[Cdr], *, apply: bool) -> tuple[np.ndarray, list[CallContext]]:
        calls = cdrs if type(cdrs) is list else list(cdrs)
        if not calls:
            return np.zeros((0, _N_FEATURES)), []
        if not self._indexed:  # lists written before the list index existed: build it once
            self._eval(self._lists, [self._pb, b"index"])
            self._indexed = True
        batch = Batch(calls, epoch_ms, self._prologue[apply], _FIXED_ARGS, SCRIPT_CALLS, INGRESS_CODES, classify_cached)
        replies = self._scripts(batch.payload, batch.scripts)
        try:
            x, contexts = batch.features(replies, _PLAIN)
        except StoreRecordError:
            raise
        except (ValueError, TypeError, IndexError) as exc:
            raise StoreRecordError(
                f"feature store: {exc}; fix: make features/batch.lua and RedisStore the same version"
            ) from exc
        if any(len(r) > head for r, head in zip(replies, batch.heads, strict=True)):
            self._listed(replies, batch, contexts)
        return x, contexts

    @staticmethod
    def _listed(replies: list[Any], batch: Batch, contexts: list[CallContext]) -> None:
        """Contexts of the calls whose caller is on a list (entries active at the call's start)."""
        hits: dict[int, dict[str, ListEntry]] = {}
        base = 0
        for reply, count, head in zip(replies, batch.callers, batch.heads, strict=True):
            for j in range(head, len(reply), 3):  # the reply's tail: caller index, kind, entry per entry found
                hits.setdefault(base + int(reply[j]) - 1, {})[reply[j + 1].decode()] = _ENTRY_DECODER.decode(reply[j + 2])
            base += count
        groups = batch.groups()
        for i in batch.calls_of(hits):
            ti = batch.start_ms(i)
            active = {k: e if e.active_at(ti) else None for k, e in hits[groups[i]].items()}
            ctx = contexts[i]
            contexts[i] = CallContext(
                in_registry=ctx.in_registry, roaming=ctx.roaming,
                allow=active.get("allow"), block=active.get("block"), dno=active.get("dno"),
                duplicate=ctx.duplicate,
            )

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
