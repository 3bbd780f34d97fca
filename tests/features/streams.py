"""Seeded random call streams that exercise every edge of the feature definitions.

Heavy-tailed callers, shared IMEIs, duplicate deliveries, ties in start_time, calls
exactly one window old, reciprocal calls, missing IMEI/cell/outcome, registry records
with and without owner_ref, roaming, every biometric status, numbers not in the registry.
Used by the offline parity test and available to the online store's parity test.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Literal

from features.contracts import Cdr, Subscriber
from features.definitions import HISTORY_MS, WINDOWS_MS

Status = Literal["verified", "pending", "failed", "unverified"]
_BASE = dt.datetime(2026, 11, 20, 3, 0, tzinfo=dt.UTC)
_STATUSES: tuple[Status, ...] = ("verified", "pending", "failed", "unverified")


def _number_pool(rng: random.Random, size: int) -> list[str]:
    prefixes = ["+7701", "+7705", "+7747", "+7777", "+7727", "+7717", "+7916", "+7600", "+90532", "+4930"]
    pool: set[str] = set()
    while len(pool) < size:
        p = rng.choice(prefixes)
        pool.add(p + "".join(rng.choice("0123456789") for _ in range(12 - len(p))))
    return sorted(pool)


def random_world(seed: int, n_calls: int = 400) -> tuple[list[Cdr], list[Subscriber]]:
    """A seeded stream of ``cdr/1`` records (shuffled, with duplicates) and a registry."""
    rng = random.Random(seed)
    numbers = _number_pool(rng, max(8, n_calls // 8))
    callees = numbers + ["112", "102", "1414", "7000"]
    # Heavy tail: a few numbers make most calls.
    weights = [1.0 / (i + 1) ** 1.2 for i in range(len(numbers))]
    imeis = [f"35{rng.randrange(10**12):012d}" for _ in range(max(3, n_calls // 40))]
    cells = [f"cell-{i}" for i in range(max(3, n_calls // 30))]
    owners = [f"owner-{i}" for i in range(max(2, n_calls // 60))]
    # A coarse time grid makes ties common; one minute steps over about three days.
    span_min = rng.choice([60, 600, 3 * 24 * 60])

    subscribers: list[Subscriber] = []
    for msisdn in numbers:
        if rng.random() < 0.3:
            continue  # not in the registry
        status = rng.choice(_STATUSES)
        activated = _BASE - dt.timedelta(days=rng.uniform(-2, 400), milliseconds=rng.randrange(1000))
        verified = (
            activated + dt.timedelta(days=rng.uniform(0, 30)) if rng.random() < 0.6 else None
        )
        sub = Subscriber(
            msisdn=msisdn,
            operator=rng.choice(["kcell", "beeline", "tele2"]),
            biometric_status=status,
            sim_activated_at=activated,
            verified_at=verified,
            subscriber_type=rng.choice(["individual", "individual", "corporate"]),
            roaming_country=rng.choice([None, None, None, "TR", "RU"]),
            owner_ref=rng.choice([None, *owners]),
        )
        subscribers.append(sub)
        if rng.random() < 0.05:  # a later record replaces this one
            subscribers.append(Subscriber(
                msisdn=msisdn, operator=sub.operator, biometric_status=rng.choice(_STATUSES),
                sim_activated_at=activated, owner_ref=rng.choice([None, *owners]),
            ))

    def call(i: int, a: str, b: str, when: dt.datetime) -> Cdr:
        answered = rng.choice([True, True, False, None])
        if answered is True:
            duration: float | None = rng.choice([0.0, 3.5, 9.999, 10.0, rng.expovariate(1 / 60)])
        elif answered is False:
            duration = rng.choice([0.0, None])
        else:
            duration = rng.choice([None, 12.0])
        return Cdr(
            call_id=f"c{seed}-{i}",
            operator=rng.choice(["kcell", "beeline", "tele2"]),
            start_time=when,
            a_number=a,
            b_number=b,
            ingress=rng.choice(["mobile", "mobile", "fixed", "international", "voip"]),
            a_imei=rng.choice([None, *imeis]),
            a_cell_id=rng.choice([None, *cells]),
            answered=answered,
            duration_s=duration,
            ring_s=rng.choice([None, 2.0]),
        )

    cdrs: list[Cdr] = []
    for i in range(n_calls):
        a = rng.choices(numbers, weights)[0]
        when = _BASE + dt.timedelta(minutes=rng.randrange(span_min), milliseconds=rng.choice([0, 0, 0, 250]))
        roll = rng.random()
        if roll < 0.1 and cdrs:  # reciprocal: answer an earlier caller
            prev = rng.choice(cdrs)
            if prev.b_number.startswith("+"):
                cdrs.append(call(i, prev.b_number, prev.a_number, when))
                continue
        if roll < 0.2 and cdrs:  # exactly one window (or the whole history) after an earlier call
            prev = rng.choice(cdrs)
            width = rng.choice([*WINDOWS_MS.values(), HISTORY_MS])
            follow = prev.start_time + dt.timedelta(milliseconds=width)
            b = prev.b_number if rng.random() < 0.5 else prev.a_number
            caller = prev.a_number if b != prev.a_number else prev.b_number
            if caller.startswith("+"):
                cdrs.append(call(i, caller, b, follow))
                continue
        cdrs.append(call(i, a, rng.choice(callees), when))

    for c in rng.sample(cdrs, k=len(cdrs) // 20):  # duplicate deliveries
        cdrs.append(c)
    rng.shuffle(cdrs)
    return cdrs, subscribers
