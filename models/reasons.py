"""Reason codes: the features that pushed one call's score up the most, as stable codes.

The mapping from feature name to ``(CODE, short text)`` lives with the feature
definitions (``features.definitions.REASON_CODES``); this module only ranks.

>>> import numpy as np
>>> codes = {"distinct_callees_1h": ("HIGH_DISTINCT_CALLEES_1H", "many distinct callees in the last hour"),
...          "sim_age_days": ("NEW_SIM", "SIM activated recently")}
>>> phi = np.array([1.5, 0.25, -0.5])  # two features, then the bias
>>> [r.code for r in top_reasons(phi, ["distinct_callees_1h", "sim_age_days"], np.array([42.0, 3.0]), codes)]
['HIGH_DISTINCT_CALLEES_1H', 'NEW_SIM']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from features.contracts import Reason

ReasonCodes = Mapping[str, tuple[str, str]]


def top_reasons(
    contributions: npt.NDArray[np.float64],
    feature_names: Sequence[str],
    values: npt.NDArray[np.float64],
    codes: ReasonCodes,
    *,
    limit: int = 3,
    missing_codes: ReasonCodes | None = None,
) -> list[Reason]:
    """The features with the largest positive contributions (towards fraud), most first.

    ``contributions`` is ``Scorer.contributions(x)`` (one per feature, then the bias,
    which is never a reason). Features without a code are skipped, so an unmapped
    feature never produces an unstable code; ties keep feature order, so the result
    is deterministic. Each reason's detail gives the short text, the feature value
    ("missing" for NaN) and the contribution in raw-score units. For a NaN value the code
    comes from ``missing_codes`` when it has one (an unknown SIM age is not a new SIM);
    a code already given is not repeated.
    """
    n = len(feature_names)
    if contributions.shape != (n + 1,) or values.shape != (n,):
        raise ValueError(
            f"contributions {contributions.shape} and values {values.shape} do not match "
            f"{n} feature names; expected ({n + 1},) and ({n},)"
        )
    # Plain floats and ints from here (a reason is wanted per warned call: numpy scalars
    # and argsort cost more than the ranking). Only positive contributions rank; the
    # sort is stable with reverse=True too, so ties keep feature order.
    phis: list[float] = contributions.tolist()
    positive = [j for j in range(n) if phis[j] > 0.0]
    positive.sort(key=phis.__getitem__, reverse=True)
    reasons: list[Reason] = []
    given: set[str] = set()
    for j in positive:
        if len(reasons) == limit:
            break
        name = feature_names[j]
        value = float(values[j])
        missing = value != value
        mapped = codes.get(name)
        if missing and missing_codes is not None:
            mapped = missing_codes.get(name, mapped)
        if mapped is None or mapped[0] in given:
            continue
        code, text = mapped
        given.add(code)
        shown = "missing" if missing else f"{value:.6g}"
        reasons.append(Reason(code=code, detail=f"{text} (value {shown}, +{phis[j]:.3f})"))
    return reasons

