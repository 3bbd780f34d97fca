"""The worker's per-batch processing and model hot swap, without a broker (the fault tests cover Kafka)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from features.memstore import InMemoryStore
from models.engine import Engine, decision_id
from models.registry import Registry
from streaming.worker import Worker, WorkerConfig
from tests.models.tiny_model import register
from tests.streaming.harness import stream


@dataclass(frozen=True)
class Record:
    """The fields of a kafka-python ConsumerRecord the worker reads."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


def test_batch_outputs_decisions_feed_and_dead_letters(tmp_path: Path) -> None:
    register(tmp_path / "models")
    engine = Engine(InMemoryStore(), Registry(tmp_path / "models").load("champion"))
    worker = Worker(WorkerConfig(bootstrap="unused:9092", feed_hash_key=b"tests-only-feed-key-0123456789abcdef"),
                    engine=engine)
    values = stream(400, seed=11, numbers=5)
    values.insert(7, b'{"call_id": "bad"}')
    out = worker.process([Record("cdr", 0, i, None, v) for i, v in enumerate(values)]).records()
    decisions = [o for o in out if o.topic == "decisions"]
    assert len(decisions) == 400
    assert decisions[0].key == b"kcell:c0"
    assert json.loads(decisions[0].value)["decision_id"] == decision_id("kcell", "c0", "tiny-1")
    (dead,) = [o for o in out if o.topic == "cdr.dlq"]
    assert dead.value == b'{"call_id": "bad"}' and dict(dead.headers)["x-origin-offset"] == b"7"
    feed = [json.loads(o.value) for o in out if o.topic == "fraud-feed"]
    # five busy callers, each blocked by the model: one feed event per number (warn, then block at most)
    assert 1 <= len({e["number"] for e in feed}) <= 5 and len(feed) <= 10
    assert all(e["source"] == "model" and e["typology"] == "robocall" for e in feed)


def test_model_hot_swap_follows_the_alias(tmp_path: Path) -> None:
    register(tmp_path / "models", "tiny-1")
    registry = Registry(tmp_path / "models")
    engine = Engine(InMemoryStore(), registry.load("champion"))
    worker = Worker(WorkerConfig(bootstrap="unused:9092", registry_dir=tmp_path / "models", model_poll_s=0.0),
                    engine=engine)
    worker._maybe_swap_model(engine)
    assert engine.model_version == "tiny-1"
    registry.register((tmp_path / "models" / "tiny-1" / "model.txt").read_text(), feature_names=registry.card("tiny-1").feature_names,
                      feature_version=registry.card("tiny-1").feature_version, thresholds=registry.card("tiny-1").thresholds,
                      data_range={}, metrics={}, params={}, version="tiny-2")
    registry.promote("tiny-2")
    worker._maybe_swap_model(engine)
    assert engine.model_version == "tiny-2"
    registry.rollback()
    worker._maybe_swap_model(engine)
    assert engine.model_version == "tiny-1"
