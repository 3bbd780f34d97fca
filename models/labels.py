"""Bounded Prometheus label values shared by the API's and the worker's decision counters.

Operator ids are validated but not enumerated: an unscoped key or a stream of made-up operators
could otherwise grow the series without limit (Prometheus keeps every label value forever).
"""

from __future__ import annotations

from typing import Final

MAX_OPERATOR_LABELS: Final = 64
"""Operators with a series of their own; a country has a handful."""
OTHER_OPERATOR: Final = "other"
"""The label of every operator past the cap (the same in the API and the worker, so dashboards add them up)."""


class OperatorLabels:
    """The label for an operator id: itself for the first ``MAX_OPERATOR_LABELS`` seen, then ``OTHER_OPERATOR``.

    >>> labels = OperatorLabels(cap=1)
    >>> labels("kcell"), labels("beeline"), labels("kcell")
    ('kcell', 'other', 'kcell')
    """

    __slots__ = ("_cap", "_seen")

    def __init__(self, cap: int = MAX_OPERATOR_LABELS) -> None:
        self._cap = cap
        self._seen: set[str] = set()

    def __call__(self, operator: str) -> str:
        seen = self._seen
        if operator in seen:
            return operator
        if len(seen) < self._cap:
            seen.add(operator)
            return operator
        return OTHER_OPERATOR
