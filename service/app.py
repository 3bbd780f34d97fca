"""The FastAPI application factory. Endpoints of the switch API, workbench and bank feed join here."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI


@dataclass(frozen=True, kw_only=True)
class ServiceConfig:
    """What the API process needs; built by ``deploy`` from the settings object."""

    redis_url: str | None = None
    """Redis URL of the feature store; None until a store is configured."""
    deadline_ms: float = 20.0
    """Overall deadline of one screening request; past it the call is allowed, degraded."""
    version: str = "0.1.0"
    """Version reported by the API's OpenAPI document."""


def create_app(config: ServiceConfig) -> FastAPI:
    """Build the application.

    >>> create_app(ServiceConfig()).title
    'callscreen'
    """
    app = FastAPI(title="callscreen", version=config.version)
    app.state.config = config

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, str]:
        """Liveness: the process is up and serving HTTP."""
        return {"status": "ok"}

    return app
