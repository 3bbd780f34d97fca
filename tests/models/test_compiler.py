"""The compiler refuses what the scorer does not implement, naming it, and rejects bad input."""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest

from models import Scorer
from models.compiler import compile_text
from models.errors import ModelFormatError, ModelUnsupportedError, RowShapeError
from tests.models.data.generate import make_data

DATA = Path(__file__).parent / "data"


def trained(rounds: int = 3, **params: object) -> str:
    X, y = make_data(0, n=300)
    if params.get("objective") == "multiclass":
        y = (np.abs(X[:, 0]) * 2).astype(int) % 3
    base = {"objective": "binary", "verbose": -1, "num_leaves": 4, "min_data_in_leaf": 5}
    booster = lgb.train({**base, **params}, lgb.Dataset(X, y), num_boost_round=rounds)
    return booster.model_to_string()


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"objective": "multiclass", "num_class": 3}, "num_class=3"),
        ({"linear_tree": True}, "linear"),
        ({"objective": "lambdarank"}, "lambdarank"),
        ({"boosting": "rf", "bagging_fraction": 0.5, "bagging_freq": 1}, "average_output"),
        ({"objective": "regression", "reg_sqrt": True}, "sqrt"),
    ],
)
def test_unsupported_models_are_refused_by_name(params: dict[str, object], named: str) -> None:
    if params.get("objective") == "lambdarank":
        X, y = make_data(0, n=300)
        data = lgb.Dataset(X, (np.abs(X[:, 0]) * 2).astype(int) % 3, group=[100, 100, 100])
        text = lgb.train({"objective": "lambdarank", "verbose": -1}, data, num_boost_round=2).model_to_string()
    else:
        text = trained(**params)
    with pytest.raises(ModelUnsupportedError, match=named):
        compile_text(text)


def test_garbage_is_a_format_error() -> None:
    with pytest.raises(ModelFormatError, match="expected 'tree'"):
        compile_text("not a model")
    text = (DATA / "numerical.txt").read_text()
    with pytest.raises(ModelFormatError, match="end of trees"):
        compile_text(text.split("end of trees")[0])


def test_wrong_row_shapes_are_refused_with_the_expected_shape() -> None:
    scorer = Scorer.from_file(DATA / "numerical.txt")
    with pytest.raises(RowShapeError, match=r"expected \(8,\)"):
        scorer.predict_one(np.zeros(7))
    with pytest.raises(RowShapeError, match=r"expected \(rows, 8\)"):
        scorer.predict(np.zeros((2, 9)))
    with pytest.raises(RowShapeError, match="not numeric"):
        scorer.predict_one(np.array(["a"] * 8, dtype=object))


def test_rows_that_are_not_float64_contiguous_are_converted() -> None:
    scorer = Scorer.from_file(DATA / "numerical.txt")
    X, _ = make_data(1, n=5)
    wide = np.asfortranarray(X)
    assert scorer.predict(wide).tobytes() == scorer.predict(X).tobytes()
    assert scorer.predict_one(list(X[0])) == scorer.predict_one(X[0])
    assert scorer.predict_one(X[:, ::1][0].astype(np.float32).astype(np.float64)) == scorer.predict_one(
        X[0].astype(np.float32).astype(np.float64)
    )
