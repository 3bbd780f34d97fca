"""The API's Prometheus families: bounded label sets."""

from __future__ import annotations

from datetime import datetime, timezone

from features.contracts import Decision, Reason
from service.metrics import MAX_OPERATOR_LABELS, OTHER_OPERATOR, ApiMetrics

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=timezone.utc)


def decision(operator: str, action: str = "allow") -> Decision:
    return Decision(call_id="c", operator=operator, action=action, score=0.1,  # type: ignore[arg-type]
                    reasons=[Reason(code="LOW_RISK")], model_version="v1", degraded=False, decided_at=T0)


def decision_series(metrics: ApiMetrics) -> dict[tuple[str, str], float]:
    family = next(f for f in metrics.families() if f.name == "callscreen_api_decisions")
    return {(s.labels["action"], s.labels["operator"]): s.value for s in family.samples}


def test_operator_labels_are_capped_and_the_rest_counted_as_other() -> None:
    metrics = ApiMetrics()
    operators = [f"op{i:03d}" for i in range(MAX_OPERATOR_LABELS + 10)]
    metrics.count(decision(op) for op in operators)
    metrics.count([decision("op000", "block"), decision(operators[-1], "block")])
    series = decision_series(metrics)
    labelled = {op for _, op in series}
    assert len(labelled) == MAX_OPERATOR_LABELS + 1
    assert OTHER_OPERATOR in labelled
    assert series[("allow", OTHER_OPERATOR)] == 10.0
    # an operator that got its label keeps it; one past the cap stays under "other"
    assert series[("block", "op000")] == 1.0
    assert series[("block", OTHER_OPERATOR)] == 1.0
    assert sum(series.values()) == MAX_OPERATOR_LABELS + 12
