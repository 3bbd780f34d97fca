"""Keyed hashes: HMAC-SHA256 per purpose; the only form numbers take in logs and exports."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from features.pseudonym import KeyedHasher

KEY = b"k" * 32
numbers = st.builds(lambda d: "+7" + d, st.text("0123456789", min_size=10, max_size=10))


@given(numbers)
def test_digest_is_hmac_sha256_under_the_key_with_the_purpose_mixed_in(number: str) -> None:
    expected = hmac.new(KEY, b"callscreen/feed\x00" + number.encode(), hashlib.sha256).hexdigest()
    assert KeyedHasher(KEY, "feed").digest(number) == expected
    assert len(expected) == 64


@given(numbers)
def test_deterministic_and_short_is_a_prefix(number: str) -> None:
    h = KeyedHasher(KEY, "log")
    assert h.digest(number) == KeyedHasher(KEY, "log").digest(number)
    assert h.short(number) == h.digest(number)[:16]


@given(numbers)
def test_purposes_and_keys_give_unrelated_hashes(number: str) -> None:
    log, feed = KeyedHasher(KEY, "log"), KeyedHasher(KEY, "feed")
    assert log.digest(number) != feed.digest(number)  # same key reused by mistake: still unrelated
    assert KeyedHasher(b"j" * 32, "log").digest(number) != log.digest(number)


@given(numbers)
def test_hash_never_contains_the_number(number: str) -> None:
    assert number[1:] not in KeyedHasher(KEY, "log").digest(number)


@given(numbers, numbers)
def test_distinct_numbers_distinct_hashes(a: str, b: str) -> None:
    h = KeyedHasher(KEY, "feed")
    assert (h.digest(a) == h.digest(b)) == (a == b)


@pytest.mark.parametrize("key", [b"", b"short", b"x" * 15])
def test_short_keys_are_refused(key: bytes) -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        KeyedHasher(key, "log")
