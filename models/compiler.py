"""Parse a LightGBM text model into the flat arrays the Cython kernels walk.

No compiler runs here: a new model is parsed into numpy arrays and scored by the
already-built ``models._predictor`` extension. LightGBM itself is never imported
(the serving path must not depend on it; an import-linter contract enforces this).

Layout (one array for the whole forest, trees in model order):

* every tree is laid out depth-first, left child first, so a split's left child is
  always the next node (``i + 1``) and only the right child is stored;
* leaves are nodes too: their ``value`` is the leaf output, their ``feature`` is the
  extra always-NaN slot at the end of the transformed row and their ``right`` points
  to themselves, so a leaf steps to itself under the numerical rule and several trees
  can be walked in lock-step without a per-lane "am I done" branch;
* a numerical split goes left iff ``x <= threshold`` and nothing else: LightGBM's
  per-split missing-value rules (None / Zero / NaN, default left or right) are folded
  into a per-feature transform of the row (see ``FeatureKind``). A feature whose
  missing values can occur gets two slots in the transformed row: slot ``f`` where a
  missing value reads -inf (``-inf <= t`` holds for every threshold, even -inf) and
  slot ``F + 1 + f`` where it reads NaN (``NaN <= t`` never holds, even for the +inf
  thresholds LightGBM writes to split NaN from the rest); a default-left split reads
  the first, a default-right split the second. This is exact because LightGBM takes
  the missing type from the feature's bin mapper, so every split on one feature has
  the same one (checked here; a model breaking that is refused);
* a categorical split stores the index of its bitset in ``value``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from models.errors import ModelFormatError, ModelUnsupportedError

# Matches ``ctypedef struct Node`` in _predictor.pyx field for field (16 bytes, no
# padding): four nodes per cache line.
NODE_DTYPE: Final = np.dtype(
    [("value", "<f8"), ("right", "<i4"), ("feature", "<u2"), ("default_left", "u1"), ("kind", "u1")],
    align=True,
)
KIND_CATEGORICAL: Final = 1
KIND_LEAF: Final = 2

# decision_type bits, from LightGBM's tree.h (kCategoricalMask, kDefaultLeftMask,
# missing type in bits 2-3).
_CATEGORICAL_MASK: Final = 1
_DEFAULT_LEFT_MASK: Final = 2
_MISSING_NONE, _MISSING_ZERO, _MISSING_NAN = 0, 1, 2

# The slot index is a uint16 in the node; a row has 2F+1 slots (see the module docstring).
MAX_FEATURES: Final = 32767


class FeatureKind(IntEnum):
    """How a raw value is transformed before the walk (applied once per row, not per node)."""

    NONE = 0  # missing type None: NaN becomes 0.0 (LightGBM NumericalDecision)
    NAN = 1  # missing type NaN: NaN takes the default direction
    ZERO = 2  # missing type Zero: 0 and NaN both take the default direction
    CATEGORICAL = 3  # becomes the category code, or -1 for "always right"


class Transform(IntEnum):
    """The model's objective transform from raw score to prediction."""

    IDENTITY = 0
    SIGMOID = 1  # 1 / (1 + exp(-sigmoid * raw)), binary and cross_entropy
    EXP = 2  # exp(raw), poisson / gamma / tweedie

_IDENTITY_OBJECTIVES: Final = frozenset(
    {"regression", "regression_l1", "huber", "fair", "quantile", "mape"}
)
_EXP_OBJECTIVES: Final = frozenset({"poisson", "gamma", "tweedie"})


@dataclass(frozen=True)
class CompiledModel:
    """A LightGBM model as flat arrays; every array is C-contiguous and read-only in use."""

    num_features: int
    feature_names: list[str]
    objective: str
    transform: Transform
    sigmoid: float
    nodes: npt.NDArray[np.void]  # NODE_DTYPE, all trees
    roots: npt.NDArray[np.int32]  # index of each tree's root in nodes
    depths: npt.NDArray[np.int32]  # max leaf depth per tree (0 for a single-leaf tree)
    counts: npt.NDArray[np.float64]  # training rows through each node (TreeSHAP cover)
    expected: npt.NDArray[np.float64]  # per tree, LightGBM's Tree::ExpectedValue
    cat_bounds: npt.NDArray[np.int32]  # bitset k is cat_bits[cat_bounds[k]:cat_bounds[k+1]]
    cat_bits: npt.NDArray[np.uint32]
    feature_kinds: npt.NDArray[np.uint8]  # FeatureKind per feature
    num_trees: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "num_trees", int(self.roots.shape[0]))


@dataclass
class _Tree:
    num_leaves: int
    split_feature: list[int]
    threshold: list[float]
    decision_type: list[int]
    left_child: list[int]
    right_child: list[int]
    leaf_value: list[float]
    leaf_count: list[float]
    internal_count: list[float]
    cat_boundaries: list[int]
    cat_threshold: list[int]


def compile_file(path: str | Path) -> CompiledModel:
    """Parse a LightGBM text model file (``Booster.save_model``) into a CompiledModel."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelFormatError(
            f"model file {str(path)!r} cannot be read ({exc}); expected a LightGBM text model "
            "written by Booster.save_model"
        ) from None
    return compile_text(text, source=str(path))


def compile_text(text: str, *, source: str = "<string>") -> CompiledModel:
    """Parse the text of a LightGBM model into a CompiledModel."""
    header, tree_blocks = _split(text, source)
    num_features = _header_int(header, "max_feature_idx", source) + 1
    _refuse_unsupported(header, tree_blocks, source)
    names = header.get("feature_names", "").split()
    if len(names) != num_features:
        names = [f"Column_{i}" for i in range(num_features)]
    if num_features > MAX_FEATURES:
        raise ModelUnsupportedError(
            f"{source}: {num_features} features; the scorer supports at most {MAX_FEATURES}"
        )
    objective, transform, sigmoid = _objective(header.get("objective", ""), source)
    trees = [_parse_tree(block, index, source) for index, block in tree_blocks]
    return _lay_out(trees, num_features, names, objective, transform, sigmoid, source)


def _split(text: str, source: str) -> tuple[dict[str, str], list[tuple[int, dict[str, str]]]]:
    lines = text.splitlines()
    if not lines or lines[0].strip() != "tree":
        first = repr(lines[0][:40]) if lines else "empty"
        raise ModelFormatError(
            f"{source}: first line is {first}; expected 'tree' "
            "(a LightGBM text model; fix: save with Booster.save_model)"
        )
    header: dict[str, str] = {}
    trees: list[tuple[int, dict[str, str]]] = []
    current: dict[str, str] | None = None
    for number, raw in enumerate(lines[1:], start=2):
        line = raw.strip()
        if line == "end of trees":
            break
        if not line:
            continue
        key, sep, value = line.partition("=")
        if key == "Tree":
            current = {}
            try:
                trees.append((int(value), current))
            except ValueError:
                raise ModelFormatError(f"{source}:{number}: 'Tree={value}' is not a tree index") from None
        elif current is not None:
            current[key] = value
        else:
            # Flag lines without '=' (e.g. average_output) are stored as present.
            header[key] = value if sep else "1"
    else:
        raise ModelFormatError(f"{source}: no 'end of trees' line; the model file is truncated")
    if not trees:
        raise ModelFormatError(f"{source}: the model has no trees")
    return header, trees


def _header_int(header: dict[str, str], key: str, source: str) -> int:
    try:
        return int(header[key])
    except (KeyError, ValueError):
        raise ModelFormatError(f"{source}: header {key}={header.get(key)!r}; expected an integer") from None


def _refuse_unsupported(
    header: dict[str, str], trees: list[tuple[int, dict[str, str]]], source: str
) -> None:
    for key in ("num_class", "num_tree_per_iteration"):
        if key in header and _header_int(header, key, source) != 1:
            raise ModelUnsupportedError(
                f"{source}: {key}={header[key]} (multiclass); the scorer supports one output per row"
            )
    if "average_output" in header:
        raise ModelUnsupportedError(
            f"{source}: average_output (random forest mode); the scorer supports boosted sums only"
        )
    for index, block in trees:
        if block.get("is_linear", "0") != "0":
            raise ModelUnsupportedError(f"{source}: tree {index} is linear (linear_tree); not supported")


def _objective(line: str, source: str) -> tuple[str, Transform, float]:
    name, *params = line.split()
    options = dict(p.partition(":")[::2] for p in params)
    if name == "binary":
        return name, Transform.SIGMOID, float(options.get("sigmoid", "1"))
    if name in ("cross_entropy", "xentropy"):
        return name, Transform.SIGMOID, 1.0
    if name in _IDENTITY_OBJECTIVES and "sqrt" not in params:
        return name, Transform.IDENTITY, 1.0
    if name in _EXP_OBJECTIVES:
        return name, Transform.EXP, 1.0
    raise ModelUnsupportedError(
        f"{source}: objective {line!r} is not supported; supported: binary, cross_entropy, "
        f"{', '.join(sorted(_IDENTITY_OBJECTIVES | _EXP_OBJECTIVES))} (without sqrt)"
    )


def _numbers(block: dict[str, str], key: str, count: int, index: int, source: str) -> list[float]:
    try:
        values = [float(v) for v in block[key].split()]
    except (KeyError, ValueError):
        raise ModelFormatError(f"{source}: tree {index} has no readable '{key}' line") from None
    if len(values) != count:
        raise ModelFormatError(f"{source}: tree {index} '{key}' has {len(values)} values; expected {count}")
    return values


def _ints(block: dict[str, str], key: str, count: int, index: int, source: str) -> list[int]:
    values = _numbers(block, key, count, index, source)
    return [int(v) for v in values]


def _parse_tree(block: dict[str, str], index: int, source: str) -> _Tree:
    try:
        num_leaves = int(block["num_leaves"])
        num_cat = int(block.get("num_cat", "0"))
    except (KeyError, ValueError):
        raise ModelFormatError(f"{source}: tree {index} has no readable num_leaves/num_cat") from None
    n = num_leaves - 1
    leaf_value = _numbers(block, "leaf_value", num_leaves, index, source)
    if n == 0:
        return _Tree(1, [], [], [], [], [], leaf_value, [1.0], [], [0], [])
    cat_boundaries = _ints(block, "cat_boundaries", num_cat + 1, index, source) if num_cat else [0]
    cat_threshold = (
        _ints(block, "cat_threshold", cat_boundaries[-1], index, source) if num_cat else []
    )
    return _Tree(
        num_leaves=num_leaves,
        split_feature=_ints(block, "split_feature", n, index, source),
        threshold=_numbers(block, "threshold", n, index, source),
        decision_type=_ints(block, "decision_type", n, index, source),
        left_child=_ints(block, "left_child", n, index, source),
        right_child=_ints(block, "right_child", n, index, source),
        leaf_value=leaf_value,
        leaf_count=_numbers(block, "leaf_count", num_leaves, index, source),
        internal_count=_numbers(block, "internal_count", n, index, source),
        cat_boundaries=cat_boundaries,
        cat_threshold=cat_threshold,
    )


def _expected_value(tree: _Tree) -> float:
    # Tree::ExpectedValue, same summation order (leaf index order).
    if tree.num_leaves == 1:
        return tree.leaf_value[0]
    total = tree.internal_count[0]
    value = 0.0
    for count, leaf in zip(tree.leaf_count, tree.leaf_value):
        value += (count / total) * leaf
    return value


def _lay_out(
    trees: list[_Tree],
    num_features: int,
    names: list[str],
    objective: str,
    transform: Transform,
    sigmoid: float,
    source: str,
) -> CompiledModel:
    size = sum(2 * t.num_leaves - 1 for t in trees)
    nodes = np.zeros(size, dtype=NODE_DTYPE)
    counts = np.zeros(size, dtype=np.float64)
    roots = np.zeros(len(trees), dtype=np.int32)
    depths = np.zeros(len(trees), dtype=np.int32)
    kinds: dict[int, int] = {}
    cat_bounds = [0]
    cat_bits: list[int] = []
    nan_slot = num_features
    cursor = 0
    for t_index, tree in enumerate(trees):
        roots[t_index] = cursor
        cat_base = len(cat_bounds) - 1
        for k in range(len(tree.cat_boundaries) - 1):
            words = tree.cat_threshold[tree.cat_boundaries[k] : tree.cat_boundaries[k + 1]]
            cat_bits.extend(words)
            cat_bounds.append(len(cat_bits))
        # Depth-first, left first; explicit stack because trees can be deep.
        stack: list[tuple[int, int, int]] = [(0 if tree.num_leaves > 1 else -1, 0, -1)]
        max_depth = 0
        while stack:
            node, depth, parent = stack.pop()
            me = cursor
            cursor += 1
            if parent >= 0:
                nodes[parent]["right"] = me  # only right children are patched; left is parent + 1
            if node < 0:
                leaf = ~node
                nodes[me] = (tree.leaf_value[leaf], me, nan_slot, 0, KIND_LEAF)
                counts[me] = tree.leaf_count[leaf]
                max_depth = max(max_depth, depth)
                continue
            feature = tree.split_feature[node]
            if not 0 <= feature < num_features:
                raise ModelFormatError(
                    f"{source}: tree {t_index} splits on feature {feature}; the model has {num_features}"
                )
            dtype = tree.decision_type[node]
            categorical = bool(dtype & _CATEGORICAL_MASK)
            kind = FeatureKind.CATEGORICAL if categorical else _numeric_kind((dtype >> 2) & 3)
            if kinds.setdefault(feature, kind) != kind:
                raise ModelUnsupportedError(
                    f"{source}: feature {names[feature]!r} is split as {FeatureKind(kinds[feature]).name} "
                    f"and as {kind.name} in tree {t_index}; the scorer needs one missing-value type "
                    "per feature (LightGBM's own training always produces that)"
                )
            default_left = bool(dtype & _DEFAULT_LEFT_MASK)
            slot = feature
            if categorical:
                value = float(cat_base + int(tree.threshold[node]))
            else:
                value = tree.threshold[node]
                if kind in (FeatureKind.NAN, FeatureKind.ZERO) and not default_left:
                    slot = num_features + 1 + feature
            nodes[me] = (
                value,
                -1,
                slot,
                1 if default_left else 0,
                KIND_CATEGORICAL if categorical else 0,
            )
            counts[me] = tree.internal_count[node]
            # Right pushed first so that the left subtree is laid out right after me.
            stack.append((tree.right_child[node], depth + 1, me))
            stack.append((tree.left_child[node], depth + 1, -1))
        depths[t_index] = max_depth
    feature_kinds = np.zeros(num_features, dtype=np.uint8)
    for feature, feature_kind in kinds.items():
        feature_kinds[feature] = feature_kind
    return CompiledModel(
        num_features=num_features,
        feature_names=names,
        objective=objective,
        transform=transform,
        sigmoid=sigmoid,
        nodes=nodes,
        roots=roots,
        depths=depths,
        counts=counts,
        expected=np.array([_expected_value(t) for t in trees], dtype=np.float64),
        cat_bounds=np.array(cat_bounds, dtype=np.int32),
        cat_bits=np.array(cat_bits, dtype=np.uint32),
        feature_kinds=feature_kinds,
    )


def _numeric_kind(missing_type: int) -> FeatureKind:
    if missing_type == _MISSING_NONE:
        return FeatureKind.NONE
    if missing_type == _MISSING_ZERO:
        return FeatureKind.ZERO
    if missing_type == _MISSING_NAN:
        return FeatureKind.NAN
    raise ModelFormatError(f"missing type {missing_type} in a decision_type; expected 0, 1 or 2")


__all__ = ["NODE_DTYPE", "CompiledModel", "FeatureKind", "Transform", "compile_file", "compile_text"]
