"""Errors of the service package; one line each. ``service/handlers.py`` maps them (and the domain errors) to HTTP."""

from __future__ import annotations


class ApiKeyMissingError(Exception):
    """The request carries no ``X-API-Key`` header (401)."""


class ApiKeyInvalidError(Exception):
    """The presented key matches no configured key (401)."""


class RoleForbiddenError(Exception):
    """The key's role may not call this endpoint (403)."""


class OperatorForbiddenError(Exception):
    """The key is scoped to another operator than the record names (403)."""


class RateLimitExceededError(Exception):
    """The key spent its token bucket; ``retry_after_s`` says when one token is back (429)."""

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class BodyTooLargeError(Exception):
    """The request body is larger than the route allows (413)."""


class BodyInvalidError(ValueError):
    """The request body is not what the route expects; ``field`` names where (422)."""

    def __init__(self, message: str, *, field: str | None) -> None:
        super().__init__(message)
        self.field = field


class ModelNotLoadedError(Exception):
    """No valid model is loaded (yet); the registry or the champion alias is missing (503 for model reads)."""


class KeyConfigError(ValueError):
    """The configured API keys are malformed; the message names the entry and the fix."""


class StoreMissingError(Exception):
    """The process was started without a feature store (503)."""
