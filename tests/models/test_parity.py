"""Sentence 1 of HOUSE_STYLE: the scorer returns what ``lightgbm.Booster.predict`` returns.

Raw scores are compared bit for bit (same summation order, same doubles); probabilities
too (same libm ``exp``); contributions within 1e-9 of ``pred_contrib=True``.
"""

from __future__ import annotations

import re
from pathlib import Path

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models import Scorer
from tests.models.data.generate import CATEGORICAL, N_FEATURES, make_data, train

DATA = Path(__file__).parent / "data"
MODELS = sorted(p.stem for p in DATA.glob("*.txt"))

SPECIALS = [
    np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-40, -1e-40, 1e-35, -1e-35, 1.0000000180025095e-35,
    -1.0000000180025095e-35, 5e-324, 1e300, -1e300, 2.0**31, -(2.0**31), 2.0**31 - 0.5, 1e10,
]
CATEGORY_VALUES = [-1.0, -5.0, -0.5, 0.0, 0.5, 1.0, 2.9, 3.0, 7.0, 31.0, 32.0, 33.0, 39.0, 63.0, 64.0, 1000.0]


def same_bits(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def thresholds(text: str) -> list[float]:
    """Every split threshold in a model, to aim values exactly at and just around them."""
    found = [float(v) for line in re.findall(r"^threshold=(.*)$", text, re.MULTILINE) for v in line.split()]
    return sorted(set(found))


def row_values(model_text: str) -> st.SearchStrategy[float]:
    cuts = [t for t in thresholds(model_text) if np.isfinite(t)] or [0.0]
    near = st.sampled_from(cuts).flatmap(
        lambda t: st.sampled_from([t, np.nextafter(t, np.inf), np.nextafter(t, -np.inf)])
    )
    return st.one_of(
        st.sampled_from(SPECIALS),
        st.floats(allow_nan=True, allow_infinity=True),
        st.floats(-10.0, 10.0),
        near,
        st.sampled_from(CATEGORY_VALUES),
        st.integers(-3, 70).map(float),
    )


@pytest.fixture(scope="module", params=MODELS)
def pair(request: pytest.FixtureRequest) -> tuple[Scorer, lgb.Booster, str]:
    path = DATA / f"{request.param}.txt"
    return Scorer.from_file(path), lgb.Booster(model_file=str(path)), path.read_text()


def check_parity(scorer: Scorer, booster: lgb.Booster, X: npt.NDArray[np.float64], *, contrib: bool = True) -> None:
    expected_raw = booster.predict(X, raw_score=True)
    assert same_bits(scorer.predict_raw(X), expected_raw)
    assert same_bits(np.array([scorer.predict_raw_one(x) for x in X]), expected_raw)
    expected = booster.predict(X)
    assert same_bits(scorer.predict(X), expected)
    assert same_bits(np.array([scorer.predict_one(x) for x in X]), expected)
    if contrib:
        expected_phi = booster.predict(X, pred_contrib=True)
        phi = np.array([scorer.contributions(x) for x in X])
        np.testing.assert_allclose(phi, expected_phi, rtol=0, atol=1e-9)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_committed_models_match_lightgbm(pair: tuple[Scorer, lgb.Booster, str], data: st.DataObject) -> None:
    scorer, booster, text = pair
    n_rows = data.draw(st.integers(1, 12))
    values = data.draw(st.lists(row_values(text), min_size=n_rows * N_FEATURES, max_size=n_rows * N_FEATURES))
    X = np.array(values, dtype=np.float64).reshape(n_rows, N_FEATURES)
    check_parity(scorer, booster, X)


def test_committed_models_match_on_seeded_batch(pair: tuple[Scorer, lgb.Booster, str]) -> None:
    # A batch larger than one block (64 rows) and not a multiple of the lane count.
    scorer, booster, _ = pair
    X, _y = make_data(99, n=1003, nan_rate=0.1, zero_rate=0.1, categorical=True)
    X[::7, 5] = -2.0
    X[::11, 6] = 500.0
    check_parity(scorer, booster, X[:50])
    assert same_bits(scorer.predict_raw(X), booster.predict(X, raw_score=True))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_freshly_trained_models_match_lightgbm(seed: int) -> None:
    rng = np.random.default_rng(seed)
    nan_rate = float(rng.choice([0.0, 0.2]))
    zero_rate = float(rng.choice([0.0, 0.2]))
    X, y = make_data(seed, n=800, nan_rate=nan_rate, zero_rate=zero_rate, categorical=True)
    params = {
        "num_leaves": int(rng.integers(2, 40)),
        "zero_as_missing": bool(rng.integers(2)),
        "use_missing": bool(rng.random() < 0.8),
        "max_cat_to_onehot": int(rng.choice([4, 32])),
        "objective": str(rng.choice(["binary", "regression", "cross_entropy", "poisson"])),
    }
    if params["objective"] == "poisson":
        y = y * 3 + 1
    booster = train(X, y, int(rng.integers(1, 60)), categorical_feature=CATEGORICAL,
                    min_data_per_group=5, cat_smooth=1, **params)
    scorer = Scorer.from_string(booster.model_to_string())
    Xt, _ = make_data(seed + 100, n=300, nan_rate=0.2, zero_rate=0.2, categorical=True)
    Xt[rng.random(Xt.shape) < 0.05] = np.inf
    Xt[rng.random(Xt.shape) < 0.05] = -np.inf
    Xt[::5, 5] = rng.integers(-5, 100, size=len(Xt[::5]))
    check_parity(scorer, booster, Xt[:60])
    assert same_bits(scorer.predict_raw(Xt), booster.predict(Xt, raw_score=True))


def test_threads_give_the_same_scores() -> None:
    scorer = Scorer.from_file(DATA / "categorical.txt")
    X, _ = make_data(5, n=20_000, nan_rate=0.1, categorical=True)
    assert same_bits(scorer.predict_raw(X, n_threads=2), scorer.predict_raw(X))


def test_contributions_sum_to_the_raw_score() -> None:
    scorer = Scorer.from_file(DATA / "missing_nan.txt")
    X, _ = make_data(6, n=20, nan_rate=0.2)
    for x in X:
        assert scorer.contributions(x).sum() == pytest.approx(scorer.predict_raw_one(x), abs=1e-9)


def test_categories_past_63_match_lightgbm() -> None:
    # Bitsets wider than 64 categories take the scorer's out-of-line bitset test; the
    # others a one-word bit test on 1 << code. Both kinds, and codes around 63/64.
    rng = np.random.default_rng(11)
    n = 3000
    X = rng.normal(size=(n, 3))
    X[:, 2] = rng.integers(0, 300, size=n)
    y = ((X[:, 0] + np.isin(X[:, 2] % 7, [1, 2, 5]) * 2 + rng.normal(size=n)) > 1).astype(np.float64)
    booster = train(X, y, 25, categorical_feature=[2], max_cat_to_onehot=4, max_cat_threshold=128,
                    cat_smooth=1, min_data_per_group=2, cat_l2=0.1, num_leaves=31)
    scorer = Scorer.from_string(booster.model_to_string())
    assert int(np.diff(scorer.model.cat_bounds).max()) > 2  # some split needs more than 64 bits
    Xt = rng.normal(size=(400, 3))
    Xt[:, 2] = rng.choice([*range(-3, 310), 62.5, 63.9, 64.0, 1e9, np.nan, np.inf, -np.inf], size=400)
    check_parity(scorer, booster, Xt, contrib=False)
