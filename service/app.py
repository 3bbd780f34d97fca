"""The FastAPI application factory: the switch API (``/v1``), ops endpoints and metrics.

``deploy`` builds the feature store and the model registry and passes them in; the app
builds the engine, loads the registry's champion, follows promotions, and answers. With
no store the screening routes still answer (fail-open), and the others say 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from models.engine import Engine
from service import handlers, openapi
from service.hotpath import HotRoutes
from service.routes import lists, models, numbers, ops, screen, subscribers
from service.runtime import Runtime, ServiceConfig
from service.watcher import ModelWatcher

__all__ = ["ServiceConfig", "create_app"]

log = logging.getLogger(__name__)

DESCRIPTION = """\
Per-call fraud screening for switches, in milliseconds, fail-open.

**Auth**: every `/v1` route needs `X-API-Key` (roles: switch, analyst, bank, data_scientist,
admin; switch keys are scoped to one operator). **SIP mapping**: `block` -> answer like SIP 603
Decline; `allow` -> continue; `warn` -> continue with a label the switch can show the callee.
A switch that gets no answer within its own timer continues the call.

Phone numbers never appear in URLs: number-scoped requests carry the number in the body.
"""


def create_app(
    config: ServiceConfig,
    *,
    store: Any | None = None,
    registry: Any | None = None,
    engine: Engine | None = None,
    bulk_lanes: int = 0,
) -> FastAPI:
    """Build the application.

    >>> create_app(ServiceConfig()).title
    'callscreen'
    """
    if engine is None and store is not None:
        # A short retry interval: after a store outage the first probe comes 250 ms later,
        # well inside the 2 s recovery target.
        engine = Engine(store, None, retry_interval_s=config.breaker_cooldown_s)
    # Big screening requests run on ``bulk_lanes`` lanes of their own (engine siblings, each over
    # its own store connection).
    runtime = Runtime(config, store=store, engine=engine, registry=registry, bulk_lanes=bulk_lanes)
    if registry is not None and engine is not None:
        runtime.watcher = ModelWatcher(
            registry, engine, runtime.metrics, shadow=config.shadow, interval_s=config.watch_interval_s
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime.lane.start()
        if runtime.bulk is not None:
            runtime.bulk.start()
        task: asyncio.Task[None] | None = None
        if runtime.watcher is not None:
            try:
                await asyncio.to_thread(runtime.watcher.refresh)
            except Exception:  # no registry yet, unreadable aliases: start unready, keep polling
                log.exception("initial model load failed; /readyz stays 503 until a champion loads")
            task = asyncio.create_task(runtime.watcher.run())
        if config.gc_freeze:
            gc.collect()
            gc.freeze()
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            runtime.lane.stop()
            if runtime.bulk is not None:
                runtime.bulk.stop()

    app = ServiceApp(
        title="callscreen",
        version=config.version,
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_tags=[
            {"name": "switch", "description": "call screening for switches"},
            {"name": "subscribers", "description": "the operators' subscriber registry"},
            {"name": "lists", "description": "blocklist, allow-list, do-not-originate list"},
            {"name": "numbers", "description": "risk of one number"},
            {"name": "models", "description": "model registry and the serving model"},
            {"name": "ops", "description": "health, readiness, metrics"},
        ],
    )
    app.state.runtime = runtime
    app.state.config = config
    for module in (screen, subscribers, lists, numbers, models, ops):
        app.include_router(module.router)
    handlers.install(app)
    openapi.install(app)
    app.add_middleware(LatencyMiddleware, runtime=runtime)
    app.hot = HotRoutes(runtime)
    return app


class ServiceApp(FastAPI):
    """FastAPI, except that the switch's routes are answered before its middleware stack (:mod:`service.hotpath`)."""

    hot: HotRoutes | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hot = self.hot
        route = hot.match(scope) if hot is not None else None
        if route is None:
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self
        await hot.serve(route, scope, receive, send)  # type: ignore[union-attr]


class LatencyMiddleware:
    """Observes every HTTP request's latency by route template (never the raw path: no numbers in labels)."""

    def __init__(self, app: ASGIApp, runtime: Runtime) -> None:
        self.app = app
        self.observe = runtime.metrics.observe_latency

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.observe(template, scope["method"], str(status), time.perf_counter() - t0)
