"""One contract suite for every FeatureStore implementation (in-memory and the real Redis)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import numpy as np
import pytest
import redis

from features.contracts import Cdr, Subscriber
from features.definitions import DAY_MS, FEATURE_NAMES, INDEX
from features.errors import StoreListKindError
from features.memstore import InMemoryStore
from features.redisstore import RedisStore
from features.registry_codec import OwnerHasher, epoch_ms
from features.store import CallContext, FeatureStore, ListEntry
from tests.features.oracle import oracle_features
from tests.features.streams import random_world

T0 = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC)
A, B, C = "+77011234567", "+77051112233", "+77775550011"


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[FeatureStore]:
    if request.param == "memory":
        yield InMemoryStore()
    else:
        client: redis.Redis = request.getfixturevalue("redis_client")
        yield RedisStore(client, prefix="cs:")


def cdr(i: int, a: str = A, b: str = B, minutes: float = 0.0, **kw: object) -> Cdr:
    fields: dict[str, object] = {
        "call_id": f"c{i}", "operator": "kcell", "start_time": T0 + dt.timedelta(minutes=minutes),
        "a_number": a, "b_number": b, "ingress": "mobile", "answered": True, "duration_s": 30.0,
    }
    fields.update(kw)
    return Cdr(**fields)  # type: ignore[arg-type]


def col(x: np.ndarray, name: str) -> np.ndarray:
    return x[:, INDEX[name]]


def test_is_a_feature_store(store: FeatureStore) -> None:
    assert isinstance(store, FeatureStore)
    assert store.ping()


def test_matrix_shape_and_order(store: FeatureStore) -> None:
    x, ctx = store.process([cdr(1, minutes=5), cdr(2, minutes=1)])
    assert x.shape == (2, len(FEATURE_NAMES)) and x.dtype == np.float64 and x.flags.c_contiguous
    # rows in input order: the call at minute 5 sees the one at minute 1
    assert col(x, "calls_10m").tolist() == [1.0, 0.0]
    assert [c.duplicate for c in ctx] == [False, False]


def test_same_start_time_calls_do_not_see_each_other(store: FeatureStore) -> None:
    x, _ = store.process([cdr(1), cdr(2), cdr(3, minutes=0.5)])
    assert col(x, "calls_10m").tolist() == [0.0, 0.0, 2.0]
    assert col(x, "first_contact").tolist() == [1.0, 1.0, 0.0]


def test_window_edges_are_half_open(store: FeatureStore) -> None:
    store.process([cdr(1, minutes=0)])
    x, _ = store.screen([cdr(2, minutes=10), cdr(3, minutes=10.001), cdr(4, minutes=24 * 60)])
    # a call exactly 10 min old is inside [t-10m, t); one ms older is out; 24h likewise
    assert col(x, "calls_10m").tolist() == [1.0, 0.0, 0.0]
    assert col(x, "calls_24h").tolist() == [1.0, 1.0, 1.0]


def test_reapplying_a_call_changes_nothing(store: FeatureStore) -> None:
    # Distinct callees: a duplicate's relation features are exact unless its pair already has
    # two later calls applied (documented limit of keeping the last two contact times).
    callees = [f"+7701555000{i}" for i in range(6)]
    calls = [cdr(i, b=callees[i], minutes=i, a_imei="356789012345678", a_cell_id=f"cell{i % 3}")
             for i in range(6)]
    first, ctx1 = store.process(calls)
    probe = [cdr(100, minutes=30, a_imei="356789012345678", a_cell_id="x"), cdr(101, a=B, b=A, minutes=30)]
    before, _ = store.screen(probe)
    again, ctx2 = store.process(calls)
    after, _ = store.screen(probe)
    assert not any(c.duplicate for c in ctx1)
    assert all(c.duplicate for c in ctx2)
    np.testing.assert_array_equal(again, first)
    np.testing.assert_array_equal(after, before)


def test_screen_is_read_only(store: FeatureStore) -> None:
    store.process([cdr(1)])
    probe = [cdr(2, minutes=1)]
    x1, _ = store.screen(probe)
    x2, _ = store.screen(probe)
    x3, ctx = store.process(probe)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(x1, x3)
    assert not ctx[0].duplicate


def test_matches_the_oracle_on_a_seeded_stream(store: FeatureStore) -> None:
    cdrs, subs = random_world(7, 300)
    store.upsert_subscribers(subs)
    want = oracle_features(cdrs, subs)
    order = sorted(range(len(cdrs)), key=lambda i: cdrs[i].start_time)
    got = np.full_like(want, np.nan)
    for k in range(0, len(order), 40):
        idx = order[k : k + 40]
        got[idx] = store.process([cdrs[i] for i in idx])[0]
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


def sub(msisdn: str, owner: str | None = "owner-1", **kw: object) -> Subscriber:
    fields: dict[str, object] = {
        "msisdn": msisdn, "operator": "kcell", "biometric_status": "verified",
        "sim_activated_at": T0 - dt.timedelta(days=10), "verified_at": T0 - dt.timedelta(days=2, milliseconds=7),
        "owner_ref": owner,
    }
    fields.update(kw)
    return Subscriber(**fields)  # type: ignore[arg-type]


def test_registry_identity_features_and_replace_semantics(store: FeatureStore) -> None:
    assert store.upsert_subscribers([sub(A), sub(B), sub(C, owner=None, roaming_country="TR")]) == 3
    x, ctx = store.screen([cdr(1), cdr(2, a=C), cdr(3, a="+77009998877")])
    assert col(x, "numbers_per_owner")[0] == 2.0
    assert col(x, "days_since_verified")[0] == (2 * DAY_MS + 7) / DAY_MS
    assert col(x, "sim_age_days")[0] == 10.0
    assert col(x, "in_registry").tolist() == [1.0, 1.0, 0.0]
    assert np.isnan(col(x, "numbers_per_owner")[1]) and np.isnan(col(x, "roaming")[2])
    assert [c.in_registry for c in ctx] == [True, True, False]
    assert [c.roaming for c in ctx] == [False, True, False]
    # a later record replaces the earlier: B moves to another owner, A's count drops
    store.upsert_subscribers([sub(B, owner="owner-2", biometric_status="pending")])
    assert col(store.screen([cdr(4)])[0], "numbers_per_owner")[0] == 1.0
    got = store.get_subscriber(B)
    assert got is not None and got.biometric_status == "pending" and got.operator == "kcell"
    assert got.owner_ref == OwnerHasher()("owner-2").hex()
    assert got.sim_activated_at == T0 - dt.timedelta(days=10)
    assert store.delete_subscriber(A) and not store.delete_subscriber(A)
    assert store.get_subscriber(A) is None
    assert col(store.screen([cdr(5)])[0], "in_registry")[0] == 0.0


def entry(kind: str, number: str = A, expires: dt.datetime | None = None) -> ListEntry:
    return ListEntry(number, kind, "bank", "confirmed fraud", "ops", epoch_ms(T0),  # type: ignore[arg-type]
                     None if expires is None else epoch_ms(expires))


def test_lists_apply_to_the_next_call_and_expire(store: FeatureStore) -> None:
    store.add_to_list(entry("block", expires=T0 + dt.timedelta(hours=1)))
    store.add_to_list(entry("dno", number=B))
    store.add_to_list(entry("allow", number=C))
    _, ctx = store.screen([cdr(1), cdr(2, minutes=60), cdr(3, a=B), cdr(4, a=C)])
    assert ctx[0].block == entry("block", expires=T0 + dt.timedelta(hours=1))
    assert ctx[1].block is None  # expires_at <= t means absent
    assert ctx[2].dno is not None and ctx[3].allow is not None and ctx[3].block is None
    assert [e.number for e in store.list_entries("block")] == [A]
    assert store.remove_from_list("block", A) and not store.remove_from_list("block", A)
    assert store.screen([cdr(5)])[1][0] == CallContext(False, False, None, None, None, False)
    with pytest.raises(StoreListKindError):
        store.list_entries("grey")  # type: ignore[arg-type]


def test_reset_number_forgets_its_state(store: FeatureStore) -> None:
    store.process([cdr(1), cdr(2, a=B, b=A, minutes=1)])
    assert store.number_summary(A)["calls_24h"] == 1
    assert store.reset_number(A) >= 1
    summary = store.number_summary(A)
    assert summary["calls_24h"] == 0 and summary["inbound_calls_24h"] == 0
    assert col(store.screen([cdr(3, minutes=2)])[0], "calls_10m")[0] == 0.0


def test_number_summary(store: FeatureStore) -> None:
    store.upsert_subscribers([sub(A)])
    store.add_to_list(entry("block"))
    store.process([cdr(1), cdr(2, b=C, minutes=1, answered=False, duration_s=0.0), cdr(3, a=B, b=A, minutes=2)])
    assert store.number_summary(A) == {
        "as_of_ms": epoch_ms(T0) + 2 * 60_000, "calls_24h": 2, "distinct_callees_24h": 2, "answered_24h": 1,
        "inbound_calls_24h": 1, "contacts_30d": 2, "in_registry": True, "lists": ["block"],
    }
