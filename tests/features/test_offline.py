"""The vectorised offline builder equals the per-call oracle, feature by feature."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.contracts import Cdr, Subscriber
from features.definitions import FEATURE_NAMES, INDEX, MINUTE_MS
from features.errors import FeatureTableError
from features.offline import build, cdr_table, read_cdrs, read_subscribers, subscriber_table
from tests.features.oracle import oracle_features
from tests.features.streams import random_world


def assert_parity(cdrs: list[Cdr], subscribers: list[Subscriber]) -> np.ndarray:
    got = build(cdr_table(cdrs), subscriber_table(subscribers))
    want = oracle_features(cdrs, subscribers)
    assert got.shape == want.shape == (len(cdrs), len(FEATURE_NAMES))
    for j, name in enumerate(FEATURE_NAMES):
        bad = ~np.isclose(got[:, j], want[:, j], rtol=1e-9, atol=1e-9, equal_nan=True)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            pytest.fail(f"{name}: row {i} builder={got[i, j]!r} oracle={want[i, j]!r} ({int(bad.sum())} rows differ)")
    return got


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5])
def test_builder_matches_oracle_on_seeded_streams(seed: int) -> None:
    cdrs, subscribers = random_world(seed, n_calls=500)
    got = assert_parity(cdrs, subscribers)
    # The stream must actually exercise the windows, or parity would prove little.
    assert np.nanmax(got[:, INDEX["calls_24h"]]) >= 5
    assert np.nanmax(got[:, INDEX["numbers_per_imei_24h"]]) >= 2
    assert set(np.unique(got[:, INDEX["biometric_status"]])) == {0.0, 1.0, 2.0, 3.0, 4.0}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(min_value=0, max_value=2**32 - 1), n_calls=st.integers(min_value=1, max_value=80))
def test_builder_matches_oracle_for_any_seed(seed: int, n_calls: int) -> None:
    cdrs, subscribers = random_world(seed, n_calls=n_calls)
    assert_parity(cdrs, subscribers)


T0 = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC)


def _cdr(call_id: str, minutes: float, a: str, b: str, **kw: object) -> Cdr:
    return Cdr(call_id=call_id, operator="kcell", start_time=T0 + dt.timedelta(minutes=minutes),
               a_number=a, b_number=b, ingress="mobile", **kw)  # type: ignore[arg-type]


A, B, C = "+77011111111", "+77022222222", "+77053333333"


def test_window_edges_ties_and_duplicates() -> None:
    cdrs = [
        _cdr("1", 0, A, B, answered=True, duration_s=30.0),
        _cdr("2", 10, A, C),                  # exactly 10 min after call 1: sees it
        _cdr("3", 10, A, B),                  # same instant as call 2: does not see it
        _cdr("1", 0, A, B, answered=True, duration_s=30.0),  # duplicate delivery of call 1
        _cdr("4", 10 + 1 / 60_000, A, B),     # 1 ms later: call 1 has left the 10 min window
        _cdr("5", 11, B, A),
    ]
    got = assert_parity(cdrs, [])
    calls_10m = got[:, INDEX["calls_10m"]]
    assert calls_10m.tolist() == [0, 1, 1, 0, 2, 0]
    assert got[:, INDEX["calls_1h"]].tolist() == [0, 1, 1, 0, 3, 0]
    assert got[1, INDEX["distinct_callees_1h"]] == 1 and got[4, INDEX["distinct_callees_1h"]] == 2
    assert got[4, INDEX["first_contact"]] == 0 and got[1, INDEX["first_contact"]] == 1
    assert got[5, INDEX["callee_called_caller_before"]] == 1
    assert got[5, INDEX["inbound_calls_24h"]] == 3 and got[4, INDEX["inbound_calls_24h"]] == 0
    assert np.array_equal(got[0], got[3], equal_nan=True)
    assert MINUTE_MS == 60_000


def test_registry_features() -> None:
    sub = Subscriber(msisdn=A, operator="kcell", biometric_status="verified",
                     sim_activated_at=T0 - dt.timedelta(days=2), verified_at=T0 - dt.timedelta(hours=12),
                     owner_ref="o1", roaming_country="TR")
    twin = Subscriber(msisdn=B, operator="kcell", biometric_status="pending",
                      sim_activated_at=T0, owner_ref="o1", subscriber_type="corporate")
    got = assert_parity([_cdr("1", 0, A, B), _cdr("2", 0, B, A), _cdr("3", 0, C, A)], [sub, twin])
    row = dict(zip(FEATURE_NAMES, got[0], strict=True))
    assert row["biometric_status"] == 1 and row["days_since_verified"] == 0.5 and row["sim_age_days"] == 2
    assert row["numbers_per_owner"] == 2 and row["roaming"] == 1 and row["is_corporate"] == 0
    assert got[1, INDEX["is_corporate"]] == 1 and np.isnan(got[1, INDEX["days_since_verified"]])
    assert got[2, INDEX["in_registry"]] == 0 and got[2, INDEX["biometric_status"]] == 0


def test_empty_and_unsorted_input() -> None:
    assert build(cdr_table([]), subscriber_table([])).shape == (0, len(FEATURE_NAMES))
    cdrs, subs = random_world(7, n_calls=60)
    forward = build(cdr_table(cdrs), subscriber_table(subs))
    backward = build(cdr_table(cdrs[::-1]), subscriber_table(subs))
    # Reversal changes which duplicate delivery is first, not the features of identical copies.
    np.testing.assert_allclose(forward[::-1], backward, rtol=1e-9, atol=1e-9, equal_nan=True)


def test_bad_tables_are_refused_with_the_field_named() -> None:
    table = cdr_table([_cdr("1", 0, A, B)])
    with pytest.raises(FeatureTableError, match="start_time"):
        build(table.drop_columns(["start_time"]), subscriber_table([]))
    bad = table.set_column(table.schema.get_field_index("ingress"), "ingress", pa.array(["satellite"]))
    with pytest.raises(FeatureTableError, match="satellite"):
        build(bad, subscriber_table([]))
    nulls = table.set_column(table.schema.get_field_index("a_number"), "a_number", pa.array([None], pa.string()))
    with pytest.raises(FeatureTableError, match="'a_number' has 1 null"):
        build(nulls, subscriber_table([]))


def test_read_parquet_folder_and_jsonl(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from features.contracts import encode

    cdrs, subs = random_world(11, n_calls=50)
    folder = tmp_path / "cdrs" / "day=2026-11-20"
    folder.mkdir(parents=True)
    pq.write_table(cdr_table(cdrs), folder / "part-0.parquet")
    pq.write_table(subscriber_table(subs), tmp_path / "subscribers.parquet")
    (tmp_path / "cdrs.jsonl").write_bytes(b"\n".join(encode(c) for c in cdrs) + b"\n")
    (tmp_path / "subscribers.jsonl").write_bytes(b"\n".join(encode(s) for s in subs) + b"\n")
    want = oracle_features(cdrs, subs)
    for c_path, s_path in (("cdrs", "subscribers.parquet"), ("cdrs.jsonl", "subscribers.jsonl")):
        got = build(read_cdrs(tmp_path / c_path), read_subscribers(tmp_path / s_path))
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9, equal_nan=True)


_DIGITS = st.text(alphabet="0123456789", min_size=0, max_size=16)


@settings(max_examples=300, deadline=None)
@given(numbers=st.lists(
    st.one_of(
        st.builds(lambda p, d: p + d, st.sampled_from(["+7", "+77", "+770", "+7747", "+771", "+76", "+79", "+1", "+0", ""]),
                  _DIGITS),
        st.sampled_from(["112", "101", "1040", "7", "+", "+77011234567\n", "+7701١234567"]),
        st.text(max_size=14),
    ),
    max_size=40,
))
def test_vectorised_classification_equals_classify(numbers: list[str]) -> None:
    from features.numbering import classify
    from features.offline import classify_numbers

    got = classify_numbers(pa.array(numbers, pa.string())).tolist()
    assert got == [int(classify(x)) for x in numbers]
