"""The switch's routes: screen one call, screen a batch, report completed calls.

SIP mapping (what a switch does with the answer): ``block`` -> reject like SIP 603
Decline; ``allow`` -> continue; ``warn`` -> continue and show the callee a label such as
"possible fraud". A switch that gets no answer within its own timer continues the call.

These routes decode with msgspec and answer raw JSON bytes (pydantic validation of the
response would cost more than the decision itself).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Final

import msgspec
from fastapi import APIRouter, Request, Response
from msgspec import Meta, Struct

from features.contracts import Cdr, Decision, decode
from features.errors import ContractError
from service import openapi
from service.access import SCREENING, SECURED, runtime_of
from service.auth import ApiKey, check_operator
from service.errors import BodyInvalidError
from service.lane import Kind
from service.limits import BODY_LIMITS, read_body
from service.runtime import Runtime

router = APIRouter(prefix="/v1", tags=["switch"])
MAX_BATCH: Final = 1000
_JSON: Final = "application/json"


class _Batch(Struct, frozen=True):
    calls: Annotated[list[msgspec.Raw], Meta(min_length=1, max_length=MAX_BATCH)]


class _Decisions(Struct, frozen=True):
    decisions: list[Decision]


class _CdrBatch(Struct, frozen=True):
    calls: Annotated[list[Cdr], Meta(min_length=1, max_length=MAX_BATCH)]


_BATCH_DECODER = msgspec.json.Decoder(_Batch)
# One C pass over a valid batch (2.8 us per call here, against 6.2 for the per-call path
# below, which is kept for invalid bodies: its errors name the call's index and field).
_FAST_BATCH_DECODER = msgspec.json.Decoder(_CdrBatch)
_ENCODER = msgspec.json.Encoder()

_BATCH_SCHEMA: Final = {
    "type": "object",
    "required": ["calls"],
    "properties": {"calls": {"type": "array", "minItems": 1, "maxItems": MAX_BATCH, "items": openapi.ref("Cdr")}},
}
_DECISIONS_SCHEMA: Final = {
    "type": "object",
    "required": ["decisions"],
    "properties": {"decisions": {"type": "array", "items": openapi.ref("Decision")}},
}


def decode_batch(body: bytes) -> list[Cdr]:
    """``{"calls": [cdr/1, ...]}`` -> CDRs; a bad call's error names its index and field."""
    try:
        return _FAST_BATCH_DECODER.decode(body).calls
    except msgspec.DecodeError:  # ValidationError included: the path below says where
        pass
    try:
        batch = _BATCH_DECODER.decode(body)
    except msgspec.ValidationError as exc:
        raise BodyInvalidError(
            f"body: {exc}; expected {{\"calls\": [cdr/1, ...]}} with 1-{MAX_BATCH} calls", field="calls"
        ) from None
    except msgspec.DecodeError as exc:
        raise BodyInvalidError(f"body is not JSON ({exc})", field=None) from None
    out = []
    for i, raw in enumerate(batch.calls):
        try:
            out.append(decode(Cdr, raw))
        except ContractError as exc:
            raise BodyInvalidError(f"calls[{i}]: {exc}", field=f"calls[{i}].{exc.field}" if exc.field else f"calls[{i}]") from None
    return out


def _extra(body_schema: dict[str, Any], example: Any) -> dict[str, Any]:
    return {**SECURED, **openapi.json_body(body_schema, example)}


@router.post(
    "/screen",
    summary="Screen one call at setup",
    description=(
        "Body: one `cdr/1` without the outcome fields. Answer: one `decision/1` within the deadline "
        "(default 20 ms). Past the deadline or with the feature store down the answer is `allow` with "
        "`degraded: true` and a `DEGRADED_*` reason - never a 5xx, never a block for an infrastructure "
        "failure. Emergency numbers (101-104, 112) always pass. SIP: block = 603 Decline, allow = continue, "
        "warn = continue with a label."
    ),
    openapi_extra=_extra(openapi.ref("Cdr"), openapi.EXAMPLE_CDR),
    responses={**openapi.json_response("the decision", openapi.ref("Decision"), openapi.EXAMPLE_DECISION),
               **openapi.errors(401, 403, 413, 422, 429)},
    response_class=Response,
)
async def screen(request: Request) -> Response:
    t0 = time.monotonic()
    rt = runtime_of(request)
    key = rt.guard(request, SCREENING)
    return Response(await screen_one(rt, key, await read_body(request, BODY_LIMITS["small"]), t0), media_type=_JSON)


@router.post(
    "/screen/batch",
    summary="Screen up to 1,000 calls in one request",
    description=(
        "Body: `{\"calls\": [cdr/1, ...]}` (1-1,000). Answer: `{\"decisions\": [decision/1, ...]}` in the "
        "same order. Deadline: the per-request deadline plus `batch_ms_per_call` per call."
    ),
    openapi_extra=_extra(_BATCH_SCHEMA, {"calls": [openapi.EXAMPLE_CDR]}),
    responses={**openapi.json_response("decisions, in input order", _DECISIONS_SCHEMA,
                                       {"decisions": [openapi.EXAMPLE_DECISION]}),
               **openapi.errors(401, 403, 413, 422, 429)},
    response_class=Response,
)
async def screen_batch(request: Request) -> Response:
    t0 = time.monotonic()
    rt = runtime_of(request)
    key = rt.guard(request, SCREENING)
    return Response(await screen_many(rt, key, await read_body(request, BODY_LIMITS["batch"]), t0), media_type=_JSON)


@router.post(
    "/cdrs",
    summary="Report completed calls (for operators without Kafka)",
    description=(
        "Body: `{\"calls\": [cdr/1, ...]}` with the outcome fields. Same path as the stream worker: each "
        "call is decided as of its start and applied to the feature state, idempotently by "
        "operator + call_id (a repeated call changes nothing). Answer: the decisions, in input order. "
        "A call answered with `degraded: true` may not have been applied yet; sending it again is safe."
    ),
    openapi_extra=_extra(_BATCH_SCHEMA, {"calls": [{**openapi.EXAMPLE_CDR, "answered": True,
                                                    "duration_s": 42.0, "ring_s": 6.5}]}),
    responses={**openapi.json_response("decisions, in input order", _DECISIONS_SCHEMA,
                                       {"decisions": [openapi.EXAMPLE_DECISION]}),
               **openapi.errors(401, 403, 413, 422, 429)},
    response_class=Response,
)
async def report_cdrs(request: Request) -> Response:
    t0 = time.monotonic()
    rt = runtime_of(request)
    key = rt.guard(request, SCREENING)
    return Response(await report_many(rt, key, await read_body(request, BODY_LIMITS["batch"]), t0), media_type=_JSON)


# -- the routes' work, shared by the FastAPI routes above, service/hotpath.py and service/protocol.py --
# ``prepare_*`` takes the authenticated key, the raw body and the request's start
# (time.monotonic()), checks and decodes, and says what to ask the engine and how to
# encode its answer; ``run`` does both for callers with a task.


class Work(Struct, frozen=True):
    """One request's engine call: the calls, their kind, the time left, and the answer's encoder."""

    kind: Kind
    cdrs: Sequence[Cdr]
    timeout_s: float
    encode: Callable[[list[Decision]], bytes]


Prepare = Callable[[Runtime, ApiKey, bytes, float], Work]


def _encode_one(decisions: list[Decision]) -> bytes:
    return _ENCODER.encode(decisions[0])


def _encode_many(decisions: list[Decision]) -> bytes:
    return _ENCODER.encode(_Decisions(decisions))


def prepare_one(rt: Runtime, key: ApiKey, body: bytes, t0: float) -> Work:
    """POST /v1/screen: one cdr/1 -> one decision/1 (JSON), within the deadline counted from ``t0``."""
    cdr = decode(Cdr, body)
    check_operator(key, cdr.operator)
    return Work("screen", (cdr,), rt.deadline_s - (time.monotonic() - t0), _encode_one)


def prepare_many(rt: Runtime, key: ApiKey, body: bytes, t0: float) -> Work:
    """POST /v1/screen/batch: ``{"calls": [...]}`` -> ``{"decisions": [...]}``, in input order."""
    cdrs = decode_batch(body)
    _check_operators(key, cdrs)
    budget = rt.deadline_s + len(cdrs) * rt.config.batch_ms_per_call / 1000.0
    return Work("screen", cdrs, budget - (time.monotonic() - t0), _encode_many)


def prepare_report(rt: Runtime, key: ApiKey, body: bytes, t0: float) -> Work:
    """POST /v1/cdrs: completed calls, decided and applied to the state."""
    cdrs = decode_batch(body)
    _check_operators(key, cdrs)
    return Work("process", cdrs, rt.config.process_timeout_s - (time.monotonic() - t0), _encode_many)


def _check_operators(key: ApiKey, cdrs: list[Cdr]) -> None:
    if key.operator is None:
        return
    for c in cdrs:
        if c.operator != key.operator:
            check_operator(key, c.operator)


async def run(prepare: Prepare, rt: Runtime, key: ApiKey, body: bytes, t0: float) -> bytes:
    """Prepare, ask the engine (fail-open within the deadline), encode."""
    work = prepare(rt, key, body, t0)
    return work.encode(await rt.decide(work.kind, work.cdrs, work.timeout_s))


async def screen_one(rt: Runtime, key: ApiKey, body: bytes, t0: float) -> bytes:
    return await run(prepare_one, rt, key, body, t0)


async def screen_many(rt: Runtime, key: ApiKey, body: bytes, t0: float) -> bytes:
    return await run(prepare_many, rt, key, body, t0)


async def report_many(rt: Runtime, key: ApiKey, body: bytes, t0: float) -> bytes:
    return await run(prepare_report, rt, key, body, t0)
