"""Model registry: versions, aliases with rollback, and refusal of changed or mismatched models."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from features.definitions import FEATURE_NAMES, FEATURE_VERSION, INDEX
from models.errors import (
    ModelAliasError,
    ModelCardError,
    ModelDigestMismatchError,
    ModelFeatureMismatchError,
    ModelNotFoundError,
    ModelVersionTakenError,
)
from models.registry import Registry, Thresholds
from tests.models.tiny_model import model_text


def _register(reg: Registry, version: str, text: str | None = None, **overrides: Any) -> Any:
    kwargs: dict[str, Any] = {
        "feature_names": FEATURE_NAMES,
        "feature_version": FEATURE_VERSION,
        "thresholds": Thresholds(0.5, 0.9, {"kcell": (0.4, 0.8)}),
        "data_range": {"start": "2026-11-01", "end": "2026-11-14"},
        "metrics": {"auc": 0.97},
        "params": {"num_leaves": 4},
        "version": version,
    }
    kwargs.update(overrides)
    return reg.register(text if text is not None else model_text(), **kwargs)


def test_register_list_show_and_load(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "models")
    card = _register(reg, "v1")
    assert (tmp_path / "models" / "v1" / "model.txt").read_text() == model_text()
    assert [c.version for c in reg.list()] == ["v1"]
    shown = reg.card("v1")
    assert shown == card
    assert shown.feature_names == FEATURE_NAMES and len(shown.digest) == 64
    assert shown.thresholds.for_operator("kcell") == (0.4, 0.8)
    assert shown.thresholds.for_operator("beeline") == (0.5, 0.9)
    loaded = reg.load("v1")
    x = np.full((2, len(FEATURE_NAMES)), np.nan)
    x[:, INDEX["calls_1h"]] = [2, 35]
    low, high = loaded.scorer.predict(x)
    assert low < 0.5 < high
    # no pickles anywhere: the folder holds the text model and the JSON card only
    assert sorted(p.name for p in (tmp_path / "models" / "v1").iterdir()) == ["card.json", "model.txt"]


def test_default_version_names_the_digest(tmp_path: Path) -> None:
    card = _register(Registry(tmp_path), None)  # type: ignore[arg-type]
    assert card.version.startswith("m-") and card.version.endswith(card.digest[:8])


def test_versions_are_immutable(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    _register(reg, "v1")
    with pytest.raises(ModelVersionTakenError, match="v1"):
        _register(reg, "v1")
    with pytest.raises(ModelCardError, match="not a valid name"):
        _register(reg, "champion")


def test_promote_rollback_and_aliases_persist(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    for v in ("v1", "v2", "v3"):
        _register(reg, v)
    with pytest.raises(ModelNotFoundError, match="champion"):
        reg.load("champion")
    reg.promote("v1")
    reg.promote("v2")
    reg.promote("v3", alias="challenger")
    assert reg.load("champion").card.version == "v2"
    fresh = Registry(tmp_path)  # another process reading the same folder
    assert fresh.alias("champion") == "v2" and fresh.alias("challenger") == "v3"
    assert fresh.rollback("champion").version == "v1"
    assert Registry(tmp_path).alias("champion") == "v1"
    with pytest.raises(ModelAliasError, match="no earlier version"):
        fresh.rollback("champion")
    with pytest.raises(ModelAliasError, match="unknown"):
        fresh.promote("v1", alias="production")
    with pytest.raises(ModelNotFoundError, match="v9"):
        fresh.promote("v9")
    state = json.loads((tmp_path / "aliases.json").read_text())
    assert state == {"aliases": {"champion": "v1", "challenger": "v3"}, "history": {"champion": []}}


def test_alias_file_is_replaced_atomically(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    _register(reg, "v1")
    _register(reg, "v2")
    reg.promote("v1")
    inode = os.stat(tmp_path / "aliases.json").st_ino
    reg.promote("v2")
    assert os.stat(tmp_path / "aliases.json").st_ino != inode  # a new file renamed over the old one
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".aliases.json")]  # no temp files left
    # concurrent promotions serialise on the lock and lose no history entry
    threads = [threading.Thread(target=reg.promote, args=(v,)) for v in ("v1", "v2") * 4]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    state = json.loads((tmp_path / "aliases.json").read_text())
    assert len(state["history"]["champion"]) >= 2
    assert state["aliases"]["champion"] in ("v1", "v2")


def test_changed_model_file_is_refused(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    _register(reg, "v1")
    path = tmp_path / "v1" / "model.txt"
    path.write_text(path.read_text().replace("shrinkage=", "shrinkage=0", 1))
    with pytest.raises(ModelDigestMismatchError, match="SHA-256"):
        reg.load("v1")
    with pytest.raises(ModelDigestMismatchError):
        reg.promote("v1")


def test_feature_mismatch_is_refused(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    _register(reg, "old", feature_version="fdef-0")
    with pytest.raises(ModelFeatureMismatchError, match="fdef-0"):
        reg.load("old")
    # a card whose names disagree with the model text is refused at registration
    swapped = list(FEATURE_NAMES)
    swapped[0], swapped[1] = swapped[1], swapped[0]
    with pytest.raises(ModelFeatureMismatchError, match="model text"):
        _register(reg, "swapped", feature_names=swapped)
    # and a model trained on other names registers but never loads
    other = model_text().replace("feature_names=biometric_status ", "feature_names=bio ", 1)
    _register(reg, "renamed", text=other, feature_names=("bio", *FEATURE_NAMES[1:]))
    with pytest.raises(ModelFeatureMismatchError, match="feature 0 is 'bio'"):
        reg.load("renamed")


def test_bad_thresholds_and_cards(tmp_path: Path) -> None:
    with pytest.raises(ModelCardError, match="warn=0.9"):
        Thresholds(0.9, 0.5)
    reg = Registry(tmp_path)
    _register(reg, "v1")
    (tmp_path / "v1" / "card.json").write_text("{not json")
    with pytest.raises(ModelCardError, match="card.json"):
        reg.card("v1")
