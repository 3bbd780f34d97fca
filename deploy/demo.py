"""The demo part of ``callscreen up``: a model, subscribers and live traffic on a fresh machine.

``prepare`` runs before the API and the worker start: if the registry has no champion it
simulates a small world (``callscreen simulate``) and trains a model on it (``callscreen
train --promote``), showing their progress; then it loads the world's subscribers into
Redis. ``replay`` runs once the worker is healthy: it sends the world's last calls through
Kafka (topic ``cdr``), so decisions appear on ``decisions`` at once.

The steps are the user-facing commands run as child processes, so the demo exercises
exactly what the README documents, and a failure names the command that failed.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

DEMO_WORLD = "demo-world"
DEMO_SUBSCRIBERS = 5000
DEMO_DAYS = 7
DEMO_REPLAY_CALLS = 2000
STEP_TIMEOUT_S = 1800


class DemoStepError(RuntimeError):
    """A demo step (simulate, train, load) failed; the message names the command and its log."""


def _run(argv: list[str], env: dict[str, str], say: Callable[[str], None]) -> None:
    say("demo: $ callscreen " + " ".join(argv[3:]))
    # Output goes to the terminal: simulate and train show their own progress bars.
    result = subprocess.run(argv, env=env, timeout=STEP_TIMEOUT_S, check=False)
    if result.returncode != 0:
        raise DemoStepError(f"`callscreen {' '.join(argv[3:])}` failed with exit code {result.returncode}")


def prepare(state: Path, models_dir: Path, env: dict[str, str], say: Callable[[str], None]) -> Path:
    """Ensure a champion model and load the demo subscribers; returns the world folder."""
    from models.registry import Registry

    cli = [sys.executable, "-m", "deploy.cli"]
    world = state / DEMO_WORLD
    if Registry(models_dir).alias("champion") is None:
        if not (world / "manifest.json").exists():
            say(f"demo: no model yet; simulating a small world ({DEMO_SUBSCRIBERS} subscribers, {DEMO_DAYS} days)")
            _run([*cli, "simulate", "--out", str(world), "--subscribers", str(DEMO_SUBSCRIBERS),
                  "--days", str(DEMO_DAYS), "--seed", "7", "--jsonl"], env, say)
        say("demo: training a model on it")
        _run([*cli, "train", "--world", str(world), "--registry", str(models_dir), "--promote"], env, say)
    if (world / "subscribers.parquet").exists():
        _run([*cli, "subscribers", "load", str(world / "subscribers.parquet")], env, say)
    return world


def replay(world: Path, bootstrap: str, topic: str, say: Callable[[str], None], calls: int = DEMO_REPLAY_CALLS) -> int:
    """Produce the world's last ``calls`` CDRs to Kafka (key = a_number, as operators do)."""
    from collections import deque

    from kafka import KafkaProducer

    source = world / "cdrs.jsonl"
    if not source.exists():
        say(f"demo: {source} not found; no demo traffic sent")
        return 0
    with open(source, "rb") as f:
        lines = deque((line.rstrip(b"\n") for line in f if line.strip()), maxlen=calls)
    producer = KafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=10_000, max_block_ms=10_000, linger_ms=20)
    try:
        import json

        for line in lines:
            producer.send(topic, key=json.loads(line)["a_number"].encode(), value=line)
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=10)
    say(f"demo: sent {len(lines)} calls to topic {topic}; decisions appear on the decisions topic and /metrics")
    return len(lines)
