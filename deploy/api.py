"""Builds the API application from the settings: keys, Redis feature store, model registry.

``callscreen serve``, the benchmark and the end-to-end tests share this one composition.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from deploy.settings import Settings

log = logging.getLogger(__name__)

# The lane thread and the event loop share the GIL; a shorter switch interval (default
# 5 ms) keeps one from holding the other past the 20 ms deadline's budget.
SWITCH_INTERVAL_S = 0.001


class ApiKeysMissingError(ValueError):
    """Production without CALLSCREEN_API_KEYS (or with a development key in it)."""


def api_keys(s: Settings) -> tuple[Any, ...]:
    """The configured keys; the fixed development keys only in development."""
    from service.auth import dev_keys, parse_keys

    dev = {k.sha256 for k in dev_keys()}
    if s.api_keys:
        keys = parse_keys(s.api_keys)
        if s.env != "development" and any(k.sha256 in dev for k in keys):
            raise ApiKeysMissingError(
                "CALLSCREEN_API_KEYS contains a development key (dev-*); mint real ones with `callscreen keys new`"
            )
        return tuple(keys)
    if s.env == "development":
        return tuple(dev_keys())
    raise ApiKeysMissingError(
        "CALLSCREEN_API_KEYS is required in production; mint keys with `callscreen keys new --role ROLE`"
    )


def redis_timeout_s(deadline_ms: float) -> float:
    """Socket timeout of the API's Redis client: long enough for a 1,000-call batch, short enough to
    bound a hung Redis; the request's own deadline is enforced above it (service/lane.py)."""
    return max(0.1, 5 * deadline_ms / 1000.0)


def build_store(s: Settings) -> Any:
    if not s.redis_url:
        from features.memstore import InMemoryStore

        log.warning("no CALLSCREEN_REDIS_URL: in-process feature store, state is lost on exit")
        return InMemoryStore()
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from features.redisstore import RedisStore

    timeout = redis_timeout_s(s.deadline_ms)
    client = redis.Redis.from_url(
        s.redis_url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),  # one timeout, then the breaker decides; never a hidden retry
    )
    return RedisStore(client)


def build_app(s: Settings) -> Any:
    """The FastAPI app for settings ``s``."""
    from models.registry import Registry
    from service.app import ServiceConfig, create_app

    config = ServiceConfig(
        redis_url=s.redis_url,
        deadline_ms=s.deadline_ms,
        keys=api_keys(s),
        shadow=s.api_shadow,
    )
    s.models_dir.mkdir(parents=True, exist_ok=True)
    # Two bulk screening lanes (service/runtime.py): with Redis, engine siblings over their own connections.
    return create_app(config, store=build_store(s), registry=Registry(s.models_dir), bulk_lanes=2)


def run(s: Settings, host: str, port: int) -> None:
    """Serve in the foreground: uvicorn, one process, uvloop + httptools (the switch routes answered
    in the protocol, ``service.protocol``)."""
    import uvicorn

    from service.protocol import SwitchProtocol

    try:
        app = build_app(s)
    except ValueError as exc:  # refused keys: one readable line
        sys.stderr.write(f"callscreen serve: {exc}\n")
        raise SystemExit(2) from None
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    # log_config=None: uvicorn's loggers propagate to our JSON-lines handlers (and their
    # redaction). No access log: /metrics counts every request by route, and per-request
    # log lines would cost more than the screening itself.
    config = uvicorn.Config(
        app, host=host, port=port, log_config=None, timeout_graceful_shutdown=5,
        loop="uvloop", http=SwitchProtocol, access_log=False,
    )
    uvicorn.Server(config).run()
