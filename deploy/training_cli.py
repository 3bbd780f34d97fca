"""``callscreen simulate``, ``callscreen train`` and ``callscreen evaluate``: the data scientists' pipeline.

Only this module reads Settings (the registry folder); the training package receives
plain arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sim = sub.add_parser("simulate", help="write a simulated Kazakh telecom world (CDRs, registry, labels)")
    sim.add_argument("--out", type=Path, required=True, help="output folder")
    sim.add_argument("--subscribers", type=int, default=50_000, help="individual subscribers (default 50000)")
    sim.add_argument("--days", type=int, default=30, help="days of calls (default 30)")
    sim.add_argument("--seed", type=int, default=1, help="random seed; the same seed writes the same world")
    sim.add_argument("--start", default="2026-10-01", help="first local calendar day, YYYY-MM-DD")
    sim.add_argument("--fraud-scale", type=float, default=1.0, help="multiplies the number of fraud actors")
    sim.add_argument("--shift", type=float, default=0.0,
                     help="perturbs behaviour (group mix, rates, contact degree) for held-out worlds, e.g. 0.3")
    sim.add_argument("--jsonl", action="store_true", help="also write subscribers.jsonl and cdrs.jsonl")
    sim.set_defaults(func=_simulate)


def _simulate(args: argparse.Namespace) -> int:
    from training.simulator import simulate

    if args.subscribers < 1000 or args.days < 1:
        sys.stderr.write("callscreen simulate: --subscribers must be >= 1000 and --days >= 1\n")
        return 2
    manifest = simulate(args.out, seed=args.seed, subscribers=args.subscribers, days=args.days, start=args.start,
                        fraud_scale=args.fraud_scale, shift=args.shift, jsonl=args.jsonl)
    json.dump(manifest["counts"], sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0
