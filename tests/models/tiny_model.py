"""A tiny LightGBM model over the 33 fdef-1 features, for engine/worker tests (training libs are fine in tests).

It learns "more than 20 calls in the last hour is fraud", so a test can steer a number to
allow, warn or block by how often it calls.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

import numpy as np

from features.definitions import FEATURE_NAMES, INDEX
from features.definitions import FEATURE_VERSION
from models import Scorer
from models.registry import LoadedModel, ModelCard, Thresholds


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


def card(version: str = "v1", thresholds: Thresholds | None = None) -> ModelCard:
    """A registry card for the tiny model, without writing a registry to disk."""
    return ModelCard(
        version=version,
        digest=hashlib.sha256(model_text().encode()).hexdigest(),
        feature_version=FEATURE_VERSION,
        feature_names=FEATURE_NAMES,
        thresholds=thresholds or Thresholds(0.5, 0.9),
        created_at="2026-11-22T00:00:00Z",
        data_range={},
        metrics={},
        params={},
    )


def loaded(version: str = "v1", per_operator: dict[str, tuple[float, float]] | None = None) -> LoadedModel:
    return LoadedModel(card(version, Thresholds(0.5, 0.9, per_operator or {})), Scorer.from_string(model_text()))


def register(root: Path, version: str = "tiny-1") -> str:
    """Register the tiny model in a real ``models.registry.Registry`` at ``root`` as champion."""
    from models import registry

    reg = registry.Registry(root)
    reg.register(model_text(), feature_names=FEATURE_NAMES, feature_version=FEATURE_VERSION,
                 thresholds=registry.Thresholds(0.5, 0.9), data_range={}, metrics={}, params={}, version=version)
    reg.promote(version)
    return version
