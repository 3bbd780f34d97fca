"""``callscreen keys new --role R [--operator OP]``: mint an API key.

Prints the key once (hand it to its user) and the JSON entry with its SHA-256 to add to
CALLSCREEN_API_KEYS; the service never stores the key itself.
"""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser("keys", help="API keys: mint a new key for a role")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    new = keys_sub.add_parser("new", help="print a fresh key and its CALLSCREEN_API_KEYS entry")
    new.add_argument("--role", required=True, choices=["switch", "analyst", "bank", "data_scientist", "admin"])
    new.add_argument("--operator", help="operator the key acts for (required for --role switch)")
    new.add_argument("--name", help="key name shown in logs and list owners (default: ROLE[-OPERATOR]-N)")
    new.add_argument("--rate", type=float, help="requests per second for this key (default: the role's)")
    new.set_defaults(func=_new)


def _new(args: argparse.Namespace) -> int:
    import secrets

    from service.auth import ApiKey, digest, new_key, parse_keys
    from service.errors import KeyConfigError

    raw = new_key()
    name = args.name or "-".join(p for p in (args.role, args.operator, secrets.token_hex(3)) if p)
    entry = ApiKey(name=name, role=args.role, sha256=digest(raw), operator=args.operator, rate_per_s=args.rate)
    line = json.dumps(entry.as_json())
    try:
        parse_keys(f"[{line}]")  # the same validation the API applies at start
    except KeyConfigError as exc:
        sys.stderr.write(f"callscreen keys new: {exc}\n")
        return 2
    sys.stdout.write(
        f"key (shown once; give it to its user): {raw}\n"
        f"add this entry to the JSON list in CALLSCREEN_API_KEYS:\n{line}\n"
    )
    return 0
