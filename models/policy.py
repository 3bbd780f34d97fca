"""The decision policy: rules in a fixed order, then the model's thresholds.

Order (the first step that decides wins; each step names its reason code):

====  =====================================  ======  ===========================  ===========
step  condition                              action  reason code                  needs state
====  =====================================  ======  ===========================  ===========
1     callee is an emergency number          allow   EMERGENCY_CALLEE             no
1     callee is a national short code        allow   SHORT_CODE_CALLEE            no
2     caller on the allow-list               allow   ALLOWLISTED                  yes
3     caller on the blocklist                block   BLOCKLISTED                  yes
4     caller on the do-not-originate list    block   DO_NOT_ORIGINATE             yes
5     Kazakh mobile CLI over an              block   SPOOFED_DOMESTIC_CLI         yes
      international/VoIP trunk while the
      registry says its owner is at home
6     caller number invalid                  block   INVALID_CLI                  no
6     caller number in an unallocated range  block   UNALLOCATED_CLI              no
7     score >= block threshold               block   model reason codes           yes
7     score >= warn threshold                warn    model reason codes           yes
7     otherwise                              allow   (none)                       yes
====  =====================================  ======  ===========================  ===========

When state is unavailable (feature store down, model missing, deadline passed) only the
stateless steps 1 and 6 may decide; otherwise the answer is ``allow`` with a
``DEGRADED_*`` reason: an infrastructure failure never blocks a call.

Everything here is pure: no I/O, no clock, so it is unit-tested exhaustively.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Final, Literal, Protocol

from features.contracts import Cdr, Reason
from features.numbering import NumberClass, classify

Action = Literal["allow", "warn", "block"]
Source = Literal["rule", "model", "degraded"]

EMERGENCY_CALLEE: Final = "EMERGENCY_CALLEE"
SHORT_CODE_CALLEE: Final = "SHORT_CODE_CALLEE"
ALLOWLISTED: Final = "ALLOWLISTED"
BLOCKLISTED: Final = "BLOCKLISTED"
DO_NOT_ORIGINATE: Final = "DO_NOT_ORIGINATE"
SPOOFED_DOMESTIC_CLI: Final = "SPOOFED_DOMESTIC_CLI"
INVALID_CLI: Final = "INVALID_CLI"
UNALLOCATED_CLI: Final = "UNALLOCATED_CLI"
DEGRADED_STORE_UNAVAILABLE: Final = "DEGRADED_STORE_UNAVAILABLE"
DEGRADED_MODEL_UNAVAILABLE: Final = "DEGRADED_MODEL_UNAVAILABLE"
DEGRADED_DEADLINE: Final = "DEGRADED_DEADLINE"

RULE_CODES: Final[tuple[str, ...]] = (
    EMERGENCY_CALLEE,
    SHORT_CODE_CALLEE,
    ALLOWLISTED,
    BLOCKLISTED,
    DO_NOT_ORIGINATE,
    SPOOFED_DOMESTIC_CLI,
    INVALID_CLI,
    UNALLOCATED_CLI,
)
DEGRADED_CODES: Final[tuple[str, ...]] = (
    DEGRADED_STORE_UNAVAILABLE,
    DEGRADED_MODEL_UNAVAILABLE,
    DEGRADED_DEADLINE,
)

_FOREIGN_TRUNKS: Final = frozenset({"international", "voip"})
# Under +7 the ranges 0xx, 1xx, 2xx and 5xx belong to neither the Kazakh nor the Russian
# plan: a CLI there cannot have been issued to anybody, so it is forged.
_UNALLOCATED_PLUS7: Final = frozenset("0125")
# Numbers repeat from call to call and classification is a few regexes (~1 us); the
# policy classifies both ends of every call. Bounded, so a stream of fresh numbers cannot grow it.
_classify: Final = functools.lru_cache(maxsize=1 << 16)(classify)


class ListHit(Protocol):
    """What the policy reads of a list entry (``features.store.ListEntry``)."""

    @property
    def source(self) -> str: ...

    @property
    def reason(self) -> str: ...


class Context(Protocol):
    """What the policy reads of the call's state (``features.store.CallContext``)."""

    @property
    def in_registry(self) -> bool: ...

    @property
    def roaming(self) -> bool: ...

    @property
    def allow(self) -> ListHit | None: ...

    @property
    def block(self) -> ListHit | None: ...

    @property
    def dno(self) -> ListHit | None: ...


@dataclass(frozen=True, slots=True)
class Verdict:
    """The policy's answer for one call: action, reasons (most important first) and who decided."""

    action: Action
    reasons: tuple[Reason, ...]
    source: Source


def stateless_rule(cdr: Cdr) -> Verdict | None:
    """Steps 1 and 6: what can be decided from the CDR alone (also in degraded mode).

    Step 1 runs before the list lookups and step 6 after them; a caller that has state must
    use :func:`decide`, which keeps the order.

    >>> from features.contracts import decode
    >>> cdr = decode(Cdr, b'{"call_id":"c","operator":"kcell","start_time":"2026-11-20T08:00:00Z",'
    ...                   b'"a_number":"+77011234567","b_number":"112","ingress":"mobile"}')
    >>> stateless_rule(cdr).action
    'allow'
    """
    return _callee_rule(cdr) or _cli_rule(cdr)


def _callee_rule(cdr: Cdr) -> Verdict | None:
    b_class = _classify(cdr.b_number)
    if b_class is NumberClass.EMERGENCY:
        return Verdict("allow", (Reason(code=EMERGENCY_CALLEE),), "rule")
    if b_class is NumberClass.SHORT_CODE:
        return Verdict("allow", (Reason(code=SHORT_CODE_CALLEE),), "rule")
    return None


def _cli_rule(cdr: Cdr) -> Verdict | None:
    a_class = _classify(cdr.a_number)
    if a_class is NumberClass.INVALID or a_class in (NumberClass.EMERGENCY, NumberClass.SHORT_CODE):
        return Verdict("block", (Reason(code=INVALID_CLI),), "rule")
    if cdr.a_number.startswith("+7") and cdr.a_number[2:3] in _UNALLOCATED_PLUS7:
        return Verdict("block", (Reason(code=UNALLOCATED_CLI),), "rule")
    return None


def _list_reason(code: str, hit: ListHit) -> Reason:
    detail = f"{hit.source}: {hit.reason}" if hit.reason else hit.source
    return Reason(code=code, detail=detail[:200] or None)


def state_rule(cdr: Cdr, ctx: Context) -> Verdict | None:
    """Steps 1-6 in order, given the call's list memberships and registry facts."""
    verdict = _callee_rule(cdr)
    if verdict is not None:
        return verdict
    if ctx.allow is not None:
        return Verdict("allow", (_list_reason(ALLOWLISTED, ctx.allow),), "rule")
    if ctx.block is not None:
        return Verdict("block", (_list_reason(BLOCKLISTED, ctx.block),), "rule")
    if ctx.dno is not None:
        return Verdict("block", (_list_reason(DO_NOT_ORIGINATE, ctx.dno),), "rule")
    if (
        cdr.ingress in _FOREIGN_TRUNKS
        and ctx.in_registry
        and not ctx.roaming
        and _classify(cdr.a_number) is NumberClass.KZ_MOBILE
    ):
        return Verdict(
            "block",
            (Reason(code=SPOOFED_DOMESTIC_CLI, detail=f"registered at home, arrived over {cdr.ingress}"),),
            "rule",
        )
    return _cli_rule(cdr)


def threshold_action(score: float, warn: float, block: float) -> Action:
    """Step 7: the model's action for ``score`` under (warn, block) probability thresholds.

    >>> [threshold_action(s, 0.5, 0.9) for s in (0.1, 0.5, 0.95)]
    ['allow', 'warn', 'block']
    """
    if score >= block:
        return "block"
    if score >= warn:
        return "warn"
    return "allow"


def decide(cdr: Cdr, ctx: Context, score: float, thresholds: tuple[float, float]) -> Verdict:
    """The full policy for a call whose state and score are known.

    Model reasons are not attached here (they cost a contributions call): the engine adds
    them to ``warn``/``block`` verdicts whose ``source`` is ``"model"``.
    """
    verdict = state_rule(cdr, ctx)
    if verdict is not None:
        return verdict
    return Verdict(threshold_action(score, *thresholds), (), "model")


def degraded(cdr: Cdr, code: str) -> Verdict:
    """Fail-open: a stateless rule if one decides, else ``allow`` with the degradation reason."""
    verdict = stateless_rule(cdr)
    if verdict is not None:
        return Verdict(verdict.action, (*verdict.reasons, Reason(code=code)), "rule")
    return Verdict("allow", (Reason(code=code),), "degraded")
