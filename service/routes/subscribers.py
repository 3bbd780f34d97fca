"""The subscriber registry: upsert, look up, delete one `subscriber/1`, and bulk upload (JSON Lines).

A switch key acts only for its own operator's subscribers. Look-ups and deletes carry the
number in the body (URLs end up in proxy and access logs).
"""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from features.contracts import Subscriber, decode, encode
from features.errors import ContractError
from service import openapi
from service.access import SUBSCRIBER_READ, SUBSCRIBER_WRITE, requires, runtime_of
from service.auth import ApiKey, check_operator
from service.limits import BODY_LIMITS, read_body
from service.schemas import BulkErrorPublic, BulkResultPublic, MsisdnQuery, RemovedPublic, UpsertedPublic

router = APIRouter(prefix="/v1/subscribers", tags=["subscribers"])
_CHUNK: Final = 5000
_MAX_ERRORS: Final = 100


@router.post(
    "",
    summary="Insert or replace one subscriber/1",
    openapi_extra=openapi.json_body(openapi.ref("Subscriber"), openapi.EXAMPLE_SUBSCRIBER),
    responses=openapi.errors(401, 403, 413, 422, 429, 503),
)
async def upsert(request: Request, key: Annotated[ApiKey, Depends(requires(SUBSCRIBER_WRITE))]) -> UpsertedPublic:
    sub = decode(Subscriber, await read_body(request, BODY_LIMITS["small"]))
    check_operator(key, sub.operator)
    store = runtime_of(request).need_store()
    n = await run_in_threadpool(store.upsert_subscribers, [sub])
    return UpsertedPublic(upserted=n)


@router.post(
    "/bulk",
    summary="Bulk upload of subscriber/1 records as JSON Lines",
    description=(
        "Body: one `subscriber/1` JSON object per line (`application/x-ndjson`). Valid lines are upserted, "
        "invalid ones reported (first 100) by line number; a later line for the same msisdn wins."
    ),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/x-ndjson": {"schema": {"type": "string"},
                                                 "example": '{"msisdn":"+77011234567","operator":"kcell",'
                                                            '"biometric_status":"verified",'
                                                            '"sim_activated_at":"2021-06-15T09:30:00Z"}\n'}},
        }
    },
    responses=openapi.errors(401, 403, 413, 422, 429, 503),
)
async def bulk(request: Request, key: Annotated[ApiKey, Depends(requires(SUBSCRIBER_WRITE))]) -> BulkResultPublic:
    body = await read_body(request, BODY_LIMITS["bulk"])
    store = runtime_of(request).need_store()
    return await run_in_threadpool(_bulk, store, key, body)


def _bulk(store: object, key: ApiKey, body: bytes) -> BulkResultPublic:
    accepted = rejected = 0
    errors: list[BulkErrorPublic] = []
    chunk: list[Subscriber] = []
    for lineno, line in enumerate(body.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            sub = decode(Subscriber, line)
            if key.operator is not None and sub.operator != key.operator:
                raise ContractError(
                    f"subscriber/1: operator '{sub.operator}' is not this key's operator '{key.operator}'",
                    record="subscriber/1",
                    field="operator",
                )
        except ContractError as exc:
            rejected += 1
            if len(errors) < _MAX_ERRORS:
                errors.append(BulkErrorPublic(line=lineno, error=str(exc)))
            continue
        chunk.append(sub)
        if len(chunk) >= _CHUNK:
            accepted += store.upsert_subscribers(chunk)  # type: ignore[attr-defined]
            chunk = []
    if chunk:
        accepted += store.upsert_subscribers(chunk)  # type: ignore[attr-defined]
    return BulkResultPublic(accepted=accepted, rejected=rejected, errors=errors)


@router.post(
    "/lookup",
    summary="Look up one subscriber (number in the body)",
    response_class=Response,
    responses={**openapi.json_response("the record as stored (owner_ref as its keyed digest)",
                                       openapi.ref("Subscriber"), openapi.EXAMPLE_SUBSCRIBER),
               **openapi.errors(401, 403, 404, 422, 429, 503)},
)
def lookup(request: Request, query: MsisdnQuery, key: Annotated[ApiKey, Depends(requires(SUBSCRIBER_READ))]) -> Response:
    sub = runtime_of(request).need_store().get_subscriber(query.msisdn)
    if sub is None or (key.operator is not None and sub.operator != key.operator):
        # A scoped key learns nothing about other operators' numbers: same answer as absent.
        return Response(b'{"detail":"the registry does not hold this number","field":"msisdn"}',
                        status_code=404, media_type="application/json")
    return Response(encode(sub), media_type="application/json")


@router.post(
    "/delete",
    summary="Delete one subscriber (number in the body)",
    responses=openapi.errors(401, 403, 422, 429, 503),
)
def delete(request: Request, query: MsisdnQuery, key: Annotated[ApiKey, Depends(requires(SUBSCRIBER_WRITE))]) -> RemovedPublic:
    store = runtime_of(request).need_store()
    if key.operator is not None:
        sub = store.get_subscriber(query.msisdn)
        if sub is None or sub.operator != key.operator:
            return RemovedPublic(removed=False)
    return RemovedPublic(removed=store.delete_subscriber(query.msisdn))
