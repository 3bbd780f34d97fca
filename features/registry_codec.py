"""The packed form of one ``subscriber/1`` record, as the feature store keeps it.

The registry must stay small at national scale (tens of millions of numbers), so a
record is a short binary string, stored as one field of a bucketed Redis hash
(``features/redisstore.py``; the key layout is specified in the README):

====== ======= =============================================================
offset bytes   meaning
====== ======= =============================================================
0      1       flags: bits 0-2 biometric code (``Biometric``), bit 3 corporate,
               bit 4 has verified_at, bit 5 has roaming_country, bit 6 has owner,
               bit 7 timestamps in milliseconds (else whole seconds)
1      1       operator code (the store's operator dictionary)
2      4 or 6  sim_activated_at: epoch seconds (u32) or milliseconds (u48)
..     4 or 6  verified_at, when bit 4 is set
..     2       roaming_country (ASCII), when bit 5 is set
-8     8       keyed BLAKE2b-64 of owner_ref, when bit 6 is set (always last)
====== ======= =============================================================

Seconds are used when both timestamps are whole seconds (the common case), which keeps
the features exact to the millisecond either way. The owner reference itself is never
stored, only its keyed digest, which is what ``numbers_per_owner`` needs.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final

from features._registry_pack import OwnerDigest
from features.contracts import Subscriber
from features.definitions import BIOMETRIC_CODES, Biometric
from features.errors import StoreRecordError

EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
ONE_MS: Final = dt.timedelta(milliseconds=1)
OWNER_DIGEST_BYTES: Final = 8
DEV_OWNER_KEY: Final = b"callscreen-dev-owner-key-0123456789"

_BIOMETRIC_NAMES: Final = {int(code): name for name, code in BIOMETRIC_CODES.items()}
_MAX_U32: Final = 2**32
_MAX_U48: Final = 2**48


def epoch_ms(t: dt.datetime) -> int:
    """Exact epoch milliseconds (floored), without float rounding.

    >>> epoch_ms(dt.datetime(2026, 11, 20, 8, 15, 30, 250000, tzinfo=dt.UTC))
    1795162530250
    >>> epoch_ms(dt.datetime(1969, 12, 31, 23, 59, 59, 999500, tzinfo=dt.UTC))
    -1
    """
    s = t.timestamp()
    if 0 <= s < 2**32:
        # the whole seconds of a float timestamp are exact in 1970-2106 (a double resolves
        # 2^-20 s there, finer than the 1 us a datetime holds); the microseconds are exact.
        return int(s) * 1000 + t.microsecond // 1000
    return (t - EPOCH) // ONE_MS


def from_ms(ms: int) -> dt.datetime:
    return EPOCH + ms * ONE_MS


@dataclass(frozen=True, slots=True)
class Unpacked:
    """The decoded fields of a packed record."""

    biometric: int
    corporate: bool
    operator_code: int
    sim_activated_ms: int
    verified_ms: int | None
    roaming_country: str | None
    owner: bytes | None


class OwnerHasher:
    """Keyed BLAKE2b-64 of owner references (an unkeyed hash of a short id is enumerable).

    The digest is ``hashlib.blake2b(owner_ref.encode(), digest_size=8, key=key)``, computed by
    ``_registry_pack.OwnerDigest`` (hashlib's per-call object costs more than the hash).

    >>> import hashlib
    >>> OwnerHasher()("owner-1") == hashlib.blake2b(b"owner-1", digest_size=8, key=DEV_OWNER_KEY).digest()
    True
    """

    __slots__ = ("_digest", "_key")

    def __init__(self, key: bytes = DEV_OWNER_KEY) -> None:
        if len(key) < 16:
            raise ValueError(f"owner hash key needs at least 16 bytes, got {len(key)}")
        self._key = key[:64]
        self._digest = OwnerDigest(self._key)

    @property
    def key(self) -> bytes:
        return self._key

    def __call__(self, owner_ref: str) -> bytes:
        return self._digest(owner_ref)


def pack(sub: Subscriber, operator_code: int, owner: bytes | None) -> bytes:
    """Pack one record; ``owner`` is the record's owner digest (``OwnerHasher``) or None."""
    return pack_fields(
        BIOMETRIC_CODES[sub.biometric_status],
        sub.subscriber_type == "corporate",
        operator_code,
        epoch_ms(sub.sim_activated_at),
        None if sub.verified_at is None else epoch_ms(sub.verified_at),
        sub.roaming_country,
        owner,
    )


def pack_fields(
    biometric: int,
    corporate: bool,
    operator_code: int,
    sim_activated_ms: int,
    verified_ms: int | None,
    roaming_country: str | None,
    owner: bytes | None,
) -> bytes:
    if not 0 < operator_code < 256:
        raise StoreRecordError(f"operator code {operator_code} out of range 1-255; fix: fewer than 255 operators")
    flags = biometric | (8 if corporate else 0)
    ms = sim_activated_ms % 1000 != 0 or (verified_ms is not None and verified_ms % 1000 != 0)
    width = 6 if ms else 4
    for name, value in (("sim_activated_at", sim_activated_ms), ("verified_at", verified_ms)):
        if value is not None and not 0 <= (value if ms else value // 1000) < (_MAX_U48 if ms else _MAX_U32):
            raise StoreRecordError(f"subscriber/1: {name} {value} ms is outside 1970-2106; fix: send a real date")
    parts = [b"", bytes((operator_code,)), _int(sim_activated_ms, ms, width)]
    if verified_ms is not None:
        flags |= 16
        parts.append(_int(verified_ms, ms, width))
    if roaming_country is not None:
        flags |= 32
        parts.append(roaming_country.encode("ascii"))
    if owner is not None:
        flags |= 64
        parts.append(owner)
    if ms:
        flags |= 128
    parts[0] = bytes((flags,))
    return b"".join(parts)


def _int(value: int, ms: bool, width: int) -> bytes:
    return (value if ms else value // 1000).to_bytes(width, "big")


def unpack(data: bytes) -> Unpacked:
    """Decode a packed record.

    >>> u = unpack(pack_fields(1, False, 3, 1_700_000_000_000, None, "TR", b"o" * 8))
    >>> u.biometric, u.operator_code, u.sim_activated_ms, u.verified_ms, u.roaming_country
    (1, 3, 1700000000000, None, 'TR')
    """
    if len(data) < 6:
        raise StoreRecordError(f"registry record of {len(data)} bytes is too short; fix: reload the registry")
    flags = data[0]
    width = 6 if flags & 128 else 4
    scale = 1 if flags & 128 else 1000
    pos = 2
    sim = int.from_bytes(data[pos : pos + width], "big") * scale
    pos += width
    verified = None
    if flags & 16:
        verified = int.from_bytes(data[pos : pos + width], "big") * scale
        pos += width
    roaming = None
    if flags & 32:
        roaming = data[pos : pos + 2].decode("ascii")
        pos += 2
    owner = data[pos : pos + OWNER_DIGEST_BYTES] if flags & 64 else None
    return Unpacked(flags & 7, bool(flags & 8), data[1], sim, verified, roaming, owner)


def to_subscriber(u: Unpacked, msisdn: str, operator: str) -> Subscriber:
    """The record as stored; ``owner_ref`` is the hex owner digest (the reference itself is not kept)."""
    return Subscriber(
        msisdn=msisdn,
        operator=operator,
        biometric_status=_BIOMETRIC_NAMES.get(u.biometric, "unverified"),  # type: ignore[arg-type]
        sim_activated_at=from_ms(u.sim_activated_ms),
        verified_at=None if u.verified_ms is None else from_ms(u.verified_ms),
        subscriber_type="corporate" if u.corporate else "individual",
        roaming_country=u.roaming_country,
        owner_ref=None if u.owner is None else u.owner.hex(),
    )


def bucket(msisdn: str) -> tuple[str, bytes]:
    """Bucket and one-byte field of a number: all but the last two digits, and those two.

    >>> bucket("+77011234567")
    ('+770112345', b'C')
    """
    return msisdn[:-2], bytes((int(msisdn[-2:]),))


def owner_slot(owner: bytes) -> tuple[bytes, bytes]:
    """Owner-count bucket (first 2 digest bytes) and field (the other 6)."""
    return owner[:2], owner[2:]


UNKNOWN: Final = int(Biometric.UNKNOWN)
