"""Path-dependent TreeSHAP in exact rational arithmetic: the oracle for deep paths.

LightGBM's recursion (and its port in _predictor.pyx) loses digits on paths with many
distinct features (it divides by the one and zero fractions while unwinding), so on
such models "equal to LightGBM within 1e-9" is not a statement about the truth. This
computes, for every leaf, v * (o_i - z_i) * integral_0^1 prod_{j != i} (z_j + (o_j - z_j) t) dt
with fractions.Fraction: the Shapley sum of Lundberg's TreeSHAP, without rounding.
Numerical splits only (the models it checks have no categorical features).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import numpy.typing as npt

from models.compiler import KIND_CATEGORICAL, KIND_LEAF, CompiledModel, FeatureKind


def _slots(model: CompiledModel, x: npt.NDArray[np.float64]) -> list[float]:
    """The row as the scorer reads it: slot f for default-left splits, F + 1 + f for default-right."""
    left: list[float] = []
    right: list[float] = []
    for j, v in enumerate(x.tolist()):
        if abs(v) <= float(np.float32(1e-35)):
            v = 0.0
        kind = FeatureKind(int(model.feature_kinds[j]))
        r = v
        if kind == FeatureKind.NONE and math.isnan(v):
            v = r = 0.0
        elif kind == FeatureKind.NAN and math.isnan(v):
            v = -np.inf
        elif kind == FeatureKind.ZERO and (math.isnan(v) or v == 0.0):
            v, r = -np.inf, np.nan
        elif kind == FeatureKind.CATEGORICAL:
            raise NotImplementedError("categorical splits")
        left.append(v)
        right.append(r)
    return left + [np.nan] + right


def exact_contributions(model: CompiledModel, x: npt.NDArray[np.float64]) -> list[Fraction]:
    """Per-feature contributions (then the bias) of one row, as exact fractions."""
    F = model.num_features
    xt = _slots(model, x)
    nodes = model.nodes
    phi = [Fraction(0)] * (F + 1)
    for t, root in enumerate(model.roots.tolist()):
        phi[F] += Fraction(float(model.expected[t]))
        # (node, {feature: (o, z)}) down every path; o and z combined over repeated splits.
        stack: list[tuple[int, dict[int, tuple[int, Fraction]]]] = [(root, {})]
        while stack:
            node, path = stack.pop()
            kind = int(nodes[node]["kind"])
            if kind & KIND_LEAF:
                _leaf(phi, Fraction(float(nodes[node]["value"])), path)
                continue
            if kind & KIND_CATEGORICAL:
                raise NotImplementedError("categorical splits")
            slot = int(nodes[node]["feature"])
            feature = slot if slot < F else slot - F - 1
            goes_left = xt[slot] <= float(nodes[node]["value"])
            left, right = node + 1, int(nodes[node]["right"])
            for child, hot in ((left, goes_left), (right, not goes_left)):
                o, z = path.get(feature, (1, Fraction(1)))
                z = z * Fraction(float(model.counts[child])) / Fraction(float(model.counts[node]))
                stack.append((child, {**path, feature: (o if hot else 0, z)}))
    return phi


def _leaf(phi: list[Fraction], value: Fraction, path: dict[int, tuple[int, Fraction]]) -> None:
    # prod_j (z_j + (o_j - z_j) t) as coefficients, then divide out each feature's factor.
    full = [Fraction(1)]
    for o, z in path.values():
        full = _times(full, z, o - z)
    for i, (o, z) in path.items():
        slope = o - z
        if slope == 0:
            continue
        rest = _divide(full, z, slope)
        integral = sum((c / (k + 1) for k, c in enumerate(rest)), Fraction(0))
        phi[i] += value * slope * integral


def _times(poly: list[Fraction], a: Fraction, b: Fraction) -> list[Fraction]:
    out = [Fraction(0)] * (len(poly) + 1)
    for k, c in enumerate(poly):
        out[k] += c * a
        out[k + 1] += c * b
    return out


def _divide(poly: list[Fraction], a: Fraction, b: Fraction) -> list[Fraction]:
    # poly / (a + b t), exact: synthetic division from the top coefficient down.
    n = len(poly) - 1
    out = [Fraction(0)] * n
    carry = Fraction(0)
    for k in range(n, 0, -1):
        out[k - 1] = (poly[k] - carry) / b
        carry = out[k - 1] * a
    return out
