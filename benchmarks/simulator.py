"""Simulator throughput: calls written per second and peak memory, for one seeded world.

Correctness check first: a small world drawn twice with the same seed must be identical
(the simulator's determinism promise). Then the timed run writes the requested world to a
temporary folder and reports calls/s and the process's peak RSS (one day is held in memory,
so the peak should not grow with --days).

    .venv/bin/python -m benchmarks.simulator --subscribers 50000 --days 30 --seed 1
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from training.simulator import simulate


def check_determinism(root: Path) -> None:
    for name in ("a", "b"):
        simulate(root / name, seed=99, subscribers=1000, days=2, progress=False)
    for rel in ("subscribers.parquet", "labels/calls.parquet"):
        if not pq.read_table(root / "a" / rel).equals(pq.read_table(root / "b" / rel)):
            raise SystemExit(f"determinism check failed: {rel} differs between two runs with one seed")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--subscribers", type=int, default=50_000)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="callscreen-sim-") as tmp:
        check_determinism(Path(tmp))
        t0 = time.perf_counter()
        manifest = simulate(Path(tmp) / "world", seed=args.seed, subscribers=args.subscribers, days=args.days,
                            progress=False)
        seconds = time.perf_counter() - t0
    calls = manifest["counts"]["calls"]
    json.dump({"subscribers": args.subscribers, "days": args.days, "calls": calls, "seconds": round(seconds, 1),
               "calls_per_s": round(calls / seconds), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024},
              sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
