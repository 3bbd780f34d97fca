"""Replay: same engine, no Kafka; one decision per valid CDR in start_time order, counts by action."""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path

import msgspec
import pytest
import pyarrow as pa
import pyarrow.parquet as pq

from features.contracts import Decision
from features.memstore import InMemoryStore
from models.engine import Engine
from streaming import replay
from tests.models.tiny_model import loaded

T0 = dt.datetime(2026, 11, 20, 8, tzinfo=dt.UTC)


def world(tmp_path: Path) -> tuple[list[dict[str, object]], Path, Path, Path]:
    rows: list[dict[str, object]] = []
    for i in range(300):
        # a robocaller (+77010000001) every 10 s; ordinary callers otherwise; file order shuffled
        a = "+77010000001" if i % 3 == 0 else f"+7702{i:07d}"
        rows.append({"call_id": f"c{i}", "operator": "kcell", "start_time": T0 + dt.timedelta(seconds=10 * i),
                     "a_number": a, "b_number": f"+7705{i:07d}", "ingress": "mobile",
                     "answered": False, "duration_s": 0.0, "ring_s": 2.0})
    rows.reverse()
    jsonl = tmp_path / "cdrs.jsonl"
    with open(jsonl, "w") as f:
        for r in rows:
            f.write(json.dumps({**r, "start_time": r["start_time"].isoformat()}) + "\n")  # type: ignore[union-attr]
        f.write('{"call_id": "bad"}\n')
    parquet = tmp_path / "cdrs"
    parquet.mkdir()
    pq.write_table(pa.Table.from_pylist(rows), parquet / "part-0.parquet")
    allow = tmp_path / "allowlist.csv"
    allow.write_text("msisdn,operator,reason\n+77010000001,kcell,one-ring service number\n")
    return rows, jsonl, parquet, allow


def test_jsonl_and_parquet_give_the_same_decisions(tmp_path: Path) -> None:
    rows, jsonl, parquet, _ = world(tmp_path)
    outs = []
    for path in (jsonl, parquet):
        cdrs = replay.load_cdrs(path)
        assert len(cdrs.records) == 300 and cdrs.invalid == (1 if path == jsonl else 0)
        assert [c.start_time for c in cdrs.records] == sorted(c.start_time for c in cdrs.records)
        out = io.BytesIO()
        result = replay.replay(Engine(InMemoryStore(), loaded()), cdrs.records, out, batch=64)  # type: ignore[arg-type]
        assert result.calls == 300 and sum(result.actions.values()) == 300 and result.degraded == 0
        outs.append(out.getvalue())
    assert outs[0].count(b"\n") == 300
    a = [msgspec.json.decode(line, type=Decision) for line in outs[0].splitlines()]
    b = [msgspec.json.decode(line, type=Decision) for line in outs[1].splitlines()]
    assert [(d.call_id, d.action, d.score) for d in a] == [(d.call_id, d.action, d.score) for d in b]
    # the robocaller crosses 20 calls in an hour (one per 30 s) and is blocked from then on
    robo = [d for d in a if int(d.call_id[1:]) % 3 == 0]
    assert robo[0].action == "allow" and robo[-1].action == "block"


def test_allowlist_from_csv_wins(tmp_path: Path) -> None:
    _, jsonl, _, allow = world(tmp_path)
    store = InMemoryStore()
    replay.prepare(store, [], replay.load_allowlist(allow))
    out = io.BytesIO()
    result = replay.replay(Engine(store, loaded()), replay.load_cdrs(jsonl).records, out)  # type: ignore[arg-type]
    assert result.actions.get("block", 0) == 0
    robo = [json.loads(x) for x in out.getvalue().splitlines() if int(json.loads(x)["call_id"][1:]) % 3 == 0]
    assert {r["reasons"][0]["code"] for r in robo} == {"ALLOWLISTED"}


def test_replay_command_with_the_registry_champion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from deploy.cli import main
    from tests.models.tiny_model import register

    _, jsonl, parquet, allow = world(tmp_path)
    subs = tmp_path / "subscribers.jsonl"
    subs.write_text(json.dumps({"msisdn": "+77010000001", "operator": "kcell", "biometric_status": "verified",
                                "sim_activated_at": "2020-01-01T00:00:00Z"}) + "\n")
    register(tmp_path / "models")
    monkeypatch.setenv("CALLSCREEN_REGISTRY_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("CALLSCREEN_STATE_DIR", str(tmp_path / "state"))
    out = tmp_path / "decisions.jsonl"
    assert main(["replay", "--cdrs", str(parquet), "--subscribers", str(subs), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "model tiny-1" in printed and "replayed 300 CDRs" in printed and "block=" in printed
    lines = out.read_bytes().splitlines()
    assert len(lines) == 300 and all(json.loads(x)["model_version"] == "tiny-1" for x in lines)
    # an unknown model version is a clear error, not a traceback
    assert main(["replay", "--cdrs", str(jsonl), "--subscribers", str(subs), "--out", str(out),
                 "--model", "nope"]) == 2
    assert "not loadable" in capsys.readouterr().err
