"""Liveness, readiness and Prometheus metrics (no key: the orchestrator and Prometheus call these)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from service.access import runtime_of
from service.schemas import HealthPublic, ReadyPublic

router = APIRouter(tags=["ops"])


@router.get("/healthz", summary="Liveness: the process serves HTTP")
def healthz() -> HealthPublic:
    return HealthPublic(status="ok")


@router.get(
    "/readyz",
    summary="Readiness: a valid model is loaded",
    description=(
        "200 once a valid model is loaded. A feature-store outage keeps the pod ready (`degraded: true`): "
        "switches keep getting (fail-open) answers."
    ),
    responses={200: {"description": "ready", "model": ReadyPublic},
               503: {"description": "no valid model loaded yet", "model": ReadyPublic}},
)
def readyz(request: Request) -> JSONResponse:
    rt = runtime_of(request)
    engine = rt.engine
    ready = engine is not None and engine.model is not None
    degraded = engine is None or not engine.store_available or rt.lane.stuck
    body = ReadyPublic(status="ready" if ready else "not_ready", model_version=rt.model_version, degraded=degraded)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "metrics"}})
def metrics(request: Request) -> Response:
    rt = runtime_of(request)
    return Response(rt.metrics.render(), media_type=rt.metrics.content_type)
