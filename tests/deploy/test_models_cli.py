"""``callscreen models list|show|promote|rollback`` against a real registry folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deploy.cli import main
from features.definitions import FEATURE_NAMES, FEATURE_VERSION
from models.registry import Registry, Thresholds
from tests.models.tiny_model import model_text


def _registry(root: Path) -> Registry:
    reg = Registry(root)
    for v in ("v1", "v2"):
        reg.register(model_text(), feature_names=FEATURE_NAMES, feature_version=FEATURE_VERSION,
                     thresholds=Thresholds(0.5, 0.9), data_range={"days": 14}, metrics={"auc": 0.95},
                     params={}, version=v)
    return reg


def test_models_cli_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _registry(tmp_path)
    reg = ["--registry", str(tmp_path)]
    assert main(["models", "promote", "v1", *reg]) == 0
    assert main(["models", "promote", "v2", *reg]) == 0
    assert "champion: v1 -> v2" in capsys.readouterr().out
    assert main(["models", "list", *reg]) == 0
    table = capsys.readouterr().out
    assert "v1" in table and "v2" in table and "champion" in table and "auc=0.95" in table
    assert main(["models", "show", "champion", *reg]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["version"] == "v2" and shown["integrity"].startswith("ok")
    assert shown["feature_names"] == list(FEATURE_NAMES)
    assert main(["models", "rollback", *reg]) == 0
    assert "champion: v2 -> v1 (rolled back)" in capsys.readouterr().out


def test_models_cli_refusals_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _registry(tmp_path)
    reg = ["--registry", str(tmp_path)]
    assert main(["models", "rollback", *reg]) == 2
    assert "no earlier version" in capsys.readouterr().err
    (tmp_path / "v1" / "model.txt").write_text("tree\n")
    assert main(["models", "promote", "v1", *reg]) == 2
    assert "SHA-256" in capsys.readouterr().err
    assert main(["models", "show", "v1", *reg]) == 0
    assert json.loads(capsys.readouterr().out)["integrity"].startswith("REFUSED")
    assert main(["models", "show", "v7", *reg]) == 2
    assert "no model version 'v7'" in capsys.readouterr().err
