"""Which role may call which route, and the FastAPI dependency that enforces it.

The switch routes are served by ``service/hotpath.py``, which calls ``Runtime.admit`` with
the header it read from the ASGI scope (their FastAPI routes, kept for OpenAPI, call
``Runtime.guard``); the others declare ``Depends(requires(...))``. All run the same code:
authenticate, authorise, rate-limit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Final

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from service.auth import ApiKey
from service.runtime import Runtime

SCREENING: Final = frozenset({"switch", "admin"})
SUBSCRIBER_WRITE: Final = frozenset({"switch", "admin"})
SUBSCRIBER_READ: Final = frozenset({"switch", "analyst", "admin"})
LIST_READ: Final = frozenset({"analyst", "bank", "admin"})
LIST_WRITE: Final = frozenset({"analyst", "admin"})
NUMBER_READ: Final = frozenset({"analyst", "bank", "admin"})
MODEL_READ: Final = frozenset({"data_scientist", "analyst", "admin"})
MODEL_WRITE: Final = frozenset({"data_scientist", "admin"})
ANY_ROLE: Final = frozenset({"switch", "analyst", "bank", "data_scientist", "admin"})

# Declares the scheme in OpenAPI; the check itself is Runtime.guard (auto_error=False so
# that a missing key gets our 401 body, not FastAPI's 403).
_scheme = APIKeyHeader(name="X-API-Key", scheme_name="ApiKey", auto_error=False)

# For routes that read the body themselves: OpenAPI security without a dependency.
SECURED: Final[dict[str, Any]] = {"security": [{"ApiKey": []}]}


def runtime_of(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def requires(roles: frozenset[str]) -> Callable[..., ApiKey]:
    """A dependency returning the caller's ApiKey once it passed auth and the rate limit."""

    def dependency(request: Request, _: Annotated[str | None, Security(_scheme)] = None) -> ApiKey:
        return runtime_of(request).guard(request, roles)

    return dependency


RuntimeDep = Annotated[Runtime, Depends(runtime_of)]
