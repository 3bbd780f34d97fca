"""Fraud typologies: who the fraudsters are (drawn once) and the calls they make each day.

* vishing: phone farms; devices holding several fresh or mule-verified SIMs (a few
  hijacked old SIMs too), bursts to many distinct victims biased to the elderly, long
  answered calls; each SIM lives one to three days.
* spoofing: CLI spoofing over international or VoIP trunks, presenting a real
  subscriber's number (who is at home), an unassigned Kazakh mobile number, or a bank
  hotline; each presented number is used for a handful of calls.
* wangiri: one-ring bursts from rented premium foreign ranges.
* simbox: many SIMs in one device at one static cell, outbound only, around the clock.
* robocall: recorded messages of similar length to sequential blocks of subscribers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from training import calls as C
from training.population import PROFILES, YEAR_MS, Population
from training.world import DAY_MS, G, I, OPERATOR_SHARE, PREMIUM_PREFIXES, T, World

FLAT_PROFILE = np.array([6, 5, 5, 5, 5, 6, 7, 8, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 8, 8, 7, 7], float)
FLAT_PROFILE /= FLAT_PROFILE.sum()


@dataclass
class SimSlot:
    """A fraud SIM in a device, active on days [first, last]."""

    entity: int
    device: int
    cell: int
    first: int
    last: int


@dataclass
class Fraud:
    farm_sims: list[list[SimSlot]] = field(default_factory=list)  # per farm
    farm_active: list[np.ndarray] = field(default_factory=list)  # per farm, bool per day
    # Each actor has its own style (rates, gaps, answer rates), so that no single setting of a
    # typology is all the model ever sees.
    farm_style: list[tuple[float, float, float]] = field(default_factory=list)  # calls/SIM/day, gap s, answer
    box_rate: list[float] = field(default_factory=list)
    spoof_style: list[tuple[float, float, float]] = field(default_factory=list)  # calls/day, P(new CLI), P(real sub)
    wangiri_rate: list[float] = field(default_factory=list)
    box_sims: list[list[SimSlot]] = field(default_factory=list)
    wangiri: list[tuple[int, np.ndarray]] = field(default_factory=list)  # (day, entity ids)
    spoof_days: list[np.ndarray] = field(default_factory=list)
    unassigned: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    robo: list[tuple[int, np.ndarray]] = field(default_factory=list)  # (entity, active days)
    robo_mobile: dict[int, tuple[int, int]] = field(default_factory=dict)  # entity -> (device, cell)
    by_number: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # individuals in number order


def _register_sims(world: World, rng: np.random.Generator, n: int, first_use_ms: np.ndarray, owners: np.ndarray,
                   *, hijacked: float, verified: float) -> np.ndarray:
    op = rng.choice(3, n, p=OPERATOR_SHARE).astype(np.int8)
    ids = world.add_numbers(world.draw_kz("mobile", n), G["fraud"], op)
    activated = first_use_ms - (rng.uniform(0.2, 12, n) * DAY_MS).astype(np.int64)
    u = rng.random(n)
    bio = np.where(u < verified, 0, rng.choice([1, 2, 3], n, p=[0.35, 0.1, 0.55]))
    verified_at = np.where(bio == 0, activated + (rng.uniform(0.01, 2, n) * DAY_MS).astype(np.int64), -1)
    old = rng.random(n) < hijacked  # hijacked long-standing SIMs: old, verified, their own owner
    activated[old] = first_use_ms[old] - (rng.uniform(1, 8, old.sum()) * YEAR_MS).astype(np.int64)
    bio[old] = 0
    verified_at[old] = first_use_ms[old] - (rng.uniform(0.1, 1.5, old.sum()) * YEAR_MS).astype(np.int64)
    owners = owners.copy()
    owners[old] = world.new_owners(int(old.sum()))
    world.register(ids, biometric=bio, activated_at=activated, verified_at=verified_at, owner=owners)
    return ids


def _slots(world: World, rng: np.random.Generator, *, start_day: int, n_slots: int, device: int, cell: int,
           life: tuple[int, int], mules: np.ndarray, hijacked: float, verified: float) -> list[SimSlot]:
    days = world.params.days
    plan: list[tuple[int, int]] = []
    for _ in range(n_slots):
        d = start_day + int(rng.integers(0, 2))
        while d < days:
            L = int(rng.integers(life[0], life[1] + 1))
            plan.append((d, min(days - 1, d + L - 1)))
            d += L
    if not plan:
        return []
    first = np.array([p[0] for p in plan])
    ids = _register_sims(world, rng, len(plan), world.start_ms + first * DAY_MS,
                         mules[rng.integers(0, len(mules), len(plan))], hijacked=hijacked, verified=verified)
    return [SimSlot(int(e), device, cell, f, l) for e, (f, l) in zip(ids.tolist(), plan)]


def build(world: World, pop: Population, rng: np.random.Generator) -> Fraud:
    p = world.params
    n, days, sc, s = p.subscribers, p.days, p.fraud_scale, p.shift
    fr = Fraud()
    fr.by_number = pop.individuals[np.argsort(np.array([world.numbers[e] for e in pop.individuals.tolist()]))]
    n_cells = len(world.cells)
    for _ in range(max(2, round(n / 6000 * sc))):
        start = int(rng.integers(0, max(1, days - 3)))
        # Most farms register SIMs on a few mules; some use one owner per SIM.
        mules = world.new_owners(int(rng.integers(2, 6)) if rng.random() < 0.7 else 500)
        slots: list[SimSlot] = []
        cell = int(rng.integers(0, n_cells))
        sims_per_device = (1, 2) if rng.random() < 0.25 else (2, 6)
        life = (1, 3) if rng.random() < 0.7 else (2, 7)
        verified = float(np.clip(rng.uniform(0.1, 0.7) + 0.2 * s, 0, 1))
        for dev in world.new_devices(int(rng.integers(2, 5))).tolist():
            slots += _slots(world, rng, start_day=start, n_slots=int(rng.integers(*sims_per_device)), device=dev,
                            cell=cell, life=life, mules=mules, hijacked=float(rng.uniform(0, 0.25)), verified=verified)
        fr.farm_sims.append(slots)
        fr.farm_active.append(rng.random(days) < 0.85)
        fr.farm_style.append((float(30 * np.exp(rng.normal(0, 0.45))), float(rng.uniform(60, 400)),
                              float(rng.uniform(0.3, 0.6))))
    for _ in range(max(1, round(n / 20000 * sc))):
        start = int(rng.integers(0, max(1, days - 5)))
        mules = world.new_owners(int(rng.integers(2, 4)))
        dev = int(world.new_devices(1)[0])
        fr.box_sims.append(_slots(world, rng, start_day=start, n_slots=int(rng.integers(16, 40)), device=dev,
                                  cell=int(rng.integers(0, n_cells)), life=(3, 12), mules=mules, hijacked=0.0,
                                  verified=float(rng.uniform(0.3, 0.9))))
        fr.box_rate.append(float(55 * np.exp(rng.normal(0, 0.4))))
    for _ in range(max(2, round(days / 4 * sc))):
        nums = world.add_numbers(world.draw_foreign(PREMIUM_PREFIXES, int(rng.integers(3, 10))), G["fraud"])
        fr.wangiri.append((int(rng.integers(0, days)), nums))
        fr.wangiri_rate.append(float(150 * np.exp(rng.normal(0, 0.5))))
    for _ in range(max(3, round(n / 8000 * sc))):
        fr.spoof_days.append(rng.random(days) < 0.4)
        fr.spoof_style.append((float(60 * np.exp(rng.normal(0, 0.4))), float(rng.uniform(0.2, 1.0)),
                               float(rng.uniform(0.3, 0.7))))
    fr.unassigned = world.add_numbers(world.draw_kz("mobile", max(200, n // 50)), G["fraud"])
    for _ in range(max(2, round(n / 15000 * sc))):
        active = rng.random(days) < 0.45
        if rng.random() < 0.5:
            e = int(world.add_numbers(world.draw_kz("nongeo", 1), G["fraud"])[0])
        else:
            e = int(_register_sims(world, rng, 1, np.array([world.start_ms]), world.new_owners(1),
                                   hijacked=0.0, verified=0.8)[0])
            fr.robo_mobile[e] = (int(world.new_devices(1)[0]), int(rng.integers(0, n_cells)))
        fr.robo.append((e, active))
    return fr


def _victims(pop: Population, k: int, rng: np.random.Generator) -> np.ndarray:
    return rng.choice(pop.individuals, k, p=pop.victim_weight)


def _bursts(world: World, day: int, k: int, rng: np.random.Generator, profile: np.ndarray,
            gap_s: float, sessions: int) -> np.ndarray:
    """Start times of ``k`` calls in a few sessions, consecutive calls ``gap_s`` apart on average."""
    if k == 0:
        return np.zeros(0, np.int64)
    starts = C.local_times(world, day, rng.choice(24, sessions, p=profile), rng)
    sess = np.sort(rng.integers(0, sessions, k))
    gaps = rng.exponential(gap_s * 1000, k).astype(np.int64) + 5_000
    t = np.empty(k, np.int64)
    for si in range(sessions):
        m = sess == si
        t[m] = starts[si] + np.cumsum(gaps[m])
    return t


def day_calls(world: World, pop: Population, fr: Fraud, day: int, rng: np.random.Generator) -> C.Calls:
    s = world.params.shift
    parts: list[C.Calls] = []

    def elderly_b(b: np.ndarray) -> np.ndarray:
        return np.asarray(world.group_of[b] == G["elderly"])

    # vishing
    for slots, active, (rate, gap, answer) in zip(fr.farm_sims, fr.farm_active, fr.farm_style):
        if not active[day]:
            continue
        for sl in slots:
            if not sl.first <= day <= sl.last:
                continue
            k = rng.poisson(rate * (1 + s))
            t = _bursts(world, day, k, rng, PROFILES[1], gap_s=gap, sessions=int(rng.integers(1, 4)))
            b = _victims(pop, k, rng)
            ans, dur, ring = C.outcome(k, rng, p_answer=np.where(elderly_b(b), answer + 0.15, answer),
                                       log_mean=np.where(rng.random(k) < 0.35, 2.7, 5.7), log_sd=0.7)
            parts.append(C.make(world, a=np.full(k, sl.entity), b=b, t=t, typ=T["vishing"], grp=G["fraud"],
                                answered=ans, duration=dur, ring=ring, rng=rng,
                                imei=np.full(k, sl.device), cell=np.full(k, world.cell_of(sl.entity, sl.cell))))
    # simbox
    for slots, box_rate in zip(fr.box_sims, fr.box_rate):
        for sl in slots:
            if not sl.first <= day <= sl.last:
                continue
            k = rng.poisson(box_rate)
            t = C.local_times(world, day, rng.choice(24, k, p=FLAT_PROFILE), rng)
            b = pop.individuals[rng.integers(0, len(pop.individuals), k)]
            ans, dur, ring = C.outcome(k, rng, p_answer=0.7, log_mean=4.2, log_sd=0.9)
            parts.append(C.make(world, a=np.full(k, sl.entity), b=b, t=t, typ=T["simbox"], grp=G["fraud"],
                                answered=ans, duration=dur, ring=ring, rng=rng,
                                imei=np.full(k, sl.device), cell=np.full(k, world.cell_of(sl.entity, sl.cell))))
    # wangiri
    for (wday, nums), w_rate in zip(fr.wangiri, fr.wangiri_rate):
        if wday != day:
            continue
        hour = rng.choice(24, p=FLAT_PROFILE)
        for e in nums.tolist():
            k = rng.poisson(w_rate)
            t = C.local_times(world, day, np.full(k, hour), rng) + rng.integers(0, 3 * 3_600_000, k)
            b = pop.individuals[rng.integers(0, len(pop.individuals), k)]
            ans = rng.random(k) < 0.03
            dur = np.where(ans, np.round(rng.uniform(2, 15, k), 3), 0.0)
            ring = np.round(rng.uniform(0.5, 3.0, k), 3)
            parts.append(C.make(world, a=np.full(k, e), b=b, t=t, typ=T["wangiri"], grp=G["fraud"], answered=ans,
                                duration=dur, ring=ring, rng=rng, ingress=I["international"]))
    # spoofing
    for active, (sp_rate, p_new_cli, p_real) in zip(fr.spoof_days, fr.spoof_style):
        if not active[day]:
            continue
        k = rng.poisson(sp_rate)
        if k == 0:
            continue
        per_cli = rng.geometric(p_new_cli, k)
        clis = np.repeat(np.arange(k), per_cli)[:k]
        n_cli = int(clis.max()) + 1
        src = rng.random(n_cli)
        p_unassigned = p_real + (1 - p_real) * 0.65
        cli = np.where(src < p_real, rng.choice(pop.at_home, n_cli),
                       np.where(src < p_unassigned, rng.choice(fr.unassigned, n_cli),
                                rng.choice(pop.bank_hotlines, n_cli)))
        a = cli[clis]
        t = _bursts(world, day, k, rng, PROFILES[1], gap_s=240, sessions=int(rng.integers(1, 3)))
        b = _victims(pop, k, rng)
        ans, dur, ring = C.outcome(k, rng, p_answer=np.where(elderly_b(b), 0.6, 0.5),
                                   log_mean=np.where(rng.random(k) < 0.3, 2.7, 5.6), log_sd=0.7)
        trunk = np.where(rng.random(n_cli) < 0.6, I["international"], I["voip"])[clis]
        for ing in (I["international"], I["voip"]):
            m = trunk == ing
            if m.any():
                parts.append(C.make(world, a=a[m], b=b[m], t=t[m], typ=T["spoofing"], grp=G["fraud"],
                                    answered=ans[m], duration=dur[m], ring=ring[m], rng=rng, ingress=ing))
    # robocall
    for e, active in fr.robo:
        if not active[day]:
            continue
        k = rng.poisson(220)
        t = _bursts(world, day, k, rng, PROFILES[1], gap_s=60, sessions=2)
        first = int(rng.integers(0, max(1, len(pop.individuals) - k)))
        b = fr.by_number[first : first + k]
        k = len(b)
        t = t[:k]
        ans = rng.random(k) < 0.5
        dur = np.where(ans, np.round(np.clip(rng.normal(25, 4, k), 8, 60), 3), 0.0)
        ring = np.round(np.where(ans, rng.uniform(3, 12, k), rng.uniform(15, 30, k)), 3)
        if e in fr.robo_mobile:
            dev, cell = fr.robo_mobile[e]
            parts.append(C.make(world, a=np.full(k, e), b=b, t=t, typ=T["robocall"], grp=G["fraud"], answered=ans,
                                duration=dur, ring=ring, rng=rng, imei=np.full(k, dev), cell=np.full(k, world.cell_of(e, cell))))
        else:
            parts.append(C.make(world, a=np.full(k, e), b=b, t=t, typ=T["robocall"], grp=G["fraud"], answered=ans,
                                duration=dur, ring=ring, rng=rng, ingress=I["voip"]))
    return C.Calls.concat(parts)
