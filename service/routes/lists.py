"""Blocklist, allow-list and do-not-originate list: list, add (owner, reason, expiry), remove.

Removal is ``POST .../remove`` with the number in the body: numbers never appear in URLs.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Annotated

from fastapi import APIRouter, Depends, Request

from features.store import ListEntry
from service import openapi
from service.access import LIST_READ, LIST_WRITE, requires, runtime_of
from service.auth import ApiKey
from service.errors import BodyInvalidError
from service.schemas import ListEntryCreate, ListEntryPublic, ListName, ListPublic, NumberQuery, RemovedPublic

router = APIRouter(prefix="/v1/lists", tags=["lists"])


def _ms(t: dt.datetime) -> int:
    return int(t.timestamp() * 1000)


def _time(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


def public(entry: ListEntry) -> ListEntryPublic:
    return ListEntryPublic(
        number=entry.number,
        list=entry.list,
        source=entry.source,
        reason=entry.reason,
        owner=entry.owner,
        added_at=_time(entry.added_at),
        expires_at=None if entry.expires_at is None else _time(entry.expires_at),
    )


@router.get("/{list_name}", summary="All entries of one list", responses=openapi.errors(401, 403, 422, 429, 503))
def list_entries(
    request: Request, list_name: ListName, key: Annotated[ApiKey, Depends(requires(LIST_READ))]
) -> ListPublic:
    entries = runtime_of(request).need_store().list_entries(list_name)
    return ListPublic(list=list_name, entries=[public(e) for e in entries])


@router.post("/{list_name}", summary="Add (or replace) an entry", responses=openapi.errors(401, 403, 422, 429, 503))
def add(
    request: Request,
    list_name: ListName,
    body: ListEntryCreate,
    key: Annotated[ApiKey, Depends(requires(LIST_WRITE))],
) -> ListEntryPublic:
    now_ms = int(time.time() * 1000)
    if body.expires_at is not None:
        if body.expires_at.tzinfo is None:
            raise BodyInvalidError("expires_at needs an explicit offset, e.g. 2026-12-31T00:00:00Z", field="expires_at")
        if _ms(body.expires_at) <= now_ms:
            raise BodyInvalidError("expires_at is in the past; give a future time or leave it out", field="expires_at")
    entry = ListEntry(
        number=body.number,
        list=list_name,
        source=body.source,
        reason=body.reason,
        owner=key.name,
        added_at=now_ms,
        expires_at=None if body.expires_at is None else _ms(body.expires_at),
    )
    runtime_of(request).need_store().add_to_list(entry)
    return public(entry)


@router.post("/{list_name}/remove", summary="Remove a number from a list", responses=openapi.errors(401, 403, 422, 429, 503))
def remove(
    request: Request,
    list_name: ListName,
    body: NumberQuery,
    key: Annotated[ApiKey, Depends(requires(LIST_WRITE))],
) -> RemovedPublic:
    return RemovedPublic(removed=runtime_of(request).need_store().remove_from_list(list_name, body.number))
