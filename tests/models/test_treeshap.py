"""The fast TreeSHAP (models/_treeshap.pyx) against LightGBM's ``pred_contrib`` and the reference port.

``Scorer.contributions`` takes the fast path whenever the model allows it; these tests
make sure it did, and aim at what the fast path does differently from LightGBM's
recursion: Gauss-Legendre rules of every size (paths with up to 32 distinct features),
features split again on the same path, categorical and missing-value splits.
"""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from models._treeshap import BEST_ISA, ISAS, TreeShap

from models import Scorer
from models.compiler import CompiledModel
from models.errors import ModelUnsupportedError, RowShapeError
from tests.models.data.generate import CATEGORICAL, N_FEATURES, make_data, train
from tests.models.exact_shap import exact_contributions
from tests.models.test_parity import row_values

DATA = Path(__file__).parent / "data"
MODELS = sorted(p.stem for p in DATA.glob("*.txt"))
RUNNABLE_ISAS = ISAS[:ISAS.index(BEST_ISA) + 1]  # the kernel copies this CPU can run


def tables(model: CompiledModel, *, isa: str | None = None) -> TreeShap:
    return TreeShap(model.nodes, model.roots, model.counts, model.expected, model.cat_bounds,
                    model.cat_bits, model.feature_kinds, isa=isa)


def assert_every_copy_agrees(scorer: Scorer, X: npt.NDArray[np.float64]) -> None:
    """Each kernel copy this CPU runs gives the default copy's contributions (to rounding)."""
    fast = np.array([scorer.contributions(x) for x in X])
    for isa in RUNNABLE_ISAS:
        copy = tables(scorer.model, isa=isa)
        phi = np.empty_like(fast)
        for x, out in zip(X, phi):
            copy.contributions_into(x, out)
        np.testing.assert_allclose(phi, fast, rtol=0, atol=1e-12, err_msg=isa)


def assert_matches(scorer: Scorer, X: npt.NDArray[np.float64], expected: npt.ArrayLike) -> None:
    assert scorer._shap is not None, "the fast path should take this model"
    fast = np.array([scorer.contributions(x) for x in X])
    reference = np.array([scorer.reference_contributions(x) for x in X])
    np.testing.assert_allclose(fast, np.asarray(expected, dtype=np.float64), rtol=0, atol=1e-9)
    np.testing.assert_allclose(fast, reference, rtol=0, atol=1e-9)
    # The bias is summed as LightGBM sums it: tree by tree, in order.
    assert fast[:, -1].tobytes() == reference[:, -1].tobytes()


@pytest.fixture(scope="module", params=MODELS)
def committed(request: pytest.FixtureRequest) -> tuple[Scorer, lgb.Booster, str]:
    path = DATA / f"{request.param}.txt"
    return Scorer.from_file(path), lgb.Booster(model_file=str(path)), path.read_text()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_committed_models(committed: tuple[Scorer, lgb.Booster, str], data: st.DataObject) -> None:
    scorer, booster, text = committed
    n_rows = data.draw(st.integers(1, 8))
    values = data.draw(st.lists(row_values(text), min_size=n_rows * N_FEATURES, max_size=n_rows * N_FEATURES))
    X = np.array(values, dtype=np.float64).reshape(n_rows, N_FEATURES)
    assert_matches(scorer, X, booster.predict(X, pred_contrib=True))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_deep_trees_with_repeated_and_categorical_splits(seed: int) -> None:
    # Few features and many leaves: most paths split on a feature several times, and
    # depths reach every quadrature rule up to the one for 8 distinct features.
    rng = np.random.default_rng(seed)
    X, y = make_data(seed, n=3000, nan_rate=0.15, zero_rate=0.1, categorical=True)
    booster = train(X, y, 8, categorical_feature=CATEGORICAL, num_leaves=int(rng.integers(60, 200)),
                    min_data_in_leaf=2, min_data_per_group=2, cat_smooth=1, max_cat_to_onehot=4,
                    zero_as_missing=bool(seed % 2), learning_rate=0.5)
    scorer = Scorer.from_string(booster.model_to_string())
    Xt, _ = make_data(seed + 50, n=120, nan_rate=0.2, zero_rate=0.2, categorical=True)
    Xt[::9, 5] = -3.0
    Xt[::13, 6] = 1e6
    Xt[::7, 2] = np.inf
    assert_matches(scorer, Xt, booster.predict(Xt, pred_contrib=True))
    assert_every_copy_agrees(scorer, Xt)


def test_wide_models_use_the_large_rules_and_are_exact() -> None:
    # 40 features and a deep leaf-wise tree: paths with up to ~20 distinct features, so
    # the 8-, 12- and 16-point rules run. On such paths LightGBM's own recursion drifts
    # (its contributions here miss their sum, the raw score, by ~1e-8), so the oracle
    # is exact rational arithmetic; LightGBM is held to the drift it has.
    rng = np.random.default_rng(4)
    X = rng.normal(size=(20_000, 40))
    X[rng.random(X.shape) < 0.05] = np.nan
    y = (np.sin(X[:, :20]).sum(axis=1) + rng.normal(size=len(X)) > 0).astype(np.float64)
    data = lgb.Dataset(X, y, params={"verbose": -1})
    booster = lgb.train({"objective": "binary", "num_leaves": 300, "min_data_in_leaf": 2, "max_bin": 1023,
                         "verbose": -1, "num_threads": 1, "deterministic": True, "seed": 2},
                        data, num_boost_round=1)
    scorer = Scorer.from_string(booster.model_to_string())
    assert scorer._shap is not None and scorer._shap.max_points >= 12
    Xt = rng.normal(size=(30, 40))
    Xt[rng.random(Xt.shape) < 0.1] = np.nan
    fast = np.array([scorer.contributions(x) for x in Xt])
    np.testing.assert_allclose(fast.sum(axis=1), booster.predict(Xt, raw_score=True), rtol=0, atol=1e-12)
    np.testing.assert_allclose(fast, booster.predict(Xt, pred_contrib=True), rtol=0, atol=1e-7)
    assert_every_copy_agrees(scorer, Xt)
    for x, phi in zip(Xt[:2], fast[:2]):
        exact = np.array([float(v) for v in exact_contributions(scorer.model, x)])
        np.testing.assert_allclose(phi, exact, rtol=0, atol=1e-13)


def chain_model(depth: int) -> str:
    """A one-tree model whose right spine splits on features 0, 1, ..., depth - 1 in turn."""
    n = depth
    leaf_count = [1] * (n + 1)
    leaf_count[-1] = 3
    internal_count = [sum(leaf_count[i:]) for i in range(n)]
    rows = {
        "num_leaves": n + 1, "num_cat": 0,
        "split_feature": " ".join(str(i) for i in range(n)),
        "threshold": " ".join(f"{0.1 * (i % 7) - 0.3:.17g}" for i in range(n)),
        "decision_type": " ".join("2" for _ in range(n)),
        "left_child": " ".join(str(~i) for i in range(n)),
        "right_child": " ".join(str(i + 1) if i + 1 < n else str(~n) for i in range(n)),
        "leaf_value": " ".join(f"{np.sin(i + 1):.17g}" for i in range(n + 1)),
        "leaf_count": " ".join(str(c) for c in leaf_count),
        "internal_count": " ".join(str(c) for c in internal_count),
        "is_linear": 0, "shrinkage": 1,
    }
    names = " ".join(f"f{i}" for i in range(n))
    body = "\n".join(f"{k}={v}" for k, v in rows.items())
    return (f"tree\nversion=v4\nnum_class=1\nnum_tree_per_iteration=1\nlabel_index=0\nmax_feature_idx={n - 1}\n"
            f"objective=binary sigmoid:1\nfeature_names={names}\n\nTree=0\n{body}\n\n\nend of trees\n")


@pytest.mark.parametrize("depth", [1, 2, 3, 5, 9, 16, 17, 24, 31, 32])
def test_chains_of_distinct_features_need_every_rule(depth: int) -> None:
    scorer = Scorer.from_string(chain_model(depth))
    assert scorer._shap is not None
    rng = np.random.default_rng(depth)
    X = rng.normal(scale=0.5, size=(30, depth))
    X[rng.random(X.shape) < 0.1] = np.nan
    X[0] = -10.0  # every split goes left: the first leaf
    X[1] = 10.0  # the end of the spine
    for x in X:
        fast = scorer.contributions(x)
        np.testing.assert_allclose(fast, scorer.reference_contributions(x), rtol=0, atol=1e-9)
        assert fast.sum() == pytest.approx(scorer.predict_raw_one(x), abs=1e-12)
    for x in X[:3]:
        exact = np.array([float(v) for v in exact_contributions(scorer.model, x)])
        np.testing.assert_allclose(scorer.contributions(x), exact, rtol=0, atol=1e-13)


def test_models_beyond_the_rules_fall_back_to_the_reference() -> None:
    scorer = Scorer.from_string(chain_model(33))
    assert scorer._shap is None
    with pytest.raises(ModelUnsupportedError, match="33 distinct features"):
        tables(scorer.model)
    x = np.linspace(-1, 1, 33)
    assert scorer.contributions(x).tobytes() == scorer.reference_contributions(x).tobytes()


def test_zero_cover_falls_back_to_the_reference() -> None:
    text = chain_model(4).replace("leaf_count=1 1 1 1 3", "leaf_count=0 1 1 1 3")
    scorer = Scorer.from_string(text)
    assert scorer._shap is None
    x = np.zeros(4)
    assert scorer.contributions(x).tobytes() == scorer.reference_contributions(x).tobytes()


def test_single_leaf_trees_only_add_to_the_bias() -> None:
    scorer = Scorer.from_file(DATA / "constant_tree.txt")
    booster = lgb.Booster(model_file=str(DATA / "constant_tree.txt"))
    X, _ = make_data(3, n=10)
    assert_matches(scorer, X, booster.predict(X, pred_contrib=True))


@pytest.mark.parametrize("isa", RUNNABLE_ISAS)
@pytest.mark.parametrize("name", MODELS)
def test_every_kernel_copy_this_cpu_runs_matches_lightgbm(name: str, isa: str) -> None:
    # The best copy runs by default; the others (baseline x86-64 for CPUs without AVX2,
    # AVX2 + FMA for CPUs without AVX-512) are the same C compiled for less: each must
    # be exact too.
    path = DATA / f"{name}.txt"
    scorer = Scorer.from_file(path)
    booster = lgb.Booster(model_file=str(path))
    base = tables(scorer.model, isa=isa)
    assert base.isa == isa
    X, _ = make_data(11, n=40, nan_rate=0.2, zero_rate=0.2, categorical=True)
    X[::5, CATEGORICAL[0]] = -2.0
    X[::7, 2] = -np.inf
    phi = np.empty((len(X), N_FEATURES + 1))
    for x, out in zip(X, phi):
        base.contributions_into(x, out)
    np.testing.assert_allclose(phi, booster.predict(X, pred_contrib=True), rtol=0, atol=1e-9)
    fast = np.array([scorer.contributions(x) for x in X])
    np.testing.assert_allclose(phi, fast, rtol=0, atol=1e-12)


def test_a_kernel_copy_is_named_and_must_be_runnable() -> None:
    model = Scorer.from_file(DATA / "numerical.txt").model
    assert tables(model).isa == BEST_ISA
    with pytest.raises(ValueError, match="expected one of"):
        tables(model, isa="sse9")
    for isa in ISAS[ISAS.index(BEST_ISA) + 1:]:  # none on a CPU with AVX-512
        with pytest.raises(ValueError, match="this CPU runs at most"):
            tables(model, isa=isa)


def test_wrong_rows_are_refused() -> None:
    scorer = Scorer.from_file(DATA / "numerical.txt")
    with pytest.raises(RowShapeError, match=r"expected \(8,\)"):
        scorer.contributions(np.zeros(7))
    with pytest.raises(RowShapeError, match="not numeric"):
        scorer.contributions(np.array(["a"] * 8, dtype=object))
    as_list = scorer.contributions(np.zeros(8).tolist())  # type: ignore[arg-type]  # lists are converted
    assert as_list.tobytes() == scorer.contributions(np.zeros(8)).tobytes()
