"""``callscreen serve`` (the API alone) and ``callscreen worker`` (the stream worker alone)."""

from __future__ import annotations

import argparse
import sys

from deploy.settings import Settings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = sub.add_parser("serve", help="run the HTTP API in the foreground")
    serve.add_argument("--host", help="address to bind (default: CALLSCREEN_API_HOST)")
    serve.add_argument("--port", type=int, help="port to bind (default: CALLSCREEN_API_PORT)")
    serve.set_defaults(func=_serve)
    worker = sub.add_parser("worker", help="run the stream worker in the foreground")
    worker.set_defaults(func=_worker)


def _settings(component: str) -> Settings:
    from deploy import logs, settings

    try:
        s = settings.load()
    except ValueError as exc:  # a refused secret, a bad value: one readable line, no traceback
        sys.stderr.write(f"callscreen {component}: {exc}\n")
        raise SystemExit(2) from None
    key = s.log_hash_key.get_secret_value().encode() if s.log_hash_key else b""
    logs.configure(
        state_dir=s.state_dir, component=component, hash_key=key, level=s.log_level, stderr=s.log_stderr
    )
    return s


def _serve(args: argparse.Namespace) -> int:
    from deploy import api

    s = _settings("api")
    host = args.host or s.api_host
    port = s.api_port if args.port is None else args.port
    api.run(s, host, port)
    return 0


def _worker(args: argparse.Namespace) -> int:
    from streaming.worker import Worker, WorkerConfig

    s = _settings("worker")
    if not s.kafka_bootstrap:
        sys.stderr.write(
            "callscreen worker: CALLSCREEN_KAFKA_BOOTSTRAP is not set; "
            "set it to host:port of a Kafka broker, or use `callscreen up`\n"
        )
        return 2
    config = WorkerConfig(
        bootstrap=s.kafka_bootstrap,
        topic_cdr=s.topic_cdr,
        topic_dlq=s.topic_cdr_dlq,
        topic_decisions=s.topic_decisions,
        topic_feed=s.topic_fraud_feed,
        metrics_host=s.api_host,
        metrics_port=s.worker_metrics_port,
        redis_url=s.redis_url,
        registry_dir=s.models_dir,
        feed_hash_key=s.feed_hash_key.get_secret_value().encode() if s.feed_hash_key else None,
    )
    Worker(config).run_until_signalled()
    return 0
