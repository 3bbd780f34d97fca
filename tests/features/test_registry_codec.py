"""The packed registry record round-trips every field the features use, to the millisecond."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from features.errors import StoreRecordError
from features.registry_codec import EPOCH, ONE_MS, bucket, epoch_ms, pack_fields, unpack

MS_2106 = 2**32 * 1000 - 1


@given(
    biometric=st.integers(1, 4),
    corporate=st.booleans(),
    op=st.integers(1, 255),
    sim=st.integers(0, MS_2106),
    verified=st.none() | st.integers(0, MS_2106),
    roaming=st.none() | st.sampled_from(["TR", "RU", "DE"]),
    owner=st.none() | st.binary(min_size=8, max_size=8),
)
def test_round_trip(biometric: int, corporate: bool, op: int, sim: int, verified: int | None,
                    roaming: str | None, owner: bytes | None) -> None:
    packed = pack_fields(biometric, corporate, op, sim, verified, roaming, owner)
    u = unpack(packed)
    assert (u.biometric, u.corporate, u.operator_code, u.sim_activated_ms, u.verified_ms, u.roaming_country,
            u.owner) == (biometric, corporate, op, sim, verified, roaming, owner)
    whole_seconds = sim % 1000 == 0 and (verified is None or verified % 1000 == 0)
    assert len(packed) == 2 + (4 if whole_seconds else 6) * (1 + (verified is not None)) + (
        2 if roaming else 0) + (8 if owner else 0)


@given(st.integers(-(10**12), 2**45), st.integers(0, 999), st.sampled_from([0, 5, -3, 14]))
def test_epoch_ms_is_exact(ms: int, us: int, hours: int) -> None:
    t = (EPOCH + dt.timedelta(milliseconds=ms, microseconds=us)).astimezone(dt.timezone(dt.timedelta(hours=hours)))
    assert epoch_ms(t) == (t - EPOCH) // ONE_MS == ms


def test_refuses_what_it_cannot_hold() -> None:
    with pytest.raises(StoreRecordError, match="sim_activated_at"):
        pack_fields(1, False, 1, -1000, None, None, None)
    with pytest.raises(StoreRecordError, match="operator code"):
        pack_fields(1, False, 256, 0, None, None, None)
    with pytest.raises(StoreRecordError, match="too short"):
        unpack(b"\x01")


def test_bucket_is_all_but_the_last_two_digits() -> None:
    assert bucket("+77011234500") == ("+770112345", b"\x00")
    assert bucket("+77011234599") == ("+770112345", b"c")
