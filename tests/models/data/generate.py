"""Regenerate the committed small LightGBM models (``python tests/models/data/generate.py``).

One model per shape the scorer must handle. They are committed so that the parity
suite also guards against LightGBM changing under us; retraining them is only needed
when a new shape is added.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt

HERE = Path(__file__).parent
N_FEATURES = 8
CATEGORICAL = [5, 6]


def make_data(
    seed: int, n: int = 600, *, nan_rate: float = 0.0, zero_rate: float = 0.0, categorical: bool = False
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Seeded rows with a label that depends on several features (and the categories)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, N_FEATURES)) * rng.choice([1.0, 10.0, 1000.0], size=N_FEATURES)
    if categorical:
        for j in CATEGORICAL:
            X[:, j] = rng.integers(0, 12 if j == 5 else 40, size=n)
    logit = X[:, 0] / np.std(X[:, 0]) - X[:, 1] / np.std(X[:, 1]) + np.sin(X[:, 2] / np.std(X[:, 2]) * 3)
    if categorical:
        logit += np.isin(X[:, 5], [1, 3, 7]) * 2.0 - (X[:, 6] % 5 == 0) * 1.5
    y = (logit + rng.normal(size=n) > 0).astype(np.float64)
    if nan_rate:
        X[rng.random(X.shape) < nan_rate] = np.nan
    if zero_rate:
        X[rng.random(X.shape) < zero_rate] = 0.0
    return X, y


def train(
    X: npt.NDArray[np.float64], y: npt.NDArray[np.float64], rounds: int, **params: Any
) -> lgb.Booster:
    base = {"objective": "binary", "num_leaves": 15, "learning_rate": 0.2, "min_data_in_leaf": 5,
            "verbose": -1, "seed": 1, "deterministic": True, "num_threads": 1}
    categorical = params.pop("categorical_feature", "auto")
    data = lgb.Dataset(X, y, categorical_feature=categorical, params={"verbose": -1})
    return lgb.train({**base, **params}, data, num_boost_round=rounds)


def main() -> None:
    X, y = make_data(1)
    train(X, y, 30).save_model(HERE / "numerical.txt")
    train(X, y, 1).save_model(HERE / "single_tree.txt")
    Xr = X.copy()
    train(Xr, X[:, 0] * 2 + X[:, 1], 20, objective="regression").save_model(HERE / "regression.txt")
    Xc, yc = make_data(2, categorical=True, nan_rate=0.05)
    train(Xc, yc, 30, categorical_feature=CATEGORICAL, max_cat_to_onehot=4, cat_smooth=1,
          min_data_per_group=5).save_model(HERE / "categorical.txt")
    Xn, yn = make_data(3, nan_rate=0.2)
    train(Xn, yn, 30).save_model(HERE / "missing_nan.txt")
    Xz, yz = make_data(4, zero_rate=0.2, nan_rate=0.05)
    train(Xz, yz, 30, zero_as_missing=True).save_model(HERE / "missing_zero.txt")
    train(Xn, yn, 30, use_missing=False).save_model(HERE / "missing_none.txt")
    # No split can meet min_gain_to_split: training stops after one single-leaf tree
    # holding the boost-from-average score.
    train(X, y, 5, min_gain_to_split=1e9).save_model(HERE / "constant_tree.txt")
    _with_constant_tree_inside(HERE / "numerical.txt", HERE / "constant_tree_inside.txt")


def _with_constant_tree_inside(source: Path, target: Path) -> None:
    """The numerical model with a single-leaf tree inserted as tree 3 (as continued training can leave)."""
    text = source.read_text()
    head, rest = text.split("\nTree=0\n", 1)
    trees_text, tail = rest.split("\nend of trees\n", 1)
    trees = ("Tree=0\n" + trees_text).split("\n\n")
    trees = [t.strip("\n") for t in trees if t.strip()]
    constant = "Tree=X\nnum_leaves=1\nnum_cat=0\nsplit_feature=\nsplit_gain=\nthreshold=\ndecision_type=\n" \
               "left_child=\nright_child=\nleaf_value=0.125\nleaf_weight=\nleaf_count=\ninternal_value=\n" \
               "internal_weight=\ninternal_count=\nis_linear=0\nshrinkage=1"
    trees.insert(3, constant)
    renumbered = [f"Tree={i}\n" + t.split("\n", 1)[1] for i, t in enumerate(trees)]
    # tree_sizes no longer match; without the line LightGBM parses trees sequentially.
    head = "\n".join(line for line in head.split("\n") if not line.startswith("tree_sizes="))
    target.write_text(head + "\n" + "\n\n".join(renumbered) + "\n\n\nend of trees\n" + tail)


if __name__ == "__main__":
    main()
