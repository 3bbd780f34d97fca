"""Number risk: the current score of a number, its state summary and its list memberships."""

from __future__ import annotations

import datetime as dt
import itertools
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from features.contracts import Cdr
from service import openapi
from service.access import NUMBER_READ, requires, runtime_of
from service.auth import ApiKey
from service.routes.lists import public
from service.schemas import ListMembershipsPublic, NumberQuery, NumberRiskPublic

router = APIRouter(prefix="/v1/numbers", tags=["numbers"])
_probe_ids = itertools.count()
# The callee of the probe call: a number nobody holds, so "first contact" is true, as for
# a fraudster's typical victim.
PROBE_CALLEE = "+77000000000"


@router.post(
    "/risk",
    summary="Current risk of a number (number in the body)",
    description=(
        "Scores a typical call now: a mobile call from the number to a new callee, read-only. Also returns "
        "the number's state summary (counts, never callee numbers) and list memberships."
    ),
    responses=openapi.errors(401, 403, 422, 429, 503),
)
def risk(request: Request, query: NumberQuery, key: Annotated[ApiKey, Depends(requires(NUMBER_READ))]) -> NumberRiskPublic:
    rt = runtime_of(request)
    store = rt.need_store()
    probe = Cdr(
        call_id=f"risk-probe-{next(_probe_ids)}",
        operator="risk-probe",
        start_time=dt.datetime.now(dt.UTC),
        a_number=query.number,
        b_number=PROBE_CALLEE,
        ingress="mobile",
    )
    score: float | None = None
    degraded = True
    in_registry = roaming = False
    lists = ListMembershipsPublic()
    version = rt.model_version
    if rt.engine is not None:
        outcome = rt.engine.evaluate([probe], apply=False, deadline=time.monotonic() + 1.0)
        degraded = outcome.degraded
        if rt.engine.model is not None and not outcome.degraded:
            score = float(outcome.decisions[0].score)
        if outcome.contexts:
            ctx = outcome.contexts[0]
            in_registry, roaming = ctx.in_registry, ctx.roaming
            lists = ListMembershipsPublic(
                block=public(ctx.block) if ctx.block else None,
                allow=public(ctx.allow) if ctx.allow else None,
                dno=public(ctx.dno) if ctx.dno else None,
            )
    summary: dict[str, Any] = store.number_summary(query.number)
    return NumberRiskPublic(
        number=query.number,
        score=score,
        model_version=version,
        degraded=degraded,
        in_registry=in_registry,
        roaming=roaming,
        lists=lists,
        summary=summary,
    )
