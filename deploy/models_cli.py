"""``callscreen models list | show | promote | rollback``: the model registry from the shell.

The registry folder is ``Settings().models_dir`` (``CALLSCREEN_REGISTRY_DIR``, else
``<state_dir>/models``), or ``--registry DIR``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    models = sub.add_parser("models", help="model registry: list, show, promote, rollback")
    models_sub = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        p = models_sub.add_parser(name, help=help_text)
        p.add_argument("--registry", type=Path, help="registry folder (default: CALLSCREEN_REGISTRY_DIR)")
        return p

    ls = add("list", "every registered version, oldest first, with its aliases")
    ls.add_argument("--json", action="store_true", help="one JSON card per line")
    ls.set_defaults(func=_list)
    show = add("show", "a version's card (feature list, thresholds, metrics, data range) and integrity check")
    show.add_argument("ref", help="version or alias (champion, challenger)")
    show.set_defaults(func=_show)
    promote = add("promote", "point an alias at a version (the model must verify)")
    promote.add_argument("version")
    promote.add_argument("--alias", default="champion", choices=["champion", "challenger"])
    promote.set_defaults(func=_promote)
    rollback = add("rollback", "point an alias back at its previous version")
    rollback.add_argument("--alias", default="champion", choices=["champion", "challenger"])
    rollback.set_defaults(func=_rollback)


def _registry(args: argparse.Namespace) -> Any:
    from models.registry import Registry

    if args.registry is not None:
        return Registry(args.registry)
    from deploy import settings

    # Registry commands hold no secret worth protecting: development defaults apply
    # unless CALLSCREEN_ENV says otherwise.
    return Registry(settings.load(default_env="development").models_dir)


def _run(args: argparse.Namespace, action: Any) -> int:
    from models import errors

    refusals = (errors.ModelNotFoundError, errors.ModelAliasError, errors.ModelCardError,
                errors.ModelDigestMismatchError, errors.ModelFeatureMismatchError, ValueError)
    try:
        action(_registry(args))
    except refusals as exc:
        sys.stderr.write(f"callscreen models {args.models_command}: {exc}\n")
        return 2
    return 0


def _list(args: argparse.Namespace) -> int:
    def action(reg: Any) -> None:
        aliases = reg.aliases()
        by_version: dict[str, list[str]] = {}
        for name, version in aliases.items():
            by_version.setdefault(version, []).append(name)
        cards = reg.list()
        if args.json:
            for c in cards:
                sys.stdout.write(json.dumps({**c.to_json(), "aliases": by_version.get(c.version, [])}) + "\n")
            return
        if not cards:
            sys.stdout.write(f"no models registered in {reg.root}\n")
            return
        sys.stdout.write(f"{'VERSION':<34} {'CREATED':<21} {'FEATURES':<8} {'ALIASES':<20} METRICS\n")
        for c in cards:
            metrics = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                               for k, v in sorted(c.metrics.items()) if not isinstance(v, (dict, list)))
            sys.stdout.write(f"{c.version:<34} {c.created_at:<21} {c.feature_version:<8} "
                             f"{','.join(by_version.get(c.version, [])) or '-':<20} {metrics}\n")

    return _run(args, action)


def _show(args: argparse.Namespace) -> int:
    def action(reg: Any) -> None:
        card = reg.card(args.ref)
        try:
            reg.verify(card.version)
            integrity = "ok: digest and feature list match the code"
        except ValueError as exc:  # shown, not raised: `show` is how one inspects a refused model
            integrity = f"REFUSED: {exc}"
        aliases = sorted(a for a, v in reg.aliases().items() if v == card.version)
        doc = {**card.to_json(), "aliases": aliases, "integrity": integrity}
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")

    return _run(args, action)


def _promote(args: argparse.Namespace) -> int:
    def action(reg: Any) -> None:
        previous = reg.alias(args.alias)
        card = reg.promote(args.version, alias=args.alias)
        sys.stdout.write(f"{args.alias}: {previous or '-'} -> {card.version}\n")

    return _run(args, action)


def _rollback(args: argparse.Namespace) -> int:
    def action(reg: Any) -> None:
        previous = reg.alias(args.alias)
        card = reg.rollback(args.alias)
        sys.stdout.write(f"{args.alias}: {previous or '-'} -> {card.version} (rolled back)\n")

    return _run(args, action)
