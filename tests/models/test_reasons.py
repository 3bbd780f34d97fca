"""Reason codes rank positive contributions and map them through the feature definitions' shape."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from features.contracts import Reason
from models import Scorer
from models.reasons import top_reasons
from tests.models.data.generate import make_data

CODES = {
    "calls_1h": ("HIGH_CALLS_1H", "many calls in the last hour"),
    "distinct_callees_1h": ("HIGH_DISTINCT_CALLEES_1H", "many distinct callees in the last hour"),
    "biometrics": ("UNVERIFIED_BIOMETRICS", "subscriber biometrics not verified"),
}
NAMES = ["calls_1h", "distinct_callees_1h", "unmapped", "biometrics"]


def test_largest_positive_contributions_first_and_unmapped_skipped() -> None:
    phi = np.array([0.2, 1.1, 5.0, 0.7, -3.0])
    values = np.array([12.0, 40.0, 1.0, np.nan])
    reasons = top_reasons(phi, NAMES, values, CODES)
    assert [r.code for r in reasons] == ["HIGH_DISTINCT_CALLEES_1H", "UNVERIFIED_BIOMETRICS", "HIGH_CALLS_1H"]
    assert reasons[0].detail == "many distinct callees in the last hour (value 40, +1.100)"
    assert reasons[1].detail is not None and "value missing" in reasons[1].detail
    assert all(isinstance(r, Reason) for r in reasons)


def test_negative_contributions_and_the_bias_are_never_reasons() -> None:
    phi = np.array([-0.2, 0.0, 0.0, -0.1, 9.0])
    assert top_reasons(phi, NAMES, np.zeros(4), CODES) == []


def test_ties_keep_feature_order_and_limit_applies() -> None:
    phi = np.array([0.5, 0.5, 0.0, 0.5, 0.0])
    reasons = top_reasons(phi, NAMES, np.zeros(4), CODES, limit=2)
    assert [r.code for r in reasons] == ["HIGH_CALLS_1H", "HIGH_DISTINCT_CALLEES_1H"]


def test_a_missing_value_uses_its_missing_code_once() -> None:
    missing = {"calls_1h": ("NO_RECENT_CALLS", "no earlier calls"), "biometrics": ("NO_RECENT_CALLS", "same code")}
    phi = np.array([0.9, 0.1, 0.0, 0.5, 0.0])
    values = np.array([np.nan, 3.0, 0.0, np.nan])
    reasons = top_reasons(phi, NAMES, values, CODES, missing_codes=missing)
    # calls_1h is NaN -> its missing code; biometrics maps to the same code and is not repeated.
    assert [r.code for r in reasons] == ["NO_RECENT_CALLS", "HIGH_DISTINCT_CALLEES_1H"]
    present = top_reasons(phi, NAMES, np.array([7.0, 3.0, 0.0, 1.0]), CODES, missing_codes=missing)
    assert [r.code for r in present] == ["HIGH_CALLS_1H", "UNVERIFIED_BIOMETRICS", "HIGH_DISTINCT_CALLEES_1H"]


def test_definitions_missing_codes_name_real_features() -> None:
    from features.definitions import FEATURE_NAMES, MISSING_REASON_CODES

    assert set(MISSING_REASON_CODES) <= set(FEATURE_NAMES)


def test_mismatched_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="expected"):
        top_reasons(np.zeros(3), NAMES, np.zeros(4), CODES)


def test_reasons_from_a_real_model() -> None:
    scorer = Scorer.from_file(Path(__file__).parent / "data" / "missing_nan.txt")
    codes = {name: (f"CODE_{i}", f"feature {i}") for i, name in enumerate(scorer.feature_names)}
    X, _ = make_data(3, n=10, nan_rate=0.2)
    for x in X:
        phi = scorer.contributions(x)
        reasons = top_reasons(phi, scorer.feature_names, x, codes)
        positives = sorted(phi[:-1][phi[:-1] > 0], reverse=True)[:3]
        assert len(reasons) == len(positives)
