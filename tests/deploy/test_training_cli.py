"""`callscreen simulate | train | evaluate` end to end on a tiny world, with a registry of its own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deploy.cli import main
from models.registry import Registry


def test_simulate_train_evaluate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    world, reg, report = tmp_path / "world", tmp_path / "models", tmp_path / "report"
    assert main(["simulate", "--out", str(world), "--subscribers", "1000", "--days", "5", "--seed", "9"]) == 0
    assert json.loads(capsys.readouterr().out)["calls"] > 10_000
    assert main(["train", "--world", str(world), "--registry", str(reg), "--negative-rate", "0.3",
                 "--max-rounds", "30", "--block-fpr", "0.001", "--warn-fpr", "0.01"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["champion"] is True  # the first model becomes champion
    registry = Registry(reg)
    assert registry.alias("champion") == first["version"]
    card = registry.card("champion")
    assert card.thresholds.block == first["thresholds"]["block"]
    assert card.metrics["block_fpr"] <= 0.001
    assert main(["train", "--world", str(world), "--registry", str(reg), "--seed", "8", "--negative-rate", "0.3",
                 "--max-rounds", "30", "--version", "second"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["champion"] is False and registry.alias("champion") == first["version"]
    assert main(["evaluate", "--world", str(world), "--registry", str(reg), "--out", str(report)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert Path(out["report"]).is_file()
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["candidate"]["version"] == "second"
    assert metrics["champion"]["version"] == first["version"]


def test_out_of_range_settings_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--world", str(tmp_path), "--registry", str(tmp_path), "--negative-rate", "0"]) == 2
    assert "negative_rate is 0.0" in capsys.readouterr().err
    assert main(["evaluate", "--world", str(tmp_path), "--registry", str(tmp_path), "--out", str(tmp_path),
                 "--eval-fraction", "1.5"]) == 2
    assert "--eval-fraction is 1.5" in capsys.readouterr().err
