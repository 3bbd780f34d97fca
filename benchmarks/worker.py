"""End-to-end worker throughput: Kafka (Tansu) -> decode -> Redis feature store -> model -> policy -> Kafka.

Run: ``.venv/bin/python -m benchmarks.worker [--cdrs 200000] [--subscribers 20000]
[--variants 'ref=d76b01d;lanes=1;lanes=2,batch=4000'] [--rounds 3] [--no-baselines]``

Starts its own Tansu broker and its own redis-server (both from the wheels, on free
loopback ports), produces a seeded stream of `cdr/1` records, then runs
:class:`streaming.worker.Worker` (the production loop, in this process) until every record
is decided, and reports CDR/s from the first batch on, the CPU time per CDR of the worker
process (per thread, and the cyclic GC's share), of redis-server and of Tansu, and the wall
time of each stage. Each variant (a git ref of ``streaming/worker.py`` loaded in place of
this tree's, engine lanes, batch size, gc.freeze) runs on fresh Redis state, its own output
topics and consumer group; ``--rounds`` interleaves them, so an A/B shares the machine's
load. Baselines measured in the same run: kafka-python producing the same records (``send``
per record, and ``streaming.producer`` whole batches), and consuming them with no
processing (stock fetcher, and ``streaming.fetch``). Correctness check: exactly one
decision per CDR on the run's decisions topic.
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


def _worker_classes(ref: str | None) -> tuple[Any, Any]:
    """(Worker, WorkerConfig) of this tree, or of ``streaming/worker.py`` and ``streaming/dlq.py``
    at git ``ref`` (same-run A/B; features/ and models/ are this tree's in both arms)."""
    if ref is None:
        from streaming.worker import Worker, WorkerConfig

        return Worker, WorkerConfig
    import importlib.util
    import subprocess

    def load(path: str, name: str) -> Any:
        source = subprocess.run(["git", "show", f"{ref}:{path}"], check=True, capture_output=True,
                                cwd=Path(__file__).resolve().parents[1]).stdout
        spec = importlib.util.spec_from_loader(name, loader=None)
        assert spec is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        exec(compile(source, f"{ref}:{path}", "exec"), module.__dict__)
        return module

    worker = load("streaming/worker.py", f"bench_worker_{ref}")
    worker.dlq = load("streaming/dlq.py", f"bench_dlq_{ref}")  # the decode of that commit too
    return worker.Worker, worker.WorkerConfig


def _parse_variant(text: str) -> dict[str, Any]:
    """``ref=d76b01d,lanes=2,batch=4000,freeze=0`` -> settings (missing ones: this tree's defaults)."""
    out: dict[str, Any] = {"label": text}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        out[key] = value if key == "ref" else int(value)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cdrs", type=int, default=200_000)
    parser.add_argument("--subscribers", type=int, default=20_000)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--max-batch", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", default="",
                        help="semicolon-separated worker variants to run on the same stream, e.g. "
                             "'ref=d76b01d;lanes=1;lanes=2,batch=4000' (ref: streaming/worker.py at that git "
                             "commit; lanes: WorkerConfig.engine_lanes; batch: max_batch; freeze: gc_freeze 0/1; switch_us: sys.setswitchinterval). "
                             "Default: this tree's worker as configured by default")
    parser.add_argument("--rounds", type=int, default=1, help="runs of every variant, interleaved")
    parser.add_argument("--no-baselines", action="store_true", help="skip the kafka-python produce/consume baselines")
    args = parser.parse_args()

    import gc
    import os
    import statistics

    import psutil
    import redis
    from kafka import KafkaConsumer, KafkaProducer

    from deploy import binaries, topics
    from features.redisstore import RedisStore
    from models.engine import Engine

    variants = [_parse_variant(v) for v in args.variants.split(";")] if args.variants else [_parse_variant("")]
    root = Path(tempfile.mkdtemp(prefix="callscreen-bench-"))
    tansu = binaries.start_tansu(root / "logs")
    rds = binaries.start_redis(root / "redis", root / "logs")
    try:
        bootstrap = tansu.url
        topics.ensure_topics(bootstrap, ["cdr", "cdr-copy"], partitions=args.partitions)
        keys, values, subs = workload(args.cdrs, args.subscribers, args.seed)
        n = len(values)
        loaded = model()
        print(f"CDRs: {n}, subscribers: {len(subs)}, partitions: {args.partitions}, model: {loaded.card.version}")

        producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, batch_size=1024 * 1024,
                                 max_request_size=8 * 1024 * 1024, request_timeout_ms=30_000)
        t = time.perf_counter()
        for k, v in zip(keys, values, strict=True):
            producer.send("cdr", key=k, value=v)
        producer.flush(timeout=120)
        produce_rate = n / (time.perf_counter() - t)
        producer.close(timeout=5)
        if not args.no_baselines:
            print(f"baseline kafka-python produce only (send per record): {produce_rate:,.0f} msg/s")
            print(f"baseline kafka-python produce only (streaming.producer whole batches): "
                  f"{_batch_produce(bootstrap, 'cdr-copy', keys, values):,.0f} msg/s")
            print(f"baseline kafka-python consume only (stock fetcher): {_consume(bootstrap, 'cdr', n, fast=False):,.0f} msg/s")
            print(f"baseline kafka-python consume only (streaming.fetch whole batches): "
                  f"{_consume(bootstrap, 'cdr', n, fast=True):,.0f} msg/s")

        client = redis.Redis.from_url(rds.url, socket_timeout=5, socket_connect_timeout=5)
        me = psutil.Process()
        servers = {"redis-server": psutil.Process(rds.pid), "tansu": psutil.Process(tansu.pid)}
        results: dict[str, list[dict[str, Any]]] = {v["label"]: [] for v in variants}
        ok = True
        run_number = 0
        for _ in range(args.rounds):
            for variant in variants:
                run_number += 1
                result = _run_once(variant, run_number, args, n, subs, loaded, bootstrap, client, me, servers,
                                   RedisStore, Engine, topics, KafkaConsumer, gc, os)
                results[variant["label"]].append(result)
                ok = ok and result["ok"]
        if len(variants) > 1 or args.rounds > 1:
            print("\n| variant | runs | CDR/s (median) | worker CPU µs/CDR (median) | redis-server µs/CDR | load |")
            print("|---|---:|---:|---:|---:|---:|")
            for label, runs in results.items():
                print(f"| {label or 'this tree'} | {len(runs)} | {statistics.median(r['rate'] for r in runs):,.0f} | "
                      f"{statistics.median(r['cpu_us'] for r in runs):.0f} | "
                      f"{statistics.median(r['redis_us'] for r in runs):.0f} | "
                      f"{min(r['load'] for r in runs):.1f}-{max(r['load'] for r in runs):.1f} |")
        return 0 if ok else 1
    finally:
        binaries.stop(tansu.pid, tansu.create_time)
        binaries.stop(rds.pid, rds.create_time)


def _run_once(variant: dict[str, Any], run_number: int, args: Any, n: int, subs: list[Any], loaded: LoadedModel,
              bootstrap: str, client: Any, me: Any, servers: dict[str, Any], RedisStore: Any, Engine: Any,
              topics: Any, KafkaConsumer: Any, gc: Any, os: Any) -> dict[str, Any]:
    """One worker run over the whole `cdr` topic, on fresh Redis state and fresh output topics."""
    Worker, WorkerConfig = _worker_classes(variant.get("ref"))
    client.flushdb()
    store = RedisStore(client)
    for i in range(0, len(subs), 5000):
        store.upsert_subscribers(subs[i : i + 5000])
    engine = Engine(store, loaded)
    out = {t: f"{t}-{run_number}" for t in ("decisions", "cdr.dlq", "fraud-feed")}
    topics.ensure_topics(bootstrap, list(out.values()), partitions=args.partitions)
    settings: dict[str, Any] = {
        "bootstrap": bootstrap, "metrics_port": 0, "max_batch": variant.get("batch", args.max_batch),
        "request_timeout_ms": 30_000, "session_timeout_ms": 6_000, "group_id": f"bench-{run_number}",
        "topic_decisions": out["decisions"], "topic_dlq": out["cdr.dlq"], "topic_feed": out["fraud-feed"],
        "feed_hash_key": b"bench-feed-key-0123456789abcdef",
    }
    fields = set(WorkerConfig.__dataclass_fields__)
    if "lanes" in variant:
        settings["engine_lanes"] = variant["lanes"]
    if "freeze" in variant:
        settings["gc_freeze"] = bool(variant["freeze"])
    unknown = set(settings) - fields
    if unknown:
        raise SystemExit(f"variant {variant['label']!r}: this worker has no {sorted(unknown)}")
    worker = Worker(WorkerConfig(**settings), engine=engine)

    # Counted from the first batch's arrival: the group join before it is not throughput.
    start: dict[str, Any] = {}
    end: dict[str, Any] = {}

    def snapshot() -> dict[str, Any]:
        return {"t": time.perf_counter(), "cpu": time.process_time(),
                "servers": {k: sum(p.cpu_times()[:2]) for k, p in servers.items()},
                "threads": {t.id: t.user_time + t.system_time for t in me.threads()},
                "names": {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}}

    def watch() -> None:
        while worker.consumed == 0:
            time.sleep(0.01)
        start.update(snapshot())
        while worker.consumed < n:
            time.sleep(0.01)
        end.update(snapshot())  # before the threads stop (their CPU times go with them)
        worker.stop()

    gc_time = [[0.0, 0], [0.0, 0], [0.0, 0]]  # per generation: seconds, collections
    gc_started = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_started[0] = time.perf_counter()
        elif start and not end:
            g = gc_time[info["generation"]]
            g[0] += time.perf_counter() - gc_started[0]
            g[1] += 1

    switch = sys.getswitchinterval()
    if "switch_us" in variant:
        sys.setswitchinterval(variant["switch_us"] / 1e6)
    gc.collect()
    gc.callbacks.append(on_gc)
    threading.Thread(target=watch, name="bench-watch", daemon=True).start()
    try:
        worker.run()
    finally:
        gc.callbacks.remove(on_gc)
        gc.unfreeze()  # the next variant starts from the same collector state
        sys.setswitchinterval(switch)
    elapsed = end["t"] - start["t"]
    cpu = end["cpu"] - start["cpu"]
    server_cpu = {k: end["servers"][k] - start["servers"][k] for k in servers}
    thread_cpu: dict[str, float] = {}
    for tid, seconds in end["threads"].items():
        label = end["names"].get(tid, "other")
        thread_cpu[label] = thread_cpu.get(label, 0.0) + seconds - start["threads"].get(tid, 0.0)
    rate = n / elapsed
    load = os.getloadavg()[0]

    check = KafkaConsumer(out["decisions"], bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                          enable_auto_commit=False, group_id=None, consumer_timeout_ms=5000, max_poll_records=5000)
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

    stages = dict(worker.stage)
    lane_engines = worker.engines() if hasattr(worker, "engines") else [engine]  # each lane's (an older tree: one)

    def engine_time(stage: str) -> float:
        return sum(getattr(e.times, stage) for e in lane_engines)

    per = {
        "poll (kafka-python fetch)": stages["poll"],
        "decode + validate (msgspec)": stages["decode"],
        "store.process (Redis, 1 Lua call/batch)": engine_time("store"),
        "score (Cython predictor, 1 call/batch)": engine_time("score"),
        "policy + decision records": engine_time("policy"),
        "reason codes (warn/block rows)": engine_time("reasons"),
        "encode decisions + feed": stages["encode"],
        "produce + wait for acks": stages["produce"],
        "commit offsets": stages["commit"],
    }
    print(f"\nrun {run_number}: {variant['label'] or 'this tree'} (batch {settings['max_batch']}, "
          f"lanes {settings.get('engine_lanes', 'n/a')}, gc.freeze {settings.get('gc_freeze', 'n/a')})")
    print(f"worker end to end: {rate:,.0f} CDR/s ({elapsed:.2f} s wall from the first batch; worker process CPU "
          f"{cpu:.2f} s = {cpu / n * 1e6:.0f} µs/CDR; load average {load:.1f})")
    for k, v in sorted(thread_cpu.items(), key=lambda kv: -kv[1]):
        if v > 0.005:
            print(f"  worker thread {k}: {v / n * 1e6:.1f} µs/CDR")
    print("  of which cyclic GC: " + ", ".join(
        f"gen{g} {c} x {t / n * 1e6:.1f} µs/CDR" for g, (t, c) in enumerate(gc_time)))
    for k, v in server_cpu.items():
        print(f"{k} CPU during the run: {v:.2f} s = {v / n * 1e6:.0f} µs/CDR")
    print("| stage (wall time; engine stages overlap across lanes) | µs/CDR |\n|---|---:|")
    for name, seconds in per.items():
        print(f"| {name} | {seconds / n * 1e6:.1f} |")
    print(f"decisions on topic: {total}, distinct keys: {len(ids)} (expected {n}); actions: {actions}")
    return {"rate": rate, "cpu_us": cpu / n * 1e6, "redis_us": server_cpu["redis-server"] / n * 1e6,
            "load": load, "ok": len(ids) == n}


if __name__ == "__main__":
    sys.exit(main())
