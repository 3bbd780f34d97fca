"""A tiny LightGBM model over the 33 fdef-1 features, for engine/worker tests (training libs are fine in tests).

It learns "more than 20 calls in the last hour is fraud", so a test can steer a number to
allow, warn or block by how often it calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from features.definitions import FEATURE_NAMES, INDEX
from models import Scorer


@dataclass(frozen=True)
class Thresholds:
    """Shape of ``models.registry.Thresholds`` (interface C)."""

    warn: float
    block: float
    per_operator: dict[str, tuple[float, float]] = field(default_factory=dict)

    def for_operator(self, op: str) -> tuple[float, float]:
        return self.per_operator.get(op, (self.warn, self.block))


@dataclass(frozen=True)
class Card:
    version: str
    thresholds: Thresholds


@dataclass(frozen=True)
class Loaded:
    """Shape of ``models.registry.LoadedModel`` as the engine reads it."""

    card: Card
    scorer: Scorer


@lru_cache(maxsize=4)
def model_text(seed: int = 7) -> str:
    import lightgbm as lgb

    rng = np.random.default_rng(seed)
    X = np.full((4000, len(FEATURE_NAMES)), np.nan)
    X[:, INDEX["calls_1h"]] = rng.integers(0, 40, 4000)
    y = (X[:, INDEX["calls_1h"]] > 20).astype(int)
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "num_leaves": 4, "min_data_in_leaf": 20},
        lgb.Dataset(X, y, feature_name=list(FEATURE_NAMES)),
        num_boost_round=20,
    )
    return str(booster.model_to_string())


def loaded(version: str = "v1", per_operator: dict[str, tuple[float, float]] | None = None) -> Loaded:
    return Loaded(Card(version, Thresholds(0.5, 0.9, per_operator or {})), Scorer.from_string(model_text()))


def register(root: Path, version: str = "tiny-1") -> str:
    """Register the tiny model in a real ``models.registry.Registry`` at ``root`` as champion."""
    from features.definitions import FEATURE_VERSION
    from models import registry

    reg = registry.Registry(root)
    reg.register(model_text(), feature_names=FEATURE_NAMES, feature_version=FEATURE_VERSION,
                 thresholds=registry.Thresholds(0.5, 0.9), data_range={}, metrics={}, params={}, version=version)
    reg.promote(version)
    return version
