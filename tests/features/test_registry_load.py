"""The bulk registry loader: same bytes as the record-by-record path, same verdicts as the contract."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from features import registry_load
from features._registry_pack import OwnerDigest, RecordCheckError
from features.contracts import Subscriber, decode, encode
from features.errors import ContractError, StoreUnavailableError
from features.memstore import InMemoryStore
from features.redisstore import RedisStore
from features.registry_codec import OwnerHasher, bucket, pack
from features.registry_load import Packer, RedisBulk, Unchecked, load

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
GOOD = {"msisdn": "+77011234567", "operator": "kcell", "biometric_status": "verified",
        "sim_activated_at": "2026-01-01T00:00:00Z"}
CODES = {"kcell": 1, "beeline": 2, "altel": 3}


def subscribers(seed: int, n: int, numbers: int) -> list[Subscriber]:
    """Random records over a small pool of numbers (so many are replaced), some with ms times."""
    rng = random.Random(seed)
    pool = [f"+7701{rng.randrange(10**7):07d}" for _ in range(numbers)] + [f"+4420{rng.randrange(10**8):08d}"]
    out = []
    for _ in range(n):
        t = T0 - dt.timedelta(days=rng.uniform(0, 3000))
        if rng.random() < 0.7:
            t = t.replace(microsecond=0)
        out.append(Subscriber(
            msisdn=rng.choice(pool), operator=rng.choice(list(CODES)),
            biometric_status=rng.choice(["verified", "pending", "failed", "unverified"]),
            sim_activated_at=t.astimezone(dt.timezone(dt.timedelta(hours=rng.choice([0, 5, -3])))),
            verified_at=t + dt.timedelta(days=1) if rng.random() < 0.6 else None,
            subscriber_type=rng.choice(["individual", "corporate"]),
            roaming_country=rng.choice([None, None, "TR"]),
            owner_ref=rng.choice([None, "o1", "o2", f"o-{rng.randrange(50)}", "владелец-7"]),
        ))
    return out


def test_packs_exactly_what_pack_packs() -> None:
    subs = subscribers(1, 3000, 2000)
    hasher = OwnerHasher()
    got = Packer(CODES.__getitem__, hasher).pack(subs, check=True)
    for i, s in enumerate(subs):
        want = bucket(s.msisdn), pack(s, CODES[s.operator], None if s.owner_ref is None else hasher(s.owner_ref))
        assert (f"+{got.bucket[i]}", bytes((got.field[i],))) == want[0]
        assert bytes(got.packed[i, : got.length[i]]) == want[1]


@given(key=st.binary(min_size=1, max_size=64), value=st.text(max_size=300))
def test_owner_digest_is_keyed_blake2b_64(key: bytes, value: str) -> None:
    assert OwnerDigest(key)(value) == hashlib.blake2b(value.encode(), digest_size=8, key=key).digest()


# Values at and around every edge of the contract's patterns and lengths.
MSISDNS = ["+77011234567", "+1234567", "+123456", "+123456789012345", "+1234567890123456", "+07011234567",
           "77011234567", "+7701123456a", "+7701123456\n", "+７７０１１２３４５６７", " +77011234567", "+"]
OPERATORS = ["kcell", "k", "x" * 64, "x" * 65, "", "a\x00b", "tab\tx", "del\x7f", "c1\x85ok", "émoji😀", "a\n"]
COUNTRIES = [None, "TR", "tr", "TUR", "T", "ÄB", "T\n"]
OWNERS = [None, "o", "x" * 128, "x" * 129, "", "я" * 128, "я" * 129, "😀" * 128]


@settings(max_examples=300)
@given(st.sampled_from(MSISDNS), st.sampled_from(OPERATORS), st.sampled_from(COUNTRIES), st.sampled_from(OWNERS),
       st.text(max_size=20), st.sampled_from(["2026-01-01T00:00:00Z", "2026-01-01T00:00:00", "2026-01-01T05:00:00.5+05:00"]))
def test_fast_checks_never_accept_what_the_contract_refuses(
    msisdn: str, operator: str, country: str | None, owner: str | None, free: str, when: str
) -> None:
    for rec in ({**GOOD, "msisdn": msisdn, "operator": operator, "roaming_country": country, "owner_ref": owner,
                 "sim_activated_at": when},
                {**GOOD, "msisdn": free}, {**GOOD, "operator": free}, {**GOOD, "roaming_country": free},
                {**GOOD, "owner_ref": free}):
        line = json.dumps(rec).encode()
        try:
            want: Subscriber | None = decode(Subscriber, line)
        except ContractError:
            want = None
        try:
            fast = msgspec.json.decode(line, type=Unchecked)
            Packer(InMemoryStore().operator_code, OwnerHasher()).pack([fast], check=True)
            accepted = True
        except (msgspec.ValidationError, RecordCheckError):
            accepted = False
        assert accepted == (want is not None), rec


def _write(path: Path, lines: list[bytes], newline: bytes = b"\n") -> Path:
    path.write_bytes(newline.join(lines) + newline)
    return path


def _registry(client: redis.Redis, prefix: str) -> dict[bytes, Any]:
    out = {}
    for key in client.scan_iter(match=prefix + "*", count=1000):
        out[key[len(prefix):]] = client.hgetall(key)
    return out


@pytest.mark.parametrize("window,per_call,block", [(250_000, 1000, 4 << 20), (700, 97, 4096)])
def test_bulk_load_equals_record_by_record(redis_client: redis.Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           window: int, per_call: int, block: int) -> None:
    """Later records win across blocks, windows and script calls; owner counts follow."""
    monkeypatch.setattr(registry_load, "WINDOW", window)
    monkeypatch.setattr(registry_load, "BLOCK_BYTES", block)
    subs = subscribers(2, 5000, 900)
    path = _write(tmp_path / "subs.jsonl", [encode(s) for s in subs])
    reference = RedisStore(redis_client, prefix="ref:")
    for s in subs:  # one record at a time, in file order: the meaning of "a later record replaces"
        reference.upsert_subscribers([s])
    store = RedisStore(redis_client, prefix="bulk:")
    sink = RedisBulk(redis_client, store.operator_code, prefix="bulk:", per_call=per_call)
    assert load(sink, path, OwnerHasher()) == len(subs)
    assert _registry(redis_client, "bulk:") == _registry(redis_client, "ref:")
    # loading the same file again writes nothing new and changes nothing
    again = RedisBulk(redis_client, store.operator_code, prefix="bulk:", per_call=per_call)
    assert load(again, path, OwnerHasher()) == len(subs)
    assert _registry(redis_client, "bulk:") == _registry(redis_client, "ref:")


def test_generic_sink_blank_lines_crlf_and_no_final_newline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_load, "BLOCK_BYTES", 2000)
    subs = subscribers(3, 400, 300)
    lines = [encode(s) for s in subs]
    lines[10:10] = [b"", b"   "]
    path = tmp_path / "subs.jsonl"
    path.write_bytes(b"\r\n".join(lines))  # CRLF, and the last line has no newline
    got, want = InMemoryStore(), InMemoryStore()
    assert load(got, path, OwnerHasher()) == len(subs)
    want.upsert_subscribers(subs)
    for s in subs:
        assert got.get_subscriber(s.msisdn) == want.get_subscriber(s.msisdn)


@pytest.mark.parametrize("bad", [
    b'{"msisdn":"8701","operator":"kcell"}',
    json.dumps({**GOOD, "msisdn": "+07019998877"}).encode(),  # msgspec-valid, refused by the C checks
    json.dumps({**GOOD, "operator": "a\u0001"}).encode(),
    json.dumps({**GOOD, "owner_ref": "x" * 129}).encode(),
    json.dumps(GOOD).encode() + b" " + json.dumps(GOOD).encode(),  # two records on one line
    json.dumps(GOOD).encode() + b"," + json.dumps(GOOD).encode(),  # two records, comma-separated
])
def test_a_bad_line_is_named_by_its_number(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bad: bytes) -> None:
    monkeypatch.setattr(registry_load, "BLOCK_BYTES", 1000)
    lines = [encode(s) for s in subscribers(4, 60, 60)]
    lines[47] = bad
    path = _write(tmp_path / "bad.jsonl", lines)
    with pytest.raises(ContractError, match="^line 48: ") as exc:
        load(InMemoryStore(), path, OwnerHasher())
    assert "8701" not in str(exc.value) and "9998877" not in str(exc.value)  # numbers are masked


def test_redis_down_is_store_unavailable(tmp_path: Path) -> None:
    path = _write(tmp_path / "subs.jsonl", [encode(s) for s in subscribers(5, 10, 10)])
    client = redis.Redis(port=1, socket_timeout=1, socket_connect_timeout=1)
    with pytest.raises(StoreUnavailableError):
        load(RedisBulk(client, CODES.__getitem__), path, OwnerHasher())
