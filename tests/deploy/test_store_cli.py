"""``callscreen subscribers|lists|state`` against the real Redis."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import redis

from deploy.cli import main
from features.contracts import encode
from features.memstore import InMemoryStore
from features.offline import subscriber_table
from features.redisstore import RedisStore
from tests.features.streams import random_world

A = "+77011234567"


@pytest.fixture
def env(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("CALLSCREEN_REDIS_URL", redis_url)
    monkeypatch.setenv("CALLSCREEN_ENV", "development")
    return redis_url


def _stdin(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(text))


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_subscribers_load_get_delete(env: str, redis_client: redis.Redis, tmp_path: Path, fmt: str,
                                     capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    cdrs, subs = random_world(21, 300)
    path = tmp_path / f"subs.{fmt}"
    if fmt == "jsonl":
        path.write_bytes(b"".join(encode(s) + b"\n" for s in subs))
    else:
        pq.write_table(subscriber_table(subs), path)
    assert main(["subscribers", "load", str(path)]) == 0
    assert f"loaded {len(subs)} subscriber records" in capsys.readouterr().out
    # the bulk path stores exactly what the record-by-record path stores
    reference = InMemoryStore()
    reference.upsert_subscribers(subs)
    store = RedisStore(redis_client)
    np.testing.assert_array_equal(store.screen(cdrs)[0], reference.screen(cdrs)[0])
    number = subs[0].msisdn
    _stdin(monkeypatch, number + "\n")
    assert main(["subscribers", "get"]) == 0
    assert json.loads(capsys.readouterr().out)["msisdn"] == number
    assert main(["subscribers", "delete", "--number", number]) == 0
    assert main(["subscribers", "get", "--number", number]) == 1
    assert capsys.readouterr().out.endswith("null\n")


def test_bad_record_names_the_line(env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"msisdn":"+77011234567","operator":"kcell","biometric_status":"verified",'
                    '"sim_activated_at":"2026-01-01T00:00:00Z"}\n{"msisdn":"8701","operator":"kcell"}\n')
    assert main(["subscribers", "load", str(path)]) == 2
    err = capsys.readouterr().err
    assert "line 2" in err and "8701" not in err


def test_lists_and_state_reset(env: str, redis_client: redis.Redis, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    _stdin(monkeypatch, A + "\n")
    assert main(["lists", "add", "--list", "block", "--source", "bank", "--reason", "vishing", "--days", "30"]) == 0
    csv = tmp_path / "allow.csv"
    csv.write_text("msisdn,operator,reason\n+77010000001,kcell,OTP sender\n1414,beeline,service\n")
    assert main(["lists", "load", str(csv)]) == 0
    capsys.readouterr()
    assert main(["lists", "show", "--list", "allow"]) == 0
    shown = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["number"] for e in shown] == ["+77010000001", "1414"] and shown[0]["owner"] == "kcell"
    store = RedisStore(redis_client)
    assert store.list_entries("block")[0].expires_at is not None
    assert main(["lists", "remove", "--list", "block", "--number", A]) == 0
    assert store.list_entries("block") == []
    cdrs, _ = random_world(22, 50)
    store.process(cdrs)
    caller = cdrs[0].a_number
    assert store.number_summary(caller)["calls_24h"] >= 1
    assert main(["state", "reset", caller]) == 0
    assert store.number_summary(caller)["calls_24h"] == 0
