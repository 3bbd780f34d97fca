"""The decision policy: each step, its reason code, and the order between steps."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest

from features.contracts import Cdr
from models import policy


@dataclass(frozen=True)
class Hit:
    source: str = "analyst"
    reason: str = "test"


@dataclass(frozen=True)
class Ctx:
    in_registry: bool = True
    roaming: bool = False
    allow: Hit | None = None
    block: Hit | None = None
    dno: Hit | None = None


def cdr(a: str = "+77011234567", b: str = "+77021234567", ingress: str = "mobile") -> Cdr:
    return Cdr(
        call_id="c1",
        operator="kcell",
        start_time=dt.datetime(2026, 11, 20, 8, tzinfo=dt.UTC),
        a_number=a,
        b_number=b,
        ingress=ingress,  # type: ignore[arg-type]
    )


def codes(v: policy.Verdict) -> list[str]:
    return [r.code for r in v.reasons]


@pytest.mark.parametrize(("b", "code"), [("112", "EMERGENCY_CALLEE"), ("103", "EMERGENCY_CALLEE"), ("1414", "SHORT_CODE_CALLEE")])
def test_emergency_and_short_code_callees_win_over_every_list(b: str, code: str) -> None:
    v = policy.decide(cdr(b=b, ingress="voip"), Ctx(block=Hit(), dno=Hit()), 0.99, (0.5, 0.9))
    assert (v.action, codes(v), v.source) == ("allow", [code], "rule")


def test_allowlist_before_blocklist() -> None:
    v = policy.decide(cdr(), Ctx(allow=Hit("allowlist", "one-ring"), block=Hit()), 0.99, (0.5, 0.9))
    assert (v.action, codes(v)) == ("allow", ["ALLOWLISTED"])
    assert v.reasons[0].detail == "allowlist: one-ring"


def test_blocklist_before_dno_and_spoofing() -> None:
    v = policy.decide(cdr(ingress="international"), Ctx(block=Hit(), dno=Hit()), 0.0, (0.5, 0.9))
    assert (v.action, codes(v)) == ("block", ["BLOCKLISTED"])


def test_dno() -> None:
    v = policy.decide(cdr(), Ctx(dno=Hit("bank", "inbound only")), 0.0, (0.5, 0.9))
    assert (v.action, codes(v)) == ("block", ["DO_NOT_ORIGINATE"])


@pytest.mark.parametrize("ingress", ["international", "voip"])
def test_spoofed_domestic_cli_needs_registry_at_home(ingress: str) -> None:
    assert codes(policy.decide(cdr(ingress=ingress), Ctx(), 0.0, (0.5, 0.9))) == ["SPOOFED_DOMESTIC_CLI"]
    # roaming owner, unknown number, or a domestic trunk: the rule does not fire
    for ctx, c in ((Ctx(roaming=True), cdr(ingress=ingress)), (Ctx(in_registry=False), cdr(ingress=ingress)), (Ctx(), cdr(ingress="mobile"))):
        v = policy.decide(c, ctx, 0.0, (0.5, 0.9))
        assert (v.action, v.source) == ("allow", "model")
    # a Kazakh fixed line or a Russian mobile over an international trunk is not this rule
    assert policy.decide(cdr(a="+77272501234", ingress=ingress), Ctx(), 0.0, (0.5, 0.9)).source == "model"
    assert policy.decide(cdr(a="+79161234567", ingress=ingress), Ctx(), 0.0, (0.5, 0.9)).source == "model"


@pytest.mark.parametrize(("a", "code"), [("+7701123456", "INVALID_CLI"), ("+71234567890", "UNALLOCATED_CLI"), ("+75001234567", "UNALLOCATED_CLI")])
def test_invalid_and_unallocated_cli(a: str, code: str) -> None:
    v = policy.decide(cdr(a=a), Ctx(in_registry=False), 0.0, (0.5, 0.9))
    assert (v.action, codes(v)) == ("block", [code])
    # allow-list still wins (step 2 before step 6)
    assert policy.decide(cdr(a=a), Ctx(allow=Hit()), 0.0, (0.5, 0.9)).action == "allow"


@pytest.mark.parametrize(("score", "action"), [(0.0, "allow"), (0.4999, "allow"), (0.5, "warn"), (0.8999, "warn"), (0.9, "block"), (1.0, "block")])
def test_model_thresholds_are_inclusive(score: float, action: str) -> None:
    v = policy.decide(cdr(), Ctx(), score, (0.5, 0.9))
    assert (v.action, v.source, v.reasons) == (action, "model", ())


def test_degraded_allows_unless_a_stateless_rule_decides() -> None:
    v = policy.degraded(cdr(ingress="voip"), policy.DEGRADED_STORE_UNAVAILABLE)
    assert (v.action, codes(v), v.source) == ("allow", ["DEGRADED_STORE_UNAVAILABLE"], "degraded")
    v = policy.degraded(cdr(a="+71234567890"), policy.DEGRADED_STORE_UNAVAILABLE)
    assert (v.action, codes(v)) == ("block", ["UNALLOCATED_CLI", "DEGRADED_STORE_UNAVAILABLE"])
    v = policy.degraded(cdr(b="112"), policy.DEGRADED_MODEL_UNAVAILABLE)
    assert (v.action, codes(v)) == ("allow", ["EMERGENCY_CALLEE", "DEGRADED_MODEL_UNAVAILABLE"])
