"""The ``callscreen`` command. Each command module registers its own subcommands.

Command modules import their heavy dependencies inside their handlers, so that
``callscreen --help`` and ``callscreen down`` stay fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Each module defines ``register(subparsers)`` and sets ``func`` on its parsers.
COMMAND_MODULES: tuple[str, ...] = (
    "deploy.stack",
    "deploy.run",
    "deploy.engine_cli",
    "deploy.training_cli",
    "deploy.keys_cli",
    "deploy.models_cli",
    "deploy.store_cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="callscreen",
        description="Telecom anti-fraud call screening: local stack, API, stream worker, training.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int | None = args.func(args)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
