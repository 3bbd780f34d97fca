"""A test server process: the real app over a real Redis, with the tiny test model, on a given port.

    python -m tests.service.serve_tiny PORT REDIS_URL [DEADLINE_MS [threaded|inline [REDIS_TIMEOUT_S]]]
    python -m tests.service.serve_tiny PORT REDIS_URL --registry DIR   (models from the registry's champion)

Run as its own process so that load tests measure the server, not a client sharing its GIL.
Served as deploy serves: uvicorn with service.protocol.SwitchProtocol, two bulk screening lanes.
"""

from __future__ import annotations

import sys

import redis
import uvicorn
from redis.backoff import NoBackoff
from redis.retry import Retry

from deploy.api import SWITCH_INTERVAL_S, redis_timeout_s
from features.redisstore import RedisStore
from models.engine import Engine
from service.app import ServiceConfig, create_app
from service.auth import dev_keys
from service.protocol import SwitchProtocol
from tests.models.tiny_model import loaded


def main() -> None:
    port, url = int(sys.argv[1]), sys.argv[2]
    if len(sys.argv) > 4 and sys.argv[3] == "--registry":
        serve_registry(port, url, sys.argv[4])
        return
    deadline_ms = float(sys.argv[3]) if len(sys.argv) > 3 else 20.0
    timeout = redis_timeout_s(deadline_ms) if len(sys.argv) <= 5 else float(sys.argv[5])
    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0))
    store = RedisStore(client)
    threaded = (sys.argv[4] if len(sys.argv) > 4 else "threaded") == "threaded"
    config = ServiceConfig(keys=tuple(dev_keys()), deadline_ms=deadline_ms, lane_threaded=threaded)
    engine = Engine(store, loaded("tiny-1"), retry_interval_s=config.breaker_cooldown_s)
    app = create_app(config, store=store, engine=engine, bulk_lanes=2)
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    uvicorn.run(app, host="127.0.0.1", port=port, loop="uvloop", http=SwitchProtocol, access_log=False, log_level="warning")


def serve_registry(port: int, url: str, registry_dir: str) -> None:
    from models.registry import Registry

    timeout = redis_timeout_s(20.0)
    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0))
    config = ServiceConfig(keys=tuple(dev_keys()), watch_interval_s=0.2)
    app = create_app(config, store=RedisStore(client), registry=Registry(registry_dir), bulk_lanes=2)
    uvicorn.run(app, host="127.0.0.1", port=port, loop="uvloop", http=SwitchProtocol, access_log=False, log_level="warning")


if __name__ == "__main__":
    main()
