"""The OpenAPI document: FastAPI's, plus the contract records' JSON Schemas and the key scheme.

The hot routes read and write contract records with msgspec (one C pass, no pydantic
response validation), so FastAPI cannot see their bodies; they declare them here as
``$ref``s to components generated from the very structs that validate them.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from features.contracts import Cdr, Decision, Subscriber
from service.schemas import ErrorPublic

REF: Final = "#/components/schemas/{name}"
KEY_SCHEME: Final = "ApiKey"

EXAMPLE_CDR: Final[dict[str, Any]] = {
    "call_id": "c-20261120-000001",
    "operator": "kcell",
    "start_time": "2026-11-20T08:15:30.250Z",
    "a_number": "+77011234567",
    "b_number": "+77071234567",
    "ingress": "mobile",
    "a_imei": "356938035643809",
    "a_cell_id": "ALA-0042",
}
EXAMPLE_DECISION: Final[dict[str, Any]] = {
    "call_id": "c-20261120-000001",
    "operator": "kcell",
    "action": "allow",
    "score": 0.0132,
    "reasons": [],
    "model_version": "20261120-0815",
    "degraded": False,
    "decided_at": "2026-11-20T08:15:30.262Z",
}
EXAMPLE_SUBSCRIBER: Final[dict[str, Any]] = {
    "msisdn": "+77011234567",
    "operator": "kcell",
    "biometric_status": "verified",
    "verified_at": "2025-03-01T10:00:00Z",
    "sim_activated_at": "2021-06-15T09:30:00Z",
    "subscriber_type": "individual",
}

_ERROR_REF = {"$ref": "#/components/schemas/ErrorPublic"}


def ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(name=name)}


def json_body(schema: dict[str, Any], example: Any, *, content_type: str = "application/json") -> dict[str, Any]:
    """An ``openapi_extra`` request body."""
    return {"requestBody": {"required": True, "content": {content_type: {"schema": schema, "example": example}}}}


def json_response(description: str, schema: dict[str, Any], example: Any) -> dict[int | str, dict[str, Any]]:
    return {200: {"description": description, "content": {"application/json": {"schema": schema, "example": example}}}}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries of the error answers a route can give."""
    text = {
        401: "no or unknown X-API-Key",
        403: "the key's role (or operator scope) may not do this",
        404: "not found",
        409: "refused: the model's digest or feature list does not match",
        413: "body larger than this route accepts",
        422: "the body does not follow the schema; `field` names the field",
        429: "rate limit of this key exceeded; see Retry-After",
        503: "a dependency (feature store, registry) is unavailable; see Retry-After",
    }
    return {s: {"description": text[s], "content": {"application/json": {"schema": _ERROR_REF}}} for s in statuses}


def install(app: FastAPI) -> None:
    """Replace ``app.openapi`` with one that adds the contract schemas and the key scheme."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        doc = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
            tags=app.openapi_tags,
        )
        _, components = msgspec.json.schema_components([Cdr, Decision, Subscriber], ref_template=REF)
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        for name, schema in components.items():
            schemas.setdefault(name, schema)
        schemas["Cdr"]["example"] = EXAMPLE_CDR
        schemas["ErrorPublic"] = ErrorPublic.model_json_schema()
        # Every 422 carries our ErrorPublic body (service/handlers.py), not FastAPI's default.
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        for item in doc.get("paths", {}).values():
            for op in item.values():
                if isinstance(op, dict) and "422" in op.get("responses", {}):
                    op["responses"]["422"] = errors(422)[422]
        doc["components"].setdefault("securitySchemes", {})[KEY_SCHEME] = {
            "type": "apiKey",
            "in": "header",
            "name": "X-API-Key",
            "description": "a key issued by `callscreen keys new --role ROLE`",
        }
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]
