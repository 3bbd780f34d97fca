"""The one place where exception classes become HTTP answers (Starlette ``_exception_handler.py``).

Domain errors never import FastAPI; this maps them by class. Every error body is
``{"detail": "...", "field": "..."|null}``: what went wrong, and how to fix it.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Final

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from features.errors import ContractError, NumberFormatError, StoreUnavailableError
from models import errors as model_errors
from service import errors
from service.limits import retry_after_header

log = logging.getLogger(__name__)

# Status by class name for the models package, whose registry errors land in parallel
# with this module: a missing name simply maps nothing.
_MODEL_STATUS: Final[dict[str, int]] = {
    "ModelNotFoundError": 404,
    "ModelDigestMismatchError": 409,
    "ModelFeatureMismatchError": 409,
    "ModelFormatError": 409,
    "ModelUnsupportedError": 409,
    "ModelAliasError": 409,
    "ModelVersionTakenError": 409,
    "ModelCardError": 409,
}

_STATUS: Final[dict[type[BaseException], int]] = {
    errors.ApiKeyMissingError: 401,
    errors.ApiKeyInvalidError: 401,
    errors.RoleForbiddenError: 403,
    errors.OperatorForbiddenError: 403,
    errors.RateLimitExceededError: 429,
    errors.BodyTooLargeError: 413,
    errors.BodyInvalidError: 422,
    ContractError: 422,
    NumberFormatError: 422,
    errors.ModelNotLoadedError: 503,
    errors.StoreMissingError: 503,
    StoreUnavailableError: 503,
}
from features import errors as feature_errors  # noqa: E402

for _name in ("StoreListKindError", "StoreRecordError"):
    _cls = getattr(feature_errors, _name, None)
    if isinstance(_cls, type) and issubclass(_cls, BaseException):
        _STATUS[_cls] = 422
for _name, _status in _MODEL_STATUS.items():
    _cls = getattr(model_errors, _name, None)
    if isinstance(_cls, type) and issubclass(_cls, BaseException):
        _STATUS[_cls] = _status


def status_of(exc: BaseException) -> int:
    for cls in type(exc).__mro__:
        status = _STATUS.get(cls)
        if status is not None:
            return status
    name = type(exc).__name__
    return _MODEL_STATUS.get(name, 500)


def _body(detail: str, field: str | None) -> dict[str, Any]:
    return {"detail": detail, "field": field}


def error_answer(exc: BaseException, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and JSON body of the answer to ``exc`` (shared by FastAPI's handlers and the hot routes)."""
    status = status_of(exc)
    headers: dict[str, str] = {}
    if status == 401:
        headers["WWW-Authenticate"] = "ApiKey"
    if isinstance(exc, errors.RateLimitExceededError):
        headers["Retry-After"] = retry_after_header(exc.retry_after_s)
    if status == 503:
        headers["Retry-After"] = "1"
    if status == 500:
        log.exception("unhandled error on %s %s", method, path, exc_info=exc)
        return 500, {}, _json(_body("internal error; the request was not applied", None))
    return status, headers, _json(_body(str(exc), getattr(exc, "field", None)))


def _json(content: dict[str, Any]) -> bytes:
    # What JSONResponse renders, so both paths answer byte for byte alike.
    return json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode()


async def _domain(request: Request, exc: Exception) -> Response:
    status, headers, body = error_answer(exc, request.method, request.url.path)
    return Response(body, status_code=status, headers=headers, media_type="application/json")


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    first: dict[str, Any] = next(iter(exc.errors()), {}) if isinstance(exc, RequestValidationError) else {}
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
    field = ".".join(loc) or None
    msg = first.get("msg", "invalid request")
    detail = f"field '{field}': {msg}" if field else str(msg)
    return JSONResponse(_body(detail, field), status_code=422)


async def _http(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, StarletteHTTPException):
        return await _domain(request, exc)
    return JSONResponse(_body(str(exc.detail), None), status_code=exc.status_code, headers=exc.headers)


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    for cls in (*_STATUS, Exception):
        app.add_exception_handler(cls, _domain)
