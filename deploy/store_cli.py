"""``callscreen subscribers|lists|state``: manage the online feature store in Redis.

Phone numbers are taken from ``--number`` or, to keep them out of shell history, from
standard input (one per line); they are never logged, and messages show them masked.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any

_BULK_TIMEOUT_S = 30.0
_ADMIN_TIMEOUT_S = 5.0
_PREFIX = "cs:"  # the key prefix of the store (RedisStore's default)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    subs = sub.add_parser("subscribers", help="subscriber registry in Redis: load, get, delete")
    s = subs.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = s.add_parser("load", help="bulk-load subscriber/1 records from .jsonl or Parquet; prints records/s")
    p.add_argument("file", type=Path, help="a .jsonl file, or a Parquet file or dataset folder")
    p.set_defaults(func=_load)
    p = s.add_parser("follow", help="apply the subscriber-status topic to the registry until Ctrl-C")
    p.add_argument("--group", default="callscreen-registry", help="consumer group (default callscreen-registry)")
    p.set_defaults(func=_follow)
    for name, fn, text in (("get", _get, "print a number's registry record as JSON"),
                           ("delete", _delete, "remove a number from the registry")):
        p = s.add_parser(name, help=text)
        _number_arg(p)
        p.set_defaults(func=fn)

    lists = sub.add_parser("lists", help="blocklist, allow-list and do-not-originate list")
    s = lists.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = s.add_parser("add", help="add or replace an entry (applies to the next call)")
    _list_arg(p)
    _number_arg(p)
    p.add_argument("--source", default="cli", help="who says so, e.g. bank, analyst, operator (default cli)")
    p.add_argument("--reason", default="", help="free text shown to analysts")
    p.add_argument("--owner", default="", help="whose number it is (allow-list: operator, bank, gateway)")
    p.add_argument("--expires", type=_when, help="expiry, ISO 8601 with offset (e.g. 2026-12-31T00:00:00Z)")
    p.add_argument("--days", type=float, help="expiry in days from now (instead of --expires)")
    p.set_defaults(func=_add)
    p = s.add_parser("remove", help="remove an entry")
    _list_arg(p)
    _number_arg(p)
    p.set_defaults(func=_remove)
    p = s.add_parser("show", help="print a list as JSON Lines")
    _list_arg(p)
    p.set_defaults(func=_show)
    p = s.add_parser("load", help="load entries from a CSV with header msisdn,operator,reason")
    _list_arg(p, default="allow")
    p.add_argument("file", type=Path)
    p.add_argument("--days", type=float, help="expiry in days from now (default: none)")
    p.set_defaults(func=_load_list)

    state = sub.add_parser("state", help="per-number rolling state")
    s = state.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = s.add_parser("reset", help="forget one number's calls, inbound calls and contacts")
    p.add_argument("number", nargs="?", help="E.164 number (default: read from stdin)")
    p.set_defaults(func=_reset)


def _number_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--number", help="E.164 number (default: read one per line from stdin)")


def _list_arg(p: argparse.ArgumentParser, default: str | None = None) -> None:
    p.add_argument("--list", dest="kind", choices=("block", "allow", "dno"), default=default,
                   required=default is None, help="which list")


def _when(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no UTC offset; add one, e.g. {text}Z")
    return value


def _fail(message: str) -> int:
    sys.stderr.write(f"callscreen: {message}\n")
    return 2


def _numbers(given: str | None) -> list[str]:
    from features.numbering import canonical

    raw = [given] if given is not None else [line.strip() for line in sys.stdin if line.strip()]
    return [canonical(n) for n in raw]


def _client(timeout: float) -> Any:
    """A client of ``CALLSCREEN_REDIS_URL``, with explicit socket timeouts."""
    import redis

    from deploy import settings

    s = settings.load(default_env="development")
    if not s.redis_url:
        raise SystemExit(_fail("CALLSCREEN_REDIS_URL is not set (run `callscreen up` or point it at Redis)"))
    return redis.Redis.from_url(s.redis_url, socket_timeout=timeout, socket_connect_timeout=_ADMIN_TIMEOUT_S)


def _store(timeout: float) -> Any:
    """The RedisStore of ``CALLSCREEN_REDIS_URL``, with explicit socket timeouts."""
    from features.redisstore import RedisStore

    return RedisStore(_client(timeout), prefix=_PREFIX)


def _guard(fn: Any) -> Any:
    """Turn the store's and the input's domain errors into one-line messages and exit code 2."""

    def run(args: argparse.Namespace) -> int:
        from features.errors import (
            ContractError,
            NumberFormatError,
            StoreRecordError,
            StoreUnavailableError,
        )

        try:
            return int(fn(args))
        except (ContractError, NumberFormatError, StoreRecordError, StoreUnavailableError, OSError) as exc:
            return _fail(str(exc))

    return run


@_guard
def _load(args: argparse.Namespace) -> int:
    from features.registry_codec import OwnerHasher
    from features.registry_load import RedisBulk, load

    if not args.file.exists():
        return _fail(f"{args.file} does not exist")
    from features.redisstore import RedisStore

    client = _client(_BULK_TIMEOUT_S)
    store = RedisStore(client, prefix=_PREFIX)
    t0 = time.perf_counter()
    n = load(RedisBulk(client, store.operator_code, prefix=_PREFIX), args.file, OwnerHasher())
    elapsed = time.perf_counter() - t0
    sys.stdout.write(f"loaded {n} subscriber records in {elapsed:.2f} s ({n / max(elapsed, 1e-9):,.0f} records/s)\n")
    return 0


@_guard
def _follow(args: argparse.Namespace) -> int:
    import signal

    from deploy import settings
    from streaming.registry_follower import RegistryFollower, RegistryFollowerConfig

    s = settings.load(default_env="development")
    if not s.kafka_bootstrap:
        return _fail("CALLSCREEN_KAFKA_BOOTSTRAP is not set (run `callscreen up` or point it at Kafka)")
    follower = RegistryFollower(
        RegistryFollowerConfig(s.kafka_bootstrap, topic=s.topic_subscriber_status,
                               topic_dlq=s.topic_subscriber_status + ".dlq", group_id=args.group),
        _store(_ADMIN_TIMEOUT_S),
    )
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: follower.stop())
    follower.run()
    c = follower.counts
    sys.stdout.write(f"upserted {c.upserted}, deleted {c.deleted}, rejected {c.rejected}\n")
    return 0


@_guard
def _get(args: argparse.Namespace) -> int:
    from features.contracts import encode

    store = _store(_ADMIN_TIMEOUT_S)
    missing = 0
    for number in _numbers(args.number):
        record = store.get_subscriber(number)
        if record is None:
            missing += 1
            sys.stdout.write("null\n")
        else:
            sys.stdout.write(encode(record).decode() + "\n")
    return 1 if missing else 0


@_guard
def _delete(args: argparse.Namespace) -> int:
    store = _store(_ADMIN_TIMEOUT_S)
    numbers = _numbers(args.number)
    gone = sum(store.delete_subscriber(n) for n in numbers)
    sys.stdout.write(f"deleted {gone} of {len(numbers)}\n")
    return 0


def _expiry(args: argparse.Namespace, now_ms: int) -> int | None:
    if getattr(args, "expires", None) is not None:
        from features.registry_codec import epoch_ms

        return epoch_ms(args.expires)
    if args.days is not None:
        return now_ms + int(args.days * 86_400_000)
    return None


@_guard
def _add(args: argparse.Namespace) -> int:
    from features.store import ListEntry

    store = _store(_ADMIN_TIMEOUT_S)
    now_ms = int(time.time() * 1000)
    numbers = _numbers(args.number)
    for number in numbers:
        store.add_to_list(ListEntry(number, args.kind, args.source, args.reason, args.owner, now_ms,
                                    _expiry(args, now_ms)))
    sys.stdout.write(f"{args.kind}: added {len(numbers)}\n")
    return 0


@_guard
def _remove(args: argparse.Namespace) -> int:
    store = _store(_ADMIN_TIMEOUT_S)
    numbers = _numbers(args.number)
    gone = sum(store.remove_from_list(args.kind, n) for n in numbers)
    sys.stdout.write(f"{args.kind}: removed {gone} of {len(numbers)}\n")
    return 0


@_guard
def _show(args: argparse.Namespace) -> int:
    import dataclasses

    store = _store(_ADMIN_TIMEOUT_S)
    for entry in store.list_entries(args.kind):
        sys.stdout.write(json.dumps(dataclasses.asdict(entry)) + "\n")
    return 0


@_guard
def _load_list(args: argparse.Namespace) -> int:
    from features.errors import ListFileError
    from features.listfile import read_list_csv

    store = _store(_ADMIN_TIMEOUT_S)
    now_ms = int(time.time() * 1000)
    try:
        entries = read_list_csv(args.file, kind=args.kind, source=f"csv:{args.file.name}", added_at=now_ms,
                                expires_at=_expiry(args, now_ms))
    except ListFileError as exc:
        return _fail(str(exc))
    for entry in entries:
        store.add_to_list(entry)
    sys.stdout.write(f"{args.kind}: loaded {len(entries)} entries from {args.file}\n")
    return 0


@_guard
def _reset(args: argparse.Namespace) -> int:
    store = _store(_ADMIN_TIMEOUT_S)
    numbers = _numbers(args.number)
    gone = sum(store.reset_number(n) for n in numbers)
    sys.stdout.write(f"reset {len(numbers)} number(s), {gone} state key(s) removed\n")
    return 0
