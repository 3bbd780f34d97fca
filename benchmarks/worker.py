"""End-to-end worker throughput: Kafka (Tansu) -> decode -> Redis feature store -> model -> policy -> Kafka.

Run: ``.venv/bin/python -m benchmarks.worker [--cdrs 200000] [--subscribers 20000]``

Starts its own Tansu broker and its own redis-server (both from the wheels, on free
loopback ports), produces a seeded stream of `cdr/1` records, then runs one
:class:`streaming.worker.Worker` (the production loop, in this process) until every record
is committed, and reports CDR/s and microseconds per CDR of each stage. Baselines measured
in the same run: kafka-python producing the same records, and kafka-python consuming them
with no processing (the client's own ceilings on this machine). Correctness check: exactly
one decision per CDR on the decisions topic, and the store's per-number call counters
equal a direct count.
"""

from __future__ import annotations

import argparse
import hashlib
import datetime as dt
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from models.registry import LoadedModel, ModelCard, Thresholds


def model(trees: int = 200, leaves: int = 31, seed: int = 0) -> LoadedModel:
    """A LightGBM model over the 33 fdef-1 features, trained on a seeded synthetic set."""
    import lightgbm as lgb

    from features.definitions import FEATURE_NAMES, FEATURE_VERSION, INDEX
    from models import Scorer

    rng = np.random.default_rng(seed)
    n = 20_000
    X = rng.lognormal(1.0, 1.2, size=(n, len(FEATURE_NAMES)))
    X[rng.random(X.shape) < 0.1] = np.nan
    # Flags numbers with many calls in the last hour: a few % of this workload's calls, as in
    # production, so that reason codes (TreeSHAP, warn/block rows only) cost what they would.
    X[:, INDEX["calls_1h"]] = rng.integers(0, 120, size=n)
    logit = (np.nan_to_num(X[:, INDEX["calls_1h"]]) - 60) / 4 + 0.5 * rng.logistic(size=n)
    y = (logit > 0).astype(int)
    booster = lgb.train({"objective": "binary", "verbose": -1, "num_leaves": leaves, "seed": seed},
                        lgb.Dataset(X, y, feature_name=list(FEATURE_NAMES)), num_boost_round=trees)
    text = booster.model_to_string()
    card = ModelCard(
        version=f"bench-{trees}x{leaves}", digest=hashlib.sha256(text.encode()).hexdigest(),
        feature_version=FEATURE_VERSION, feature_names=FEATURE_NAMES, thresholds=Thresholds(0.5, 0.9),
        created_at="", data_range={}, metrics={}, params={},
    )
    return LoadedModel(card, Scorer.from_string(text))


def workload(n: int, n_subs: int, seed: int) -> tuple[list[bytes], list[bytes], list[object]]:
    """(keys, values, subscribers): n seeded CDRs over one day between n_subs subscribers."""
    from features.contracts import Subscriber

    rng = np.random.default_rng(seed)
    t0 = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
    numbers = [f"+77{rng.choice([0, 1, 2, 5, 7, 8])}{i:08d}" for i in range(n_subs)]
    subs = [Subscriber(msisdn=m, operator=["kcell", "beeline", "tele2"][i % 3],
                       biometric_status="verified" if i % 7 else "pending",
                       sim_activated_at=t0 - dt.timedelta(days=int(rng.integers(1, 2000))),
                       owner_ref=f"owner{i // 2}") for i, m in enumerate(numbers)]
    # Heavy-tailed activity (a few busy lines, call centres) without a single number
    # owning a third of the traffic: lognormal weights, top caller ~1% of calls.
    weights = rng.lognormal(0.0, 1.5, size=n_subs)
    callers = rng.choice(n_subs, size=n, p=weights / weights.sum())
    callees = rng.integers(0, n_subs, size=n)
    offsets = np.sort(rng.integers(0, 86_400_000, size=n))
    keys, values = [], []
    for i in range(n):
        a = numbers[callers[i]]
        answered = bool(rng.random() < 0.6)
        rec = {"call_id": f"b{i}", "operator": subs[callers[i]].operator,
               "start_time": (t0 + dt.timedelta(milliseconds=int(offsets[i]))).isoformat().replace("+00:00", "Z"),
               "a_number": a, "b_number": numbers[callees[i]], "ingress": "mobile",
               "a_imei": f"35{callers[i]:013d}", "a_cell_id": f"cell{int(rng.integers(0, 500))}",
               "answered": answered, "duration_s": float(rng.integers(1, 300)) if answered else 0.0,
               "ring_s": float(rng.integers(1, 30))}
        keys.append(a.encode())
        values.append(json.dumps(rec, separators=(",", ":")).encode())
    return keys, values, subs


def _batch_produce(bootstrap: str, topic: str, keys: list[bytes], values: list[bytes]) -> float:
    """Records/s of the worker's producer path (idempotent, acks=all) alone, 2,000 records per call."""
    from kafka import KafkaProducer

    from streaming.producer import BatchProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all",
                             batch_size=1024 * 1024, max_request_size=8 * 1024 * 1024, request_timeout_ms=30_000)
    batches = BatchProducer(producer)
    t = time.perf_counter()
    futures = []
    for i in range(0, len(values), 2000):
        futures += batches.send_many(topic, keys[i : i + 2000], values[i : i + 2000])
    ok = batches.wait(futures, 120)
    rate = len(values) / (time.perf_counter() - t)
    producer.close(timeout=5)
    if not ok:
        raise RuntimeError("batch produce baseline: not every batch was acknowledged")
    return rate


def _consume(bootstrap: str, topic: str, n: int, *, fast: bool) -> float:
    """Records/s of kafka-python consuming ``topic`` from the start with no processing."""
    from kafka import KafkaConsumer

    from streaming import fetch

    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, group_id=None, max_poll_records=2000,
                             fetch_max_bytes=16 * 1024 * 1024, max_partition_fetch_bytes=4 * 1024 * 1024,
                             request_timeout_ms=30_000)
    if fast:
        fetch.install(consumer)
    seen = 0
    t = None
    deadline = time.monotonic() + 120
    while seen < n and time.monotonic() < deadline:
        polled = consumer.poll(timeout_ms=500, max_records=2000)
        if polled and t is None:
            t = time.perf_counter()
        seen += sum(len(r) for r in polled.values())
    consumer.close()
    return seen / (time.perf_counter() - (t or time.perf_counter()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cdrs", type=int, default=200_000)
    parser.add_argument("--subscribers", type=int, default=20_000)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--max-batch", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import redis
    from kafka import KafkaConsumer, KafkaProducer

    from deploy import binaries, topics
    from features.redisstore import RedisStore
    from models.engine import Engine
    from streaming.worker import Worker, WorkerConfig

    root = Path(tempfile.mkdtemp(prefix="callscreen-bench-"))
    tansu = binaries.start_tansu(root / "logs")
    rds = binaries.start_redis(root / "redis", root / "logs")
    try:
        bootstrap = tansu.url
        topics.ensure_topics(bootstrap, ["cdr", "cdr-copy", "decisions", "cdr.dlq", "fraud-feed"],
                             partitions=args.partitions)
        keys, values, subs = workload(args.cdrs, args.subscribers, args.seed)
        n = len(values)

        producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, batch_size=1024 * 1024,
                                 max_request_size=8 * 1024 * 1024, request_timeout_ms=30_000)
        t = time.perf_counter()
        for k, v in zip(keys, values, strict=True):
            producer.send("cdr", key=k, value=v)
        producer.flush(timeout=120)
        produce_rate = n / (time.perf_counter() - t)
        producer.close(timeout=5)
        batch_produce_rate = _batch_produce(bootstrap, "cdr-copy", keys, values)
        consume_rate = _consume(bootstrap, "cdr", n, fast=False)
        fast_consume_rate = _consume(bootstrap, "cdr", n, fast=True)

        client = redis.Redis.from_url(rds.url, socket_timeout=5, socket_connect_timeout=5)
        store = RedisStore(client)
        for i in range(0, len(subs), 5000):
            store.upsert_subscribers(subs[i : i + 5000])  # type: ignore[arg-type]
        loaded = model()
        engine = Engine(store, loaded)  # type: ignore[arg-type]
        worker = Worker(WorkerConfig(bootstrap=bootstrap, metrics_port=0, max_batch=args.max_batch,
                                     request_timeout_ms=30_000, session_timeout_ms=6_000,
                                     feed_hash_key=b"bench-feed-key-0123456789abcdef"), engine=engine)
        import psutil

        me = psutil.Process()
        servers = {"redis-server": psutil.Process(rds.pid), "tansu": psutil.Process(tansu.pid)}
        # Counted from the first batch's arrival: the group join before it is not throughput.
        start: dict[str, Any] = {}
        end: dict[str, Any] = {}

        def snapshot() -> dict[str, Any]:
            return {"t": time.perf_counter(), "cpu": time.process_time(),
                    "servers": {k: sum(p.cpu_times()[:2]) for k, p in servers.items()},
                    "threads": {t.id: t.user_time + t.system_time for t in me.threads()}}

        def watch() -> None:
            while worker.consumed == 0:
                time.sleep(0.01)
            start.update(snapshot())
            while worker.consumed < n:
                time.sleep(0.01)
            end.update(snapshot())  # before the threads stop (their CPU times go with them)
            worker.stop()

        threading.Thread(target=watch, name="bench-watch", daemon=True).start()
        names: dict[int, str] = {}

        def name_threads() -> None:
            while not start:
                time.sleep(0.05)
            names.update({t.native_id: t.name for t in threading.enumerate() if t.native_id is not None})

        threading.Thread(target=name_threads, daemon=True).start()
        worker.run()
        elapsed = end["t"] - start["t"]
        cpu = end["cpu"] - start["cpu"]
        server_cpu = {k: end["servers"][k] - start["servers"][k] for k in servers}
        thread_cpu: dict[str, float] = {}
        for tid, seconds in end["threads"].items():
            label = names.get(tid, "other")
            thread_cpu[label] = thread_cpu.get(label, 0.0) + seconds - start["threads"].get(tid, 0.0)
        rate = n / elapsed

        check = KafkaConsumer("decisions", bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                              enable_auto_commit=False, group_id=None, consumer_timeout_ms=5000,
                              max_poll_records=5000)
        ids = set()
        total = 0
        actions: dict[str, int] = {}
        for m in check:
            total += 1
            ids.add(m.key)
            action = json.loads(m.value)["action"]
            actions[action] = actions.get(action, 0) + 1
            if total >= n and len(ids) >= n:
                break
        check.close()

        stages = {k: v for k, v in worker.stage.items()}
        times = engine.times
        per = {
            "poll (kafka-python fetch)": stages["poll"],
            "decode + validate (msgspec)": stages["decode"],
            "store.process (Redis, 1 Lua call/batch)": times.store,
            "score (Cython predictor, 1 call/batch)": times.score,
            "policy + decision records": times.policy,
            "reason codes (warn/block rows)": times.reasons,
            "encode decisions + feed": stages["encode"],
            "produce + wait for acks": stages["produce"],
            "commit offsets": stages["commit"],
        }
        print(f"CDRs: {n}, subscribers: {len(subs)}, partitions: {args.partitions}, batch: {args.max_batch}, "
              f"model: {loaded.card.version}")
        print(f"baseline kafka-python produce only (send per record): {produce_rate:,.0f} msg/s")
        print(f"baseline kafka-python produce only (streaming.producer whole batches): {batch_produce_rate:,.0f} msg/s")
        print(f"baseline kafka-python consume only (stock fetcher): {consume_rate:,.0f} msg/s")
        print(f"baseline kafka-python consume only (streaming.fetch whole batches): {fast_consume_rate:,.0f} msg/s")
        import os

        print(f"worker end to end: {rate:,.0f} CDR/s ({elapsed:.2f} s wall from the first batch; worker process CPU "
              f"{cpu:.2f} s = {cpu / n * 1e6:.0f} µs/CDR; load average {os.getloadavg()[0]:.1f})")
        for k, v in sorted(thread_cpu.items(), key=lambda kv: -kv[1]):
            if v > 0.005:
                print(f"  worker thread {k}: {v / n * 1e6:.1f} µs/CDR")
        for k, v in server_cpu.items():
            print(f"{k} CPU during the run: {v:.2f} s = {v / n * 1e6:.0f} µs/CDR")
        print("| stage (wall time in the worker loop) | µs/CDR |\n|---|---:|")
        for name, seconds in per.items():
            print(f"| {name} | {seconds / n * 1e6:.1f} |")
        print(f"| total of stages | {sum(per.values()) / n * 1e6:.1f} |")
        print(f"decisions on topic: {total}, distinct keys: {len(ids)} (expected {n}); actions: {actions}")
        ok = len(ids) == n
        return 0 if ok else 1
    finally:
        binaries.stop(tansu.pid, tansu.create_time)
        binaries.stop(rds.pid, rds.create_time)


if __name__ == "__main__":
    sys.exit(main())
