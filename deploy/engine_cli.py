"""``callscreen replay``: the screening engine over historical CDRs, without Kafka."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "replay",
        help="decide historical CDRs with the engine (backtest); writes one decision/1 per CDR",
        description="Runs the worker's engine over CDRs in start_time order, against an in-process "
        "feature store (default) or Redis (--redis), and prints throughput and counts by action.",
    )
    p.add_argument("--cdrs", type=Path, required=True, help="CDRs: a .jsonl file or a Parquet file/dataset folder")
    p.add_argument("--subscribers", type=Path, required=True, help="subscriber registry: .jsonl or Parquet")
    p.add_argument("--allowlist", type=Path, help="CSV with the header msisdn,operator,reason")
    p.add_argument("--model", default="champion", help="model version or alias in the registry (default: champion)")
    p.add_argument("--out", type=Path, required=True, help="where to write decisions (JSON Lines)")
    p.add_argument("--redis", action="store_true", help="use Redis at CALLSCREEN_REDIS_URL instead of an in-process store")
    p.add_argument("--redis-prefix", default="cs:replay:",
                   help="key prefix in Redis (default cs:replay:, kept apart from the live state)")
    p.add_argument("--batch", type=int, default=2000, help="CDRs per engine call (default 2000)")
    p.set_defaults(func=_replay)


def _fail(message: str) -> int:
    sys.stderr.write(f"callscreen replay: {message}\n")
    return 2


def _replay(args: argparse.Namespace) -> int:
    from deploy import settings
    from streaming import replay

    # Replay is offline tooling: it holds no secret worth protecting, so development defaults apply
    # unless CALLSCREEN_ENV says otherwise.
    try:
        s = settings.load(default_env="development")
    except ValueError as exc:
        return _fail(str(exc))
    for name in ("cdrs", "subscribers", "allowlist"):
        path = getattr(args, name)
        if path is not None and not path.exists():
            return _fail(f"--{name} {path} does not exist")
    if args.batch < 1:
        return _fail(f"--batch must be >= 1, got {args.batch}")

    from models.engine import Engine
    from models.registry import Registry

    try:
        model = Registry(s.models_dir).load(args.model)
    except Exception as exc:  # unknown version, digest or feature mismatch: say which and stop
        return _fail(f"model {args.model!r} not loadable from the registry at {s.models_dir}: {exc}")

    from features.store import FeatureStore

    store: FeatureStore
    if args.redis:
        if not s.redis_url:
            return _fail("--redis needs CALLSCREEN_REDIS_URL (or run `callscreen up`)")
        import redis

        from features.redisstore import RedisStore

        store = RedisStore(redis.Redis.from_url(s.redis_url, socket_timeout=30, socket_connect_timeout=5),
                           prefix=args.redis_prefix)
    else:
        from features.memstore import InMemoryStore

        store = InMemoryStore()

    import time

    t0 = time.perf_counter()
    cdrs = replay.load_cdrs(args.cdrs)
    subs = replay.load_subscribers(args.subscribers)
    allow = replay.load_allowlist(args.allowlist) if args.allowlist else []
    replay.prepare(store, subs.records, allow)
    load_s = time.perf_counter() - t0
    for what, loaded in (("CDR", cdrs), ("subscriber", subs)):
        if loaded.invalid:
            sys.stderr.write(f"skipped {loaded.invalid} invalid {what} records; first: {loaded.first_error}\n")
    engine = Engine(store, model)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "wb") as out:
        result = replay.replay(engine, cdrs.records, out, batch=args.batch)
    result.invalid = cdrs.invalid
    result.load_seconds = load_s
    sys.stdout.write(f"model {model.card.version}; {len(subs.records)} subscribers, {len(allow)} allow-listed\n")
    sys.stdout.write(result.summary() + "\n")
    return 0
