"""One day's calls as parallel integer/float arrays (entity ids, not strings), and routing.

Routing decides which operator reports a call and what it can see. A KZ subscriber at
home on a mobile network is reported by its own operator (with IMEI and cell) for
on-net calls and calls to fixed, foreign or short-code numbers; an off-net mobile call
is reported by either end (half of them by the terminating operator, which sees no
device). Calls entering from outside (international, fixed, VoIP trunks) are reported
by the callee's operator, without device information.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from training.world import DAY_MS, I, World

LOCAL_OFFSET_MS = 5 * 3_600_000


@dataclass
class Calls:
    a: np.ndarray  # caller entity id
    b: np.ndarray  # callee entity id
    t: np.ndarray  # start, epoch ms
    ingress: np.ndarray
    op: np.ndarray  # reporting operator index
    imei: np.ndarray  # index into world.imeis, -1 none
    cell: np.ndarray  # index into world.cells, -1 none
    answered: np.ndarray
    duration: np.ndarray
    ring: np.ndarray
    typ: np.ndarray
    grp: np.ndarray

    def __len__(self) -> int:
        return len(self.a)

    @staticmethod
    def empty() -> Calls:
        i, f, b = np.zeros(0, np.int64), np.zeros(0), np.zeros(0, bool)
        s8, i32 = np.zeros(0, np.int8), np.zeros(0, np.int32)
        return Calls(a=i, b=i, t=i, ingress=s8, op=s8, imei=i32, cell=i32, answered=b, duration=f, ring=f,
                     typ=s8, grp=s8)

    @staticmethod
    def concat(parts: list[Calls]) -> Calls:
        parts = [p for p in parts if len(p)]
        if not parts:
            return Calls.empty()
        return Calls(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(Calls)))

    def take(self, idx: np.ndarray) -> Calls:
        return Calls(*(getattr(self, f.name)[idx] for f in fields(Calls)))


def local_times(world: World, day: int, hours: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Epoch ms for local (Asia/Almaty) ``hours`` of simulation day ``day`` plus a random offset in the hour."""
    base = world.start_ms - LOCAL_OFFSET_MS + day * DAY_MS
    return base + hours.astype(np.int64) * 3_600_000 + rng.integers(0, 3_600_000, len(hours))


def sample_hours(profile: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    p = np.asarray(profile, float)
    return rng.choice(24, n, p=p / p.sum())


def outcome(
    n: int,
    rng: np.random.Generator,
    *,
    p_answer: float | np.ndarray,
    log_mean: float | np.ndarray,
    log_sd: float,
    ring_answered: float = 8.0,
    ring_missed: tuple[float, float] = (12.0, 35.0),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """answered, duration_s (0 when missed), ring_s; rounded to milliseconds like a switch does."""
    answered = rng.random(n) < p_answer
    duration = np.where(answered, np.exp(rng.normal(log_mean, log_sd, n)), 0.0)
    ring = np.where(answered, rng.gamma(2.0, ring_answered / 2.0, n), rng.uniform(*ring_missed, n))
    return answered, np.round(np.minimum(duration, 7200.0), 3), np.round(ring, 3)


def route_mobile(
    world: World, a: np.ndarray, b: np.ndarray, imei: np.ndarray, cell: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(ingress, operator, imei, cell) for calls made by KZ mobile SIMs at home."""
    op_a = world.operator_of[a]
    op_b = world.operator_of[b]
    terminating = (op_b >= 0) & (op_b != op_a) & (rng.random(len(a)) < 0.5)
    op = np.where(terminating, op_b, op_a).astype(np.int8)
    return (
        np.full(len(a), I["mobile"], np.int8),
        op,
        np.where(terminating, -1, imei).astype(np.int32),
        np.where(terminating, -1, cell).astype(np.int32),
    )


def make(
    world: World,
    *,
    a: np.ndarray,
    b: np.ndarray,
    t: np.ndarray,
    typ: int,
    grp: np.ndarray | int,
    answered: np.ndarray,
    duration: np.ndarray,
    ring: np.ndarray,
    rng: np.random.Generator,
    ingress: int | None = None,
    imei: np.ndarray | None = None,
    cell: np.ndarray | None = None,
) -> Calls:
    """Build calls. ``ingress=None`` routes as mobile-originated (needs imei/cell); otherwise
    the call enters from outside over that trunk and the callee's operator reports it."""
    n = len(a)
    if ingress is None:
        if imei is None or cell is None:
            raise ValueError("mobile-originated calls need imei and cell arrays")
        ing, op, im, ce = route_mobile(world, a, b, imei, cell, rng)
    else:
        op = world.operator_of[b].astype(np.int8)
        ing = np.full(n, ingress, np.int8)
        im = np.full(n, -1, np.int32)
        ce = np.full(n, -1, np.int32)
    return Calls(
        a=a.astype(np.int64), b=b.astype(np.int64), t=t.astype(np.int64), ingress=ing, op=op, imei=im, cell=ce,
        answered=answered, duration=duration, ring=ring,
        typ=np.full(n, typ, np.int8), grp=np.broadcast_to(np.asarray(grp, np.int8), (n,)).copy(),
    )
