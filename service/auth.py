"""API keys: one role each, optionally scoped to an operator, stored only as SHA-256 digests.

A presented key is hashed, its digest looked up among the stored digests and confirmed
by ``hmac.compare_digest``. Nothing here compares the presented key itself with a stored
one: the lookup works on SHA-256 digests, and which digest a guess has (and so how a
lookup of it behaves) says nothing about how much of the guess was right, since nobody
can steer a SHA-256. The final comparison is constant-time as well. Keys are long random
strings (``callscreen keys new``), so an unsalted SHA-256 is enough: there is no
dictionary to attack.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

from service.errors import (
    ApiKeyInvalidError,
    ApiKeyMissingError,
    KeyConfigError,
    OperatorForbiddenError,
    RoleForbiddenError,
)

Role = Literal["switch", "analyst", "bank", "data_scientist", "admin"]
ROLES: Final[tuple[str, ...]] = get_args(Role)
HEADER: Final = "x-api-key"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_OPERATOR = re.compile(r"^[a-z0-9_-]{2,32}$")

# Fixed development keys, accepted only with CALLSCREEN_ENV=development so that the
# README's curl examples work as written; deploy refuses them in production.
DEV_KEYS: Final[tuple[tuple[str, Role, str | None], ...]] = (
    ("dev-switch-kcell", "switch", "kcell"),
    ("dev-switch-beeline", "switch", "beeline"),
    ("dev-analyst", "analyst", None),
    ("dev-bank", "bank", None),
    ("dev-ds", "data_scientist", None),
    ("dev-admin", "admin", None),
)


def digest(raw: str) -> str:
    """SHA-256 hex of a raw key, the only form in which keys are stored.

    >>> digest("dev-admin")[:12]
    'de72d648e29b'
    """
    return hashlib.sha256(raw.encode()).hexdigest()


def new_key() -> str:
    """A fresh random key (256 bits, URL-safe)."""
    return "cs_" + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One configured key. ``operator`` scopes a switch key to the calls and subscribers of one operator."""

    name: str
    role: Role
    sha256: str
    operator: str | None = None
    rate_per_s: float | None = None
    """Per-key override of the rate limit (requests per second); None: the role's default."""

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "role": self.role, "sha256": self.sha256}
        if self.operator is not None:
            out["operator"] = self.operator
        if self.rate_per_s is not None:
            out["rate_per_s"] = self.rate_per_s
        return out


def parse_keys(text: str) -> list[ApiKey]:
    """Parse the JSON list of CALLSCREEN_API_KEYS, naming the entry and the fix on any problem.

    >>> [k.role for k in parse_keys('[{"name":"a","role":"admin","sha256":"' + "0" * 64 + '"}]')]
    ['admin']
    """
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise KeyConfigError(
            f"CALLSCREEN_API_KEYS is not JSON ({exc}); expected a list of "
            '{"name","role","sha256","operator"?} objects (see `callscreen keys new`)'
        ) from None
    if not isinstance(raw, list):
        raise KeyConfigError("CALLSCREEN_API_KEYS must be a JSON list of key objects")
    keys = [_key(i, item) for i, item in enumerate(raw)]
    names = [k.name for k in keys]
    if len(set(names)) != len(names):
        raise KeyConfigError("CALLSCREEN_API_KEYS has duplicate key names; every key needs its own name")
    return keys


def _key(i: int, item: Any) -> ApiKey:
    where = f"CALLSCREEN_API_KEYS[{i}]"
    if not isinstance(item, Mapping):
        raise KeyConfigError(f"{where} is {type(item).__name__}, expected an object")
    unknown = set(item) - {"name", "role", "sha256", "operator", "rate_per_s"}
    if unknown:
        raise KeyConfigError(f"{where} has unknown fields {sorted(unknown)}; allowed: name, role, sha256, operator, rate_per_s")
    name, role, sha, operator = item.get("name"), item.get("role"), item.get("sha256"), item.get("operator")
    rate = item.get("rate_per_s")
    if not isinstance(name, str) or not name:
        raise KeyConfigError(f"{where}.name is {name!r}; expected a non-empty string")
    if role not in ROLES:
        raise KeyConfigError(f"{where}.role is {role!r}; expected one of {', '.join(ROLES)}")
    if not isinstance(sha, str) or not _HEX64.fullmatch(sha):
        raise KeyConfigError(f"{where}.sha256 is not 64 lowercase hex chars; use the line `callscreen keys new` prints")
    if operator is not None and (not isinstance(operator, str) or not _OPERATOR.fullmatch(operator)):
        raise KeyConfigError(f"{where}.operator is {operator!r}; expected 2-32 chars of [a-z0-9_-]")
    if role == "switch" and operator is None:
        raise KeyConfigError(f"{where}: a switch key needs an operator (the operator whose calls it screens)")
    if rate is not None and (not isinstance(rate, (int, float)) or isinstance(rate, bool) or rate <= 0):
        raise KeyConfigError(f"{where}.rate_per_s is {rate!r}; expected a number > 0")
    return ApiKey(name=name, role=role, sha256=sha, operator=operator, rate_per_s=None if rate is None else float(rate))


def dev_keys() -> list[ApiKey]:
    """The fixed development keys (only for CALLSCREEN_ENV=development)."""
    return [ApiKey(name=raw, role=role, sha256=digest(raw), operator=op) for raw, role, op in DEV_KEYS]


class KeyRing:
    """The configured keys; ``authenticate`` turns a header value into an ApiKey or raises."""

    __slots__ = ("_by_digest", "_keys")

    def __init__(self, keys: Iterable[ApiKey]) -> None:
        self._keys = tuple(keys)
        # by raw digest bytes; two entries with one digest: the later wins, as the scan did
        self._by_digest = {bytes.fromhex(k.sha256): (k, bytes.fromhex(k.sha256)) for k in self._keys}

    def __len__(self) -> int:
        return len(self._keys)

    def authenticate(self, presented: str | None) -> ApiKey:
        if not presented:
            raise ApiKeyMissingError("missing X-API-Key header; send the key issued for your role")
        candidate = hashlib.sha256(presented.encode()).digest()
        found = self._by_digest.get(candidate)
        if found is None or not hmac.compare_digest(candidate, found[1]):
            raise ApiKeyInvalidError("the X-API-Key is not valid; check the key or ask an admin for a new one")
        return found[0]


def authorize(key: ApiKey, roles: frozenset[str]) -> None:
    """Raise RoleForbiddenError unless ``key``'s role is one of ``roles``."""
    if key.role not in roles:
        raise RoleForbiddenError(
            f"role '{key.role}' may not call this endpoint; allowed roles: {', '.join(sorted(roles))}"
        )


def check_operator(key: ApiKey, operator: str) -> None:
    """Raise OperatorForbiddenError when a scoped key names another operator's record."""
    if key.operator is not None and key.operator != operator:
        raise OperatorForbiddenError(
            f"key '{key.name}' is scoped to operator '{key.operator}' and may not act for operator '{operator}'"
        )
