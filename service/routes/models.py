"""Models: list, show, promote, roll back; and ``GET /v1/version`` (what this process serves).

Promotion verifies the model first (the registry checks its sha256 digest and feature
list while loading it): a model that fails is refused with 409 and nothing changes. After
a promotion this process swaps at once; other API processes and the workers follow the
registry's aliases file within about a second.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from features.definitions import FEATURE_VERSION
from service import openapi
from service.access import ANY_ROLE, MODEL_READ, MODEL_WRITE, requires, runtime_of
from service.auth import ApiKey
from service.errors import ModelNotLoadedError
from service.runtime import Runtime
from service.schemas import (
    ModelCardPublic,
    ModelListPublic,
    PromoteCreate,
    RollbackCreate,
    ThresholdsPublic,
    VersionPublic,
)

router = APIRouter(prefix="/v1", tags=["models"])


def _registry(rt: Runtime) -> Any:
    if rt.registry is None:
        raise ModelNotLoadedError("this API process has no model registry; set CALLSCREEN_REGISTRY_DIR")
    return rt.registry


def _aliases(registry: Any) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name in ("champion", "challenger"):
        version = registry.alias(name)
        if version is not None:
            out.setdefault(version, []).append(name)
    return out


def card_public(card: Any, aliases: dict[str, list[str]]) -> ModelCardPublic:
    t = card.thresholds
    return ModelCardPublic(
        version=card.version,
        digest=card.digest,
        feature_version=card.feature_version,
        feature_names=list(card.feature_names),
        thresholds=ThresholdsPublic(
            warn=t.warn, block=t.block, per_operator={k: (float(v[0]), float(v[1])) for k, v in t.per_operator.items()}
        ),
        created_at=str(card.created_at),
        data_range=dict(card.data_range),
        metrics=dict(card.metrics),
        params=dict(card.params),
        aliases=aliases.get(card.version, []),
    )


@router.get("/models", summary="Registered models", responses=openapi.errors(401, 403, 429, 503))
def list_models(request: Request, key: Annotated[ApiKey, Depends(requires(MODEL_READ))]) -> ModelListPublic:
    rt = runtime_of(request)
    registry = _registry(rt)
    aliases = _aliases(registry)
    serving = rt.engine.model.card.version if rt.engine is not None and rt.engine.model is not None else None
    return ModelListPublic(models=[card_public(c, aliases) for c in registry.list()], serving=serving)


@router.get("/models/{ref}", summary="One model card (version or alias)", responses=openapi.errors(401, 403, 404, 429, 503))
def show_model(request: Request, ref: str, key: Annotated[ApiKey, Depends(requires(MODEL_READ))]) -> ModelCardPublic:
    registry = _registry(runtime_of(request))
    return card_public(registry.card(ref), _aliases(registry))


@router.post(
    "/models/promote",
    summary="Point an alias (champion by default) at a version; the API switches without a restart",
    responses=openapi.errors(401, 403, 404, 409, 422, 429, 503),
)
async def promote(
    request: Request, body: PromoteCreate, key: Annotated[ApiKey, Depends(requires(MODEL_WRITE))]
) -> ModelCardPublic:
    rt = runtime_of(request)
    registry = _registry(rt)

    def work() -> ModelCardPublic:
        registry.load(body.version)  # verifies digest and features; raises (409) on mismatch
        registry.promote(body.version, alias=body.alias)
        if rt.watcher is not None:
            rt.watcher.forget_refusal(body.version)
            rt.watcher.refresh()
        return card_public(registry.card(body.version), _aliases(registry))

    return await run_in_threadpool(work)


@router.post(
    "/models/rollback",
    summary="Point an alias back at its previous version",
    responses=openapi.errors(401, 403, 404, 409, 422, 429, 503),
)
async def rollback(
    request: Request, body: RollbackCreate, key: Annotated[ApiKey, Depends(requires(MODEL_WRITE))]
) -> ModelCardPublic:
    rt = runtime_of(request)
    registry = _registry(rt)

    def work() -> ModelCardPublic:
        card = registry.rollback(alias=body.alias)
        if rt.watcher is not None:
            rt.watcher.refresh()
        return card_public(card, _aliases(registry))

    return await run_in_threadpool(work)


@router.get("/version", summary="Service version and the model being served", responses=openapi.errors(401, 429))
def version(request: Request, key: Annotated[ApiKey, Depends(requires(ANY_ROLE))]) -> VersionPublic:
    rt = runtime_of(request)
    model = rt.engine.model if rt.engine is not None else None
    shadow = rt.engine.shadow if rt.engine is not None else None
    return VersionPublic(
        service=rt.config.version,
        model_version=rt.model_version,
        model_digest=model.card.digest if model is not None else None,
        feature_version=FEATURE_VERSION,
        shadow_version=shadow.card.version if shadow is not None else None,
    )
