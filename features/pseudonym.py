"""Keyed hashes of phone numbers (and owner references): the only form they take in logs and exports.

An unkeyed hash is not a pseudonym (the Kazakh mobile range is about 1.3e8 numbers and
can be enumerated in minutes), so every hash here is HMAC-SHA256 under a secret key, with
one key per purpose: logs, the bank feed. The purpose is also mixed into the message so
that a key reused by mistake still yields unrelated hashes.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Literal

Purpose = Literal["log", "feed"]


class KeyedHasher:
    """HMAC-SHA256 of a value under the key of one purpose.

    >>> h = KeyedHasher(b"k" * 32, "log")
    >>> h.digest("+77011234567") == h.digest("+77011234567"), len(h.short("+77011234567"))
    (True, 16)
    """

    __slots__ = ("_key", "_prefix", "purpose")

    def __init__(self, key: bytes, purpose: Purpose) -> None:
        if len(key) < 16:
            raise ValueError(f"a {purpose} hash key needs at least 16 bytes, got {len(key)}")
        self._key = key
        self.purpose = purpose
        self._prefix = f"callscreen/{purpose}\x00".encode()

    def digest(self, value: str) -> str:
        """Full hex HMAC-SHA256 (64 chars): the bank-feed pseudonym."""
        return hmac.new(self._key, self._prefix + value.encode(), hashlib.sha256).hexdigest()

    def short(self, value: str) -> str:
        """First 16 hex chars: enough to correlate log lines, too short to be worth more."""
        return self.digest(value)[:16]
