"""Offline feature builder throughput on a seeded synthetic stream, in CDRs per second per core.

    .venv/bin/python -m benchmarks.features --calls 1000000
    .venv/bin/python -m benchmarks.features --world WORLD --days 10   # a `callscreen simulate` world

The stream is generated with numpy (seeded): a national-scale-looking week of calls
with Zipf-distributed callers (a few numbers make many calls), a callee set per
caller (repeat contacts), shared IMEIs, missing device info for off-net callers,
duplicate deliveries and late (out-of-order) records. Pyarrow's thread pool is pinned
to one thread so the number is per core. Correctness check on every run: the first
calls of the stream are rebuilt and compared with the per-call oracle.
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from features.contracts import Cdr, Subscriber  # noqa: E402
from features.offline import CDR_SCHEMA, SUBSCRIBER_SCHEMA, build, read_cdrs, read_subscribers  # noqa: E402
from tests.features.oracle import oracle_features, oracle_row  # noqa: E402

T0_MS = int(dt.datetime(2026, 11, 16, tzinfo=dt.UTC).timestamp() * 1000)


def synthetic(n_calls: int, seed: int) -> tuple[pa.Table, pa.Table]:
    rng = np.random.default_rng(seed)
    n_numbers = max(1000, n_calls // 10)
    numbers = np.array([f"+77{x:09d}" for x in rng.choice(10**9, n_numbers, replace=False)], dtype=object)
    foreign = rng.random(n_numbers) < 0.05
    numbers[foreign] = [f"+90{x:010d}" for x in rng.integers(0, 10**10, int(foreign.sum()))]
    caller = (rng.zipf(1.6, n_calls) - 1) % n_numbers
    # Repeat contacts: most callees come from a small per-caller circle.
    circle = (caller * 7919 + rng.integers(0, 8, n_calls)) % n_numbers
    callee = np.where(rng.random(n_calls) < 0.7, circle, rng.integers(0, n_numbers, n_calls))
    t = T0_MS + np.sort(rng.integers(0, 7 * 86_400_000, n_calls))
    late = rng.random(n_calls) < 0.02
    order = np.arange(n_calls)
    order[late] = rng.permutation(order[late])  # some records arrive out of order
    n_imeis = n_numbers
    imei_of = rng.integers(0, n_imeis, n_numbers)
    imei_code = np.where(rng.random(n_calls) < 0.05, rng.integers(0, n_imeis, n_calls), imei_of[caller])
    on_net = rng.random(n_calls) < 0.8
    answered = rng.random(n_calls) < 0.6
    duration = np.where(answered, rng.exponential(90.0, n_calls), 0.0)
    imei = pa.array([f"35{x:013d}" for x in imei_code], pa.string())
    cell = pa.array([f"cell-{x}" for x in (caller * 31 + rng.integers(0, 3, n_calls)) % 20_000], pa.string())
    mask = pa.array(~on_net)
    table = pa.table({
        "call_id": pa.array([f"c{i}" for i in range(n_calls)]),
        "operator": pa.array(rng.choice(["kcell", "beeline", "tele2"], n_calls)),
        "start_time": pa.array(t, pa.timestamp("ms", tz="UTC")),
        "a_number": pa.array(numbers[caller], pa.string()),
        "b_number": pa.array(numbers[callee], pa.string()),
        "ingress": pa.array(rng.choice(["mobile", "fixed", "international", "voip"], n_calls, p=[.8, .1, .05, .05])),
        "a_imei": pc.if_else(mask, pa.nulls(n_calls, pa.string()), imei),
        "a_cell_id": pc.if_else(mask, pa.nulls(n_calls, pa.string()), cell),
        "answered": pa.array(answered),
        "duration_s": pa.array(duration),
        "ring_s": pa.array(rng.exponential(8.0, n_calls)),
    }, schema=CDR_SCHEMA).take(pa.array(order))
    dup = rng.choice(n_calls, n_calls // 100, replace=False)
    table = pa.concat_tables([table, table.take(pa.array(dup))])
    held = rng.random(n_numbers) < 0.8
    idx = np.flatnonzero(held)
    subs = pa.table({
        "msisdn": pa.array(numbers[idx], pa.string()),
        "operator": pa.array(rng.choice(["kcell", "beeline", "tele2"], len(idx))),
        "biometric_status": pa.array(rng.choice(["verified", "pending", "failed", "unverified"], len(idx),
                                                p=[.85, .05, .03, .07])),
        "verified_at": pa.array(T0_MS - rng.integers(0, 10**11, len(idx)), pa.timestamp("ms", tz="UTC")),
        "sim_activated_at": pa.array(T0_MS - rng.integers(0, 10**11, len(idx)), pa.timestamp("ms", tz="UTC")),
        "subscriber_type": pa.array(rng.choice(["individual", "corporate"], len(idx), p=[.9, .1])),
        "roaming_country": pa.array(["TR" if r < 0.03 else None for r in rng.random(len(idx))], pa.string()),
        "owner_ref": pa.array([f"o{x}" for x in rng.integers(0, len(idx) // 2 + 1, len(idx))], pa.string()),
    }, schema=SUBSCRIBER_SCHEMA)
    return table, subs


def world(path: Path, days: int) -> tuple[pa.Table, pa.Table]:
    parts = sorted((path / "cdrs").glob("day=*"))[:days]
    cdrs = pa.concat_tables([read_cdrs(p) for p in parts])
    return cdrs, read_subscribers(path / "subscribers.parquet")


def check(cdrs: pa.Table, subs: pa.Table, n: int) -> float:
    """Max |builder - oracle| over the first ``n`` calls in time (a valid sub-history)."""
    head = cdrs.sort_by("start_time").slice(0, n)
    rows = [Cdr(**{k: v for k, v in r.items() if v is not None}) for r in head.to_pylist()]
    subs = subs.filter(pc.is_in(subs["msisdn"], value_set=pc.unique(head["a_number"])))
    registry = [Subscriber(**{k: v for k, v in r.items() if v is not None}) for r in subs.to_pylist()]
    got = build(head, subs)
    want = oracle_features(rows, registry)
    diff = np.abs(np.nan_to_num(got, nan=-1.0) - np.nan_to_num(want, nan=-1.0))
    return float(diff.max())


_SAMPLE_SLICE_LIMIT = 5000


def check_sample(cdrs: pa.Table, subs: pa.Table, out: np.ndarray, k: int, seed: int) -> tuple[float, int]:
    """Max |builder - oracle| over ``k`` random calls anywhere in the stream.

    Each call's features depend only on calls touching its a_number/b_number or its IMEI
    and on the registry records of those numbers and their owners, so the oracle runs on
    that slice of the stream (input order kept, so duplicates resolve the same way).
    """
    rng = np.random.default_rng(seed)
    registry = [Subscriber(**{f: v for f, v in r.items() if v is not None}) for r in subs.to_pylist()]
    by_number = {s.msisdn: s for s in registry}  # a later record replaces an earlier one
    by_owner: dict[str, list[Subscriber]] = {}
    for s in by_number.values():
        if s.owner_ref is not None:
            by_owner.setdefault(s.owner_ref, []).append(s)
    worst = 0.0
    skipped = 0
    for r in rng.choice(cdrs.num_rows, k, replace=False):
        row = cdrs.slice(int(r), 1).to_pylist()[0]
        numbers = pa.array([row["a_number"], row["b_number"]], pa.string())
        mask = pc.or_(pc.is_in(cdrs["a_number"], value_set=numbers), pc.is_in(cdrs["b_number"], value_set=numbers))
        if row["a_imei"] is not None:
            mask = pc.or_(mask, pc.fill_null(pc.equal(cdrs["a_imei"], row["a_imei"]), False))
        mask_np = mask.to_numpy(zero_copy_only=False)
        if np.count_nonzero(mask_np) > _SAMPLE_SLICE_LIMIT:
            skipped += 1  # a very heavy caller: the plain-Python oracle would take minutes
            continue
        part = cdrs.filter(mask)
        calls = [Cdr(**{f: v for f, v in x.items() if v is not None}) for x in part.to_pylist()]
        held = by_number.get(row["a_number"])
        relevant = by_owner.get(held.owner_ref, []) if held is not None and held.owner_ref else []
        regs = relevant or ([held] if held is not None else [])
        want = oracle_row(int(np.count_nonzero(mask_np[:r])), calls, regs)
        diff = np.abs(np.nan_to_num(out[r], nan=-1.0) - np.nan_to_num(want, nan=-1.0))
        worst = max(worst, float(diff.max()))
    return worst, k - skipped


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--check", type=int, default=1500, help="calls compared with the oracle")
    parser.add_argument("--sample", type=int, default=100, help="random calls checked against the oracle")
    parser.add_argument("--world", type=Path, help="time a simulated world (interface B) instead")
    parser.add_argument("--days", type=int, default=10, help="with --world: the first DAYS day partitions")
    args = parser.parse_args()
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    if args.world is not None:
        cdrs, subs = world(args.world, args.days)
        print(f"world {args.world}: {cdrs.num_rows:,} CDR rows from the first {args.days} days, "
              f"{subs.num_rows:,} subscribers")
    else:
        cdrs, subs = synthetic(args.calls, args.seed)
        print(f"stream: {cdrs.num_rows:,} CDR rows ({args.calls:,} calls + 1% duplicates), "
              f"{subs.num_rows:,} subscribers, seed {args.seed}")
    best = float("inf")
    for _ in range(args.repeat):
        start = time.process_time()
        wall = time.perf_counter()
        out = build(cdrs, subs)
        cpu = time.process_time() - start
        wall = time.perf_counter() - wall
        best = min(best, cpu)
        print(f"build: {wall:.2f} s wall, {cpu:.2f} s CPU -> {cdrs.num_rows / cpu:,.0f} CDRs/s per core")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"best: {cdrs.num_rows / best:,.0f} CDRs/s per core (CPU time); output {out.shape}, peak RSS {rss:,.0f} MiB")
    err = check(cdrs, subs, args.check)
    print(f"correctness: max |builder - oracle| over the first {args.check} calls = {err:.3g}")
    sampled, k = check_sample(cdrs, subs, out, args.sample, args.seed)
    print(f"correctness: max |builder - oracle| over {k} random calls anywhere in the stream = {sampled:.3g}")
    return 0 if max(err, sampled) < 1e-9 else 1


if __name__ == "__main__":
    sys.exit(main())
