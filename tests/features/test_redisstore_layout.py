"""The Redis store's own layout: packed per-number timelines, the list index and its
migration from lists written before the index existed, late records, TTLs, no cap on the
calls a window reads."""

from __future__ import annotations

import datetime as dt
import hashlib
import struct

import msgspec
import numpy as np
import pytest
import redis
from hypothesis import example, given
from hypothesis import strategies as st

from features._online import Batch, digest6, start_times
from features.assembly import classify_cached
from features.contracts import Cdr
from features.definitions import INDEX, INGRESS_CODES
from features.memstore import InMemoryStore
from features.redisstore import _FIXED_ARGS, SCRIPT_CALLS, RedisStore
from features.registry_codec import epoch_ms
from features.retention import EVENT_TTL_MS
from features.store import ListEntry
from tests.features.oracle import oracle_features

T0 = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC)
A, B = "+77011234567", "+77051112233"


def cdr(i: int, a: str = A, b: str = B, minutes: float = 0.0) -> Cdr:
    return Cdr(call_id=f"c{i}", operator="kcell", start_time=T0 + dt.timedelta(minutes=minutes), a_number=a,
               b_number=b, ingress="mobile", answered=i % 2 == 0, duration_s=float(i % 2 == 0) * i,
               a_imei=f"35{i % 3:013d}",
               a_cell_id=f"cell-{i % 4}")


def test_timelines_are_packed_sorted_trimmed_and_expire(redis_client: redis.Redis) -> None:
    store = RedisStore(redis_client)
    late = cdr(3, minutes=-30)  # arrives after later calls: spliced in by start time
    store.process([cdr(1), cdr(2, minutes=5)])
    store.process([late])
    own = redis_client.get("cs:out:" + A)
    received = redis_client.get("cs:in:" + B)
    assert isinstance(own, bytes) and isinstance(received, bytes)
    assert len(own) == 3 * 39 and len(received) == 3 * 12
    times = [int.from_bytes(own[k : k + 6], "big") for k in range(0, len(own), 39)]
    assert times == sorted(times) == [epoch_ms(T0) - 30 * 60_000, epoch_ms(T0), epoch_ms(T0) + 5 * 60_000]
    for key in ("cs:out:" + A, "cs:in:" + B, "cs:c:" + A):
        assert 0 < redis_client.pttl(key) <= max(EVENT_TTL_MS, 31 * 86_400_000)
    # a call 26 h later trims the older records (event-time retention 25 h)
    store.process([cdr(4, minutes=26 * 60)])
    own = redis_client.get("cs:out:" + A)
    assert isinstance(own, bytes) and len(own) == 39


def test_full_day_is_read_without_a_cap(redis_client: redis.Redis) -> None:
    """1,000 calls of one caller in 24 h, delivered in batches of 200: every feature of every call equals
    the oracle and the in-memory reference (the old store read only the latest 512)."""
    calls = [Cdr(call_id=f"r{i}", operator="kcell", start_time=T0 + dt.timedelta(seconds=50 * i),
                 a_number=A, b_number=f"+7705{i % 700:07d}", ingress="voip", answered=i % 4 == 0,
                 duration_s=float(i % 4 == 0) * (i % 37 + 0.1), a_imei=f"35{i % 9:013d}", a_cell_id=f"c{i % 611}")
             for i in range(1000)]
    red, mem = RedisStore(redis_client), InMemoryStore()
    x_red = np.vstack([red.process(calls[k : k + 200])[0] for k in range(0, 1000, 200)])
    x_mem = np.vstack([mem.process(calls[k : k + 200])[0] for k in range(0, 1000, 200)])
    np.testing.assert_allclose(x_red, x_mem, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(x_red, oracle_features(calls, []), rtol=1e-9, atol=1e-9)
    assert x_red[-1, INDEX["calls_24h"]] == 999
    assert x_red[-1, INDEX["distinct_cells_24h"]] == 611


def entry(kind: str, number: str = A) -> ListEntry:
    return ListEntry(number, kind, "bank", "confirmed fraud", "ops", epoch_ms(T0))  # type: ignore[arg-type]


def test_list_index_is_built_from_lists_written_before_it(redis_client: redis.Redis) -> None:
    # lists as an older version wrote them: the hashes alone, no index
    redis_client.hset("cs:list:block", A, msgspec.json.encode(entry("block")))
    redis_client.hset("cs:list:dno", B, msgspec.json.encode(entry("dno", B)))
    store = RedisStore(redis_client)
    _, ctx = store.screen([cdr(1), cdr(2, a=B)])  # the store builds the index before its first batch
    assert ctx[0].block == entry("block") and ctx[1].dno == entry("dno", B)
    assert redis_client.hgetall("cs:list:index") == {b"": b"", A.encode(): b"1", B.encode(): b"4"}
    store.add_to_list(entry("allow", B))
    assert redis_client.hget("cs:list:index", B) == b"6"
    _, ctx = store.screen([cdr(3), cdr(4, a=B)])
    assert ctx[0].block == entry("block")
    assert ctx[1].dno == entry("dno", B) and ctx[1].allow == entry("allow", B)
    assert store.remove_from_list("block", A) and not store.remove_from_list("block", A)
    assert redis_client.hget("cs:list:index", A) is None
    assert store.screen([cdr(5)])[1][0].block is None
    # without the index (evicted, or lists restored from elsewhere) the batch reads the lists themselves
    redis_client.delete("cs:list:index")
    _, ctx = store.screen([cdr(6, a=B)])
    assert ctx[0].dno == entry("dno", B) and ctx[0].allow == entry("allow", B)
    store.add_to_list(entry("block"))  # and the next change rebuilds it
    assert redis_client.hgetall("cs:list:index") == {b"": b"", A.encode(): b"1", B.encode(): b"6"}


@given(st.binary(max_size=400))
@example(b"")
@example(bytes(128))
@example(bytes(129))
def test_digest6_is_blake2b_48(value: bytes) -> None:
    """The kernel's own BLAKE2b (hashlib's per-call object cost more than the hash)."""
    assert digest6(value) == hashlib.blake2b(value, digest_size=6).digest()


def test_records_hold_the_documented_digests(redis_client: redis.Redis) -> None:
    c = cdr(2)
    RedisStore(redis_client).process([c])
    rec = redis_client.get("cs:out:" + A)
    assert isinstance(rec, bytes) and len(rec) == 39
    h6 = lambda v: hashlib.blake2b(v.encode(), digest_size=6).digest()  # noqa: E731
    assert int.from_bytes(rec[:6], "big") == epoch_ms(c.start_time)
    assert rec[6:12] == h6("kcell\x00c2") and rec[12] == 1 | 2 | 4
    assert rec[13:21] == struct.pack(">d", 2.0)
    assert (rec[21:27], rec[27:33], rec[33:39]) == (h6(c.a_imei or ""), h6(c.a_cell_id or ""), h6(B))
    assert redis_client.get("cs:in:" + B) == rec[:12]


_ZONES = st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=5)), dt.timezone(dt.timedelta(hours=-3, minutes=-30)),
                          dt.timezone(dt.timedelta(hours=14))])


@given(st.lists(st.datetimes(min_value=dt.datetime(1970, 1, 2), max_value=dt.datetime(9999, 12, 30), timezones=_ZONES),
                min_size=1, max_size=8))
def test_start_times_are_epoch_ms_and_order_is_stable(times: list[dt.datetime]) -> None:
    """The kernel's exact conversion (proleptic Gregorian, any fixed offset, floored) equals
    registry_codec.epoch_ms, and the order is by start time with ties in input order."""
    calls = [Cdr(call_id=f"c{i}", operator="kcell", start_time=t, a_number=A, b_number=B, ingress="mobile")
             for i, t in enumerate(times)]
    t, order = start_times(calls, epoch_ms)
    assert t.tolist() == [epoch_ms(x) for x in times]
    assert order.tolist() == sorted(range(len(times)), key=lambda i: (t[i], i))


def test_sim_box_imei_is_counted_and_trimmed_like_the_reference(redis_client: redis.Redis) -> None:
    """300 numbers on one IMEI (a SIM box): 200 call on day 0, then 100 more 30 h later in one
    batch, so the 256th number on the IMEI trims the 200 that fell out of the retention in the
    middle of a script; every call's numbers per IMEI equals the oracle and the in-memory
    reference, and the stored index keeps only the recent numbers."""
    imei = "356789012345678"
    calls = [Cdr(call_id=f"s{i}", operator="kcell", ingress="mobile", a_imei=imei, b_number=B,
                 a_number=f"+7701{i:07d}", answered=True, duration_s=5.0,
                 start_time=T0 + dt.timedelta(minutes=i if i < 200 else 30 * 60 + (i - 200) / 10))
             for i in range(300)]
    calls += [msgspec.structs.replace(c, call_id=c.call_id + "b", start_time=c.start_time + dt.timedelta(seconds=1))
              for c in calls[250:]]
    calls.sort(key=lambda c: c.start_time)
    red, mem = RedisStore(redis_client), InMemoryStore()
    x_red = np.vstack([red.process(calls[:200])[0], red.process(calls[200:])[0]])
    x_mem = np.vstack([mem.process(calls[:200])[0], mem.process(calls[200:])[0]])
    col = INDEX["numbers_per_imei_24h"]
    np.testing.assert_array_equal(x_red[:, col], x_mem[:, col])
    np.testing.assert_array_equal(x_red[:, col], oracle_features(calls, [])[:, col])
    assert x_red[199, col] == 200 and x_red[-1, col] == 100
    index = redis_client.get("cs:imei:" + imei)
    assert isinstance(index, bytes) and len(index) == 100 * 18  # the 200 of day 0 were dropped


def test_batch_script_reply_is_one_flat_array(redis_client: redis.Redis) -> None:
    """features/batch.lua answers one flat array: bits per call, 4 values per caller, the IMEI
    strings, then 3 values per list entry (Redis 6.2 writes each nested array in a write(2) of
    its own); a reply of any other shape is refused with the fix named."""
    store = RedisStore(redis_client)
    c = "+77017654321"
    store.process([cdr(1), cdr(2, minutes=1)])
    store.add_to_list(entry("block", c))
    probes = [cdr(5, minutes=2), cdr(6, a=c, minutes=3), cdr(8, minutes=4)]  # callers A, c; IMEIs 2, 0
    batch = Batch(probes, epoch_ms, store._prologue[False], _FIXED_ARGS, SCRIPT_CALLS, INGRESS_CODES,
                  classify_cached)
    (reply,) = store._scripts(batch.payload, batch.scripts)
    assert batch.callers == [2] and batch.imeis == [2] and batch.heads == [3 + 4 * 2 + 2]
    assert all(type(v) is int for v in reply[:3]) and reply[0] & 2  # A called B before
    own, received, record, owners = reply[3:7]
    assert own == redis_client.get("cs:out:" + A) and received == b"" and record == b"" and owners == 0
    assert reply[7:11] == [b"", b"", b"", 0]  # c: no calls, not in the registry
    assert reply[11:13] == [redis_client.get("cs:imei:" + f"35{2:013d}"), b""]  # cdr(2)'s IMEI; one never seen
    assert reply[13:] == [2, b"block", redis_client.hget("cs:list:block", c)]
    assert store.screen(probes)[1][1].block is not None

    for broken in ([reply[:-1]], [reply[:12]], [None]):
        with pytest.raises(ValueError, match="batch script returned"):
            batch.features(broken, tuple(range(8)))
