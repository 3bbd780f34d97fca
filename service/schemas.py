"""Request and response bodies of the non-contract routes (``<Thing>Create`` / ``<Thing>Public``).

The contract records themselves (cdr/1, subscriber/1, decision/1) are msgspec structs in
``features.contracts``; their JSON Schemas join the OpenAPI document in ``service/openapi.py``.
Phone numbers travel only in bodies, never in URLs (proxies and access logs keep URLs).
"""

from __future__ import annotations

import builtins
import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


# pydantic's regex engine (Rust) anchors `$` at the very end, so this is strict E.164.
E164Field = Annotated[
    str, Field(pattern=r"^\+[1-9][0-9]{6,14}$", description="E.164 number: '+' then 7-15 digits", examples=["+77011234567"])
]
ListName = Literal["block", "allow", "dno"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NumberQuery(_Strict):
    """A number-scoped request (the number is in the body, never the URL)."""

    number: E164Field


class MsisdnQuery(_Strict):
    """A subscriber-scoped request."""

    msisdn: E164Field


class ListEntryCreate(_Strict):
    """Put a number on a list. The owner is the calling key's name."""

    number: E164Field
    reason: Annotated[str, Field(min_length=1, max_length=500, examples=["confirmed by Halyk Bank case 4711"])]
    source: Annotated[
        Literal["analyst", "bank", "operator", "rule"],
        Field(description="who vouches for the entry"),
    ] = "analyst"
    expires_at: Annotated[
        dt.datetime | None, Field(description="RFC 3339 with offset; absent: never expires")
    ] = None


class ListEntryPublic(BaseModel):
    """One list entry as stored."""

    number: str
    list: ListName
    source: str
    reason: str
    owner: str
    added_at: dt.datetime
    expires_at: dt.datetime | None = None


class ListPublic(BaseModel):
    list: ListName
    entries: builtins.list[ListEntryPublic]


class RemovedPublic(BaseModel):
    removed: bool = Field(description="false when the number was not there")


class BulkErrorPublic(BaseModel):
    line: int = Field(description="1-based line number in the upload")
    error: str


class BulkResultPublic(BaseModel):
    accepted: int
    rejected: int
    errors: list[BulkErrorPublic] = Field(description="the first 100 rejected lines and why")


class UpsertedPublic(BaseModel):
    upserted: int


class ListMembershipsPublic(BaseModel):
    block: ListEntryPublic | None = None
    allow: ListEntryPublic | None = None
    dno: ListEntryPublic | None = None


class NumberRiskPublic(BaseModel):
    """The current view of one number: score of a typical call now, state summary, list memberships."""

    number: str
    score: float | None = Field(description="fraud probability of a mobile call from this number now; null without a model")
    model_version: str
    degraded: bool
    in_registry: bool
    roaming: bool
    lists: ListMembershipsPublic
    summary: dict[str, Any]


class ThresholdsPublic(BaseModel):
    warn: float
    block: float
    per_operator: dict[str, tuple[float, float]]


class ModelCardPublic(BaseModel):
    version: str
    digest: str
    feature_version: str
    feature_names: list[str]
    thresholds: ThresholdsPublic
    created_at: str
    data_range: dict[str, Any]
    metrics: dict[str, Any]
    params: dict[str, Any]
    aliases: list[str] = Field(description="aliases (champion, challenger) pointing at this version")


class ModelListPublic(BaseModel):
    models: list[ModelCardPublic]
    serving: str | None = Field(description="version this API process is serving right now")


class PromoteCreate(_Strict):
    version: Annotated[str, Field(min_length=1, max_length=128, examples=["20261120-0815"])]
    alias: Literal["champion", "challenger"] = "champion"


class RollbackCreate(_Strict):
    alias: Literal["champion", "challenger"] = "champion"


class VersionPublic(BaseModel):
    service: str
    model_version: str
    model_digest: str | None
    feature_version: str
    shadow_version: str | None


class ErrorPublic(BaseModel):
    """Every error answer: what went wrong and how to fix it; ``field`` names the offending field."""

    detail: str
    field: str | None = None


class HealthPublic(BaseModel):
    status: Literal["ok"]


class ReadyPublic(BaseModel):
    status: Literal["ready", "not_ready"]
    model_version: str
    degraded: bool = Field(description="true while the feature store is unreachable (answers fail open)")
