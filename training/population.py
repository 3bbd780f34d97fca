"""Legitimate population and its daily calling behaviour.

Structure that naive rules trip over is deliberate: couriers and taxi dispatchers make
many short calls to strangers, call centres are corporate lines with high volume and
many SIMs per owner, operator service numbers one-ring thousands of subscribers, roamers'
own Kazakh numbers arrive over international trunks, some subscribers use a VoIP app that
presents their mobile number, new subscribers have young and sometimes unverified SIMs,
elderly people rarely call at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training import calls as C
from training.world import DAY_MS, G, I, OPERATOR_SHARE, OPERATORS, RELATIVE_PREFIXES, ROAMING_COUNTRIES, T, World

YEAR_MS = 365 * DAY_MS

# Local-hour weights (Asia/Almaty).
DAY_PROFILE = np.array([1, .5, .3, .2, .2, .4, 1.5, 4, 7, 9, 10, 10, 9, 9, 9, 9, 9, 10, 11, 11, 9, 7, 4, 2])
WORK_PROFILE = np.array([0, 0, 0, 0, 0, 0, .2, 1, 6, 10, 10, 10, 8, 10, 10, 10, 9, 8, 5, 2, .5, 0, 0, 0])
TAXI_PROFILE = np.array([4, 3, 2, 2, 2, 3, 5, 8, 9, 8, 7, 7, 7, 7, 7, 8, 9, 10, 10, 9, 8, 7, 6, 5])
ELDERLY_PROFILE = np.array([0, 0, 0, 0, 0, .2, 1, 4, 7, 9, 10, 10, 9, 8, 8, 8, 7, 6, 5, 3, 2, 1, .2, 0])
PROFILES = np.stack([DAY_PROFILE, WORK_PROFILE, TAXI_PROFILE, ELDERLY_PROFILE]).astype(float)
PROFILES /= PROFILES.sum(axis=1, keepdims=True)


@dataclass
class Callers:
    """Every legitimate originator, one row each."""

    entity: np.ndarray
    group: np.ndarray
    rate: np.ndarray  # mean calls per active day
    p_contact: np.ndarray  # share of calls to the contact graph (the rest to strangers)
    profile: np.ndarray  # row of PROFILES
    kind: np.ndarray  # 0 mobile at home, 1 roamer abroad, 2 fixed line, 3 voip line, 4 foreign number
    device: np.ndarray
    cells: np.ndarray  # (n, 3) home, work, other cell
    active_from: np.ndarray  # epoch ms
    weekend: np.ndarray  # weekend rate factor
    voip_share: np.ndarray  # share of calls placed through a VoIP app with the mobile CLI
    log_dur: np.ndarray  # log mean duration when answered


@dataclass
class Population:
    callers: Callers
    contacts_ptr: np.ndarray  # CSR over caller rows -> contacts (entity ids)
    contacts: np.ndarray
    individuals: np.ndarray  # entity ids of KZ individual subscribers (victim/stranger pool)
    victim_weight: np.ndarray  # fraud victim weights, biased to elderly
    at_home: np.ndarray  # entity ids of individuals at home (spoofable real numbers)
    elderly: np.ndarray
    businesses: np.ndarray
    bank_hotlines: np.ndarray
    short_codes: np.ndarray
    service: np.ndarray  # entity ids of operator one-ring service numbers
    service_op: np.ndarray


def _lognormal_rate(rng: np.random.Generator, mean: float, n: int, sd: float = 0.6) -> np.ndarray:
    return mean * np.exp(rng.normal(-sd * sd / 2, sd, n))


def build(world: World, rng: np.random.Generator) -> Population:
    """Draw the legitimate population into ``world``."""
    p = world.params
    n = p.subscribers
    s = p.shift
    cell_start = world.make_cells(max(200, n // 40))
    per_op = max(200, n // 40)
    start = world.start_ms
    end = start + p.days * DAY_MS

    # Group mix of individual subscribers; the shift moves it for held-out worlds.
    mix = {
        "courier": 0.010 * (1 + s), "taxi": 0.005 * (1 + s), "elderly": 0.11 - 0.02 * s,
        "roamer": 0.02 * (1 + s), "new_subscriber": 0.04 * (1 + s),
    }
    mix["normal"] = 1.0 - sum(mix.values())
    names = list(mix)
    grp_names = rng.choice(len(names), n, p=np.array(list(mix.values())))
    grp = np.array([G[names[i]] for i in range(len(names))], np.int8)[grp_names]
    op = rng.choice(len(OPERATORS), n, p=OPERATOR_SHARE).astype(np.int8)
    ids = world.add_numbers(world.draw_kz("mobile", n), grp, op)

    # Registry: biometric status, activation, verification, owners.
    activated = start - (rng.uniform(0.3, 12, n) * YEAR_MS).astype(np.int64)
    bio = rng.choice(4, n, p=[0.93, 0.04, 0.01, 0.02])
    new = grp == G["new_subscriber"]
    activated[new] = start + (rng.uniform(-25, p.days - 2, new.sum()) * DAY_MS).astype(np.int64)
    bio[new] = rng.choice(4, new.sum(), p=[0.62, 0.25, 0.03, 0.10])
    eld = grp == G["elderly"]
    bio[eld] = rng.choice(4, eld.sum(), p=[0.88, 0.04, 0.02, 0.06])
    verified = np.where(
        bio == 0,
        np.where(new, activated + (rng.uniform(0, 3, n) * DAY_MS).astype(np.int64),
                 np.maximum(activated, start - (rng.uniform(0.05, 2.5, n) * YEAR_MS).astype(np.int64))),
        -1,
    )
    owners = world.new_owners(n)
    share = rng.random(n) < 0.15  # family plans: a second SIM under a relative's owner
    owners[share] = owners[rng.integers(0, n, share.sum())]
    corporate = np.zeros(n, bool)
    gig = (grp == G["courier"]) | (grp == G["taxi"])
    company_sim = gig & (rng.random(n) < 0.4)
    corporate[company_sim] = True
    n_firms = max(2, int(company_sim.sum() // 15))
    firm_owner = world.new_owners(n_firms)
    owners[company_sim] = firm_owner[rng.integers(0, n_firms, company_sim.sum())]
    roaming = np.full(n, -1, np.int8)
    roam = grp == G["roamer"]
    roaming[roam] = rng.integers(0, len(ROAMING_COUNTRIES), roam.sum())
    world.register(ids, biometric=bio, activated_at=activated, verified_at=verified,
                   corporate=corporate, roaming=roaming, owner=owners)

    device = world.new_devices(n)
    home_cell = cell_start[op] + rng.integers(0, per_op, n)
    work_cell = cell_start[op] + rng.integers(0, per_op, n)
    other_cell = cell_start[op] + rng.integers(0, per_op, n)

    # Call centres on corporate SIMs: one owner per company, ten agents each.
    n_cc = max(3, n // 5000)
    cc_sims = n_cc * 10
    cc_op = np.repeat(rng.choice(3, n_cc, p=OPERATOR_SHARE), 10).astype(np.int8)
    cc_ids = world.add_numbers(world.draw_kz("mobile", cc_sims), G["call_centre"], cc_op)
    world.register(cc_ids, biometric=np.zeros(cc_sims, np.int8),
                   activated_at=start - (rng.uniform(0.2, 5, cc_sims) * YEAR_MS).astype(np.int64),
                   verified_at=start - (rng.uniform(0.05, 1, cc_sims) * YEAR_MS).astype(np.int64),
                   corporate=True, owner=np.repeat(world.new_owners(n_cc), 10))
    cc_dev = world.new_devices(cc_sims)
    cc_cell = np.repeat(cell_start[cc_op[::10]] + rng.integers(0, per_op, n_cc), 10)
    # Call centres on VoIP platforms with non-geographic numbers (not in any registry).
    n_vcc = max(2, n // 10000) * 8
    vcc_ids = world.add_numbers(world.draw_kz("nongeo", n_vcc), G["call_centre"])

    # Businesses: fixed lines, some behind cloud PBXs that enter over VoIP; bank hotlines.
    n_biz = max(20, n // 100)
    biz_ids = world.add_numbers(world.draw_kz("fixed", n_biz), G["business"])
    biz_voip = rng.random(n_biz) < 0.15
    banks = world.add_numbers(world.draw_kz("fixed", 8), G["business"])

    # Operator one-ring "call me back" service numbers (registry: corporate, verified).
    svc_op = np.repeat(np.arange(3, dtype=np.int8), 3)
    svc = world.add_numbers(world.draw_kz("mobile", 9), G["service"], svc_op)
    world.register(svc, biometric=np.zeros(9, np.int8),
                   activated_at=np.full(9, start - 6 * YEAR_MS), verified_at=np.full(9, start - YEAR_MS),
                   corporate=True, owner=np.repeat(world.new_owners(3), 3))

    # Relatives abroad, each tied to one or two subscribers.
    n_rel = max(50, n // 20)
    rel = world.add_numbers(world.draw_foreign(RELATIVE_PREFIXES, n_rel), G["relative_abroad"])
    n_rel = len(rel)
    shorts = world.add_numbers(["112", "102", "103", "1414", "7575", "505"], G["service"])

    # Contact graph among individuals: symmetric edges; degree by group.
    deg_mean = np.where(eld, 3.0, np.where(new, 4.0, 7.0))
    deg = rng.poisson(deg_mean * (1 + 0.3 * s)) // 2 + 1
    src = np.repeat(np.arange(n), deg)
    dst = rng.integers(0, n, len(src))
    # A third of edges stay within the same operator (families share plans).
    same = rng.random(len(src)) < 0.33
    src_e = np.concatenate([src, dst])
    dst_e = np.concatenate([dst, src])
    del same
    # Relatives abroad and businesses are contacts too.
    rel_owner = rng.integers(0, n, n_rel)
    biz_cust = rng.integers(0, n, n_biz * 3)
    biz_of = np.repeat(np.arange(n_biz), 3)
    # Rows: individuals 0..n-1, cc sims, vcc, biz, svc, rel.
    rows_ind = np.arange(n)
    row_rel = n + cc_sims + n_vcc + n_biz + 9 + np.arange(n_rel)
    row_biz = n + cc_sims + n_vcc + np.arange(n_biz)
    e_src = np.concatenate([src_e, rel_owner, row_rel, rows_ind[biz_cust], row_biz[biz_of]])
    e_dst = np.concatenate([ids[dst_e], rel[np.arange(n_rel)], ids[rel_owner], biz_ids[biz_of], ids[biz_cust]])
    keep = ids[np.minimum(e_src, n - 1)] != e_dst
    keep |= e_src >= n
    e_src, e_dst = e_src[keep], e_dst[keep]
    order = np.argsort(e_src, kind="stable")
    e_src, e_dst = e_src[order], e_dst[order]

    entity = np.concatenate([ids, cc_ids, vcc_ids, biz_ids, svc, rel])
    n_rows = len(entity)
    ptr = np.zeros(n_rows + 1, np.int64)
    np.add.at(ptr, e_src + 1, 1)
    ptr = np.cumsum(ptr)

    def col(ind: np.ndarray | float, ccv: float, vccv: float, bizv: np.ndarray | float, svcv: float, relv: float) -> np.ndarray:
        return np.concatenate([
            np.broadcast_to(ind, (n,)), np.full(cc_sims, ccv), np.full(n_vcc, vccv),
            np.broadcast_to(bizv, (n_biz,)), np.full(9, svcv), np.full(n_rel, relv),
        ]).astype(float)

    base_rate = np.select(
        [grp == G["courier"], grp == G["taxi"], eld, new, roam], [22.0, 35.0, 0.35, 1.6, 0.9], 2.2
    )
    rate = col(base_rate, 70.0, 55.0, 6.0, 0.0, 0.35) * np.concatenate([
        _lognormal_rate(rng, 1.0, n), _lognormal_rate(rng, 1.0, cc_sims, 0.3), _lognormal_rate(rng, 1.0, n_vcc, 0.3),
        _lognormal_rate(rng, 1.0, n_biz), np.ones(9), _lognormal_rate(rng, 1.0, n_rel)])
    p_contact = col(np.select([grp == G["courier"], grp == G["taxi"], eld, new], [0.15, 0.08, 0.97, 0.7], 0.88),
                    0.0, 0.0, 0.5, 0.0, 1.0)
    profile = col(np.select([gig, eld], [np.where(grp == G["taxi"], 2, 1), 3], 0), 1, 1, 1, 1, 0).astype(np.int8)
    kind = col(np.where(roam, 1, 0), 0, 3, np.where(biz_voip, 3, 2), 0, 4).astype(np.int8)
    dev = np.concatenate([device, cc_dev, np.full(n_vcc + n_biz + 9 + n_rel, -1, np.int32)])
    cells = np.full((n_rows, 3), -1, np.int32)
    cells[:n] = np.stack([home_cell, work_cell, other_cell], axis=1)
    cells[n : n + cc_sims] = cc_cell[:, None]
    active_from = np.concatenate([np.where(new, activated, start), np.full(n_rows - n, start)])
    weekend = col(np.where(gig, 0.8, 0.9), 0.2, 0.2, 0.3, 1.0, 1.3)
    voip_share = col(np.where(rng.random(n) < 0.03 * (1 + s), 0.3, 0.0), 0, 0, 0, 0, 0)
    log_dur = col(np.select([gig, eld], [3.0, 4.4], 4.0), 4.6, 4.4, 4.8, 0, 5.8)
    callers = Callers(entity=entity, group=world_group_rows(world, entity), rate=rate, p_contact=p_contact,
                      profile=profile, kind=kind, device=dev, cells=cells, active_from=active_from,
                      weekend=weekend, voip_share=voip_share, log_dur=log_dur)

    individuals = ids
    vw = np.where(eld, 4.0, 1.0)
    at_home = ids[(grp == G["normal"]) | eld]
    del end
    return Population(
        callers=callers, contacts_ptr=ptr, contacts=e_dst, individuals=individuals,
        victim_weight=vw / vw.sum(), at_home=at_home, elderly=ids[eld], businesses=biz_ids,
        bank_hotlines=banks, short_codes=shorts, service=svc, service_op=svc_op,
    )


def world_group_rows(world: World, entity: np.ndarray) -> np.ndarray:
    groups: np.ndarray = np.concatenate(world.group)[entity]
    return groups


def day_calls(world: World, pop: Population, day: int, rng: np.random.Generator) -> C.Calls:
    """All legitimate calls of one simulation day (local calendar day)."""
    cl = pop.callers
    weekday = (np.datetime64(world.params.start, "D") + day).astype("datetime64[D]").astype(np.int64)
    is_weekend = (weekday + 3) % 7 >= 5  # 1970-01-01 was a Thursday
    lam = cl.rate * (cl.weekend if is_weekend else 1.0)
    day_start = world.start_ms + day * DAY_MS
    lam = np.where(cl.active_from <= day_start + DAY_MS, lam, 0.0)
    k = rng.poisson(lam)
    rows = np.repeat(np.arange(len(k)), k)
    n = len(rows)
    hours = np.empty(n, np.int64)
    prof = cl.profile[rows]
    for pi in range(len(PROFILES)):
        m = prof == pi
        hours[m] = rng.choice(24, m.sum(), p=PROFILES[pi])
    t = C.local_times(world, day, hours, rng)
    alive = t >= cl.active_from[rows]
    rows, t = rows[alive], t[alive]
    n = len(rows)

    # Callee: a contact, else a stranger; some calls go to businesses, banks and short codes.
    ptr = pop.contacts_ptr
    deg = ptr[rows + 1] - ptr[rows]
    use_contact = (rng.random(n) < cl.p_contact[rows]) & (deg > 0)
    pick = ptr[rows] + (rng.random(n) * np.maximum(deg, 1)).astype(np.int64)
    b = np.where(use_contact, pop.contacts[np.minimum(pick, len(pop.contacts) - 1)],
                 pop.individuals[rng.integers(0, len(pop.individuals), n)])
    kind = cl.kind[rows]
    mobile = kind == 0
    u = rng.random(n)
    to_biz = mobile & ~use_contact & (u < 0.06)
    b[to_biz] = pop.businesses[rng.integers(0, len(pop.businesses), to_biz.sum())]
    to_bank = mobile & (u > 0.985)
    b[to_bank] = pop.bank_hotlines[rng.integers(0, len(pop.bank_hotlines), to_bank.sum())]
    to_short = mobile & (u > 0.975) & (u <= 0.985)
    b[to_short] = pop.short_codes[rng.integers(0, len(pop.short_codes), to_short.sum())]
    a = cl.entity[rows]
    # Calls arriving over trunks must terminate at a KZ subscriber (its operator reports them).
    outside = kind != 0
    callee_sub = world.operator_of[b] >= 0
    fix = outside & ~callee_sub
    b[fix] = pop.individuals[rng.integers(0, len(pop.individuals), fix.sum())]
    self_call = a == b
    b[self_call] = pop.individuals[rng.integers(0, len(pop.individuals), self_call.sum())]

    answered, duration, ring = C.outcome(
        n, rng, p_answer=np.where(world.group_of[b] == G["elderly"], 0.82, 0.72), log_mean=cl.log_dur[rows], log_sd=1.0
    )
    parts: list[C.Calls] = []
    grp = cl.group[rows]
    via_app = mobile & (rng.random(n) < cl.voip_share[rows]) & (world.operator_of[b] >= 0)
    m = mobile & ~via_app
    if m.any():
        which = rng.choice(3, m.sum(), p=[0.55, 0.35, 0.10])
        cell = cl.cells[rows[m], which]
        dev = cl.device[rows[m]]
        parts.append(C.make(world, a=a[m], b=b[m], t=t[m], typ=T["legit"], grp=grp[m], answered=answered[m],
                            duration=duration[m], ring=ring[m], rng=rng, imei=dev, cell=cell))
    for sel, ingress in ((via_app | (kind == 3), I["voip"]), (kind == 1, I["international"]),
                         (kind == 2, I["fixed"]), (kind == 4, I["international"])):
        if sel.any():
            parts.append(C.make(world, a=a[sel], b=b[sel], t=t[sel], typ=T["legit"], grp=grp[sel],
                                answered=answered[sel], duration=duration[sel], ring=ring[sel], rng=rng,
                                ingress=ingress))
    parts.append(_service_calls(world, pop, day, rng))
    return C.Calls.concat(parts)


def _service_calls(world: World, pop: Population, day: int, rng: np.random.Generator) -> C.Calls:
    """Operators' one-ring "call me back" micro-calls to their own subscribers."""
    subs_op = world.operator_of[pop.individuals]
    parts = []
    for e, op in zip(pop.service.tolist(), pop.service_op.tolist()):
        mine = pop.individuals[subs_op == op]
        k = rng.poisson(max(1.0, 0.004 * len(mine)))
        b = mine[rng.integers(0, len(mine), k)]
        t = C.local_times(world, day, rng.choice(24, k, p=PROFILES[1]), rng)
        ring = np.round(rng.uniform(0.5, 2.5, k), 3)
        c = C.make(world, a=np.full(k, e), b=b, t=t, typ=T["legit"], grp=G["service"], answered=np.zeros(k, bool),
                   duration=np.zeros(k), ring=ring, rng=rng, ingress=I["mobile"])
        c.op[:] = op  # reported by its own operator's core, no radio-side device
        parts.append(c)
    return C.Calls.concat(parts)
