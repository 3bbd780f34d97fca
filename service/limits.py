"""Per-key rate limits (token buckets) and per-route body-size limits.

A token bucket per key: ``rate`` tokens per second refill a bucket of ``burst`` tokens;
a request takes one or answers 429 with ``Retry-After`` (whole seconds, rounded up, as
RFC 9110 wants). The buckets live in the API process: with N replicas a key gets N times
its rate, which is the usual trade for not putting Redis on the hot path twice.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

from starlette.requests import Request

from service.errors import BodyTooLargeError, RateLimitExceededError

# Bytes a route accepts. One cdr/1 is ~300 bytes; a batch holds up to 1,000.
BODY_LIMITS: Final[Mapping[str, int]] = {
    "small": 16 * 1024,
    "batch": 2 * 1024 * 1024,
    "bulk": 64 * 1024 * 1024,
}


@dataclass(frozen=True, kw_only=True)
class RateLimitConfig:
    """Requests per second and burst of one key, by role; a key's own ``rate_per_s`` overrides the rate."""

    per_role: Mapping[str, float] = field(
        default_factory=lambda: {
            "switch": 20_000.0,
            "analyst": 50.0,
            "bank": 50.0,
            "data_scientist": 20.0,
            "admin": 200.0,
        }
    )
    burst_s: float = 1.0
    """The bucket holds ``rate * burst_s`` tokens (at least 1): how long a key may burst at full speed."""


class _Bucket:
    __slots__ = ("capacity", "rate", "stamp", "tokens")

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.stamp = now


class RateLimiter:
    """Token bucket per key name.

    >>> t = [0.0]
    >>> rl = RateLimiter(clock=lambda: t[0])
    >>> rl.take("k", rate=1.0, burst_s=1.0)
    >>> try:
    ...     rl.take("k", rate=1.0, burst_s=1.0)
    ... except RateLimitExceededError as e:
    ...     print(e.retry_after_s)
    1.0
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str, *, rate: float, burst_s: float) -> None:
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None or bucket.rate != rate:
            bucket = self._buckets[key] = _Bucket(rate, max(1.0, rate * burst_s), now)
        else:
            bucket.tokens = min(bucket.capacity, bucket.tokens + (now - bucket.stamp) * rate)
            bucket.stamp = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return
        wait = (1.0 - bucket.tokens) / rate
        raise RateLimitExceededError(
            f"rate limit of {rate:g} requests/s for this key exceeded; retry after {wait:.3f} s",
            retry_after_s=wait,
        )


def retry_after_header(seconds: float) -> str:
    """``Retry-After`` value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes before reading them when the length is declared."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLargeError(f"body of {declared} bytes exceeds this route's limit of {limit} bytes")
    if declared is not None:
        body = await request.body()
        if len(body) > limit:
            raise BodyTooLargeError(f"body exceeds this route's limit of {limit} bytes")
        return body
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError(f"body exceeds this route's limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
