"""Seeded workload for the scorer benchmark: rows shaped like call features, and two models.

About 40 features: counts and rates with heavy tails, some missing (NaN), six
categorical codes. Models are trained once and cached under ``benchmarks/.cache``
(gitignored by the ``.callscreen``-style rule below: the directory is recreated on demand).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import lightgbm as lgb
import numpy as np
import numpy.typing as npt

N_FEATURES = 40
CATEGORICAL = [34, 35, 36, 37, 38, 39]
CACHE = Path(__file__).parent / ".cache"


@dataclass(frozen=True)
class ModelSpec:
    """One benchmark model: number of trees and leaves per tree."""

    name: str
    trees: int
    leaves: int


SMALL = ModelSpec("200x63", 200, 63)
LARGE = ModelSpec("1000x127", 1000, 127)


def rows(n: int, seed: int) -> npt.NDArray[np.float64]:
    """n seeded rows: heavy-tailed numerics, ~10% NaN in a third of the columns, category codes."""
    rng = np.random.default_rng(seed)
    X = rng.lognormal(mean=1.0, sigma=1.5, size=(n, N_FEATURES))
    X[:, ::3] = rng.normal(size=(n, len(range(0, N_FEATURES, 3))))
    for j in range(1, 34, 3):
        X[rng.random(n) < 0.1, j] = np.nan
    X[rng.random((n, N_FEATURES)) < 0.05] = 0.0
    for k, j in enumerate(CATEGORICAL):
        X[:, j] = rng.integers(0, 8 + 10 * k, size=n)
    return X


def labels(X: npt.NDArray[np.float64], seed: int) -> npt.NDArray[np.float64]:
    """A label that depends on many features, so that trees use most of them."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=34)
    num = np.nan_to_num(np.log1p(np.abs(X[:, :34])) * np.sign(X[:, :34]))
    logit = num @ w / 4 + np.sin(X[:, 0] * 2) + np.isin(X[:, 34], [1, 4, 6]) - (X[:, 35] % 3 == 0)
    logit += 0.3 * (X[:, 36] % 4) - np.isnan(X[:, 1]) * 0.8
    return (logit + rng.logistic(size=len(X)) > 0).astype(np.float64)


def model_path(spec: ModelSpec) -> Path:
    """Train (once) and return the LightGBM text model of this spec."""
    path = CACHE / f"model_{spec.name}.txt"
    if path.exists():
        return path
    CACHE.mkdir(exist_ok=True)
    X = rows(50_000, seed=7)
    y = labels(X, seed=8)
    params = {
        "objective": "binary", "num_leaves": spec.leaves, "learning_rate": 0.05,
        "min_data_in_leaf": 5, "feature_fraction": 0.8, "bagging_fraction": 0.8, "bagging_freq": 1,
        "max_bin": 255, "verbose": -1, "seed": 3, "num_threads": 2, "max_cat_to_onehot": 4,
    }
    data = lgb.Dataset(X, y, categorical_feature=CATEGORICAL)
    booster = lgb.train(params, data, num_boost_round=spec.trees)
    booster.save_model(path)
    return path
